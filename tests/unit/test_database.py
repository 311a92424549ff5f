"""RDS: primary and replica, TLS required, protections per stack kind, no waiting servers."""

from __future__ import annotations

import pytest

from tests.unit.harness import Run, run


def dbs(r: Run) -> tuple[object, object | None]:
    found = {x.name.rsplit("-", 1)[1]: x for x in r.of_type("aws:rds/instance:Instance")}
    return found["primary"], found.get("replica")


def test_primary_settings(stack_run: Run) -> None:
    s = stack_run.namespace["settings"]
    primary, _ = dbs(stack_run)
    p = primary.inputs  # type: ignore[attr-defined]
    assert p["engine"] == "mysql" and p["engineVersion"] == s.db_engine_version
    assert p["storageEncrypted"] is True and p["publiclyAccessible"] is False
    assert p["manageMasterUserPassword"] is True and "password" not in p
    assert p["backupRetentionPeriod"] == s.db_backup_retention_days > 0
    assert p["multiAz"] is s.db_multi_az
    assert set(p["enabledCloudwatchLogsExports"]) >= {"error", "slowquery"}
    assert p["copyTagsToSnapshot"] is True and p["iamDatabaseAuthenticationEnabled"] is True
    assert p["autoMinorVersionUpgrade"] is True
    sg = next(g.id for g in stack_run.of_type("aws:ec2/securityGroup:SecurityGroup") if g.name.endswith("-db"))
    assert p["vpcSecurityGroupIds"] == [sg]


def test_database_lives_in_the_isolated_subnets(stack_run: Run) -> None:
    (group,) = stack_run.of_type("aws:rds/subnetGroup:SubnetGroup")
    db_subnets = {s.id for s in stack_run.of_type("aws:ec2/subnet:Subnet") if s.inputs["tags"]["tier"] == "db"}
    assert set(group.inputs["subnetIds"]) == db_subnets
    primary, _ = dbs(stack_run)
    assert primary.inputs["dbSubnetGroupName"] == group.outputs["name"]  # type: ignore[attr-defined]


def test_parameter_group_requires_tls(stack_run: Run) -> None:
    (params,) = stack_run.of_type("aws:rds/parameterGroup:ParameterGroup")
    values = {p["name"]: p["value"] for p in params.inputs["parameters"]}
    assert values["require_secure_transport"] == "1"
    primary, replica = dbs(stack_run)
    for db in filter(None, (primary, replica)):
        assert db.inputs["parameterGroupName"] == params.outputs["name"]  # type: ignore[attr-defined]
    assert params.inputs["family"] == "mysql" + stack_run.namespace["settings"].db_engine_version


def test_replica_of_the_primary(stack_run: Run) -> None:
    primary, replica = dbs(stack_run)
    assert replica is not None
    r = replica.inputs  # type: ignore[attr-defined]
    assert r["replicateSourceDb"] == primary.outputs["identifier"]  # type: ignore[attr-defined]
    assert r["storageEncrypted"] is True and r["publiclyAccessible"] is False
    assert "username" not in r and "manageMasterUserPassword" not in r
    assert r["vpcSecurityGroupIds"] == primary.inputs["vpcSecurityGroupIds"]  # type: ignore[attr-defined]


def test_no_replica_when_turned_off() -> None:
    r = run("dev", dbReplica=False)
    primary, replica = dbs(r)
    assert replica is None
    from tests.unit.harness import resolve

    outputs = resolve(r.namespace["site"].outputs)
    assert outputs["dbReaderEndpoint"] == outputs["dbWriterEndpoint"] == primary.outputs["address"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(("stack", "protected"), [("dev", True), ("prod", True), ("pr-7", False)])
def test_protections_per_stack_kind(runs: dict[str, Run], stack: str, protected: bool) -> None:
    r = runs[stack]
    primary, replica = dbs(r)
    p = primary.inputs  # type: ignore[attr-defined]
    assert p["deletionProtection"] is protected
    assert p["skipFinalSnapshot"] is (not protected)
    assert ("finalSnapshotIdentifier" in p) is protected
    for db in filter(None, (primary, replica)):
        assert db.inputs["deletionProtection"] is protected  # type: ignore[attr-defined]
    protect_flags = {x.name: x.protect for x in r.of_type("aws:rds/instance:Instance")}
    assert all(flag is protected for flag in protect_flags.values()), protect_flags


def test_prod_is_multi_az(runs: dict[str, Run]) -> None:
    assert dbs(runs["prod"])[0].inputs["multiAz"] is True  # type: ignore[attr-defined]
    assert dbs(runs["dev"])[0].inputs["multiAz"] is False  # type: ignore[attr-defined]


def test_app_learns_the_database_from_ssm(stack_run: Run) -> None:
    stack = stack_run.namespace["settings"].stack
    params = {p.inputs["name"]: p.inputs for p in stack_run.of_type("aws:ssm/parameter:Parameter")}
    primary, replica = dbs(stack_run)
    assert params[f"/foobar/{stack}/app/db-writer"]["value"] == primary.outputs["address"]  # type: ignore[attr-defined]
    assert params[f"/foobar/{stack}/app/db-reader"]["value"] == replica.outputs["address"]  # type: ignore[union-attr]
    assert params[f"/foobar/{stack}/app/db-secret-arn"]["value"].startswith("arn:aws:secretsmanager:")


def test_rds_names_fit_for_the_longest_stack_name() -> None:
    r = run("pr-123456789012345678", base="dev", ephemeral=True)  # 21 characters, the most allowed
    for db in r.of_type("aws:rds/instance:Instance"):
        prefix = db.inputs["identifierPrefix"]
        assert len(prefix) + 26 <= 63 and prefix.islower(), prefix  # RDS adds 26 characters


def test_replica_storage_grows_with_the_primary(stack_run: Run) -> None:
    primary, replica = dbs(stack_run)
    assert replica.inputs["maxAllocatedStorage"] == primary.inputs["maxAllocatedStorage"] > 0  # type: ignore[union-attr,attr-defined]
