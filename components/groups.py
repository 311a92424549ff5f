"""A tier of identical servers: a launch template and an Auto Scaling group over every AZ.

The launch template carries all the hardening of a plain server (IMDSv2 with hop limit 1,
encrypted gp3 root volume, the role's instance profile and firewall, no public address) and the
role's user-data, which is the same for every member. Its image is the current Ubuntu 24.04 release
for the type's architecture, looked up at each `pulumi up`: a new release (or t3 -> t4g) is a new
template version, rolled like any other change.

A new template version starts an instance refresh that launches before it terminates (min healthy
100 %, max healthy 200 %), skips members that already match and rolls back when new members don't
become healthy. A launch lifecycle hook keeps a new member out of service until its own boot has
checked its ``/healthz`` over TLS and completed the hook; a terminate hook gives the load balancers
time to drain it. The group replaces members that fail their EC2 status checks, and a target-tracking
policy holds the average CPU.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from components.servers import METADATA_OPTIONS, RoleAccess, instance_role, ubuntu_ami
from node.discovery import MAX_MEMBERS
from userdata import for_ec2

# The hooks are created with the group (initial_lifecycle_hooks): the provider marks every field of
# them ForceNew, so changing a name, result or timeout below replaces both groups - a full new fleet.
LAUNCH_HOOK = "foobar-launch"
"""The boot code completes it (CONTINUE) once the server answers its own /healthz."""
TERMINATE_HOOK = "foobar-terminate"
"""Its heartbeat is the drain time: the load balancers stop sending new requests, then it goes."""
LAUNCH_TIMEOUT_SECONDS = 900
"""A member that hasn't completed its launch hook by then is abandoned (and replaced)."""
DRAIN_SECONDS = 90
"""Longer than a request and the backend keep-alive, shorter than an impatient roll."""
ROOT_DEVICE = "/dev/sda1"  # Ubuntu's AMIs


GROUP_METRICS = (
    "GroupMinSize",
    "GroupMaxSize",
    "GroupDesiredCapacity",
    "GroupInServiceInstances",
    "GroupPendingInstances",
    "GroupTerminatingInstances",
    "GroupTotalInstances",
)


def group_name_prefix(stack: str, role: str) -> str:
    return f"foobar-{stack}-{role}-"


def hook_statements(*, partition: str, region: str, account: str, stack: str, role: str) -> list[dict[str, object]]:
    """A member may complete lifecycle actions of its own group only (by name and by tags)."""
    return [
        {
            "Sid": "CompleteOwnLifecycleHooks",
            "Effect": "Allow",
            "Action": ["autoscaling:CompleteLifecycleAction", "autoscaling:RecordLifecycleActionHeartbeat"],
            "Resource": f"arn:{partition}:autoscaling:{region}:{account}:autoScalingGroup:*:autoScalingGroupName/"
            f"{group_name_prefix(stack, role)}*",
            "Condition": {
                "StringEquals": {"autoscaling:ResourceTag/stack": stack, "autoscaling:ResourceTag/role": role}
            },
        },
        {
            # Describe calls take no resource: this is how a member learns its group's name.
            "Sid": "FindOwnGroup",
            "Effect": "Allow",
            "Action": "autoscaling:DescribeAutoScalingInstances",
            "Resource": "*",
        },
    ]


def discovery_statement() -> dict[str, object]:
    """The load balancer's discovery agent reads the groups' members and their addresses."""
    return {
        "Sid": "DiscoverBackends",
        "Effect": "Allow",
        "Action": ["autoscaling:DescribeAutoScalingGroups", "ec2:DescribeInstances"],
        "Resource": "*",  # neither call takes a resource
    }


@dataclass
class ServerGroupArgs:
    access: RoleAccess
    stack: str
    desired: int
    """The size the group is created with; the scaling policy owns it afterwards."""
    min_size: int
    max_size: int
    instance_type: str
    subnet_ids: Sequence[pulumi.Input[str]]
    """Private subnets, one per AZ: the group spreads over all of them."""
    security_group_id: pulumi.Input[str]
    user_data: pulumi.Input[str]
    """The role's cloud-config, the same for every member."""
    root_volume_gib: int
    provider: pulumi.ProviderResource
    tags: Mapping[str, str]
    """Tags every member and its volume carry (provider default tags don't reach group members)."""
    cpu_target: int = 50
    capacity_timeout: str = "20m"
    """How long `pulumi up` waits for min_size members in service (the app's wait for the database)."""
    extra_statements: pulumi.Input[list[dict[str, object]]] = field(default_factory=list)
    wait_for: Sequence[pulumi.Resource] = ()
    """What a first boot needs (the way out, the log groups); also orders `pulumi destroy`."""

    def validate(self) -> None:
        """Bad input stops here with a message naming the argument."""
        if not 1 <= self.min_size <= self.desired <= self.max_size <= MAX_MEMBERS:
            raise ValueError(
                f"need 1 <= min_size <= desired <= max_size <= {MAX_MEMBERS}; got min_size={self.min_size},"
                f" desired={self.desired}, max_size={self.max_size}"
            )
        if not self.subnet_ids:
            raise ValueError("subnet_ids must list at least one subnet")
        if not 1 <= self.cpu_target <= 100:
            raise ValueError(f"cpu_target must be a percentage from 1 to 100; got {self.cpu_target}")


