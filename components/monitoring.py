"""Monitoring, the central side: log groups with retention, the alarm topic, alarms and a dashboard.

The agents on the servers (userdata/agent.py) write into the log groups created here and emit the
metrics in ``userdata.agent.METRICS``; every alarm and dashboard widget uses one of those or an AWS
metric listed in ``AWS_METRICS``. The alarm topic is encrypted with a customer-managed KMS key:
CloudWatch cannot publish to a topic encrypted with the AWS-managed ``alias/aws/sns`` key, because
that key's policy can't grant ``cloudwatch.amazonaws.com`` the use of it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.alarms import DEFAULT_THRESHOLDS as _T
from components.alarms import PERIOD, CloudWatchAlarm, Thresholds, cloudwatch_alarms
from components.kms import account_administers_key
from components.settings import EMAIL, LOG_RETENTION_DAYS
from userdata.agent import (
    HAPROXY_BACKENDS,
    HAPROXY_FRONTEND,
    NAMESPACE,
    ROLES,
    log_group_names,
)

AWS_METRICS: dict[tuple[str, str], tuple[tuple[str, ...], ...]] = {
    ("AWS/EC2", "CPUUtilization"): (("InstanceId",), ("AutoScalingGroupName",)),
    ("AWS/EC2", "StatusCheckFailed"): (("InstanceId",), ("AutoScalingGroupName",)),
    ("AWS/AutoScaling", "GroupInServiceInstances"): (("AutoScalingGroupName",),),
    ("AWS/AutoScaling", "GroupDesiredCapacity"): (("AutoScalingGroupName",),),
    ("AWS/RDS", "CPUUtilization"): (("DBInstanceIdentifier",),),
    ("AWS/RDS", "FreeStorageSpace"): (("DBInstanceIdentifier",),),
    ("AWS/RDS", "DatabaseConnections"): (("DBInstanceIdentifier",),),
    ("AWS/RDS", "ReplicaLag"): (("DBInstanceIdentifier",),),
    ("AWS/RDS", "ReadLatency"): (("DBInstanceIdentifier",),),
    ("AWS/RDS", "WriteLatency"): (("DBInstanceIdentifier",),),
}
"""The AWS metrics (namespace, name) -> the dimension sets alarms and the dashboard use them with.

EC2 aggregates its instance metrics per Auto Scaling group (``AutoScalingGroupName``); the group
metrics need the group's ``enabled_metrics``."""


def dashboard_name(stack: str) -> str:
    """Dashboard names allow letters, digits, '-' and '_' only."""
    return "foobar-" + re.sub(r"[^A-Za-z0-9_-]", "-", stack)


def alarm_prefix(stack: str) -> str:
    return f"foobar-{stack}"


