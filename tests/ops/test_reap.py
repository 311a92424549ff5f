"""ops reap over resources tagged in moto: only expired ephemeral stacks are destroyed, and only with --yes."""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from ops.cli import EXIT_FAILED, EXIT_OK, main
from ops.reap import parse_expiry
from tests.ops.conftest import REGION

NOW = dt.datetime.now(dt.UTC)
PAST = (NOW - dt.timedelta(hours=2)).strftime("%Y-%m-%dT%H:%MZ")
FUTURE = (NOW + dt.timedelta(hours=5)).strftime("%Y-%m-%dT%H:%MZ")


def _tags(stack: str, expires: str | None) -> list[dict[str, str]]:
    tags = [{"Key": "project", "Value": "foobar"}, {"Key": "stack", "Value": stack}, {"Key": "role", "Value": "db"}]
    return [*tags, {"Key": "expires-at", "Value": expires}] if expires else tags


def _stack(ec2: Any, rds: Any, stack: str, expires: str | None, *, with_db: bool = True) -> None:
    """A VPC and a database tagged like the program's provider default tags do."""
    ec2.create_vpc(CidrBlock="10.20.0.0/16", TagSpecifications=[{"ResourceType": "vpc", "Tags": _tags(stack, expires)}])
    if with_db:
        rds.create_db_instance(
            DBInstanceIdentifier=f"foobar-{stack}",
            Engine="mysql",
            DBInstanceClass="db.t4g.micro",
            AllocatedStorage=20,
            MasterUsername="foobar",
            MasterUserPassword="not-a-real-password-1",
            Tags=_tags(stack, expires),
        )


@pytest.fixture
def stacks(aws: None) -> None:
    ec2 = boto3.client("ec2", region_name=REGION)
    rds = boto3.client("rds", region_name=REGION)
    _stack(ec2, rds, "pr-11", PAST)  # expired
    _stack(ec2, rds, "pr-12", PAST, with_db=False)  # expired, one resource
    _stack(ec2, rds, "pr-20", FUTURE)  # not yet
    _stack(ec2, rds, "pr-30", None)  # no expires-at tag at all
    _stack(ec2, rds, "dev", None)
    _stack(ec2, rds, "staging", PAST, with_db=False)  # tagged, but not a per-PR stack name
    # A different project in the same account is never touched.
    ec2.create_vpc(
        CidrBlock="10.30.0.0/16",
        TagSpecifications=[
            {
                "ResourceType": "vpc",
                "Tags": [
                    {"Key": "project", "Value": "other"},
                    {"Key": "stack", "Value": "pr-99"},
                    {"Key": "expires-at", "Value": PAST},
                ],
            }
        ],
    )


class Recorder:
    def __init__(self, fail: set[str] | None = None) -> None:
        self.calls: list[str] = []
        self.fail = fail or set()

    def __call__(self, stack: str) -> None:
        self.calls.append(stack)
        if stack in self.fail:
            raise RuntimeError(f"error: the stack {stack} is locked by another update\nmore detail")


def test_dry_run_is_the_default(stacks: None, capsys: pytest.CaptureFixture[str]) -> None:
    destroy = Recorder()
    assert main(["reap", "--region", REGION], destroyer=destroy) == EXIT_OK
    out = capsys.readouterr().out
    assert destroy.calls == []
    assert "dry run" in out
    rows = {line.split()[0]: line for line in out.splitlines()[3:]}
    assert set(rows) == {"pr-11", "pr-12", "pr-20", "staging"}
    assert "would destroy" in rows["pr-11"]
    assert "would destroy" in rows["pr-12"]
    assert "expires in" in rows["pr-20"]
    assert "does not match" in rows["staging"]


def test_yes_destroys_exactly_the_expired_stacks(stacks: None, capsys: pytest.CaptureFixture[str]) -> None:
    destroy = Recorder()
    assert main(["reap", "--yes", "--region", REGION], destroyer=destroy) == EXIT_OK
    assert destroy.calls == ["pr-11", "pr-12"]
    out = capsys.readouterr().out
    assert out.count("destroyed and removed") == 2
    assert "  2  " in next(line for line in out.splitlines() if line.startswith("pr-11"))


