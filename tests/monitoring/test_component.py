"""The Monitoring component under Pulumi mocks: alarms, topic, log groups and dashboard."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_aws as aws
import pytest

from components.monitoring import (
    AWS_METRICS,
    AgentLogs,
    AgentLogsArgs,
    Monitoring,
    MonitoringArgs,
    agent_statements,
    dashboard_name,
)
from tests.monitoring.support import monitoring_args
from tests.unit.harness import Recorder
from userdata import agent

ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
KNOWN: dict[tuple[str, str], tuple[tuple[str, ...], ...]] = {
    (m.namespace, m.name): (m.dimensions,) for role in agent.ROLES for m in agent.METRICS[role]
} | AWS_METRICS


def _dimension_sets(key: tuple[str, str]) -> set[tuple[str, ...]]:
    return {tuple(sorted(dims)) for dims in KNOWN[key]}


def _build(replica: bool = True, email: str = "ops@example.com") -> Recorder:
    mocks = Recorder(region="eu-west-1")
    pulumi.runtime.set_mocks(mocks, project="foobar", stack="dev", preview=False)

    @pulumi.runtime.test
    def program() -> None:
        provider = aws.Provider("aws-monitoring", region="eu-west-1")
        AgentLogs("logs", AgentLogsArgs(stack="dev", log_retention_days=7, provider=provider))
        Monitoring(
            "mon",
            MonitoringArgs(
                stack="dev",
                region="eu-west-1",
                account="123456789012",
                alarm_email=email,
                instance_ids={"lb": [pulumi.Output.from_input("i-lb0")]},
                group_names={
                    "web": pulumi.Output.from_input("foobar-dev-web-x"),
                    "app": pulumi.Output.from_input("foobar-dev-app-x"),
                },
                group_min_sizes={"web": 2, "app": 1},
                db_primary_identifier=pulumi.Output.from_input("db-primary-x"),
                db_replica_identifier=pulumi.Output.from_input("db-replica-x") if replica else None,
                db_allocated_storage_gib=20,
                provider=provider,
            ),
        )

    program()
    return mocks


@pytest.fixture(scope="module")
def mocks() -> Recorder:
    return _build()


def _of(mocks: Recorder, typ: str) -> list[Any]:
    return [r for r in mocks.resources if r.type == typ]


def _topic_arn(mocks: Recorder) -> str:
    (topic,) = _of(mocks, "aws:sns/topic:Topic")
    return topic.outputs["arn"]


def test_every_alarm_notifies_the_topic(mocks: Recorder) -> None:
    arn = _topic_arn(mocks)
    alarms = _of(mocks, ALARM)
    assert len(alarms) >= 10
    for alarm in alarms:
        assert alarm.inputs["alarmActions"] == [arn], alarm.name
        assert alarm.inputs["name"].startswith("foobar-dev-")


SERVICE_ALARMS = {
    "foobar-dev-lb-5xx-rate",
    "foobar-dev-web-backend-down",
    "foobar-dev-app-backend-down",
    "foobar-dev-web-in-service",
    "foobar-dev-app-in-service",
    "foobar-dev-db-replica-lag",
    "foobar-dev-lb-refused",
}


def test_only_service_alarms_announce_recovery(mocks: Recorder) -> None:
    """Every new alarm goes INSUFFICIENT_DATA -> OK once: with OK actions on every per-host alarm,
    each deploy that replaces servers floods the subscription."""
    arn = _topic_arn(mocks)
    announcing = {a.inputs["name"] for a in _of(mocks, ALARM) if a.inputs.get("okActions")}
    assert announcing == SERVICE_ALARMS
    assert all(a.inputs["okActions"] == [arn] for a in _of(mocks, ALARM) if a.inputs["name"] in announcing)


def test_a_new_instance_is_not_a_failed_status_check(mocks: Recorder) -> None:
    """Missing data treated as breaching fires for every instance that hasn't reported yet."""
    checks = [a.inputs for a in _of(mocks, ALARM) if a.inputs.get("metricName") == "StatusCheckFailed"]
    assert checks and all(c["treatMissingData"] in ("missing", "notBreaching") for c in checks)


def test_alarms_with_metric_queries_set_no_period(mocks: Recorder) -> None:
    """The provider: with a metric_query, no metric_name, namespace, period or statistic."""
    queried = [a.inputs for a in _of(mocks, ALARM) if a.inputs.get("metricQueries")]
    assert queried
    for inputs in queried:
        assert not {"metricName", "namespace", "period", "statistic", "extendedStatistic", "dimensions"} & set(inputs)
        assert all(q["metric"]["period"] == 60 for q in inputs["metricQueries"] if "metric" in q)