@dataclass
class MonitoringArgs:
    stack: str
    region: str
    account: str
    """AWS account id: the KMS key policy names it."""
    alarm_email: str
    """E-mail subscribed to the alarm topic; empty means no subscription."""
    instance_ids: Mapping[str, Sequence[pulumi.Input[str]]]
    """Instance ids of the roles that run plain instances (the load balancer)."""
    group_names: Mapping[str, pulumi.Input[str]]
    """Auto Scaling group name of each tier ("web", "app")."""
    group_min_sizes: Mapping[str, int]
    """The fewest in-service members each group should have."""
    db_primary_identifier: pulumi.Input[str]
    db_replica_identifier: pulumi.Input[str] | None
    db_allocated_storage_gib: int
    provider: pulumi.ProviderResource
    """The provider tagged role=monitoring."""
    partition: str = "aws"
    # The defaults live in components.alarms.Thresholds, which both renderings (CloudWatch, Prometheus) read.
    cpu_alarm_percent: float = _T.cpu_percent
    disk_alarm_percent: float = _T.disk_percent
    db_connections_alarm: int = _T.db_connections
    """Alarm above this many connections; db.t4g.micro allows about 80."""
    db_free_storage_alarm_ratio: float = _T.db_free_storage_ratio
    """Alarm when free storage falls below this share of the allocated storage."""
    replica_lag_alarm_seconds: int = _T.replica_lag_seconds
    lb_5xx_alarm_percent: float = _T.lb_5xx_percent
    refused_alarm_per_minute: int = _T.refused_per_minute
    """Alarm when the load balancers refuse more requests than this per minute (10 a second) for 5 minutes:
    a flood or a scan at the door, the design's "security incident"."""

    def thresholds(self) -> Thresholds:
        """The numbers the alarm table reads, for CloudWatch here and for the local Prometheus."""
        return Thresholds.from_args(self)

    def validate(self) -> None:
        """Bad input stops here with a message naming the argument."""
        if self.alarm_email and not EMAIL.match(self.alarm_email):
            raise ValueError(f"alarm_email must be empty or an e-mail address; got {self.alarm_email!r}")
        unknown = set(self.instance_ids) - set(ROLES)
        if unknown:
            raise ValueError(f"instance_ids has unknown roles {sorted(unknown)}; allowed: {', '.join(ROLES)}")
        for role, ids in self.instance_ids.items():
            if not ids:
                raise ValueError(f"instance_ids[{role!r}] must list at least one instance id")
        if set(self.instance_ids) & set(self.group_names):
            raise ValueError("a role is either in instance_ids or in group_names, not both")
        if set(self.instance_ids) | set(self.group_names) != set(ROLES):
            raise ValueError(f"instance_ids and group_names must cover every role: {', '.join(ROLES)}")
        if set(self.group_min_sizes) != set(self.group_names) or min(self.group_min_sizes.values(), default=1) < 1:
            raise ValueError("group_min_sizes must give each group in group_names a size of at least 1")
        if not re.match(r"^\d{12}$", self.account):
            raise ValueError(f"account must be a 12-digit AWS account id; got {self.account!r}")
        if self.refused_alarm_per_minute < 1:
            raise ValueError(f"refused_alarm_per_minute must be at least 1; got {self.refused_alarm_per_minute}")
        if self.db_allocated_storage_gib < 20:
            raise ValueError(f"db_allocated_storage_gib must be at least 20; got {self.db_allocated_storage_gib}")


def _metric(namespace: str, name: str, dimensions: Mapping[str, str], **options: Any) -> list[Any]:
    """A dashboard metric row: [namespace, name, dim, value, ..., {options}]."""
    row: list[Any] = [namespace, name]
    for key, value in dimensions.items():
        row += [key, value]
    if options:
        row.append(options)
    return row


def _widget(title: str, metrics: list[list[Any]], region: str, *, stat: str = "Average", **props: Any) -> dict:
    return {
        "type": "metric",
        "width": 12,
        "height": 6,
        "properties": {
            "title": title,
            "view": "timeSeries",
            "region": region,
            "period": PERIOD,
            "stat": stat,
            "metrics": metrics,
            **props,
        },
    }


def _lb(stack: str, **extra: str) -> dict[str, str]:
    return {"Stack": stack, "Role": "lb", **extra}


