"""ops verify against a deployment built in moto: passes as declared, and reports every kind of break."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from components.firewalls import RULES
from ops.aws import Session
from ops.cli import EXIT_ERROR, EXIT_FAILED, EXIT_OK, main
from ops.https import Finding
from tests.ops.conftest import REGION, Deployment, InternalCA, build


class FakeHttps:
    """Stands in for the network check and records how verify called it."""

    def __init__(self, status: str = "ok") -> None:
        self.calls: list[tuple[str, str | None, str | None]] = []
        self.status = status

    def __call__(self, url: str, address: str | None, ca: str | None) -> list[Finding]:
        self.calls.append((url, address, ca))
        return [Finding("https chain", url, self.status, "injected")]  # type: ignore[arg-type]


class HookedSession(Session):
    """The real session, with botocore event handlers on every client it makes (to watch or doctor calls)."""

    def __init__(self, region: str, hooks: dict[str, Any]) -> None:
        super().__init__(region)
        self.hooks = hooks

    def client(self, service_name: str, **kwargs: Any) -> Any:
        client = super().client(service_name, **kwargs)
        for event, handler in self.hooks.items():
            client.meta.events.register(event, handler)
        return client


def run_verify(
    tmp_path: Path,
    outputs: dict[str, Any],
    *extra: str,
    https: FakeHttps | None = None,
    hooks: dict[str, Any] | None = None,
) -> tuple[int, str, FakeHttps]:
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(outputs))
    https = https or FakeHttps()
    code = main(
        ["verify", "--outputs", str(path), "--region", REGION, *extra],
        https_check=https,
        sessions=lambda region: HookedSession(region, hooks or {}),
    )
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
    victim = _members(deployment, "app")[1]
    deployment.ec2.stop_instances(InstanceIds=[victim])
    code, out = verify(tmp_path, capsys, deployment.outputs)
    assert code == EXIT_FAILED
    [line] = fail_lines(out)
    assert victim in line
    assert "state is stopped, expected running" in line


def test_the_site_address_on_a_running_load_balancer_passes(
    deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = verify(tmp_path, capsys, deployment.outputs)
    assert code == EXIT_OK, out
    assert any("site address" in line and "  OK  " in line for line in out.splitlines()), out


@pytest.mark.parametrize("break_it", ["disassociate", "stop", "elsewhere"])
def test_the_site_address_off_the_load_balancers_is_reported(
    deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str], break_it: str
) -> None:
    """No MASTER holds the address (nothing claimed it, the holder stopped, someone moved it): the site
    has no public address, whatever else is healthy."""
    ec2 = deployment.ec2
    allocation = deployment.outputs["lbAddressAllocationId"]
    (address,) = ec2.describe_addresses(AllocationIds=[allocation])["Addresses"]
    if break_it == "disassociate":
        ec2.disassociate_address(AssociationId=address["AssociationId"])
    elif break_it == "stop":
        ec2.stop_instances(InstanceIds=[address["InstanceId"]])
    else:
        other = ec2.run_instances(ImageId="ami-0123456789abcdef0", InstanceType="t3.micro", MinCount=1, MaxCount=1)
        ec2.associate_address(
            AllocationId=allocation, InstanceId=other["Instances"][0]["InstanceId"], AllowReassociation=True
        )
    code, out = verify(tmp_path, capsys, deployment.outputs, "--skip-https")
    assert code == EXIT_FAILED
    (line,) = [line for line in fail_lines(out) if "site address" in line]
    assert {"disassociate": "on no instance", "stop": "stopped", "elsewhere": "not a load balancer"}[break_it] in line


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


def test_acm_certificate_acm_will_not_renew_is_reported(
    aws: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """50 days left is above the threshold, but inside ACM's 60-day renewal window nothing will renew it."""
    ineligible = build(cert_days=50)  # imported into moto: RenewalEligibility INELIGIBLE
    code, out = verify(tmp_path, capsys, ineligible.outputs)
    assert code == EXIT_FAILED
    [line] = fail_lines(out)
    assert "ACM will not renew it (RenewalEligibility INELIGIBLE" in line
    assert "has the load balancer's refresh-cert job exported it?" in line