def test_every_alarm_metric_is_emitted(mocks: Recorder) -> None:
    """Each alarm's metric is in METRICS (the agents) or AWS_METRICS, with exactly those dimensions."""
    for alarm in _of(mocks, ALARM):
        inputs = alarm.inputs
        metrics = [q["metric"] for q in inputs.get("metricQueries", []) if "metric" in q]
        if "metricName" in inputs:
            metrics.append(inputs)
        assert metrics, alarm.name
        for m in metrics:
            key = (m["namespace"], m["metricName"])
            assert key in KNOWN, (alarm.name, key)
            assert tuple(sorted(m["dimensions"])) in _dimension_sets(key), (alarm.name, m["dimensions"])


def test_the_alarms_the_design_asks_for(mocks: Recorder) -> None:
    by_name = {a.inputs["name"]: a.inputs for a in _of(mocks, ALARM)}
    rate = by_name["foobar-dev-lb-5xx-rate"]
    assert [q["id"] for q in rate["metricQueries"] if q.get("returnData")] == ["pct"]
    assert by_name["foobar-dev-web-backend-down"]["dimensions"]["proxy"] == agent.HAPROXY_BACKENDS["web"]
    assert by_name["foobar-dev-app-server-down"]["dimensions"]["state"] == "DOWN"
    # Refused at the door (429, 413, /readyz from outside): the design's "security incidents".
    refused = by_name["foobar-dev-lb-refused"]
    assert refused["metricName"] == "haproxy_frontend_requests_denied_total" and refused["statistic"] == "Sum"
    assert refused["dimensions"]["proxy"] == agent.HAPROXY_FRONTEND and refused["threshold"] == 600
    assert by_name["foobar-dev-lb-0-status-check"]["metricName"] == "StatusCheckFailed"
    assert by_name["foobar-dev-lb-0-cpu"]["dimensions"] == {"InstanceId": "i-lb0"}
    # The groups: per group, not per member (members come and go).
    for tier in ("web", "app"):
        dims = {"AutoScalingGroupName": f"foobar-dev-{tier}-x"}
        assert by_name[f"foobar-dev-{tier}-status-check"]["dimensions"] == dims
        assert by_name[f"foobar-dev-{tier}-cpu"]["dimensions"] == dims
        assert by_name[f"foobar-dev-{tier}-in-service"]["metricName"] == "GroupInServiceInstances"
    assert by_name["foobar-dev-web-in-service"]["threshold"] == 2
    assert not [n for n in by_name if n.startswith(("foobar-dev-web-0", "foobar-dev-app-0"))]
    for which in ("primary", "replica"):
        for what in ("cpu", "free-storage", "connections"):
            assert by_name[f"foobar-dev-db-{which}-{what}"]["namespace"] == "AWS/RDS"
    assert by_name["foobar-dev-db-replica-lag"]["dimensions"] == {"DBInstanceIdentifier": "db-replica-x"}
    assert by_name["foobar-dev-db-primary-free-storage"]["threshold"] == pytest.approx(2 * 1024**3)


def test_no_replica_means_no_replica_alarms() -> None:
    mocks = _build(replica=False, email="")
    names = {a.inputs["name"] for a in _of(mocks, ALARM)}
    assert "foobar-dev-db-primary-cpu" in names
    assert not any("replica" in n for n in names)
    assert _of(mocks, "aws:sns/topicSubscription:TopicSubscription") == []


