"""RDS: primary and replica, TLS required, protections per stack kind, no waiting servers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.unit.harness import Run, resolve, run


def dbs(r: Run) -> tuple[Any, Any]:
    found = {x.name.rsplit("-", 1)[1]: x for x in r.of_type("aws:rds/instance:Instance")}
    return found["primary"], found.get("replica")


def test_primary_settings(stack_run: Run) -> None:
    s = stack_run.namespace["settings"]
    primary, _ = dbs(stack_run)
    p = primary.inputs  # type: ignore[attr-defined]
    assert p["engine"] == "mysql" and p["engineVersion"] == s.db_engine_version
    assert p["storageEncrypted"] is True and p["publiclyAccessible"] is False
    # AWS refuses a replica of a source whose password RDS manages: the program generates it.
    assert "manageMasterUserPassword" not in p and "password" not in p
    assert p["username"] == "foobar_admin" and p["passwordWoVersion"] == s.db_password_version
    assert "passwordWo" in primary.secrets  # type: ignore[attr-defined]
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


def test_slow_query_log_goes_to_a_file(stack_run: Run) -> None:
    """RDS publishes only file logs; MySQL's default log_output is TABLE, so the export stays empty."""
    (params,) = stack_run.of_type("aws:rds/parameterGroup:ParameterGroup")
    values = {p["name"]: p["value"] for p in params.inputs["parameters"]}
    assert values["log_output"] == "FILE" and values["slow_query_log"] == "1"


def test_replica_of_the_primary(stack_run: Run) -> None:
    primary, replica = dbs(stack_run)
    assert replica is not None
    r = replica.inputs  # type: ignore[attr-defined]
    assert r["replicateSourceDb"] == primary.outputs["identifier"]  # type: ignore[attr-defined]
    assert r["storageEncrypted"] is True and r["publiclyAccessible"] is False
    assert not {"username", "dbName", "manageMasterUserPassword", "passwordWo", "password"} & set(r)
    assert r["vpcSecurityGroupIds"] == primary.inputs["vpcSecurityGroupIds"]  # type: ignore[attr-defined]


def test_no_replica_when_turned_off() -> None:
    r = run("dev", dbReplica=False)
    primary, replica = dbs(r)
    assert replica is None
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
        ident = db.inputs["identifier"]
        assert len(ident) <= 63 and ident.islower() and "--" not in ident, ident
    r = run("prod-123456789012345", base="prod")
    primary, _ = dbs(r)
    assert len(primary.inputs["finalSnapshotIdentifier"]) <= 255  # type: ignore[attr-defined]


def test_replica_storage_grows_with_the_primary(stack_run: Run) -> None:
    primary, replica = dbs(stack_run)
    assert replica.inputs["maxAllocatedStorage"] == primary.inputs["maxAllocatedStorage"] > 0  # type: ignore[union-attr,attr-defined]


def _by_urn(r: Run) -> dict[str, object]:
    return {x.urn: x for x in r.resources}


def test_final_snapshot_is_named_after_the_instance(runs: dict[str, Run]) -> None:
    """A fixed name per stack fails the second time with DBSnapshotAlreadyExists."""
    primary, _ = dbs(runs["prod"])
    p = primary.inputs  # type: ignore[attr-defined]
    assert p["finalSnapshotIdentifier"] == p["identifier"] + "-final"
    (suffix,) = [
        x for x in runs["prod"].of_type("random:index/randomString:RandomString") if x.name.endswith("primary-suffix")
    ]
    assert p["identifier"] == "foobar-prod-" + suffix.outputs["result"]
    # The suffix is renewed with every input that makes RDS replace the instance.
    assert {"engine", "dbName", "username", "storageEncrypted"} <= set(suffix.inputs["keepers"])
    assert suffix.inputs["keepers"]["dbName"] == p["dbName"] and suffix.inputs["keepers"]["username"] == p["username"]


def test_identifiers_differ_between_incarnations() -> None:
    """Two stacks of one name (destroyed, then made again) don't share an identifier or snapshot name."""
    from components.database import replacement_keepers
    from components.settings import load_settings

    s = load_settings({}, stack="prod", zones=("a", "b", "c"))
    assert replacement_keepers(s, "primary") != replacement_keepers(s, "replica")


def test_rds_log_groups_exist_before_the_instances(stack_run: Run) -> None:
    """RDS would create /aws/rds/instance/<id>/<log> itself, without retention, and leave it behind."""
    s = stack_run.namespace["settings"]
    groups = {g.inputs["name"]: g for g in stack_run.of_type("aws:cloudwatch/logGroup:LogGroup")}
    for db in filter(None, dbs(stack_run)):
        for log in db.inputs["enabledCloudwatchLogsExports"]:  # type: ignore[attr-defined]
            group = groups[f"/aws/rds/instance/{db.inputs['identifier']}/{log}"]  # type: ignore[attr-defined]
            assert group.inputs["retentionInDays"] == s.log_retention_days
            assert group.urn in db.dependencies  # type: ignore[attr-defined]