def test_one_failed_destroy_is_reported_and_the_rest_go_on(stacks: None, capsys: pytest.CaptureFixture[str]) -> None:
    destroy = Recorder(fail={"pr-11"})
    assert main(["reap", "--yes", "--region", REGION], destroyer=destroy) == EXIT_FAILED
    assert destroy.calls == ["pr-11", "pr-12"]
    out = capsys.readouterr().out
    assert "FAILED: error: the stack pr-11 is locked by another update" in out
    assert "more detail" not in out


def test_a_stack_expires_only_when_all_its_resources_have(aws: None, capsys: pytest.CaptureFixture[str]) -> None:
    ec2 = boto3.client("ec2", region_name=REGION)
    rds = boto3.client("rds", region_name=REGION)
    # A deploy that failed half-way left older tags on some resources: the latest expiry counts.
    _stack(ec2, rds, "pr-40", PAST, with_db=False)
    _stack(ec2, rds, "pr-40", FUTURE, with_db=False)
    destroy = Recorder()
    assert main(["reap", "--yes", "--region", REGION], destroyer=destroy) == EXIT_OK
    assert destroy.calls == []


def test_unreadable_expiry_is_kept_and_flagged(aws: None, capsys: pytest.CaptureFixture[str]) -> None:
    ec2 = boto3.client("ec2", region_name=REGION)
    _stack(ec2, None, "pr-50", "next tuesday", with_db=False)
    destroy = Recorder()
    assert main(["reap", "--yes", "--region", REGION], destroyer=destroy) == EXIT_FAILED
    assert destroy.calls == []
    assert "expires-at tag is not a time" in capsys.readouterr().out


def test_nothing_tagged_is_a_clean_run(aws: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reap", "--yes", "--region", REGION], destroyer=Recorder()) == EXIT_OK
    assert "0 stack(s)" in capsys.readouterr().out


# A stack that is already gone counts as reaped.


def _pending_deletion(stack: str, expires: str) -> None:
    """What a destroyed stack leaves behind with its tags: a KMS key pending deletion (7-30 days) and a
    Secrets Manager secret in its recovery window."""
    kms = boto3.client("kms", region_name=REGION)
    key = kms.create_key(
        Description=f"foobar {stack} alarms",
        Tags=[{"TagKey": t["Key"], "TagValue": t["Value"]} for t in _tags(stack, expires)],
    )["KeyMetadata"]["KeyId"]
    kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
    secrets = boto3.client("secretsmanager", region_name=REGION)
    secret = secrets.create_secret(
        Name=f"foobar-{stack}-db", SecretString="not-a-real-password-1", Tags=_tags(stack, expires)
    )
    secrets.delete_secret(SecretId=secret["ARN"], RecoveryWindowInDays=7)


def test_stack_of_which_only_resources_pending_deletion_remain_is_reaped(
    aws: None, capsys: pytest.CaptureFixture[str]
) -> None:
    _pending_deletion("pr-60", PAST)
    destroy = Recorder()
    code = main(["reap", "--yes", "--region", REGION], destroyer=destroy)
    assert destroy.calls == []  # the real destroyer fails here: the Pulumi stack was removed already
    assert code == EXIT_OK
    [row] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("pr-60")]
    assert "already gone: 2 resource(s) pending deletion" in row
    assert main(["reap", "--region", REGION], destroyer=destroy) == EXIT_OK  # the dry run says the same
    assert "would destroy" not in capsys.readouterr().out


def test_resources_pending_deletion_do_not_count_for_a_live_stack(
    aws: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """An earlier key the stack replaced is still tagged, with an older expiry that no longer matters."""
    ec2 = boto3.client("ec2", region_name=REGION)
    _stack(ec2, None, "pr-61", FUTURE, with_db=False)
    _pending_deletion("pr-61", "not a time")
    destroy = Recorder()
    assert main(["reap", "--yes", "--region", REGION], destroyer=destroy) == EXIT_OK
    assert destroy.calls == []
    [row] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("pr-61")]
    assert "  1  " in row and "expires in" in row


