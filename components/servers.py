"""The servers of one role: IAM role with least privilege, instance profile, EC2 instances.

Every instance: Ubuntu 24.04 LTS looked up at deploy time, IMDSv2 only, encrypted gp3 root volume,
no public address but the load balancer's (its own at launch, then the Elastic IP), no fixed
private address (a replacement is made before the old one goes), and user-data that is replaced
with the instance when it changes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

UBUNTU_OWNER = "099720109477"  # Canonical
UBUNTU_NAME = "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-{arch}-server-*"
_GRAVITON = re.compile(r"^(a1|[a-z]+\d+[a-z]*g[a-z]*)\.")

METADATA_OPTIONS: dict[str, Any] = {
    "http_endpoint": "enabled",
    "http_tokens": "required",  # IMDSv2 only
    "http_put_response_hop_limit": 1,  # a container on the host can't reach it
    "instance_metadata_tags": "disabled",
}
"""Every server's instance metadata options, for an instance and a launch template alike."""

MANAGED_POLICIES = (
    "arn:{partition}:iam::aws:policy/AmazonSSMManagedInstanceCore",  # Session Manager instead of SSH
)
# The CloudWatch agent's permissions are inline (components.monitoring.agent_statements): the managed
# CloudWatchAgentServerPolicy would let it create log groups, and recreate a destroyed stack's.


def architecture(instance_type: str) -> str:
    """Ubuntu's name for the CPU architecture of an instance type (Graviton families end in g)."""
    return "arm64" if _GRAVITON.match(instance_type) else "amd64"


def ubuntu_ami(instance_type: str, opts: pulumi.InvokeOptions | None = None) -> str:
    """The newest Canonical Ubuntu 24.04 image for the instance type's architecture."""
    image = aws.ec2.get_ami(
        most_recent=True,
        owners=[UBUNTU_OWNER],
        filters=[
            aws.ec2.GetAmiFilterArgs(name="name", values=[UBUNTU_NAME.format(arch=architecture(instance_type))]),
            aws.ec2.GetAmiFilterArgs(name="virtualization-type", values=["hvm"]),
        ],
        opts=opts,
    )
    return image.id


PARAMETER_READS = ("ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath", "ssm:GetParameterHistory")


def _as_list(value: object) -> list[object]:
    return value if isinstance(value, list) else [value]


def role_policy(
    *, partition: str, region: str, account: str, param_path: str, extra: Sequence[dict[str, object]] = ()
) -> str:
    """The inline policy of a role: read its own SSM path (and decrypt through SSM only), plus extras.

    AmazonSSMManagedInstanceCore allows ssm:GetParameter(s) on every parameter; the explicit Deny
    takes that back for everything outside the role's own path (and parameters an extra statement
    names, such as the Sumo Logic token), so no server can read another role's private key.
    """
    own = [
        f"arn:{partition}:ssm:{region}:{account}:parameter{param_path}",
        f"arn:{partition}:ssm:{region}:{account}:parameter{param_path}/*",
    ]
    also_readable = [
        str(resource)
        for statement in extra
        if statement.get("Effect") == "Allow"
        and any(str(a).startswith("ssm:GetParameter") for a in _as_list(statement["Action"]))
        for resource in _as_list(statement["Resource"])
    ]
    statements: list[dict[str, object]] = [
        {
            "Sid": "ReadOwnParameters",
            "Effect": "Allow",
            "Action": list(PARAMETER_READS[:3]),
            "Resource": own,
        },
        {
            "Sid": "DenyParametersOutsideOwnPath",
            "Effect": "Deny",
            "Action": list(PARAMETER_READS),
            "NotResource": [*own, *also_readable],
        },
        {
            "Sid": "DecryptOwnParametersViaSsm",
            "Effect": "Allow",
            "Action": "kms:Decrypt",
            "Resource": f"arn:{partition}:kms:{region}:{account}:key/*",
            "Condition": {"StringEquals": {"kms:ViaService": f"ssm.{region}.amazonaws.com"}},
        },
        *extra,
    ]
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


@dataclass(frozen=True)
class RoleAccess:
    """A server role as IAM sees it: its name, its own SSM path, and the account it runs in."""

    role: str
    param_path: str
    partition: str
    region: str
    account: str