def test_master_secret_is_owned_encrypted_and_secret(stack_run: Run) -> None:
    (password,) = stack_run.of_type("random:index/randomPassword:RandomPassword")
    (secret,) = stack_run.of_type("aws:secretsmanager/secret:Secret")
    (version,) = stack_run.of_type("aws:secretsmanager/secretVersion:SecretVersion")
    primary, _ = dbs(stack_run)
    value = password.outputs["result"]
    assert primary.inputs["passwordWo"] == value  # type: ignore[attr-defined]
    assert version.inputs["secretId"] == secret.id and "secretString" in version.secrets
    assert json.loads(version.inputs["secretString"]) == {
        "engine": "mysql",
        "username": "foobar_admin",
        "password": value,
        "port": 3306,
    }
    # RDS's rules: 8 to 41 printable characters, none of / " @ or space.
    assert 8 <= password.inputs["length"] <= 41
    assert not set(password.inputs["overrideSpecial"]) & set('/"@ ')
    keys = {k.urn: k for k in stack_run.of_type("aws:kms/key:Key")}
    key = next(k for k in keys.values() if k.outputs["arn"] == secret.inputs["kmsKeyId"])
    assert key.inputs["enableKeyRotation"] is True
    # The secret is written before RDS is told the new password (rotation without failed logins).
    assert version.urn in primary.dependencies  # type: ignore[attr-defined]


def test_password_rotation_is_a_setting() -> None:
    r = run("dev", dbPasswordVersion=2)
    (password,) = r.of_type("random:index/randomPassword:RandomPassword")
    primary, replica = dbs(r)
    assert password.inputs["keepers"] == {"version": "2"}
    assert primary.inputs["passwordWoVersion"] == 2  # type: ignore[attr-defined]
    assert "passwordWoVersion" not in replica.inputs  # type: ignore[union-attr]


def test_password_never_leaves_the_secret(stack_run: Run) -> None:
    """Not in user-data, SSM parameters, outputs or any input except RDS's and the secret's."""
    (password,) = stack_run.of_type("random:index/randomPassword:RandomPassword")
    value = password.outputs["result"]
    allowed = {"aws:rds/instance:Instance", "aws:secretsmanager/secretVersion:SecretVersion"}
    for res in stack_run.resources:
        if res.type not in allowed and res is not password:
            assert value not in json.dumps(res.inputs, default=str), res.name
    outputs = resolve(stack_run.namespace["site"].outputs)
    assert value not in json.dumps(outputs, default=str)


def test_only_the_app_role_reads_the_secret(stack_run: Run) -> None:
    (secret,) = stack_run.of_type("aws:secretsmanager/secret:Secret")
    arn = secret.outputs["arn"]
    readers = [p for p in stack_run.of_type("aws:iam/rolePolicy:RolePolicy") if arn in p.inputs["policy"]]
    assert [p.name for p in readers] == ["foobar-app-db-secret"]
    statements = json.loads(readers[0].inputs["policy"])["Statement"]
    assert {st["Action"] for st in statements} == {"secretsmanager:GetSecretValue", "kms:Decrypt"}
    app_role = stack_run.named("foobar-app-role")
    assert readers[0].inputs["role"] == app_role.outputs["name"]
    (policy,) = stack_run.of_type("aws:secretsmanager/secretPolicy:SecretPolicy")
    (deny,) = json.loads(policy.inputs["policy"])["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"]["ArnNotEquals"]["aws:PrincipalArn"] == [
        app_role.outputs["arn"]
    ]


@pytest.mark.parametrize(("value", "expected"), [(True, True), (False, False)])
def test_apply_immediately_is_a_setting(value: bool, expected: bool) -> None:
    for db in filter(None, dbs(run("dev", dbApplyImmediately=value))):
        assert db.inputs["applyImmediately"] is expected  # type: ignore[attr-defined]


def test_every_stack_applies_database_changes_at_once(runs: dict[str, Run]) -> None:
    """A deferred change shows as a diff in every preview (and fails the drift check) until the window."""
    for r in runs.values():
        for db in filter(None, dbs(r)):
            assert db.inputs["applyImmediately"] is True  # type: ignore[attr-defined]


def test_major_version_upgrade_goes_replica_first() -> None:
    """Step 1 of 8.0 -> 8.4: the replica moves to 8.4 with a parameter group of the new family."""
    r = run("dev", dbEngineVersion="8.0", dbReplicaEngineVersion="8.4")
    groups = {g.inputs["family"]: g for g in r.of_type("aws:rds/parameterGroup:ParameterGroup")}
    assert set(groups) == {"mysql8.0", "mysql8.4"}
    primary, replica = dbs(r)
    assert primary.inputs["engineVersion"] == "8.0"  # type: ignore[attr-defined]
    assert primary.inputs["parameterGroupName"] == groups["mysql8.0"].outputs["name"]  # type: ignore[attr-defined]
    assert replica.inputs["engineVersion"] == "8.4"  # type: ignore[union-attr]
    assert replica.inputs["parameterGroupName"] == groups["mysql8.4"].outputs["name"]  # type: ignore[union-attr]
    for db in (primary, replica):
        assert db.inputs["allowMajorVersionUpgrade"] is True  # type: ignore[union-attr]


def test_major_version_upgrade_step_two_keeps_the_replica_resource() -> None:
    """Step 2: the primary follows; the parameter group of the new family keeps its name (no churn)."""
    step1 = run("dev", dbEngineVersion="8.0", dbReplicaEngineVersion="8.4")
    step2 = run("dev", dbEngineVersion="8.4")
    names1 = {
        g.name for g in step1.of_type("aws:rds/parameterGroup:ParameterGroup") if g.inputs["family"] == "mysql8.4"
    }
    names2 = {g.name for g in step2.of_type("aws:rds/parameterGroup:ParameterGroup")}
    assert names1 == names2
