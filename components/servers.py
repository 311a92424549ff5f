"""What every server shares, whichever component launches it: its IAM role with least privilege and
instance profile, its image, its instance metadata options.

Every server: Ubuntu 24.04 LTS looked up at deploy time, IMDSv2 only, encrypted gp3 root volume,
no fixed private address (a replacement is made before the old one goes). The load balancers are
plain instances (``components.edge``); web and app are Auto Scaling groups (``components.groups``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
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