def dashboard_body(
    stack: str,
    region: str,
    instance_ids: Mapping[str, Sequence[str]],
    group_names: Mapping[str, str],
    db_primary: str,
    db_replica: str | None,
) -> dict[str, Any]:
    """The dashboard: QPS, latency and errors per tier, backend health, hosts and the database."""
    ns = NAMESPACE
    fe = HAPROXY_FRONTEND
    qps: list[list[Any]] = [
        _metric(ns, "haproxy_frontend_http_requests_total", _lb(stack, proxy=fe), id="lb", visible=False),
        [{"expression": "lb / PERIOD(lb)", "label": "lb (all requests)", "id": "qlb"}],
    ]
    for tier in ("web", "app"):
        qps.append(
            _metric(ns, "nginx_http_requests_total", {"Stack": stack, "Role": tier}, id=f"n{tier}", visible=False)
        )
        qps.append([{"expression": f"n{tier} / PERIOD(n{tier})", "label": f"{tier} (nginx)", "id": f"q{tier}"}])
    latency = [
        _metric(ns, "haproxy_backend_response_time_average_seconds", _lb(stack, proxy=be), label=tier)
        for tier, be in HAPROXY_BACKENDS.items()
    ]
    errors = [_metric(ns, "haproxy_frontend_http_responses_total", _lb(stack, proxy=fe, code="5xx"), label="lb")]
    errors += [
        _metric(ns, "haproxy_backend_http_responses_total", _lb(stack, proxy=be, code="5xx"), label=tier)
        for tier, be in HAPROXY_BACKENDS.items()
    ]
    rate = [
        _metric(ns, "haproxy_frontend_http_responses_total", _lb(stack, proxy=fe, code="5xx"), id="e", visible=False),
        _metric(ns, "haproxy_frontend_http_requests_total", _lb(stack, proxy=fe), id="r", visible=False),
        [{"expression": "IF(r > 0, 100 * FILL(e, 0) / r, 0)", "label": "5xx % of requests", "id": "pct"}],
    ]
    refused = [
        _metric(ns, "haproxy_frontend_requests_denied_total", _lb(stack, proxy=fe), label="refused (429, 413, 404)")
    ]
    health: list[list[Any]] = []
    for tier, be in HAPROXY_BACKENDS.items():
        health.append(_metric(ns, "haproxy_backend_active_servers", _lb(stack, proxy=be), label=f"{tier} up"))
        health.append(
            _metric(ns, "haproxy_server_status", _lb(stack, proxy=be, state="DOWN"), label=f"{tier} down", stat="Sum")
        )
    conns = [
        _metric(ns, "nginx_connections_active", {"Stack": stack, "Role": t}, label=t, stat="Sum")
        for t in ("web", "app")
    ]
    hosts = [(role, iid) for role in ROLES for iid in instance_ids.get(role, ())]
    cpu = [_metric("AWS/EC2", "CPUUtilization", {"InstanceId": i}, label=f"{r} {i}") for r, i in hosts]
    cpu += [
        _metric("AWS/EC2", "CPUUtilization", {"AutoScalingGroupName": g}, label=f"{t} group")
        for t, g in group_names.items()
    ]
    members = [
        _metric("AWS/AutoScaling", what, {"AutoScalingGroupName": g}, label=f"{t} {label}")
        for t, g in group_names.items()
        for what, label in (("GroupInServiceInstances", "in service"), ("GroupDesiredCapacity", "desired"))
    ]
    mem = [_metric(ns, "mem_used_percent", {"InstanceId": i}, label=f"{r} {i}") for r, i in hosts]
    disk = [_metric(ns, "disk_used_percent", {"InstanceId": i}, label=f"{r} {i}") for r, i in hosts]
    dbs = [("primary", db_primary)] + ([("replica", db_replica)] if db_replica else [])

    def db(name: str, **options: Any) -> list[list[Any]]:
        return [_metric("AWS/RDS", name, {"DBInstanceIdentifier": i}, label=w, **options) for w, i in dbs]

    widgets = [
        {
            "type": "text",
            "width": 24,
            "height": 2,
            "properties": {
                "markdown": f"## foobar {stack}\nQPS = SUM(request counter) / PERIOD: the agents store the "
                "counter's increase per scrape. Alarms go to the SNS topic "
                f"`{alarm_prefix(stack)}-alarms`."
            },
        },
        _widget("Requests per second (QPS) per tier", qps, region, stat="Sum"),
        _widget("Backend response time, seconds (HAProxy)", latency, region),
        _widget("5xx responses per minute", errors, region, stat="Sum"),
        _widget("Load balancer 5xx rate, %", rate, region, stat="Sum"),
        _widget("Requests refused at the door per minute (limits, body size, /readyz)", refused, region, stat="Sum"),
        _widget("Backend servers up / down", health, region, stat="Minimum"),
        _widget("nginx active connections", conns, region),
        _widget("CPU %: load balancer, and average per group", cpu, region),
        _widget("Group members in service / desired", members, region, stat="Minimum"),
        _widget("Memory used % (load balancer)", mem, region),
        _widget("Root disk used % (load balancer)", disk, region),
        _widget("Database CPU %", db("CPUUtilization"), region),
        _widget("Database connections", db("DatabaseConnections"), region, stat="Maximum"),
        _widget("Database free storage, bytes", db("FreeStorageSpace"), region, stat="Minimum"),
        _widget("Database read / write latency, seconds", db("ReadLatency") + db("WriteLatency"), region),
    ]
    if db_replica:
        lag = [_metric("AWS/RDS", "ReplicaLag", {"DBInstanceIdentifier": db_replica}, label="replica")]
        widgets.append(_widget("Replica lag, seconds", lag, region, stat="Maximum"))
    return {"widgets": widgets}


