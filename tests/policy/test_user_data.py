"""Secrets in user-data, including inside cloud-config ``write_files`` entries packed with an encoding
(the program ships nearly every file as ``gz+b64``), and code that merely names a password passing."""

from __future__ import annotations

import base64
import gzip
from typing import Any

import pytest
import yaml

from policy.foobar_policies import ec2
from tests.policy.adapter import Resource, analyze, crafted
from userdata import for_ec2, from_ec2

INSTANCE = "aws:ec2/instance:Instance"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
POLICY = "ec2-user-data-no-secrets"
KEY_BODY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj"
PEM = f"-----BEGIN PRIVATE KEY-----\n{KEY_BODY}\n-----END PRIVATE KEY-----\n"
# The shape of the program's boot script: a passphrase made at boot and handed on by name.
BOOT_CODE = """\
import secrets
from cryptography.hazmat.primitives import serialization


def export(acm, arn):
    passphrase = secrets.token_urlsafe(32).encode()
    response = acm.export_certificate(CertificateArn=arn, Passphrase=passphrase)
    key = serialization.load_pem_private_key(response['PrivateKey'].encode(), password=passphrase)
    token = None
    return key, token
"""


def pack(text: str, encoding: str) -> Any:
    data = text.encode()
    if encoding in ("gz", "gzip"):
        return gzip.compress(data)  # YAML !!binary
    if encoding.startswith(("gz", "gzip")):
        data = gzip.compress(data)
    return base64.b64encode(data).decode()


def cloud_config(*files: dict[str, Any], **extra: Any) -> str:
    return "#cloud-config\n" + yaml.safe_dump({"write_files": list(files), **extra}, sort_keys=False)


def server(user_data: str, typ: str = INSTANCE) -> Resource:
    if typ == LAUNCH_TEMPLATE:  # launch templates take user-data base64-encoded
        return Resource(typ, "bad", {"userData": base64.b64encode(user_data.encode()).decode()}, role="web")
    return Resource(typ, "bad", {"userData": user_data}, role="web")


def findings(user_data: str, typ: str = INSTANCE) -> list[str]:
    return [f.message for f in analyze(crafted([server(user_data, typ)]), only=POLICY)]


ENCODINGS = ["gz+b64", "gzip+base64", "gz+base64", "gzip+b64", "b64", "base64", "gz", "gzip"]


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_packed_private_key_is_reported(encoding: str) -> None:
    user_data = cloud_config(
        {"path": "/etc/ssl/private/site.key", "encoding": encoding, "content": pack(PEM, encoding)}
    )
    assert PEM not in user_data and "PRIVATE KEY" not in user_data  # hidden from a plain-text scan
    texts = findings(user_data)
    assert len(texts) == 1, texts
    assert "write_files[0] (/etc/ssl/private/site.key)" in texts[0] and "a private key block" in texts[0]
    assert KEY_BODY not in texts[0] and "BEGIN" not in texts[0]  # never echo the secret


def test_packed_key_in_a_launch_template_is_reported() -> None:
    user_data = cloud_config({"path": "/k", "encoding": "gz+b64", "content": pack(PEM, "gz+b64")})
    assert len(findings(user_data, LAUNCH_TEMPLATE)) == 1


@pytest.mark.parametrize(("typ", "key"), [(LAUNCH_TEMPLATE, "userData"), (INSTANCE, "userDataBase64")])
def test_a_key_in_gzipped_user_data_is_reported(typ: str, key: str) -> None:
    """The program sends user-data gzipped (userdata.for_ec2): the pack reads what cloud-init will."""
    user_data = cloud_config({"path": "/k", "content": PEM})
    packed = for_ec2(user_data)
    assert "PRIVATE KEY" not in packed
    texts = [f.message for f in analyze(crafted([Resource(typ, "bad", {key: packed}, role="web")]), only=POLICY)]
    assert len(texts) == 1, texts