def instance_role(
    name: str,
    access: RoleAccess,
    extra_statements: pulumi.Input[list[dict[str, object]]],
    opts: pulumi.ResourceOptions,
) -> tuple[aws.iam.Role, aws.iam.InstanceProfile]:
    """A role's IAM role and instance profile: SSM core, its own parameters, and its extras only."""
    iam_role = aws.iam.Role(
        f"{name}-role",
        description=f"foobar {access.role} servers",
        assume_role_policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
                ],
            }
        ),
        opts=opts,
    )
    for i, arn in enumerate(MANAGED_POLICIES):
        aws.iam.RolePolicyAttachment(
            f"{name}-managed-{i}", role=iam_role.name, policy_arn=arn.format(partition=access.partition), opts=opts
        )
    aws.iam.RolePolicy(
        f"{name}-policy",
        role=iam_role.name,
        policy=pulumi.Output.from_input(extra_statements).apply(
            lambda extra: role_policy(
                partition=access.partition,
                region=access.region,
                account=access.account,
                param_path=access.param_path,
                extra=extra,
            )
        ),
        opts=opts,
    )
    profile = aws.iam.InstanceProfile(f"{name}-profile", role=iam_role.name, opts=opts)
    return iam_role, profile


@dataclass
class ServersArgs:
    access: RoleAccess
    count: int
    instance_type: str
    subnet_ids: Sequence[pulumi.Input[str]]
    """One per AZ; server i goes to subnet i % len(subnet_ids)."""
    security_group_id: pulumi.Input[str]
    user_data: Callable[[int], pulumi.Input[str]]
    """User-data of server i."""
    root_volume_gib: int
    provider: pulumi.ProviderResource
    extra_statements: pulumi.Input[list[dict[str, object]]] = field(default_factory=list)
    """Further policy statements for this role only (ACM export, the database secret)."""
    public: bool = False
    """Give each server an Elastic IP (the load balancer)."""
    wait_for: Sequence[pulumi.Resource] = ()
    """Resources a first boot needs (the default route out, the log groups its agent writes into).

    Waiting also orders ``pulumi destroy``: the servers go before what they need."""


class Servers(pulumi.ComponentResource):
    instance_ids: list[pulumi.Output[str]]
    private_ips: list[pulumi.Output[str]]
    public_ips: list[pulumi.Output[str]]
    role_name: pulumi.Output[str]
    role_arn: pulumi.Output[str]

    def __init__(self, name: str, args: ServersArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("foobar:servers:Servers", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)

        role, profile = instance_role(name, args.access, args.extra_statements, child)

        ami = ubuntu_ami(args.instance_type, pulumi.InvokeOptions(provider=args.provider))
        self.instance_ids, self.private_ips, self.public_ips = [], [], []
        for i in range(args.count):
            instance = aws.ec2.Instance(
                f"{name}-{i}",
                ami=ami,
                instance_type=args.instance_type,
                subnet_id=args.subnet_ids[i % len(args.subnet_ids)],
                vpc_security_group_ids=[args.security_group_id],
                iam_instance_profile=profile.name,
                # The load balancer has a way out from its first second (an address of its own until
                # the Elastic IP replaces it), so its first boot doesn't race the EIP association.
                # False with an EIP would also replace it on every later `pulumi up`: the provider
                # reads an associated EIP back as true (terraform-provider-aws#37318).
                associate_public_ip_address=args.public,
                metadata_options=aws.ec2.InstanceMetadataOptionsArgs(**METADATA_OPTIONS),
                root_block_device=aws.ec2.InstanceRootBlockDeviceArgs(
                    volume_type="gp3", volume_size=args.root_volume_gib, encrypted=True, delete_on_termination=True
                ),
                ebs_optimized=True,
                monitoring=True,
                user_data=args.user_data(i),
                user_data_replace_on_change=True,
                tags={"Name": f"foobar-{args.access.role}-{i}"},
                # A new AMI release must not replace running servers on the next `pulumi up`.
                opts=pulumi.ResourceOptions(
                    parent=self, provider=args.provider, ignore_changes=["ami"], depends_on=list(args.wait_for)
                ),
            )
            self.instance_ids.append(instance.id)
            self.private_ips.append(instance.private_ip)
            if args.public:
                eip = aws.ec2.Eip(
                    f"{name}-{i}-eip",
                    domain="vpc",
                    instance=instance.id,
                    tags={"Name": f"foobar-{args.access.role}-{i}"},
                    opts=child,
                )
                self.public_ips.append(eip.public_ip)
        self.role_name = role.name
        self.role_arn = role.arn
        self.register_outputs(
            {
                "instanceIds": self.instance_ids,
                "privateIps": self.private_ips,
                "publicIps": self.public_ips,
                "roleName": role.name,
            }
        )