@dataclass
class AgentLogsArgs:
    stack: str
    log_retention_days: int
    provider: pulumi.ProviderResource
    """The provider tagged role=monitoring."""
    log_group_prefix: str | None = None
    """Defaults to /foobar/<stack>; must match what the agents were given."""

    def validate(self) -> None:
        if self.log_retention_days not in LOG_RETENTION_DAYS:
            allowed = ", ".join(map(str, LOG_RETENTION_DAYS))
            raise ValueError(f"log_retention_days must be one of {allowed}; got {self.log_retention_days!r}")


class AgentLogs(pulumi.ComponentResource):
    """The log groups every agent writes into, with retention, made before any server.

    Servers depend on them, so ``pulumi destroy`` removes the servers first: an agent still running
    can't write into (and, lacking ``logs:CreateLogGroup``, can't recreate) a deleted group, which
    would otherwise outlive the stack without retention and make the next stack of that name fail
    with ``ResourceAlreadyExistsException``.
    """

    groups: dict[str, list[pulumi.Resource]]
    """Per role, the log group resources its servers wait for."""
    names: dict[str, list[str]]

    def __init__(self, name: str, args: AgentLogsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("foobar:monitoring:AgentLogs", name, None, opts)
        args.validate()
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        self.groups = {role: [] for role in ROLES}
        self.names = {role: [] for role in ROLES}
        for (role, key), group in log_group_names(args.stack, prefix=args.log_group_prefix).items():
            lg = aws.cloudwatch.LogGroup(
                f"{name}-{role}-{key}", name=group, retention_in_days=args.log_retention_days, opts=child
            )
            self.groups[role].append(lg)
            self.names[role].append(group)
        self.register_outputs({"logGroups": sorted(n for names in self.names.values() for n in names)})


def agent_statements(
    *, partition: str, region: str, account: str, log_groups: Sequence[str]
) -> list[dict[str, object]]:
    """What a role's CloudWatch agent needs, instead of CloudWatchAgentServerPolicy.

    The managed policy allows ``logs:CreateLogGroup`` and ``logs:PutRetentionPolicy`` on every group:
    an agent could recreate a group of a destroyed stack, without retention. Here the agent writes
    only into its role's groups and publishes metrics only in the project's namespace.
    """
    arns = [f"arn:{partition}:logs:{region}:{account}:log-group:{g}" for g in log_groups]
    return [
        {
            "Sid": "AgentWritesOwnLogGroups",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            "Resource": [*arns, *(f"{a}:*" for a in arns)],
        },
        {
            "Sid": "AgentDescribesLogGroups",
            "Effect": "Allow",
            "Action": "logs:DescribeLogGroups",
            "Resource": f"arn:{partition}:logs:{region}:{account}:log-group:*",
        },
        {
            "Sid": "AgentPublishesProjectMetrics",
            "Effect": "Allow",
            "Action": "cloudwatch:PutMetricData",
            "Resource": "*",
            "Condition": {"StringEquals": {"cloudwatch:namespace": NAMESPACE}},
        },
        {
            "Sid": "AgentReadsInstanceFacts",
            "Effect": "Allow",
            "Action": ["ec2:DescribeTags", "ec2:DescribeVolumes"],
            "Resource": "*",
        },
    ]


class Monitoring(pulumi.ComponentResource):
    topic_arn: pulumi.Output[str]
    dashboard_name: str
    alarm_names: list[str]

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("foobar:monitoring:Monitoring", name, None, opts)
        args.validate()
        s = args.stack
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)

        prefix = alarm_prefix(s)
        kms_key = aws.kms.Key(
            f"{name}-alarms-key",
            description=f"foobar {s}: encrypts the alarm topic; CloudWatch may use it to publish",
            enable_key_rotation=True,
            deletion_window_in_days=7,
            policy=json.dumps(_key_policy(args, prefix)),
            opts=child,
        )
        aws.kms.Alias(
            f"{name}-alarms-key-alias", name=f"alias/{prefix}-alarms", target_key_id=kms_key.key_id, opts=child
        )
        topic = aws.sns.Topic(f"{name}-alarms", name=f"{prefix}-alarms", kms_master_key_id=kms_key.arn, opts=child)
        self.topic_arn = topic.arn
        if args.alarm_email:
            aws.sns.TopicSubscription(
                f"{name}-alarms-email", topic=topic.arn, protocol="email", endpoint=args.alarm_email, opts=child
            )

        self.alarm_names = []

        def alarm(spec: CloudWatchAlarm) -> None:
            """One row of the alarm table (components/alarms.py), expanded; only service-level rows also
            notify when they clear (``announce_ok``)."""
            self.alarm_names.append(spec.name)
            kw = dict(spec.kwargs)
            if "metric_queries" in kw:
                kw["metric_queries"] = [_query(q) for q in kw["metric_queries"]]
            aws.cloudwatch.MetricAlarm(
                f"{name}-{spec.suffix}",
                name=spec.name,
                alarm_description=spec.description,
                alarm_actions=[topic.arn],
                ok_actions=[topic.arn] if spec.announce_ok else [],
                opts=child,
                **kw,
            )

        dbs: list[tuple[str, pulumi.Input[str]]] = [("primary", args.db_primary_identifier)]
        if args.db_replica_identifier is not None:
            dbs.append(("replica", args.db_replica_identifier))
        for spec in cloudwatch_alarms(
            s, args.thresholds(), instance_ids=args.instance_ids, group_names=args.group_names, databases=dbs
        ):
            alarm(spec)

        self.dashboard_name = dashboard_name(s)
        ids = {role: list(ids) for role, ids in args.instance_ids.items()}
        body = pulumi.Output.all(
            ids=ids,
            groups=dict(args.group_names),
            primary=args.db_primary_identifier,
            replica=args.db_replica_identifier,
        ).apply(
            lambda v: json.dumps(
                dashboard_body(s, args.region, v["ids"], v["groups"], v["primary"], v["replica"]),
                separators=(",", ":"),
            )
        )
        aws.cloudwatch.Dashboard(
            f"{name}-dashboard", dashboard_name=self.dashboard_name, dashboard_body=body, opts=child
        )

        self.register_outputs(
            {
                "alarmTopicArn": self.topic_arn,
                "dashboardName": self.dashboard_name,
                "alarmNames": self.alarm_names,
            }
        )