class ServerGroup(pulumi.ComponentResource):
    group_name: pulumi.Output[str]
    group_arn: pulumi.Output[str]
    launch_template_id: pulumi.Output[str]
    role_name: pulumi.Output[str]
    role_arn: pulumi.Output[str]

    def __init__(self, name: str, args: ServerGroupArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("foobar:groups:ServerGroup", name, None, opts)
        args.validate()
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        a = args.access
        hooks = hook_statements(
            partition=a.partition, region=a.region, account=a.account, stack=args.stack, role=a.role
        )
        extra = pulumi.Output.from_input(args.extra_statements).apply(lambda statements: [*statements, *hooks])
        role, profile = instance_role(name, a, extra, child)
        member_tags = {**args.tags, "Name": f"foobar-{args.stack}-{a.role}"}
        # expires-at moves with every deploy of an ephemeral stack: on the template it would make each
        # `pulumi up` a new version, i.e. a roll. The group carries it (a tag update, no roll).
        template_tags = {k: v for k, v in member_tags.items() if k != "expires-at"}
        template = aws.ec2.LaunchTemplate(
            f"{name}-template",
            name_prefix=group_name_prefix(args.stack, a.role),
            description=f"foobar {args.stack}: {a.role} servers",
            # Resolved now, not at launch (`resolve:ssm:`): AWS can't roll a refresh back to a template
            # whose image is a parameter. A new Ubuntu release is then a deliberate roll on the next
            # `pulumi up` (and shows in the daily drift check), never a silent one.
            image_id=ubuntu_ami(args.instance_type, pulumi.InvokeOptions(provider=args.provider)),
            instance_type=args.instance_type,
            iam_instance_profile=aws.ec2.LaunchTemplateIamInstanceProfileArgs(arn=profile.arn),
            network_interfaces=[
                aws.ec2.LaunchTemplateNetworkInterfaceArgs(
                    device_index=0,
                    associate_public_ip_address="false",
                    security_groups=[args.security_group_id],
                    delete_on_termination="true",
                )
            ],
            metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(**METADATA_OPTIONS),
            block_device_mappings=[
                aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                    device_name=ROOT_DEVICE,
                    ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                        volume_type="gp3",
                        volume_size=args.root_volume_gib,
                        encrypted="true",
                        delete_on_termination="true",
                    ),
                )
            ],
            ebs_optimized="true",
            monitoring=aws.ec2.LaunchTemplateMonitoringArgs(enabled=True),
            user_data=pulumi.Output.from_input(args.user_data).apply(for_ec2),  # gzip, then base64
            update_default_version=True,
            tag_specifications=[
                aws.ec2.LaunchTemplateTagSpecificationArgs(resource_type=kind, tags=template_tags)
                for kind in ("instance", "volume")
            ],
            opts=child,
        )
        group = aws.autoscaling.Group(
            f"{name}-group",
            name_prefix=group_name_prefix(args.stack, a.role),
            min_size=args.min_size,
            max_size=args.max_size,
            desired_capacity=args.desired,
            vpc_zone_identifiers=list(args.subnet_ids),
            launch_template=aws.autoscaling.GroupLaunchTemplateArgs(
                id=template.id,
                # A number, not $Latest: a new version is what starts the refresh, and rollback
                # needs a version to go back to.
                version=template.latest_version.apply(str),
            ),
            health_check_type="EC2",
            health_check_grace_period=60,
            default_instance_warmup=60,
            instance_refresh=aws.autoscaling.GroupInstanceRefreshArgs(
                strategy="Rolling",
                preferences=aws.autoscaling.GroupInstanceRefreshPreferencesArgs(
                    min_healthy_percentage=100,
                    max_healthy_percentage=200,  # launch before terminate
                    skip_matching=True,
                    auto_rollback=True,
                    instance_warmup="60",
                ),
            ),
            initial_lifecycle_hooks=[
                aws.autoscaling.GroupInitialLifecycleHookArgs(
                    name=LAUNCH_HOOK,
                    lifecycle_transition="autoscaling:EC2_INSTANCE_LAUNCHING",
                    default_result="ABANDON",
                    heartbeat_timeout=LAUNCH_TIMEOUT_SECONDS,
                ),
                aws.autoscaling.GroupInitialLifecycleHookArgs(
                    name=TERMINATE_HOOK,
                    lifecycle_transition="autoscaling:EC2_INSTANCE_TERMINATING",
                    default_result="CONTINUE",
                    heartbeat_timeout=DRAIN_SECONDS,
                ),
            ],
            enabled_metrics=[aws.autoscaling.Metric(m) for m in GROUP_METRICS],
            metrics_granularity="1Minute",
            # `pulumi up` waits until min_size members are in service: a tier that can't boot fails
            # the deploy instead of passing silently.
            wait_for_capacity_timeout=args.capacity_timeout,
            tags=[
                aws.autoscaling.GroupTagArgs(key=k, value=v, propagate_at_launch=False)
                for k, v in sorted(member_tags.items())
            ],
            opts=pulumi.ResourceOptions(
                parent=self,
                provider=args.provider,
                depends_on=list(args.wait_for),
                # The scaling policy moves the desired size; a `pulumi up` must not undo it.
                ignore_changes=["desiredCapacity"],
            ),
        )
        aws.autoscaling.Policy(
            f"{name}-cpu-target",
            autoscaling_group_name=group.name,
            policy_type="TargetTrackingScaling",
            target_tracking_configuration=aws.autoscaling.PolicyTargetTrackingConfigurationArgs(
                predefined_metric_specification=aws.autoscaling.PolicyTargetTrackingConfigurationPredefinedMetricSpecificationArgs(
                    predefined_metric_type="ASGAverageCPUUtilization"
                ),
                target_value=float(args.cpu_target),
            ),
            opts=child,
        )
        self.group_name = group.name
        self.group_arn = group.arn
        self.launch_template_id = template.id
        self.role_name = role.name
        self.role_arn = role.arn
        self.register_outputs(
            {
                "groupName": group.name,
                "groupArn": group.arn,
                "launchTemplateId": template.id,
                "roleName": role.name,
            }
        )