def test_topic_is_encrypted_with_a_key_cloudwatch_may_use(mocks: Recorder) -> None:
    (topic,) = _of(mocks, "aws:sns/topic:Topic")
    (key,) = _of(mocks, "aws:kms/key:Key")
    assert topic.inputs["kmsMasterKeyId"] == key.outputs["arn"]
    assert key.inputs["enableKeyRotation"] is True
    policy = json.loads(key.inputs["policy"])
    cw = [s for s in policy["Statement"] if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}]
    assert cw and set(cw[0]["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    (sub,) = _of(mocks, "aws:sns/topicSubscription:TopicSubscription")
    assert sub.inputs["protocol"] == "email" and sub.inputs["endpoint"] == "ops@example.com"


def test_log_groups_match_the_agents_and_have_retention(mocks: Recorder) -> None:
    groups = {r.inputs["name"]: r.inputs for r in _of(mocks, "aws:cloudwatch/logGroup:LogGroup")}
    assert set(groups) == set(agent.log_group_names("dev").values())
    assert all(g["retentionInDays"] == 7 for g in groups.values())
    for role in agent.ROLES:
        config = agent.agent_config(role, "dev")
        for entry in config["logs"]["logs_collected"]["files"]["collect_list"]:
            assert entry["log_group_name"] in groups


def test_agent_statements_name_only_the_given_groups() -> None:
    statements: list[dict[str, Any]] = agent_statements(
        partition="aws", region="eu-west-1", account="123456789012", log_groups=["/a/b"]
    )
    (write,) = [s for s in statements if "logs:PutLogEvents" in s["Action"]]
    assert write["Resource"] == [
        "arn:aws:logs:eu-west-1:123456789012:log-group:/a/b",
        "arn:aws:logs:eu-west-1:123456789012:log-group:/a/b:*",
    ]
    actions = {a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert "logs:CreateLogGroup" not in actions


def test_agent_logs_refuse_a_bad_retention() -> None:
    with pytest.raises(ValueError, match="log_retention_days"):
        AgentLogsArgs(stack="dev", log_retention_days=2, provider=None).validate()  # type: ignore[arg-type]


def test_children_use_the_given_provider(mocks: Recorder) -> None:
    children = [r for r in mocks.resources if r.type.startswith("aws:")]
    assert children
    assert all("aws-monitoring" in r.provider for r in children), {r.name: r.provider for r in children}


def _dashboard_metrics(body: dict[str, Any]) -> list[tuple[str, str, dict[str, str]]]:
    found = []
    for widget in body["widgets"]:
        for row in widget["properties"].get("metrics", []):
            if isinstance(row[0], dict):
                assert "expression" in row[0]
                continue
            plain = [x for x in row if not isinstance(x, dict)]
            ns, name, *dims = plain
            assert len(dims) % 2 == 0
            found.append((ns, name, dict(zip(dims[::2], dims[1::2], strict=True))))
    return found


def test_dashboard_parses_and_uses_only_emitted_metrics(mocks: Recorder) -> None:
    (dash,) = _of(mocks, "aws:cloudwatch/dashboard:Dashboard")
    assert dash.inputs["dashboardName"] == dashboard_name("dev") == "foobar-dev"
    body = json.loads(dash.inputs["dashboardBody"])
    metrics = _dashboard_metrics(body)
    for ns, name, dims in metrics:
        assert (ns, name) in KNOWN, (ns, name)
        assert tuple(sorted(dims)) in _dimension_sets((ns, name)), (name, dims)
    names = {name for _, name, _ in metrics}
    # QPS, latency and errors per tier, and the database
    assert {"haproxy_frontend_http_requests_total", "nginx_http_requests_total"} <= names
    assert {"haproxy_backend_response_time_average_seconds", "haproxy_backend_http_responses_total"} <= names
    assert {"ReplicaLag", "FreeStorageSpace", "DatabaseConnections"} <= names
    roles = {d.get("Role") for _, n, d in metrics if n == "nginx_http_requests_total"}
    assert roles == {"web", "app"}
    cpu_ids = {d["InstanceId"] for _, n, d in metrics if n == "CPUUtilization" and "InstanceId" in d}
    assert cpu_ids == {"i-lb0"}
    groups = {d["AutoScalingGroupName"] for _, n, d in metrics if n == "GroupInServiceInstances"}
    assert groups == {"foobar-dev-web-x", "foobar-dev-app-x"}
    expressions = [
        row[0]["expression"]
        for w in body["widgets"]
        for row in w["properties"].get("metrics", [])
        if isinstance(row[0], dict)
    ]
    assert "lb / PERIOD(lb)" in expressions


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("alarm_email", "not-an-email", "alarm_email"),
        ("instance_ids", {"lb": []}, "instance_ids"),
        ("instance_ids", {"lb": ["i-1"], "web": ["i-2"]}, "not both"),
        ("group_names", {"web": "g"}, "every role"),
        ("group_min_sizes", {"web": 0, "app": 1}, "group_min_sizes"),
        ("account", "123", "account"),
    ],
)
def test_bad_arguments_are_named(field: str, value: Any, match: str) -> None:
    args = monitoring_args()
    setattr(args, field, value)
    with pytest.raises(ValueError, match=match):
        args.validate()
