"""EC2 instances, subnets and Elastic IPs: IMDSv2, encrypted volumes, no public address off the LB,
no secrets in user-data, an instance profile on every server."""

from __future__ import annotations

import base64
import binascii
import contextlib
import re
from collections.abc import Iterator
from typing import Final

from .support import LB_ROLE, Res, as_list, get, is_unknown, message

INSTANCE: Final = "aws:ec2/instance:Instance"
LAUNCH_TEMPLATE: Final = "aws:ec2/launchTemplate:LaunchTemplate"
EBS_VOLUME: Final = "aws:ebs/volume:Volume"
SUBNET: Final = "aws:ec2/subnet:Subnet"
EIP: Final = "aws:ec2/eip:Eip"
EIP_ASSOCIATION: Final = "aws:ec2/eipAssociation:EipAssociation"

# What must never be in user-data: it is readable by anyone who can describe the instance or reach IMDS.
SECRET_PATTERNS: Final = (
    ("a private key block", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")),
    ("an AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    (
        "an AWS secret access key",
        re.compile(r"(?i)(?:aws_secret_access_key|secretaccesskey)\s*[=:]\s*['\"]?[A-Za-z0-9/+]{40}\b"),
    ),
    (
        "a literal password, passphrase or token assignment",
        # `password=<literal>`; a reference such as `password=$PW`, `${...}` or `{{ ... }}` is fine.
        re.compile(r"(?i)\b(?:password|passwd|passphrase|secret|token|api_?key)\s*=\s*['\"]?(?![\s'\"$%{<]|$)"),
    ),
)


def imdsv2(res: Res) -> Iterator[str]:
    """IMDSv2 only (CKV_AWS_79): metadataOptions.httpTokens must be "required"."""
    tokens = get(res.props, "metadataOptions", "httpTokens")
    if is_unknown(tokens):
        return
    if tokens != "required":
        yield message(
            res,
            f"instance metadata accepts IMDSv1 (metadataOptions.httpTokens={tokens!r})",
            'set metadata_options=InstanceMetadataOptionsArgs(http_tokens="required")',
        )


def volumes_encrypted(res: Res) -> Iterator[str]:
    """Encrypted EBS volumes (CKV_AWS_8): the root volume and every attached or standalone volume."""
    if res.type == EBS_VOLUME:
        encrypted = res.props.get("encrypted")
        if not is_unknown(encrypted) and encrypted is not True:
            yield message(res, "the EBS volume is not encrypted", "set encrypted=True")
        return
    if res.type == LAUNCH_TEMPLATE:
        devices = as_list(res.props.get("blockDeviceMappings"))
        if not isinstance(devices, list):
            return
        for i, device in enumerate(devices):
            encrypted = get(device, "ebs", "encrypted")
            if get(device, "ebs") is not None and not is_unknown(encrypted) and encrypted not in (True, "true"):
                yield message(res, f"blockDeviceMappings[{i}] is not encrypted", 'set ebs=...(encrypted="true") on it')
        return
    root = res.props.get("rootBlockDevice")
    root_encrypted = get(root, "encrypted")
    if not is_unknown(root_encrypted) and root_encrypted is not True:
        yield message(
            res,
            "the root volume is not encrypted",
            "set root_block_device=InstanceRootBlockDeviceArgs(encrypted=True, volume_type='gp3', ...)",
        )
    devices = as_list(res.props.get("ebsBlockDevices"))
    if not isinstance(devices, list):
        return
    for i, device in enumerate(devices):
        encrypted = get(device, "encrypted")
        if not is_unknown(encrypted) and encrypted is not True:
            yield message(res, f"ebsBlockDevices[{i}] is not encrypted", "set encrypted=True on every EBS block device")


def no_public_ip(res: Res) -> Iterator[str]:
    """No public address except on the load balancer (CKV_AWS_88, CKV_AWS_130).

    The load balancer is the resource whose ``role`` tag is ``lb``; the tag comes from the default tags
    of the provider the resource was created with (or its own ``tags``).
    """
    role = res.role
    if res.type == SUBNET:
        mapped = res.props.get("mapPublicIpOnLaunch")
        if not is_unknown(mapped) and mapped is True:
            yield message(
                res,
                "the subnet gives every instance launched in it a public address",
                "set map_public_ip_on_launch=False (the load balancer gets an Elastic IP instead)",
            )
        return
    if is_unknown(role) or role == LB_ROLE:
        return
    if res.type in (EIP, EIP_ASSOCIATION):
        target = res.props.get("instance") if res.type == EIP else res.props.get("instanceId")
        if target is not None:
            yield message(
                res,
                f"an Elastic IP is attached to an instance of role {role!r}; only the load balancer (role 'lb') "
                "may have a public address",
                "drop the Elastic IP, or create it with the provider tagged role=lb if it is for the load balancer",
            )
        return
    public = res.props.get("associatePublicIpAddress")
    if is_unknown(public):
        return
    if public is not False:
        yield message(
            res,
            f"a server of role {role!r} may get a public address (associatePublicIpAddress={public!r}); only "
            "the load balancer (role 'lb') may",
            "set associate_public_ip_address=False",
        )


def _user_data_texts(res: Res) -> Iterator[tuple[str, str]]:
    for key, encoded in (("userData", res.type == LAUNCH_TEMPLATE), ("userDataBase64", True)):
        value = res.props.get(key)
        if not isinstance(value, str):  # absent, or unknown until the update
            continue
        if encoded:
            # Not base64 after all: scan it as it is.
            with contextlib.suppress(binascii.Error, ValueError):
                value = base64.b64decode(value, validate=True).decode("utf-8", "replace")
        yield key, value


def user_data_no_secrets(res: Res) -> Iterator[str]:
    """No secrets in user-data (CKV_AWS_46): private keys, AWS keys, literal passwords."""
    for key, text in _user_data_texts(res):
        for what, pattern in SECRET_PATTERNS:
            if pattern.search(text):
                # Never echo the match: the message would leak the secret into the preview output.
                yield message(
                    res,
                    f"{key} contains {what}",
                    "put the secret in SSM Parameter Store (SecureString) under the role's path and read it at boot",
                )


def instance_profile(res: Res) -> Iterator[str]:
    """Every server has an IAM role (CKV2_AWS_41), which SSM Session Manager and the agent need."""
    key = "iamInstanceProfile"
    value = res.props.get(key)
    if res.type == LAUNCH_TEMPLATE:
        value = get(value, "name") or get(value, "arn")
    if is_unknown(value):
        return
    if not value:
        yield message(
            res,
            "no IAM instance profile",
            "create an aws.iam.InstanceProfile for the role and set iam_instance_profile",
        )
