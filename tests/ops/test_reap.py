"""ops reap over resources tagged in moto: only expired ephemeral stacks are destroyed, and only with --yes."""

from __future__ import annotations

import datetime as dt
from typing import Any

import boto3
import pytest

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
