"""The edge: one or two HAProxy load balancers, one per AZ, and the site's one public address.

The public address is an Elastic IP that Pulumi allocates but never associates: the load balancer
that is keepalived's MASTER claims it (``node.eip``), and a single load balancer claims it at boot.
Pulumi leaves the association alone (``ignore_changes``), so a `pulumi up` after a failover moves
nothing back, and `preview --refresh` shows no drift. The address never changes, so DNS never
fails over.

Each load balancer is a plain instance (no Auto Scaling group: the EIP, the VRRP peers and the
HAProxy peers want stable members), with its own public address from launch: its first boot
installs packages before any EIP is its own, and when the EIP moves away, AWS gives it a new
public address, so the BACKUP keeps its way out to SSM and CloudWatch.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from components.servers import METADATA_OPTIONS, RoleAccess, instance_role, ubuntu_ami
from userdata import for_ec2

VRRP_STATE_TAG = "foobar-vrrp-state"
"""Each load balancer publishes its keepalived state on its own instance (node.eip), for the peer's
reconcile to tell a split brain from a failed claim."""


def address_statements(
    *, partition: str, region: str, account: str, allocation_id: str, instance_ids: Sequence[str]
) -> list[dict[str, object]]:
    """What ``node.eip`` may do: move the site's one Elastic IP onto one of the load balancers, and
    tag those load balancers with its VRRP state. Nothing else, on no other address or instance."""
    instances = [f"arn:{partition}:ec2:{region}:{account}:instance/{i}" for i in instance_ids]
    return [
        {
            "Sid": "MoveSiteAddressToALoadBalancer",
            "Effect": "Allow",
            "Action": "ec2:AssociateAddress",
            # AssociateAddress authorizes the address and the instance; both must be these.
            "Resource": [f"arn:{partition}:ec2:{region}:{account}:elastic-ip/{allocation_id}", *instances],
        },
        {
            "Sid": "PublishVrrpState",
            "Effect": "Allow",
            "Action": "ec2:CreateTags",
            "Resource": instances,
            "Condition": {"ForAllValues:StringEquals": {"aws:TagKeys": [VRRP_STATE_TAG]}},
        },
        {
            "Sid": "SeeAddressAndPeers",
            "Effect": "Allow",
            "Action": ["ec2:DescribeAddresses", "ec2:DescribeInstances"],
            "Resource": "*",  # Describe calls take no resource
        },
    ]


@dataclass
class LoadBalancersArgs:
    access: RoleAccess
    count: int
    """1 or 2 (settings lbCount): load balancer i goes to public subnet i, so a pair spans two AZs."""
    instance_type: str
    subnet_ids: Sequence[pulumi.Input[str]]
    """The public subnets, one per AZ."""
    security_group_id: pulumi.Input[str]
    user_data: Callable[[pulumi.Output[str]], pulumi.Input[str]]
    """The load balancers' cloud-config (the same for each), given the Elastic IP's allocation id."""
    root_volume_gib: int
    provider: pulumi.ProviderResource
    extra_statements: pulumi.Input[list[dict[str, object]]] = field(default_factory=list)
    """Further policy statements (discovery, the ACM export, the agent)."""
    wait_for: Sequence[pulumi.Resource] = ()
    """What a first boot needs (the default route out, the log groups); also orders destroy."""


class LoadBalancers(pulumi.ComponentResource):
    instance_ids: list[pulumi.Output[str]]
    private_ips: list[pulumi.Output[str]]
    public_ip: pulumi.Output[str]
    allocation_id: pulumi.Output[str]
    role_name: pulumi.Output[str]

    def __init__(self, name: str, args: LoadBalancersArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        if args.count not in (1, 2):
            raise ValueError(f"LoadBalancersArgs.count: {args.count!r}; a load balancer or a pair (1 or 2)")
        if args.count > len(args.subnet_ids):
            raise ValueError(
                f"LoadBalancersArgs.count: {args.count} load balancers need as many public subnets (zones),"
                f" got {len(args.subnet_ids)}"
            )
        # Before the pair, the single LB was a foobar:servers:Servers: the alias keeps its Elastic IP.
        super().__init__(
            "foobar:edge:LoadBalancers",
            name,
            None,
            pulumi.ResourceOptions.merge(
                opts, pulumi.ResourceOptions(aliases=[pulumi.Alias(type_="foobar:servers:Servers")])
            ),
        )
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        role, profile = instance_role(name, args.access, args.extra_statements, child)

        address = aws.ec2.Eip(
            f"{name}-address",
            domain="vpc",
            tags={"Name": f"foobar-{args.access.role}"},
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=args.provider,
                # The MASTER load balancer associates it; a `pulumi up` must never move it back.
                ignore_changes=["instance", "networkInterface", "associateWithPrivateIp"],
                aliases=[pulumi.Alias(name=f"{name}-0-eip")],
                depends_on=list(args.wait_for),
            ),
        )
        user_data = args.user_data(address.allocation_id)

        ami = ubuntu_ami(args.instance_type, pulumi.InvokeOptions(provider=args.provider))
        instances = [
            aws.ec2.Instance(
                f"{name}-{i}",
                ami=ami,
                instance_type=args.instance_type,
                subnet_id=args.subnet_ids[i],
                vpc_security_group_ids=[args.security_group_id],
                iam_instance_profile=profile.name,
                # A way out from the first second, not waiting for the EIP; and `false` with an EIP
                # would replace it on every later `pulumi up` (terraform-provider-aws#37318).
                associate_public_ip_address=True,
                metadata_options=aws.ec2.InstanceMetadataOptionsArgs(**METADATA_OPTIONS),
                root_block_device=aws.ec2.InstanceRootBlockDeviceArgs(
                    volume_type="gp3", volume_size=args.root_volume_gib, encrypted=True, delete_on_termination=True
                ),
                ebs_optimized=True,
                monitoring=True,
                # gzip (cloud-init inflates it) within EC2's 16 KB; binary, so base64 (not user_data).
                user_data_base64=pulumi.Output.from_input(user_data).apply(for_ec2),
                user_data_replace_on_change=True,
                tags={"Name": f"foobar-{args.access.role}-{i}"},
                # A new AMI release must not replace running load balancers on the next `pulumi up`.
                opts=pulumi.ResourceOptions(
                    parent=self, provider=args.provider, ignore_changes=["ami"], depends_on=list(args.wait_for)
                ),
            )
            for i in range(args.count)
        ]
        # The address may move only onto these instances: known once they exist, so a policy of its own.
        aws.iam.RolePolicy(
            f"{name}-address-policy",
            role=role.name,
            policy=pulumi.Output.all(address.allocation_id, *[x.id for x in instances]).apply(
                lambda v: json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": address_statements(
                            partition=args.access.partition,
                            region=args.access.region,
                            account=args.access.account,
                            allocation_id=v[0],
                            instance_ids=v[1:],
                        ),
                    }
                )
            ),
            opts=child,
        )
        self.instance_ids = [x.id for x in instances]
        self.private_ips = [x.private_ip for x in instances]
        self.public_ip = address.public_ip
        self.allocation_id = address.allocation_id
        self.role_name = role.name
        self.register_outputs(
            {
                "instanceIds": self.instance_ids,
                "privateIps": self.private_ips,
                "publicIp": address.public_ip,
                "allocationId": address.allocation_id,
                "roleName": role.name,
            }
        )