def test_acm_renewal_failure_is_reported(
    deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def failed_renewal(parsed: dict[str, Any], **kwargs: Any) -> None:
        parsed["Certificate"]["RenewalSummary"] = {
            "RenewalStatus": "FAILED",
            "RenewalStatusReason": "CAA_ERROR",
            "UpdatedAt": dt.datetime.now(dt.UTC),
        }

    code, _, _ = run_verify(tmp_path, deployment.outputs, hooks={"after-call.acm.DescribeCertificate": failed_renewal})
    out = capsys.readouterr().out
    assert code == EXIT_FAILED
    [line] = fail_lines(out)
    assert "renewal FAILED (CAA_ERROR)" in line


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


# Internal certificates: the leaves and the CA as the servers fetch them from SSM.


def test_internal_certificates_far_from_expiry_pass(
    deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = verify(tmp_path, capsys, deployment.outputs)
    assert code == EXIT_OK, out
    rows = [line for line in out.splitlines() if line.startswith("internal cert")]
    assert len(rows) == 3
    for role in ("lb", "web", "app"):
        [row] = [r for r in rows if f"/foobar/dev/{role}/tls-cert" in r]
        assert "  OK  " in row and ("(200 days)" in row or "(199 days)" in row)
    [ca] = [line for line in out.splitlines() if line.startswith("internal CA")]
    assert "  OK  " in ca


def test_internal_certificate_expiring_within_30_days_fails_with_the_fix(
    deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment.put_leaf("web", days=10)
    expiry = (dt.datetime.now(dt.UTC) + dt.timedelta(days=10)).strftime("%Y-%m-%d")
    code, out = verify(tmp_path, capsys, deployment.outputs)
    assert code == EXIT_FAILED
    [line] = fail_lines(out)
    assert line.startswith("internal cert  /foobar/dev/web/tls-cert")
    assert f"expires {expiry}, in 10 days (under 30): run `pulumi up` on stack dev to re-issue it" in line


def test_cert_min_days_is_an_option(deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    deployment.put_leaf("app", days=45)
    code, out = verify(tmp_path, capsys, deployment.outputs)
    assert code == EXIT_OK, out
    code, out = verify(tmp_path, capsys, deployment.outputs, "--cert-min-days", "60")
    assert code == EXIT_FAILED
    [line] = fail_lines(out)
    assert "/foobar/dev/app/tls-cert" in line and "(under 60)" in line


def test_internal_ca_must_outlive_a_new_leaf(aws: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """300 days left: the leaves (200) are fine, but a leaf issued now (365 days) would outlive the CA."""
    short = build(ca_days=300)
    code, out = verify(tmp_path, capsys, short.outputs)
    assert code == EXIT_FAILED
    [line] = fail_lines(out)
    assert line.startswith("internal CA")
    assert "(under 395: a leaf issued now would outlive it): run `pulumi up` on stack dev" in line


def test_leaf_outliving_its_ca_expires_with_the_ca(
    aws: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    short = build(ca_days=20, leaf_days=200)
    code, out = verify(tmp_path, capsys, short.outputs)
    assert code == EXIT_FAILED
    leaves = [line for line in fail_lines(out) if line.startswith("internal cert")]
    assert len(leaves) == 3
    assert all("(its CA's expiry), in 20 days" in line or "in 19 days" in line for line in leaves)


def test_leaf_not_signed_by_the_stack_ca_fails(
    deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment.put_leaf("app", days=200, ca=InternalCA.create("dev", 3650))
    code, out = verify(tmp_path, capsys, deployment.outputs)
    assert code == EXIT_FAILED
    [line] = fail_lines(out)
    assert "/foobar/dev/app/tls-cert" in line and "not issued by the stack's CA" in line


def test_roles_disagreeing_on_the_ca_fail(
    deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment.put_ca(InternalCA.create("dev", 3650), roles=("lb",))
    code, out = verify(tmp_path, capsys, deployment.outputs)
    assert code == EXIT_FAILED
    assert any("/foobar/dev/lb/ca-cert" in line and "the roles disagree on the CA" in line for line in fail_lines(out))


def test_missing_certificate_parameter_fails(
    deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment.ssm.delete_parameter(Name="/foobar/dev/web/tls-cert")
    code, out = verify(tmp_path, capsys, deployment.outputs)
    assert code == EXIT_FAILED
    [line] = fail_lines(out)
    assert "/foobar/dev/web/tls-cert" in line and "parameter not found" in line


def test_verify_never_reads_a_private_key(
    deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **kwargs: Any) -> None:
        calls.append(dict(params))

    deployment.put_leaf("lb", days=10)  # a failing row too: its message must not carry the key either
    code, _, _ = run_verify(tmp_path, deployment.outputs, hooks={"before-parameter-build.ssm": record})
    out = capsys.readouterr()
    assert code == EXIT_FAILED
    assert calls, "verify read no SSM parameters"
    for call in calls:
        assert call.get("WithDecryption") is not True
        assert not [n for n in call.get("Names", [call.get("Name", "")]) if n.endswith("tls-key")]
    assert "PRIVATE KEY" not in out.out + out.err


def _members(deployment: Deployment, tier: str) -> list[str]:
    import boto3

    name = deployment.outputs["groupNames"][tier]
    (group,) = boto3.client("autoscaling", region_name="eu-west-1").describe_auto_scaling_groups(
        AutoScalingGroupNames=[name]
    )["AutoScalingGroups"]
    return sorted(i["InstanceId"] for i in group["Instances"])


def test_groups_are_checked_member_by_member(
    deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = verify(tmp_path, capsys, deployment.outputs)
    assert code == 0, out
    assert "1 in service (min 1, desired 1, max 4)" in out and "2 in service (min 2, desired 2, max 4)" in out
    for iid in _members(deployment, "app") + _members(deployment, "web"):
        assert iid in out


def test_a_missing_group_is_reported(
    deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = {**deployment.outputs, "groupNames": {**deployment.outputs["groupNames"], "web": "foobar-dev-web-gone"}}
    code, out = verify(tmp_path, capsys, outputs)
    assert code == EXIT_FAILED
    [line] = fail_lines(out)
    assert "foobar-dev-web-gone" in line and "not found" in line


def test_a_group_below_its_minimum_is_reported(
    deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import boto3

    autoscaling = boto3.client("autoscaling", region_name="eu-west-1")
    victim = _members(deployment, "app")[0]
    autoscaling.enter_standby(
        InstanceIds=[victim],
        AutoScalingGroupName=deployment.outputs["groupNames"]["app"],
        ShouldDecrementDesiredCapacity=True,  # else the group launches a replacement
    )
    code, out = verify(tmp_path, capsys, deployment.outputs)
    assert code == EXIT_FAILED
    assert any("1 in service (min 2" in line for line in fail_lines(out)), out
