"""EC2 instances, subnets and Elastic IPs: IMDSv2, encrypted volumes, no public address off the LB,
no secrets in user-data, an instance profile on every server."""

from __future__ import annotations

import ast
import base64
import binascii
import contextlib
import re
import zlib
from collections.abc import Iterator
from typing import Any, Final

import yaml

from .support import LB_ROLE, Res, as_list, get, is_unknown, message

INSTANCE: Final = "aws:ec2/instance:Instance"
LAUNCH_TEMPLATE: Final = "aws:ec2/launchTemplate:LaunchTemplate"
EBS_VOLUME: Final = "aws:ebs/volume:Volume"
SUBNET: Final = "aws:ec2/subnet:Subnet"
EIP: Final = "aws:ec2/eip:Eip"
EIP_ASSOCIATION: Final = "aws:ec2/eipAssociation:EipAssociation"

# What must never be in user-data: it is readable by anyone who can describe the instance or reach IMDS.
# Patterns that mean a secret wherever they appear, code included.
KEY_PATTERNS: Final = (
    ("a private key block", re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")),
    ("an AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    (
        "an AWS secret access key",
        re.compile(r"(?i)(?:aws_secret_access_key|secretaccesskey)\s*[=:]\s*['\"]?[A-Za-z0-9/+]{40}\b"),
    ),
)
LITERAL_SECRET: Final = "a literal password, passphrase or token assignment"
# `password=<literal>` in shell, config files and cloud-config (also `DB_PASSWORD=...`); a reference such
# as `password=$PW`, `${...}` or `{{ ... }}` is fine. Python is judged by its syntax instead (_python_secrets),
# where `password=passphrase` passes a variable, not a literal.
ASSIGNMENT_PATTERN: Final = re.compile(
    r"(?i)(?:\b|_)(?:password|passwd|passphrase|secret|token|api_?key)\s*=\s*['\"]?(?![\s'\"$%{<]|$)"
)
# A Python name that holds a secret: ends in one of these words (db_password, apiKey, TOKEN, ...).
SECRET_NAME: Final = re.compile(
    r"(?:^|_)(?:password|passwd|passphrase|secret|secret_?key|secret_access_key|token|api_?key|private_?key)$"
)
# cloud-init's write_files encodings (cc_write_files.canonicalize_extraction): (base64, then gzip).
WRITE_FILES_ENCODINGS: Final = {
    "b64": (True, False),
    "base64": (True, False),
    "gz": (False, True),
    "gzip": (False, True),
    "gz+b64": (True, True),
    "gz+base64": (True, True),
    "gzip+b64": (True, True),
    "gzip+base64": (True, True),
}
# User-data is at most 16 KiB; gzip expands at most ~1000x. Anything past this is not a real file.
MAX_UNPACKED: Final = 32 * 1024 * 1024


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
    if res.type == LAUNCH_TEMPLATE:
        nics = as_list(res.props.get("networkInterfaces"))
        if is_unknown(nics):
            return
        for i, nic in enumerate(nics or [{}]):  # type: ignore[arg-type]
            public = get(nic, "associatePublicIpAddress")
            if not is_unknown(public) and public not in (False, "false"):
                yield message(
                    res,
                    f"members of role {role!r} may get a public address (networkInterfaces[{i}]"
                    f".associatePublicIpAddress={public!r}); only the load balancer (role 'lb') may",
                    'set associate_public_ip_address="false" on each of network_interfaces',
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
                raw = base64.b64decode(value, validate=True)
                # gzip-compressed user-data (cloud-init inflates it): the text is what the server gets.
                value = (_gunzip(raw) if raw[:2] == b"\x1f\x8b" else raw).decode("utf-8", "replace")
        yield key, value


def _gunzip(data: bytes) -> bytes:
    """Gzip data inflated, up to MAX_UNPACKED (a bomb is cut short, not expanded)."""
    inflate = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
    out = inflate.decompress(data, MAX_UNPACKED)
    if not inflate.eof and not inflate.unconsumed_tail:
        raise ValueError("truncated gzip data")
    return out


def _unpack(content: Any, encoding: Any) -> str | None:
    """A write_files entry's content as cloud-init writes it; ``None`` if it can't be decoded."""
    b64, gz = WRITE_FILES_ENCODINGS.get(str(encoding or "").strip().lower(), (False, False))
    data = content if isinstance(content, bytes) else str(content).encode()  # bytes: YAML !!binary
    try:
        if b64:
            data = base64.b64decode(data)
        if gz:
            data = _gunzip(data)
    except (binascii.Error, ValueError, zlib.error):
        return None
    return data.decode("utf-8", "replace")


def _is_python(path: Any, text: str) -> bool:
    """A Python file by name or shebang: judged by its syntax, not by regular expressions."""
    first = text.split("\n", 1)[0]
    return str(path or "").endswith(".py") or (first.startswith("#!") and "python" in first)


def _secret_name(name: Any) -> bool:
    """``db_password``, ``dbPassword``, ``API_KEY`` hold secrets; ``secret_arn`` or ``token_url`` don't."""
    if not isinstance(name, str):
        return False
    return bool(SECRET_NAME.search(re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()))


def _literal(node: ast.AST | None) -> bool:
    """A non-empty string literal that is not a template reference (or one with a method called on it)."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return _literal(node.func.value)
    if not isinstance(node, ast.Constant) or not isinstance(node.value, str | bytes):
        return False
    text = node.value.decode("utf-8", "replace") if isinstance(node.value, bytes) else node.value
    return bool(text.strip()) and text.strip()[0] not in "$%{<"


def _target_name(node: ast.AST) -> Any:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
        return node.slice.value
    return None


def _python_secrets(source: str) -> bool | None:
    """Does Python ``source`` bind a secret-named name, argument or key to a literal, or hold a string that
    does (``"mysql --password=..."``)? ``None`` when it doesn't parse."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    for node in ast.walk(tree):
        pairs: list[tuple[Any, ast.AST | None]] = []
        if isinstance(node, ast.Assign):
            pairs = [(_target_name(t), node.value) for t in node.targets]
        elif isinstance(node, ast.AnnAssign):
            pairs = [(_target_name(node.target), node.value)]
        elif isinstance(node, ast.keyword):
            pairs = [(node.arg, node.value)]
        elif isinstance(node, ast.Dict):
            pairs = [(k.value, v) for k, v in zip(node.keys, node.values, strict=True) if isinstance(k, ast.Constant)]
        elif isinstance(node, ast.arguments):
            positional = [*node.posonlyargs, *node.args]
            pairs = [
                (a.arg, d)
                for a, d in zip(positional[len(positional) - len(node.defaults) :], node.defaults, strict=True)
            ]
            pairs += [(a.arg, d) for a, d in zip(node.kwonlyargs, node.kw_defaults, strict=True)]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and ASSIGNMENT_PATTERN.search(node.value):
            return True
        if any(_secret_name(name) and _literal(value) for name, value in pairs):
            return True
    return False


def _findings(text: str, python: bool = False) -> list[str]:
    """What kinds of secret ``text`` holds (each once)."""
    found = [what for what, pattern in KEY_PATTERNS if pattern.search(text)]
    literal = _python_secrets(text) if python else None
    if literal is None:  # not Python, or Python that doesn't parse: read it as text
        literal = bool(ASSIGNMENT_PATTERN.search(text))
    if literal:
        found.append(LITERAL_SECRET)
    return found


def _cloud_config_findings(text: str) -> Iterator[tuple[str, str]]:
    """(where, what) for a #cloud-config document: each write_files entry decoded as cloud-init would,
    and the rest of the document (comments included) with those contents blanked out."""
    try:
        doc = yaml.safe_load(text)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        doc, root = None, None
    files = doc.get("write_files") if isinstance(doc, dict) else None
    if not isinstance(files, list) or not isinstance(root, yaml.MappingNode):
        yield from (("", what) for what in _findings(text))
        return
    blanked = list(text)
    for key, value in root.value:
        if key.value == "write_files" and isinstance(value, yaml.SequenceNode):
            for entry in (e for e in value.value if isinstance(e, yaml.MappingNode)):
                for field_key, node in entry.value:
                    if field_key.value == "content":
                        start, end = node.start_mark.index, node.end_mark.index
                        blanked[start:end] = (" " if c != "\n" else c for c in text[start:end])
    yield from (("", what) for what in _findings("".join(blanked)))
    for i, entry in enumerate(files):
        if not isinstance(entry, dict) or entry.get("content") is None:
            continue
        content, encoding, path = entry["content"], entry.get("encoding"), entry.get("path")
        raw = content.decode("utf-8", "replace") if isinstance(content, bytes) else str(content)
        unpacked = _unpack(content, encoding)
        if unpacked is None:  # cloud-init would fail on it at boot; judge what is there anyway
            found = _findings(raw, _is_python(path, raw))
        else:
            found = _findings(unpacked, _is_python(path, unpacked))
            if encoding:  # a plain key under a wrong encoding decodes to noise, so look before decoding too
                found += [what for what, pattern in KEY_PATTERNS if what not in found and pattern.search(raw)]
        yield from ((f"write_files[{i}] ({path}) ", what) for what in found)


def user_data_no_secrets(res: Res) -> Iterator[str]:
    """No secrets in user-data (CKV_AWS_46): private keys, AWS keys, literal passwords, also inside
    cloud-config write_files packed as base64 and/or gzip."""
    for key, text in _user_data_texts(res):
        if text.startswith("#cloud-config"):
            found = list(_cloud_config_findings(text))
        else:
            found = [("", what) for what in _findings(text)]
        for where, what in found:
            # Never echo the match: the message would leak the secret into the preview output.
            yield message(
                res,
                f"{key} {where}contains {what}",
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