@pytest.mark.parametrize(
    ("path", "text", "what"),
    [
        ("/etc/foobar/env", "DB_PASSWORD=hunter22\n", "password"),
        ("/usr/local/sbin/setup", "#!/bin/sh\nmysql --password=hunter22 -e 'select 1'\n", "password"),
        ("/etc/foobar/aws", "export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\n", "AWS access key id"),
        ("/usr/local/lib/foobar/x.py", 'DB_PASSWORD = "hunter22"\n', "password"),
        ("/usr/local/lib/foobar/x.py", 'connect(host="db", password="hunter22")\n', "password"),
        ("/usr/local/lib/foobar/x.py", 'settings = {"api_key": "0123456789abcdef"}\n', "password"),
        ("/usr/local/lib/foobar/x.py", 'PASSPHRASE: bytes = b"hunter22"\n', "password"),
        ("/usr/local/lib/foobar/x.py", 'def f(token="0123456789abcdef"):\n    pass\n', "password"),
        ("/usr/local/lib/foobar/x.py", 'subprocess.run("mysql --password=hunter22", shell=True)\n', "password"),
        ("/usr/local/lib/foobar/x.py", 'os.environ["DB_PASSWORD"] = "hunter22"\n', "password"),
    ],
)
def test_packed_literal_secret_is_reported(path: str, text: str, what: str) -> None:
    user_data = cloud_config({"path": path, "encoding": "gz+b64", "content": pack(text, "gz+b64")})
    texts = findings(user_data)
    assert len(texts) == 1 and what in texts[0], texts
    assert "hunter22" not in texts[0] and "0123456789abcdef" not in texts[0] and "AKIA" not in texts[0]


@pytest.mark.parametrize("encoding", ["gz+b64", None])
def test_code_that_names_a_password_passes(encoding: str | None) -> None:
    content = pack(BOOT_CODE, encoding) if encoding else BOOT_CODE
    entry = {"path": "/usr/local/lib/foobar/foobar_boot.py", "content": content}
    if encoding:
        entry["encoding"] = encoding
    shell = {"path": "/usr/local/sbin/fetch", "content": '#!/bin/sh\nexport PASSWORD="$(aws ssm get-parameter)"\n'}
    assert findings(cloud_config(entry, shell, runcmd=[["python3", "/usr/local/lib/foobar/foobar_boot.py"]])) == []


def test_a_python_script_is_known_by_its_shebang() -> None:
    script = "#!/usr/bin/env python3\n" + BOOT_CODE
    entry = {"path": "/usr/local/sbin/boot", "encoding": "b64", "content": pack(script, "b64")}
    assert findings(cloud_config(entry)) == []
    entry["content"] = pack(script + 'password = "hunter22"\n', "b64")
    assert len(findings(cloud_config(entry))) == 1


def test_secret_outside_write_files_is_still_found() -> None:
    user_data = cloud_config({"path": "/x", "content": "plain"}, runcmd=["mysql --password=hunter22"])
    assert len(findings(user_data)) == 1


def test_undecodable_content_is_scanned_as_it_is() -> None:
    """cloud-init would fail on it at boot; the pack still scans what is there rather than skip it."""
    user_data = cloud_config({"path": "/x", "encoding": "gz+b64", "content": PEM})
    assert len(findings(user_data)) == 1


def test_the_programs_user_data_packs_files_and_passes(program: Any) -> None:
    """The real program packs its boot script (which names passwords in code) and configs with gz+b64."""
    resources, all_findings = program["dev"]
    servers = [r for r in resources if r.resource_type == INSTANCE]
    assert servers
    for res in servers:
        doc = yaml.safe_load(from_ec2(res.props["userDataBase64"]))
        assert any(f.get("encoding") == "gz+b64" for f in doc["write_files"]), res.name
    assert [f for f in all_findings if f.policy == POLICY] == []


def test_plain_key_under_a_wrong_encoding_is_reported() -> None:
    """Non-validating base64 turns a PEM into noise; the key is still spotted before decoding."""
    user_data = cloud_config({"path": "/k", "encoding": "b64", "content": PEM.replace("\n", "")})
    assert len(findings(user_data)) == 1


def test_unpacking_stops_at_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """A gzip bomb is inflated only up to MAX_UNPACKED (32 MiB; user-data itself is at most 16 KiB)."""
    packed = pack("#" * 4096 + "\n" + PEM, "gz+b64")
    user_data = cloud_config({"path": "/b", "encoding": "gz+b64", "content": packed})
    assert len(findings(user_data)) == 1
    monkeypatch.setattr(ec2, "MAX_UNPACKED", 1024)
    assert findings(user_data) == []  # the key lies past the cap