def _query(query: Mapping[str, Any]) -> aws.cloudwatch.MetricAlarmMetricQueryArgs:
    """A metric query of the table as the provider's input type."""
    q = dict(query)
    metric = q.pop("metric", None)
    if metric is not None:
        q["metric"] = aws.cloudwatch.MetricAlarmMetricQueryMetricArgs(**metric)
    return aws.cloudwatch.MetricAlarmMetricQueryArgs(**q)


def _key_policy(args: MonitoringArgs, prefix: str) -> dict[str, Any]:
    """The account administers the key; CloudWatch may use it only for this stack's alarms."""
    account, partition = args.account, args.partition
    return {
        "Version": "2012-10-17",
        "Statement": [
            account_administers_key(partition, account),
            {
                "Sid": "CloudWatchAlarmsPublish",
                "Effect": "Allow",
                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                "Resource": "*",
                "Condition": {
                    "StringEquals": {"aws:SourceAccount": account},
                    "ArnLike": {
                        "aws:SourceArn": f"arn:{partition}:cloudwatch:{args.region}:{account}:alarm:{prefix}-*"
                    },
                },
            },
        ],
    }


def sumo_token_statement(*, partition: str, region: str, account: str, parameter: str) -> dict[str, object]:
    """The policy statement each role needs to read the Sumo Logic installation token at boot."""
    name = parameter if parameter.startswith("/") else f"/{parameter}"
    return {
        "Sid": "ReadSumoInstallationToken",
        "Effect": "Allow",
        "Action": "ssm:GetParameter",
        "Resource": f"arn:{partition}:ssm:{region}:{account}:parameter{name}",
    }
