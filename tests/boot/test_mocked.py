"""The mocked deployment is a usable seed: real, matching TLS material and the archives the user-data expects.

A local stand-in boots Debian containers from this user-data: a fake PEM or a missing archive would
only show up there, minutes later; these checks catch it in seconds.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from datetime import timedelta
from ipaddress import ip_address
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from components.certificates import CA_VALIDITY_HOURS, LEAF_VALIDITY_HOURS
from local.mocked import Deployment, mocked_deployment, private_key_outputs, self_signed_cert_outputs, write_files
from userdata.render import DISCOVERY_UNIT, EIP_CONFIG, INTERNAL_CA, LAUNCH_PLAN, PAIR_UNIT, TLS_PLAN, UNIT_DIR
from userdata.scripts.foobar_boot import key_matches

ROLES = ("lb", "web", "app")


@pytest.fixture(scope="module")
def deployment() -> Deployment:
    """One run of the program (about 6 s): every test reads the same deployment."""
    return mocked_deployment("dev")


def _plan(deployment: Deployment, role: str, path: str) -> dict[str, object]:
    data: dict[str, object] = json.loads(write_files(deployment.user_data[role])[path])
    return data


def _cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def test_three_roles_with_cloud_config(deployment: Deployment) -> None:
    assert sorted(deployment.user_data) == sorted(ROLES)
    for text in deployment.user_data.values():
        assert text.startswith("#cloud-config\n")


@pytest.mark.parametrize("role", ROLES)
def test_tls_key_matches_certificate(deployment: Deployment, role: str) -> None:
    path = f"/foobar/{deployment.stack}/{role}"
    key_param = deployment.parameter(f"{path}/tls-key")
    assert key_param.type == "SecureString"
    cert_pem = deployment.parameter(f"{path}/tls-cert").value
    key = serialization.load_pem_private_key(key_param.value.encode(), password=None)
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    pem = serialization.Encoding.PEM
    assert key.public_key().public_bytes(pem, public) == _cert(cert_pem).public_key().public_bytes(pem, public)
    # The boot's own check (openssl, as fetch-tls runs it) agrees.
    assert key_matches(cert_pem, key_param.value)


@pytest.mark.parametrize("role", ROLES)
def test_leaf_chains_to_the_ca_the_role_installs(deployment: Deployment, role: str) -> None:
    """fetch-tls writes the role's ca-cert parameter where the daemons and the launch hook verify with it."""
    path = f"/foobar/{deployment.stack}/{role}"
    tls = _plan(deployment, role, TLS_PLAN)
    assert tls["param_path"] == path
    ca_files = [f for f in tls["files"] if f["parts"] == ["ca-cert"]]  # type: ignore[attr-defined]
    assert len(ca_files) == 1
    if role != "lb":
        assert ca_files[0]["path"] == INTERNAL_CA
        assert _plan(deployment, role, LAUNCH_PLAN)["ca_file"] == INTERNAL_CA
    ca_pem = deployment.parameter(f"{path}/ca-cert").value
    assert ca_pem == deployment.internal_ca_pem
    ca, leaf = _cert(ca_pem), _cert(deployment.parameter(f"{path}/tls-cert").value)
    leaf.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    uses = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in uses
    assert (ExtendedKeyUsageOID.CLIENT_AUTH in uses) == (role == "lb")  # HAProxy peers' mutual TLS


@pytest.mark.parametrize("role", ROLES)
def test_names_are_the_ones_the_boot_checks(deployment: Deployment, role: str) -> None:
    name = f"{role}.{deployment.internal_domain}"
    leaf = _cert(deployment.parameter(f"/foobar/{deployment.stack}/{role}/tls-cert").value)
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert name in sans
    if role == "lb":
        assert deployment.domain in sans
        pair = write_files(deployment.user_data["lb"])[f"{UNIT_DIR}/{PAIR_UNIT}"].decode()
        assert f"--peers-verify-name {name}" in pair
    else:
        assert _plan(deployment, role, LAUNCH_PLAN)["name"] == name


