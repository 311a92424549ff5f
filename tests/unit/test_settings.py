"""The settings matrix: good values pass, each bad value stops the program with one clear message
and registers nothing."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from components.settings import ALLOWED, Settings, SettingsError, declared, load_settings
from tests.unit.harness import ROOT, run
from userdata import EdgeLimits

ZONES = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]


def load(**raw: object) -> Settings:
    return load_settings(raw, stack="dev", zones=ZONES)


def test_defaults_are_valid_and_match_pulumi_yaml() -> None:
    settings = load()
    assert settings.domain == "www.foobar.com"
    assert settings.az_count == declared()["azCount"]["default"]
    # Every declared setting is a field, has a description, a type and an "allowed" text.
    aliases = {f.alias for name, f in Settings.model_fields.items() if name not in ("stack", "zones")}
    assert aliases == set(declared())
    for key, spec in declared().items():
        assert spec["type"] in ("string", "integer", "boolean"), key
        assert spec["description"].strip(), key
        assert key in ALLOWED, key


@pytest.mark.parametrize("stack_file", ["Pulumi.dev.yaml", "Pulumi.prod.yaml"])
def test_stack_files_only_use_declared_settings(stack_file: str) -> None:
    config = yaml.safe_load((ROOT / stack_file).read_text())["config"]
    raw = {k.split(":", 1)[1]: v for k, v in config.items() if k.startswith("foobar:")}
    assert set(raw) <= set(declared())
    load_settings(raw, stack=stack_file.split(".")[1], zones=ZONES)


GOOD = [
    {"vpcCidr": "10.0.0.0/24"},
    {"vpcCidr": "172.16.0.0/16", "azCount": 3},
    {"natStrategy": "per-az"},
    {"natStrategy": "none"},
    {"webCount": "10", "webMax": 20, "appCount": 1},
    {"webMin": 2, "webCount": 2, "webMax": 2},
    {"appMin": 1, "appCount": 3, "appMax": 20, "scalingCpuTarget": 70},
    {"lbInstanceType": "c7gn.large"},
    {"dbInstanceClass": "db.r7g.2xlarge"},
    {"dbBackupRetentionDays": 35},
    {"ephemeral": "true", "dbReplica": "false", "dbBackupRetentionDays": 0},
    {"ephemeral": True, "expiresAt": "2026-12-01T18:00:00Z"},
    {"domain": "WWW.Foobar.COM."},
    {"hostedZoneId": "Z0123456789ABCDEFGHIJ"},
    {"alarmEmail": "ops@foobar.com"},
    {"dbEngineVersion": "8.0", "dbReplicaEngineVersion": "8.4"},
    {"dbReplicaEngineVersion": "8.4"},
    {"dbPasswordVersion": 7, "dbApplyImmediately": "false"},
    {"lbCount": 1},
    {"lbCount": "2", "azCount": 2},
    {"rateLimitRequests": 1000, "rateLimitConnections": 20, "rateLimitNewConnections": 50, "rateLimitPosts": 1},
]


@pytest.mark.parametrize("raw", GOOD, ids=lambda r: ",".join(f"{k}={v}" for k, v in r.items()))
def test_good_values_pass(raw: dict[str, object]) -> None:
    load(**raw)


BAD = [
    ("vpcCidr", "10.0.0.0/33", {}),
    ("vpcCidr", "10.0.0.1/16", {}),  # host bits set
    ("vpcCidr", "10.0.0.0/25", {}),  # too small for 16 subnets of at least /28... and /29 is below AWS minimum
    ("vpcCidr", "10.0.0.0/8", {}),
    ("vpcCidr", "8.8.0.0/16", {}),  # not private
    ("vpcCidr", "not-a-cidr", {}),
    ("azCount", 1, {}),
    ("azCount", 4, {}),
    ("natStrategy", "double", {}),
    ("webCount", 0, {}),
    ("webCount", 21, {"webMax": 20}),
    ("webMin", 3, {"webCount": 2}),  # 1 <= min <= desired <= max <= 20, each refused by name
    ("webMin", 0, {}),
    ("webMax", 3, {"webCount": 4}),
    ("webMax", 21, {}),
    ("appMin", 2, {}),
    ("appMax", 0, {}),
    ("scalingCpuTarget", 95, {}),
    ("appCount", -1, {}),
    ("appCount", "three", {}),
    ("domain", "foo_bar.com", {}),
    ("domain", "*.foobar.com", {}),
    ("domain", "localhost", {}),
    ("domain", "-www.foobar.com", {}),
    ("lbInstanceType", "t3", {}),
    ("webInstanceType", "T3.Micro", {}),
    ("appInstanceType", "t3.micro.large", {}),
    ("dbInstanceClass", "t4g.micro", {}),
    ("dbBackupRetentionDays", 36, {}),
    ("dbBackupRetentionDays", -1, {}),
    ("dbBackupRetentionDays", 0, {"ephemeral": True, "dbReplica": True}),  # a replica needs backups
    ("dbBackupRetentionDays", 0, {"dbReplica": False}),  # off only on ephemeral stacks
    ("dbEngineVersion", "5.7", {}),
    ("dbAllocatedStorageGiB", 10, {}),
    ("dbMonitoringInterval", 7, {}),
    ("logRetentionDays", 10, {}),
    ("publicCertificate", "letsencrypt", {}),
    ("hostedZoneId", "zone-1", {}),
    ("alarmEmail", "ops", {}),
    ("ttlHours", 0, {}),
    ("sumoTokenParameter", "token with spaces", {}),
    ("expiresAt", "tomorrow", {"ephemeral": True}),
    ("expiresAt", "2026-12-01T18:00:00", {"ephemeral": True}),  # no zone
    ("expiresAt", "2026-12-01T18:00:00Z", {}),  # not ephemeral
    ("rootVolumeGiB", 4, {}),
    ("ephemeral", "maybe", {}),
    ("dbReplicaEngineVersion", "8.0", {"dbEngineVersion": "8.4"}),  # a replica can't run behind its source
    ("dbReplicaEngineVersion", "8.4", {"dbEngineVersion": "8.0", "dbReplica": False}),
    ("dbReplicaEngineVersion", "9.0", {}),
    ("dbPasswordVersion", 0, {}),
    ("dbPasswordVersion", "two", {}),
    ("dbApplyImmediately", "soon", {}),
    ("dbPerformanceInsights", True, {"dbInstanceClass": "db.t4g.micro"}),
    ("webInstanceType", "t2.micro", {}),
    ("lbCount", 0, {}),
    ("lbCount", 3, {}),  # keepalived pairs two; a third LB would need its own EIP and DNS
    ("lbCount", "two", {}),
    ("rateLimitRequests", 5, {}),
    ("rateLimitConnections", 1, {}),
    ("rateLimitNewConnections", 0, {}),
    ("rateLimitPosts", 0, {}),
    ("rateLimitPosts", 1001, {}),
    ("domain", "the-public-site-of-the-foobar-project.customer-region.foobar-example.com", {}),
]


@pytest.mark.parametrize(("key", "value", "others"), BAD, ids=lambda x: str(x))
def test_bad_value_names_key_value_and_what_is_allowed(key: str, value: object, others: dict[str, object]) -> None:
    with pytest.raises(SettingsError) as err:
        load(**{key: value, **others})
    message = str(err.value)
    assert f"foobar:{key}" in message
    assert repr(value) in message
    assert f"allowed: {ALLOWED[key]}" in message


def test_more_zones_than_the_region_has() -> None:
    with pytest.raises(SettingsError, match=r"foobar:azCount has value 3 \(the region has only 2 available zones\)"):
        load_settings({"azCount": 3}, stack="dev", zones=ZONES[:2])


def test_unknown_setting_is_refused() -> None:
    with pytest.raises(SettingsError, match="foobar:webcount is not a known setting"):
        load(webcount=2)


def test_every_bad_key_is_listed_in_one_message() -> None:
    with pytest.raises(SettingsError) as err:
        load(webCount=0, natStrategy="double")
    assert "foobar:webCount" in str(err.value) and "foobar:natStrategy" in str(err.value)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"vpcCidr": "10.0.0.0/33"}, r"foobar:vpcCidr has value '10.0.0.0/33'"),
        ({"webMin": 3, "webCount": 2}, r"foobar:webMin has value 3 \(more than webCount 2\)"),
        ({"dbEngineVersion": "8.4", "dbReplicaEngineVersion": "8.0"}, r"foobar:dbReplicaEngineVersion has value '8.0'"),
        ({"dbPerformanceInsights": True}, r"foobar:dbPerformanceInsights has value True"),
    ],
)
def test_bad_value_stops_the_program_before_any_resource(overrides: dict[str, Any], match: str) -> None:
    import pulumi

    with pytest.raises(pulumi.RunError, match=match) as err:
        run("dev", **overrides)
    assert "Traceback" not in str(err.value)
    from tests.unit import harness

    assert harness.LAST is not None and harness.LAST.resources == []


def test_region_with_too_few_zones_stops_the_program() -> None:
    import pulumi

    with pytest.raises(pulumi.RunError, match="foobar:azCount"):
        run("dev", None, **{"aws:region": "xx-tiny-1", "azCount": 3})


def test_expiry_of_ephemeral_stacks() -> None:
    import datetime as dt

    assert load().expiry() is None
    s = load(ephemeral=True, ttlHours=48)
    now = dt.datetime(2026, 11, 26, 10, 30, tzinfo=dt.UTC)
    assert s.expiry(now) == "2026-11-28T10:30Z"
    assert load(ephemeral=True, expiresAt="2026-12-01T19:00:00+01:00").expiry() == "2026-12-01T18:00Z"


@pytest.mark.parametrize("stack", ["Prod", "pr_7", "a", "x" * 22, "pr--7", "7pr", "pr-"])
def test_stack_names_that_cannot_name_aws_resources_are_refused(stack: str) -> None:
    with pytest.raises(SettingsError, match=rf"stack name {stack!r} cannot name AWS resources"):
        load_settings({}, stack=stack, zones=ZONES)


@pytest.mark.parametrize("stack", ["dev", "prod", "pr-7", "pr-123456", "staging-eu-west-1"])
def test_ordinary_stack_names_pass(stack: str) -> None:
    load_settings({}, stack=stack, zones=ZONES)


def test_the_limits_documented_as_defaults_are_the_settings_defaults() -> None:
    """userdata.EdgeLimits' defaults (the local site's, and the README's) are Pulumi.yaml's."""
    assert load().edge_limits == EdgeLimits()
