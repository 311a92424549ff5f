"""ops verify against a deployment built in moto: passes as declared, and reports every kind of break."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from components.firewalls import RULES
from ops.cli import EXIT_ERROR, EXIT_FAILED, EXIT_OK, main
from ops.https import Finding
from tests.ops.conftest import REGION, Deployment, build


class FakeHttps:
    """Stands in for the network check and records how verify called it."""

    def __init__(self, status: str = "ok") -> None:
        self.calls: list[tuple[str, str | None, str | None]] = []
        self.status = status

    def __call__(self, url: str, address: str | None, ca: str | None) -> list[Finding]:
        self.calls.append((url, address, ca))
        return [Finding("https chain", url, self.status, "injected")]  # type: ignore[arg-type]


def run_verify(
    tmp_path: Path, outputs: dict[str, Any], *extra: str, https: FakeHttps | None = None
) -> tuple[int, str, FakeHttps]:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(outputs))
    https = https or FakeHttps()
    code = main(["verify", "--outputs", str(path), "--region", REGION, *extra], https_check=https)
    return code, "", https


def verify(tmp_path: Path, capsys: pytest.CaptureFixture[str], outputs: dict[str, Any], *extra: str) -> tuple[int, str]:
    code, _, _ = run_verify(tmp_path, outputs, *extra)
    return code, capsys.readouterr().out


def fail_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if "  FAIL  " in line]


def test_declared_deployment_passes(deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, https = run_verify(tmp_path, deployment.outputs)
    out = capsys.readouterr().out
    assert code == EXIT_OK, out
    assert fail_lines(out) == []
    assert "settings: Pulumi.dev.yaml" in out
    for group in ("lb", "web", "app", "db"):
        n = sum(r.group == group for r in RULES)
        assert f"{n} rule" in out
    assert "ReplicaLag 2s" in out
    # With an ACM certificate the public chain is checked against the system's trust store, at the LB address.
    assert https.calls == [(deployment.outputs["url"], deployment.outputs["lbPublicIp"], None)]


def test_internal_ca_stack_checks_https_against_its_ca(
    deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = {**deployment.outputs, "certificateArn": ""}
    code, _, https = run_verify(tmp_path, outputs)
    out = capsys.readouterr().out
    assert code == EXIT_OK, out
    assert https.calls[0][2] == outputs["internalCaCertPem"]
    assert "the stack uses its internal CA" in out


def test_world_open_rule_is_reported(
    deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    web = deployment.outputs["securityGroupIds"]["web"]
    deployment.ec2.authorize_security_group_ingress(
        GroupId=web,
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}],
    )
    code, out = verify(tmp_path, capsys, deployment.outputs)
    assert code == EXIT_FAILED
    assert fail_lines(out) == [line for line in out.splitlines() if f"web {web}" in line and "FAIL" in line]
    assert "unexpected: ingress tcp/22 from 0.0.0.0/0" in out


def test_allow_all_egress_and_missing_rule_are_reported(
    deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    groups = deployment.outputs["securityGroupIds"]
    deployment.ec2.authorize_security_group_egress(
        GroupId=groups["db"], IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
    )
    rules = deployment.ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [groups["db"]]}])
    [mysql] = [r["SecurityGroupRuleId"] for r in rules["SecurityGroupRules"] if not r["IsEgress"]]
    deployment.ec2.revoke_security_group_ingress(GroupId=groups["db"], SecurityGroupRuleIds=[mysql])
    code, out = verify(tmp_path, capsys, deployment.outputs)
    assert code == EXIT_FAILED
    assert "unexpected: egress all to 0.0.0.0/0" in out
    assert "missing: ingress tcp/3306 from app (MySQL from the application tier)" in out
    assert len(fail_lines(out)) == 2


def test_stopped_instance_is_reported(
    deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    victim = deployment.outputs["instanceIds"]["app"][1]
    deployment.ec2.stop_instances(InstanceIds=[victim])
    code, out = verify(tmp_path, capsys, deployment.outputs)
    assert code == EXIT_FAILED
    [line] = fail_lines(out)
    assert victim in line
    assert "state is stopped, expected running" in line


def test_missing_replica_is_reported(
    deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment.rds.delete_db_instance(DBInstanceIdentifier=deployment.outputs["_replicaIdentifier"])
    code, out = verify(tmp_path, capsys, deployment.outputs)
    assert code == EXIT_FAILED
    [line] = fail_lines(out)
    assert "db replica" in line
    assert "missing" in line


def test_replica_lag_over_threshold_is_reported(
    deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment.put_replica_lag(45.0, ago=20)
    code, out = verify(tmp_path, capsys, deployment.outputs)
    assert code == EXIT_FAILED
    assert "ReplicaLag 45s above 30s" in out
    code, out = verify(tmp_path, capsys, deployment.outputs, "--max-replica-lag-seconds", "60")
    assert code == EXIT_OK, out


def test_replica_not_expected_when_settings_say_so(
    deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment.rds.delete_db_instance(DBInstanceIdentifier=deployment.outputs["_replicaIdentifier"])
    outputs = {**deployment.outputs, "dbReaderEndpoint": deployment.outputs["dbWriterEndpoint"]}
    code, out = verify(tmp_path, capsys, outputs, "--no-expect-replica")
    assert code == EXIT_OK, out
    assert "dbReplica is false" in out


def test_multi_az_expectation_comes_from_the_stack_settings(
    aws: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    single = build(stack="prod", multi_az=False)
    code, out = verify(tmp_path, capsys, single.outputs)
    assert code == EXIT_FAILED
    assert "MultiAZ is False, settings (Pulumi.prod.yaml) say True" in out
    multi = build(stack="prod", multi_az=True, suffix="second")
    code, out = verify(tmp_path, capsys, multi.outputs)
    assert code == EXIT_OK, out
    assert "available, MultiAZ True" in out


def test_expiring_certificate_is_reported(aws: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    soon = build(cert_days=10)
    code, out = verify(tmp_path, capsys, soon.outputs)
    assert code == EXIT_FAILED
    [line] = fail_lines(out)
    assert "certificate" in line
    assert "in 10 days" in line or "in 9 days" in line


def test_pending_certificate_is_reported(
    deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pending = deployment.acm.request_certificate(DomainName="www.foobar.test", ValidationMethod="DNS")
    outputs = {**deployment.outputs, "certificateArn": pending["CertificateArn"]}
    code, out = verify(tmp_path, capsys, outputs)
    assert code == EXIT_FAILED
    assert "status PENDING_VALIDATION, expected ISSUED" in out


def test_failed_https_check_fails_verify(
    deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, https = run_verify(tmp_path, deployment.outputs, https=FakeHttps(status="fail"))
    assert code == EXIT_FAILED
    assert len(https.calls) == 1


def test_skip_https_does_not_call_the_check(
    deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, https = run_verify(tmp_path, deployment.outputs, "--skip-https", https=FakeHttps(status="fail"))
    assert code == EXIT_OK
    assert https.calls == []


def test_bad_outputs_file_names_the_argument(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "outputs.json"
    path.write_text("{not json")
    assert main(["verify", "--outputs", str(path)]) == EXIT_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"ops verify: --outputs {path}: not JSON")
    path.write_text(json.dumps({"url": "https://x/"}))
    assert main(["verify", "--outputs", str(path)]) == EXIT_ERROR
    assert "missing stack output(s) lbPublicIp" in capsys.readouterr().err