@pytest.mark.parametrize("role", ROLES)
def test_openssl_verifies_the_leaf_for_its_name(deployment: Deployment, role: str, tmp_path: Path) -> None:
    """What nginx, HAProxy and the launch hook's TLS check do: chain, name and purpose, by openssl."""
    path = f"/foobar/{deployment.stack}/{role}"
    ca, leaf = tmp_path / "ca.pem", tmp_path / "leaf.pem"
    ca.write_text(deployment.parameter(f"{path}/ca-cert").value)
    leaf.write_text(deployment.parameter(f"{path}/tls-cert").value)
    name = f"{role}.{deployment.internal_domain}"
    cmd = ["openssl", "verify", "-CAfile", str(ca), "-purpose", "sslserver", "-verify_hostname", name, str(leaf)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_lifetimes_and_usages_follow_the_inputs(deployment: Deployment) -> None:
    ca = _cert(deployment.internal_ca_pem)
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and usage.digital_signature and not usage.key_encipherment
    assert ca.not_valid_after_utc - ca.not_valid_before_utc == timedelta(hours=CA_VALIDITY_HOURS)
    leaf = _cert(deployment.parameter(f"/foobar/{deployment.stack}/web/tls-cert").value)
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == timedelta(hours=LEAF_VALIDITY_HOURS)
    assert leaf.issuer == ca.subject
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == f"web.{deployment.internal_domain}"


def test_rsa_keys_and_self_signed_certificates() -> None:
    """The branches the program doesn't use today: RSA keys, IP SANs, OpenSSH forms, RFC 3339 times."""
    key = private_key_outputs({"algorithm": "RSA", "rsaBits": 2048.0})
    assert key["privateKeyPem"].startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert key["publicKeyOpenssh"].startswith("ssh-rsa ") and key["privateKeyOpenssh"]
    assert key["publicKeyFingerprintSha256"].startswith("SHA256:")
    inputs = {
        "privateKeyPem": key["privateKeyPem"],
        "subject": {"commonName": "example", "organization": "foobar"},
        "dnsNames": ["example.test"],
        "ipAddresses": ["127.0.0.1"],
        "validityPeriodHours": 24.0,
        "allowedUses": ["key_encipherment", "digital_signature", "server_auth"],
    }
    out = self_signed_cert_outputs(inputs)
    cert = _cert(out["certPem"])
    assert out["keyAlgorithm"] == "RSA"
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.IPAddress) == [ip_address("127.0.0.1")]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", out["validityEndTime"])
    p384 = private_key_outputs({"algorithm": "ECDSA", "ecdsaCurve": "P384"})
    assert p384["privateKeyPem"].startswith("-----BEGIN EC PRIVATE KEY-----")
    assert p384["publicKeyOpenssh"].startswith("ecdsa-sha2-nistp384 ")


def test_every_archive_in_the_user_data_is_an_object_with_that_hash(deployment: Deployment) -> None:
    seen = 0
    for role, text in deployment.user_data.items():
        for path, content in write_files(text).items():
            if not re.fullmatch(r"/etc/foobar/[a-z]+-archive\.json", path):
                continue
            plan = json.loads(content)
            assert plan["archive_url"].startswith("s3://")
            body = deployment.object(plan["archive_url"]).body
            assert hashlib.sha256(body).hexdigest() == plan["sha256"], (role, path)
            seen += 1
    assert seen == 3  # site (web), app code (app), node agent (lb)
    assert len(deployment.objects) == seen


def test_discovery_and_pair_find_what_was_registered(deployment: Deployment) -> None:
    stack = deployment.stack
    lb_files = write_files(deployment.user_data["lb"])
    discovery = lb_files[f"{UNIT_DIR}/{DISCOVERY_UNIT}"].decode()
    assert f"--source asg --stack {stack} --region {deployment.region}" in discovery
    pair = lb_files[f"{UNIT_DIR}/{PAIR_UNIT}"].decode()
    assert f"--source ec2 --stack {stack} --region {deployment.region}" in pair
    for role in ("web", "app"):
        group = deployment.groups[role]
        assert {k: group.tags[k] for k in ("project", "stack", "role")} == {
            "project": "foobar",
            "stack": stack,
            "role": role,
        }
        assert "foobar-launch" in group.lifecycle_hooks
    (lb,) = deployment.instances
    assert {k: lb.tags[k] for k in ("project", "stack", "role")} == {"project": "foobar", "stack": stack, "role": "lb"}
    eip = json.loads(lb_files[EIP_CONFIG])
    assert eip["allocation-id"] == deployment.address.allocation_id


def test_the_app_finds_its_database(deployment: Deployment) -> None:
    db, path = deployment.database, f"/foobar/{deployment.stack}/app"
    assert deployment.parameter(f"{path}/db-secret-arn").value == db.secret_arn
    assert deployment.parameter(f"{path}/db-writer").value == db.writer_host
    assert deployment.parameter(f"{path}/db-reader").value == db.reader_host
    secret = json.loads(db.secret_string)
    assert (secret["username"], secret["password"]) == (db.username, db.password)
    assert deployment.certificate_arn is None  # dev serves the internal CA's certificate


def test_repr_shows_no_secret(deployment: Deployment) -> None:
    text = repr(deployment)
    secrets = [p.value for p in deployment.parameters if p.type == "SecureString"]
    secrets += [deployment.database.password, deployment.database.secret_string]
    assert secrets and all(s not in text for s in secrets)
    assert "PRIVATE KEY" not in text and "MOCK-PASSWORD" not in text