class KmsDenied:
    """moto clients, except that kms:DescribeKey is denied (a reaper role without that permission)."""

    def __init__(self, region: str) -> None:
        self.region = region
        self.stubber: Stubber | None = None

    def client(self, service_name: str, **kwargs: Any) -> Any:
        client = boto3.client(service_name, region_name=self.region)
        if service_name == "kms":
            self.stubber = Stubber(client)
            self.stubber.add_client_error("describe_key", "AccessDeniedException", "not authorized: kms:DescribeKey")
            self.stubber.activate()
        return client


def test_without_permission_to_ask_kms_the_destroyer_decides(aws: None, capsys: pytest.CaptureFixture[str]) -> None:
    from ops.reap import StackNotFound  # here, not at the top: the other tests also run against older code

    _pending_deletion("pr-62", PAST)

    def gone(stack: str) -> None:
        raise StackNotFound(stack)

    assert main(["reap", "--yes", "--region", REGION], sessions=KmsDenied, destroyer=gone) == EXIT_OK
    [row] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("pr-62")]
    # The key could not be asked about, so it counts; the secret in its recovery window does not.
    assert (
        "already gone: no Pulumi stack pr-62, counted as reaped; 1 tagged resource(s) still listed: arn:aws:kms:" in row
    )


def _fake_pulumi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, select_error: str) -> Path:
    """A `pulumi` CLI on PATH that knows no stacks: `stack select` fails the way the real one does."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "pulumi.log"
    script = bin_dir / "pulumi"
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        f"open({str(log)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
        "args = [a for a in sys.argv[1:] if a != '--non-interactive']\n"
        "if args[:1] == ['version']:\n"
        "    print('v3.272.0')\n"
        "elif args[:2] == ['stack', 'select']:\n"
        f"    sys.stderr.write({select_error!r}.format(stack=args[-1]) + '\\n')\n"
        "    sys.exit(255)\n"
        "else:\n"
        "    sys.exit(f'fake pulumi: unexpected {args}')\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


def test_destroy_of_a_stack_the_backend_no_longer_has_counts_as_reaped(
    stacks: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real destroyer (Automation API) against a CLI that answers like Pulumi for a removed stack."""
    log = _fake_pulumi(tmp_path, monkeypatch, "error: no stack named '{stack}' found")
    assert main(["reap", "--yes", "--region", REGION, "--org", "acme"]) == EXIT_OK
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines()[3:]}
    for stack, left in (("pr-11", 2), ("pr-12", 1)):
        assert (
            f"already gone: no Pulumi stack acme/{stack}, counted as reaped; {left} tagged resource(s)" in rows[stack]
        )
        assert "arn:aws:ec2:" in rows[stack]
    commands = log.read_text().splitlines()
    assert "--non-interactive stack select --stack acme/pr-11" in commands
    assert not [c for c in commands if " destroy " in f" {c} "]


def test_a_failed_pulumi_command_shows_its_error_line(
    stacks: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A CommandError prints as `code: 255` first; the row must show the CLI's own error instead."""
    _fake_pulumi(tmp_path, monkeypatch, "error: [403] Forbidden: no access to {stack}")
    assert main(["reap", "--yes", "--region", REGION]) == EXIT_FAILED
    out = capsys.readouterr().out
    assert "FAILED: error: [403] Forbidden: no access to pr-11" in out
    assert "code: 255" not in out


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-12-01T18:00Z", dt.datetime(2026, 12, 1, 18, 0, tzinfo=dt.UTC)),
        ("2026-12-01T18:00:00Z", dt.datetime(2026, 12, 1, 18, 0, tzinfo=dt.UTC)),
        ("2026-12-01T19:00:00+01:00", dt.datetime(2026, 12, 1, 18, 0, tzinfo=dt.UTC)),
        ("2026-12-01T18:00", None),
        ("soon", None),
    ],
)
def test_parse_expiry(raw: str, expected: dt.datetime | None) -> None:
    assert parse_expiry(raw) == expected
