"""The alarm table: every alarm of the site once, rendered to CloudWatch (components/monitoring.py) and
to Prometheus alerting rules (the local site). Pure data and functions, no Pulumi.

A row (``Alarm``) holds what both renderings share: the threshold (read through ``Thresholds``, the one
helper both renderings get their numbers from), the comparison, the evaluation window and the
description. ``cloudwatch`` says which metric (or metric math) CloudWatch compares; ``prometheus`` the
PromQL quantity, in the same unit, that Prometheus compares with the same operator and threshold. A row
AWS alone can measure has ``prometheus=None`` and says why in ``aws_only``.

A row's ``scope`` says how often it exists: once, per HAProxy backend, per plain instance (the load
balancers), per Auto Scaling group, per database, or for the replica only. ``cloudwatch_alarms`` expands
each row into one CloudWatch alarm per expansion; ``prometheus_rules`` into one alerting rule per
expansion, except per-instance rows: Prometheus finds its hosts itself, so those are one rule
aggregated ``by (instance)``.

Prometheus ``for:`` is the CloudWatch window: ``evaluation_periods x period``, or
``datapoints_to_alarm x period`` when fewer datapoints must breach (``M of N`` becomes "M minutes in a
row", slightly stricter). Missing data never fires a Prometheus alert, except where a row says so
(replica lag: replication stopped).

Templates: descriptions use ``str.format`` fields (thresholds and expansion values: ``{tier}``,
``{db}``, ``{host}``...); PromQL uses ``string.Template`` (``$proxy``, ``$db``, ``$frontend``), since
braces are PromQL's own.
"""

from __future__ import annotations

import itertools
import re
import string
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import yaml

from userdata.agent import HAPROXY_BACKENDS, HAPROXY_FRONTEND, NAMESPACE, ROLES

PERIOD = 60
"""Seconds per CloudWatch datapoint; also the PromQL rate window (``[1m]``)."""
RATE_WINDOW = "1m"

RULE_FILE_GLOB = "rules/*.rules.yml"
"""What the local Prometheus config lists under ``rule_files`` (relative to prometheus.yml)."""


def rule_file_name(stack: str) -> str:
    """The rules file of a stack, in the ``rules/`` folder next to prometheus.yml."""
    return f"foobar-{stack}.rules.yml"


class Scope(StrEnum):
    SITE = "once for the site"
    BACKEND = "per HAProxy backend (web, app)"
    INSTANCE = "per plain instance (the load balancers)"
    GROUP = "per Auto Scaling group (web, app)"
    DATABASE = "per database (primary, and the replica when there is one)"
    REPLICA = "for the read replica, when there is one"


class ThresholdArgs(Protocol):
    """What ``Thresholds.from_args`` reads: MonitoringArgs' threshold fields."""

    @property
    def cpu_alarm_percent(self) -> float: ...
    @property
    def disk_alarm_percent(self) -> float: ...
    @property
    def db_connections_alarm(self) -> int: ...
    @property
    def db_free_storage_alarm_ratio(self) -> float: ...
    @property
    def db_allocated_storage_gib(self) -> int: ...
    @property
    def replica_lag_alarm_seconds(self) -> int: ...
    @property
    def lb_5xx_alarm_percent(self) -> float: ...
    @property
    def refused_alarm_per_minute(self) -> int: ...
    @property
    def group_min_sizes(self) -> Mapping[str, int]: ...


@dataclass(frozen=True)
class Thresholds:
    """Every number an alarm compares against; the defaults are MonitoringArgs' defaults."""

    cpu_percent: float = 80.0
    disk_percent: float = 85.0
    db_connections: int = 50
    """db.t4g.micro allows about 80."""
    db_free_storage_ratio: float = 0.1
    db_allocated_storage_gib: int = 20
    replica_lag_seconds: int = 60
    lb_5xx_percent: float = 5.0
    refused_per_minute: int = 600
    group_min_sizes: Mapping[str, int] = field(default_factory=lambda: {"web": 1, "app": 1})

    @property
    def db_free_storage_bytes(self) -> int:
        return int(self.db_allocated_storage_gib * self.db_free_storage_ratio * 1024**3)

    @classmethod
    def from_args(cls, args: ThresholdArgs) -> Thresholds:
        return cls(
            cpu_percent=args.cpu_alarm_percent,
            disk_percent=args.disk_alarm_percent,
            db_connections=args.db_connections_alarm,
            db_free_storage_ratio=args.db_free_storage_alarm_ratio,
            db_allocated_storage_gib=args.db_allocated_storage_gib,
            replica_lag_seconds=args.replica_lag_alarm_seconds,
            lb_5xx_percent=args.lb_5xx_alarm_percent,
            refused_per_minute=args.refused_alarm_per_minute,
            group_min_sizes=dict(args.group_min_sizes),
        )

    def value(self, name: str | float, tier: str | None = None) -> float:
        """A row's threshold: a number, a field or property of this class, or ``group_min_size``."""
        if not isinstance(name, str):
            return name
        if name == "group_min_size":
            if tier is None:
                raise ValueError("group_min_size needs a tier")
            return self.group_min_sizes[tier]
        value = getattr(self, name)
        if not isinstance(value, int | float):
            raise ValueError(f"{name} is not a threshold")
        return value

    def fields(self) -> dict[str, Any]:
        return {
            **{k: getattr(self, k) for k in self.__dataclass_fields__ if k != "group_min_sizes"},
            "db_free_storage_bytes": self.db_free_storage_bytes,
        }


DEFAULT_THRESHOLDS = Thresholds()

ID = "{id}"
"""A dimension value standing for the expansion's AWS identifier (instance id, group name, DB
identifier), which may be a Pulumi Output: substituted as is, never formatted."""


@dataclass(frozen=True)
class Metric:
    """A CloudWatch metric; dimension values are ``str.format`` templates or ``ID``."""

    namespace: str
    name: str
    dimensions: tuple[tuple[str, str], ...]
    statistic: str = "Sum"


@dataclass(frozen=True)
class MetricMath:
    """A metric-math alarm: ``queries`` (id, metric) feed ``expression``, the value compared."""

    queries: tuple[tuple[str, Metric], ...]
    expression: str
    label: str


@dataclass(frozen=True)
class Prometheus:
    """The Prometheus side of a row: ``quantity`` (PromQL, same unit as CloudWatch's value) is compared
    with the row's operator and threshold; ``or_also`` are further complete conditions that fire too."""

    quantity: str
    or_also: tuple[str, ...] = ()
    note: str = ""
    """Becomes the ``description`` annotation: where this rendering differs from CloudWatch's."""


_OPS = {
    "GreaterThanThreshold": ">",
    "GreaterThanOrEqualToThreshold": ">=",
    "LessThanThreshold": "<",
    "LessThanOrEqualToThreshold": "<=",
}


@dataclass(frozen=True)
class Alarm:
    """One row of the table."""

    key: str
    """The row's identity; Prometheus' ``alarm`` label for per-instance rows."""
    name: str
    """The CloudWatch alarm name after ``foobar-<stack>-``, a template of the expansion's values."""
    scope: Scope
    description: str
    comparison: str
    threshold: str | float
    """A ``Thresholds`` field (or ``group_min_size``), or a number."""
    evaluation_periods: int
    cloudwatch: Metric | MetricMath
    prometheus: Prometheus | None
    aws_only: str = ""
    """Why there is no Prometheus rendering (required exactly when ``prometheus`` is None)."""
    datapoints_to_alarm: int | None = None
    period: int = PERIOD
    treat_missing_data: str = "missing"
    announce_ok: bool = False
    """Also notify when it clears: only service-level alarms, so a deploy that replaces servers doesn't
    flood the subscription with OK messages of new per-host alarms."""
    severity: str = "warning"

    def __post_init__(self) -> None:
        if (self.prometheus is None) == (not self.aws_only):
            raise ValueError(f"{self.key}: give either a Prometheus rendering or the reason there is none")
        if self.comparison not in _OPS:
            raise ValueError(f"{self.key}: unknown comparison {self.comparison}")
        if self.datapoints_to_alarm is not None and not 1 <= self.datapoints_to_alarm <= self.evaluation_periods:
            raise ValueError(f"{self.key}: datapoints_to_alarm must be 1..evaluation_periods")

    @property
    def operator(self) -> str:
        return _OPS[self.comparison]

    @property
    def window_seconds(self) -> int:
        """How long the condition must hold: CloudWatch's evaluation window, Prometheus' ``for:``."""
        return (self.datapoints_to_alarm or self.evaluation_periods) * self.period


def _lb(**extra: str) -> tuple[tuple[str, str], ...]:
    return (("Stack", "{stack}"), ("Role", "lb"), *extra.items())


def _agent(name: str, statistic: str, **extra: str) -> Metric:
    return Metric(NAMESPACE, name, _lb(**extra), statistic)


_FE = 'job="haproxy",proxy="$frontend"'
_REPLICA = 'job="mysql",db="replica"'

ALARMS: tuple[Alarm, ...] = (
    Alarm(
        key="lb-5xx-rate",
        name="lb-5xx-rate",
        scope=Scope.SITE,
        description="More than {lb_5xx_percent}% of the load balancer's answers are 5xx",
        comparison="GreaterThanThreshold",
        threshold="lb_5xx_percent",
        evaluation_periods=5,
        datapoints_to_alarm=3,
        treat_missing_data="notBreaching",
        announce_ok=True,
        severity="critical",
        cloudwatch=MetricMath(
            queries=(
                ("e", _agent("haproxy_frontend_http_responses_total", "Sum", proxy="{frontend}", code="5xx")),
                ("r", _agent("haproxy_frontend_http_requests_total", "Sum", proxy="{frontend}")),
            ),
            expression="IF(r > 0, 100 * FILL(e, 0) / r, 0)",
            label="5xx %",
        ),
        prometheus=Prometheus(
            f'100 * sum(rate(haproxy_frontend_http_responses_total{{{_FE},code="5xx"}}[{RATE_WINDOW}]))'
            f" / sum(rate(haproxy_frontend_http_requests_total{{{_FE}}}[{RATE_WINDOW}]))",
            note="Both load balancers' counters are summed, as CloudWatch sums them; no traffic is no alert.",
        ),
    ),
    Alarm(
        key="lb-refused",
        name="lb-refused",
        scope=Scope.SITE,
        description="The load balancers refuse more than {refused_per_minute} requests a minute"
        " (per-client limits, bodies too big, /readyz from outside): a flood or a scan",
        comparison="GreaterThanThreshold",
        threshold="refused_per_minute",
        evaluation_periods=5,
        datapoints_to_alarm=5,
        treat_missing_data="notBreaching",
        announce_ok=True,
        severity="critical",
        cloudwatch=_agent("haproxy_frontend_requests_denied_total", "Sum", proxy="{frontend}"),
        prometheus=Prometheus(f"sum(increase(haproxy_frontend_requests_denied_total{{{_FE}}}[{RATE_WINDOW}]))"),
    ),
    Alarm(
        key="backend-down",
        name="{tier}-backend-down",
        scope=Scope.BACKEND,
        description="HAProxy has no healthy {tier} server: the {tier} tier is down",
        comparison="LessThanThreshold",
        threshold=1,
        evaluation_periods=2,
        announce_ok=True,
        severity="critical",
        cloudwatch=_agent("haproxy_backend_active_servers", "Minimum", proxy="{proxy}"),
        prometheus=Prometheus('min(haproxy_backend_active_servers{job="haproxy",proxy="$proxy"})'),
    ),
    Alarm(
        key="server-down",
        name="{tier}-server-down",
        scope=Scope.BACKEND,
        description="At least one {tier} server fails HAProxy's health check",
        comparison="GreaterThanOrEqualToThreshold",
        threshold=1,
        evaluation_periods=3,
        treat_missing_data="notBreaching",
        cloudwatch=_agent("haproxy_server_status", "Maximum", proxy="{proxy}", state="DOWN"),
        prometheus=Prometheus(
            'max by (server) (haproxy_server_status{job="haproxy",proxy="$proxy",state="DOWN"})',
            note="One alert per server that is down (label server).",
        ),
    ),
    Alarm(
        key="instance-status-check",
        name="{role}-{i}-status-check",
        scope=Scope.INSTANCE,
        description="{role} server {i} fails its EC2 status checks",
        comparison="GreaterThanOrEqualToThreshold",
        threshold=1,
        evaluation_periods=2,
        # A new instance has no data yet: that is not a failed check.
        treat_missing_data="missing",
        cloudwatch=Metric("AWS/EC2", "StatusCheckFailed", (("InstanceId", ID),), "Maximum"),
        prometheus=None,
        aws_only="EC2 status checks are AWS's view of the instance; no exporter has them",
    ),
    Alarm(
        key="instance-cpu",
        name="{role}-{i}-cpu",
        scope=Scope.INSTANCE,
        description="{host} CPU above {cpu_percent}% for 5 minutes",
        comparison="GreaterThanThreshold",
        threshold="cpu_percent",
        evaluation_periods=5,
        cloudwatch=Metric("AWS/EC2", "CPUUtilization", (("InstanceId", ID),), "Average"),
        prometheus=Prometheus(
            f'100 * (1 - avg by (instance) (rate(node_cpu_seconds_total{{job="node",mode="idle"}}[{RATE_WINDOW}])))',
            note="Per node-exporter target (label instance): on the local site, the one machine all servers share.",
        ),
    ),
    Alarm(
        key="instance-disk",
        name="{role}-{i}-disk",
        scope=Scope.INSTANCE,
        description="{host} root disk above {disk_percent}% used",
        comparison="GreaterThanThreshold",
        threshold="disk_percent",
        evaluation_periods=5,
        cloudwatch=Metric(NAMESPACE, "disk_used_percent", (("InstanceId", ID),), "Maximum"),
        prometheus=None,
        aws_only="the load balancer's own root disk, from the CloudWatch agent; local servers share the host's disk",
    ),
    Alarm(
        key="group-in-service",
        name="{tier}-in-service",
        scope=Scope.GROUP,
        description="Fewer than {group_min_size} {tier} servers in service for 10 minutes",
        comparison="LessThanThreshold",
        threshold="group_min_size",
        evaluation_periods=10,
        announce_ok=True,
        severity="critical",
        cloudwatch=Metric("AWS/AutoScaling", "GroupInServiceInstances", (("AutoScalingGroupName", ID),), "Minimum"),
        prometheus=None,
        aws_only="Auto Scaling group metric; locally backend-down and server-down watch the members",
    ),
    Alarm(
        key="group-status-check",
        name="{tier}-status-check",
        scope=Scope.GROUP,
        description="A {tier} server keeps failing its EC2 status checks (the group should have replaced it)",
        comparison="GreaterThanOrEqualToThreshold",
        threshold=1,
        evaluation_periods=15,
        cloudwatch=Metric("AWS/EC2", "StatusCheckFailed", (("AutoScalingGroupName", ID),), "Maximum"),
        prometheus=None,
        aws_only="EC2 status checks are AWS's view of the instances; no exporter has them",
    ),
    Alarm(
        key="group-cpu",
        name="{tier}-cpu",
        scope=Scope.GROUP,
        description="{tier} servers average above {cpu_percent}% CPU for 15 minutes (at their maximum size?)",
        comparison="GreaterThanThreshold",
        threshold="cpu_percent",
        evaluation_periods=15,
        cloudwatch=Metric("AWS/EC2", "CPUUtilization", (("AutoScalingGroupName", ID),), "Average"),
        prometheus=None,
        aws_only="EC2's average over the group; locally the tiers share one host, which instance-cpu watches",
    ),
    Alarm(
        key="db-cpu",
        name="db-{db}-cpu",
        scope=Scope.DATABASE,
        description="db-{db} CPU above {cpu_percent}% for 5 minutes",
        comparison="GreaterThanThreshold",
        threshold="cpu_percent",
        evaluation_periods=5,
        cloudwatch=Metric("AWS/RDS", "CPUUtilization", (("DBInstanceIdentifier", ID),), "Average"),
        prometheus=None,
        aws_only="RDS instance metric; local MariaDB shares the host, which instance-cpu watches",
    ),
    Alarm(
        key="db-free-storage",
        name="db-{db}-free-storage",
        scope=Scope.DATABASE,
        description="db-{db} has less than {db_free_storage_ratio:.0%} of its allocated storage free",
        comparison="LessThanThreshold",
        threshold="db_free_storage_bytes",
        evaluation_periods=3,
        cloudwatch=Metric("AWS/RDS", "FreeStorageSpace", (("DBInstanceIdentifier", ID),), "Minimum"),
        prometheus=None,
        aws_only="RDS allocated storage; local MariaDB writes into the host's file system",
    ),
    Alarm(
        key="db-connections",
        name="db-{db}-connections",
        scope=Scope.DATABASE,
        description="db-{db} has more than {db_connections} connections",
        comparison="GreaterThanThreshold",
        threshold="db_connections",
        evaluation_periods=3,
        cloudwatch=Metric("AWS/RDS", "DatabaseConnections", (("DBInstanceIdentifier", ID),), "Maximum"),
        prometheus=Prometheus('max(mysql_global_status_threads_connected{job="mysql",db="$db"})'),
    ),
    # RDS reports ReplicaLag = -1 while replication is not active (Seconds_Behind_Master NULL; RDS User
    # Guide, "Monitoring MariaDB read replicas" and "... MySQL read replicas"): this CloudWatch alarm
    # stays OK when replication stops. The Prometheus rendering also fires then, from the running flags.
    Alarm(
        key="db-replica-lag",
        name="db-replica-lag",
        scope=Scope.REPLICA,
        description="The read replica is more than {replica_lag_seconds} s behind the primary",
        comparison="GreaterThanThreshold",
        threshold="replica_lag_seconds",
        evaluation_periods=5,
        announce_ok=True,
        severity="critical",
        cloudwatch=Metric("AWS/RDS", "ReplicaLag", (("DBInstanceIdentifier", ID),), "Maximum"),
        prometheus=Prometheus(
            f"max(mysql_slave_status_seconds_behind_master{{{_REPLICA}}})",
            or_also=(
                f"min(mysql_slave_status_slave_io_running{{{_REPLICA}}}) < 1",
                f"min(mysql_slave_status_slave_sql_running{{{_REPLICA}}}) < 1",
                f"absent(mysql_slave_status_slave_sql_running{{{_REPLICA}}})",
            ),
            note="Also fires when replication is stopped or broken: an I/O or SQL thread not running"
            " (Seconds_Behind_Master is NULL then, so the exporter has no lag series), or no replica status"
            " at all. CloudWatch's ReplicaLag reads -1 then and its alarm stays OK.",
        ),
    ),
)
"""Every alarm, in the order CloudWatch creates them (consecutive rows of a scope expand together)."""


def by_key() -> dict[str, Alarm]:
    return {a.key: a for a in ALARMS}


# ---------------------------------------------------------------- expansions


@dataclass(frozen=True)
class Expansion:
    """One occurrence of a row: the values its templates use, and the AWS identifier (``ID``)."""

    values: Mapping[str, Any]
    ident: Any = None


def _cloudwatch_expansions(
    scope: Scope,
    instance_ids: Mapping[str, Sequence[Any]],
    group_names: Mapping[str, Any],
    databases: Sequence[tuple[str, Any]],
) -> list[Expansion]:
    if scope is Scope.SITE:
        return [Expansion({})]
    if scope is Scope.BACKEND:
        return [Expansion({"tier": t, "proxy": p}) for t, p in HAPROXY_BACKENDS.items()]
    if scope is Scope.INSTANCE:
        return [
            Expansion({"role": role, "i": i, "host": f"{role} server {i}"}, iid)
            for role in ROLES
            for i, iid in enumerate(instance_ids.get(role, ()))
        ]
    if scope is Scope.GROUP:
        return [Expansion({"tier": t}, g) for t, g in group_names.items()]
    if scope is Scope.DATABASE:
        return [Expansion({"db": db}, ident) for db, ident in databases]
    return [Expansion({"db": db}, ident) for db, ident in databases if db == "replica"]


def _prometheus_expansions(scope: Scope, replica: bool) -> list[Expansion]:
    dbs = ("primary", "replica") if replica else ("primary",)
    if scope is Scope.SITE:
        return [Expansion({})]
    if scope in (Scope.BACKEND, Scope.GROUP):
        return [Expansion({"tier": t, "proxy": p}) for t, p in HAPROXY_BACKENDS.items()]
    if scope is Scope.INSTANCE:
        return [Expansion({"host": "host {{ $labels.instance }}"})]
    if scope is Scope.DATABASE:
        return [Expansion({"db": db}) for db in dbs]
    return [Expansion({"db": "replica"})] if replica else []


def _context(row: Alarm, t: Thresholds, exp: Expansion, stack: str) -> dict[str, Any]:
    tier = exp.values.get("tier")
    ctx: dict[str, Any] = {**t.fields(), "stack": stack, "frontend": HAPROXY_FRONTEND, **exp.values}
    if tier is not None and tier in t.group_min_sizes:
        ctx["group_min_size"] = t.group_min_sizes[tier]
    ctx["threshold"] = t.value(row.threshold, tier)
    return ctx


def number(value: float) -> str:
    """A threshold as PromQL writes it: 80.0 -> 80, 0.5 -> 0.5."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


# ---------------------------------------------------------------- CloudWatch


@dataclass(frozen=True)
class CloudWatchAlarm:
    """One rendered CloudWatch alarm: ``kwargs`` are aws.cloudwatch.MetricAlarm's, with metric queries as
    plain dicts (snake_case keys of MetricAlarmMetricQueryArgs / ...MetricArgs)."""

    row: Alarm
    suffix: str
    name: str
    description: str
    announce_ok: bool
    kwargs: dict[str, Any]


def _dimensions(metric: Metric, ctx: Mapping[str, Any], ident: Any) -> dict[str, Any]:
    return {k: ident if v == ID else v.format(**ctx) for k, v in metric.dimensions}


def cloudwatch_alarms(
    stack: str,
    thresholds: Thresholds,
    *,
    instance_ids: Mapping[str, Sequence[Any]],
    group_names: Mapping[str, Any],
    databases: Sequence[tuple[str, Any]],
) -> list[CloudWatchAlarm]:
    """Every CloudWatch alarm of the table. ``databases``: ("primary", identifier) and, when there is a
    replica, ("replica", identifier); identifiers and ids may be Pulumi Outputs."""
    rendered: list[CloudWatchAlarm] = []
    for scope, rows_of_scope in itertools.groupby(ALARMS, key=lambda a: a.scope):
        rows = list(rows_of_scope)
        for exp in _cloudwatch_expansions(scope, instance_ids, group_names, databases):
            for row in rows:
                ctx = _context(row, thresholds, exp, stack)
                kw: dict[str, Any] = {
                    "comparison_operator": row.comparison,
                    "threshold": ctx["threshold"],
                    "evaluation_periods": row.evaluation_periods,
                    "treat_missing_data": row.treat_missing_data,
                }
                if row.datapoints_to_alarm is not None:
                    kw["datapoints_to_alarm"] = row.datapoints_to_alarm
                cw = row.cloudwatch
                if isinstance(cw, MetricMath):  # with metric queries, the period lives in each query
                    kw["metric_queries"] = [
                        {
                            "id": qid,
                            "return_data": False,
                            "metric": {
                                "namespace": m.namespace,
                                "metric_name": m.name,
                                "dimensions": _dimensions(m, ctx, exp.ident),
                                "period": row.period,
                                "stat": m.statistic,
                            },
                        }
                        for qid, m in cw.queries
                    ] + [{"id": "pct", "expression": cw.expression, "label": cw.label, "return_data": True}]
                else:
                    kw |= {
                        "namespace": cw.namespace,
                        "metric_name": cw.name,
                        "dimensions": _dimensions(cw, ctx, exp.ident),
                        "statistic": cw.statistic,
                        "period": row.period,
                    }
                suffix = row.name.format(**ctx)
                rendered.append(
                    CloudWatchAlarm(
                        row=row,
                        suffix=suffix,
                        name=f"foobar-{stack}-{suffix}",
                        description=row.description.format(**ctx),
                        announce_ok=row.announce_ok,
                        kwargs=kw,
                    )
                )
    return rendered


# ---------------------------------------------------------------- Prometheus


def alert_name(label: str) -> str:
    """``web-backend-down`` -> ``FoobarWebBackendDown`` (alert names must be valid metric names)."""
    return "Foobar" + "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", label) if part)


def duration(seconds: float) -> str:
    """Prometheus' duration syntax, to the millisecond: 180 -> 3m, 22.5 -> 22s500ms."""
    ms = round(seconds * 1000)
    out = ""
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        if ms >= size:
            out += f"{ms // size}{unit}"
            ms %= size
    return out or "0s"


def alert_rules(
    stack: str, thresholds: Thresholds, *, window_scale: float = 1.0, replica: bool = True
) -> list[dict[str, Any]]:
    """The alerting rules: one per expansion of every row that has a Prometheus rendering."""
    if not window_scale > 0:
        raise ValueError(f"window_scale must be above 0; got {window_scale}")
    rules: list[dict[str, Any]] = []
    for row in ALARMS:
        if row.prometheus is None:
            continue
        for exp in _prometheus_expansions(row.scope, replica):
            ctx = _context(row, thresholds, exp, stack)
            values = {k: str(v) for k, v in ctx.items()}
            quantity = string.Template(row.prometheus.quantity).substitute(values)
            expr = f"{quantity} {row.operator} {number(ctx['threshold'])}"
            for extra in row.prometheus.or_also:
                expr += f"\nor {string.Template(extra).substitute(values)}"
            label = row.key if row.scope is Scope.INSTANCE else row.name.format(**ctx)
            annotations = {"summary": row.description.format(**ctx)}
            if row.prometheus.note:
                annotations["description"] = row.prometheus.note
            rules.append(
                {
                    "alert": alert_name(label),
                    "expr": expr,
                    "for": duration(row.window_seconds * window_scale),
                    "labels": {"severity": row.severity, "alarm": label, "stack": stack},
                    "annotations": annotations,
                }
            )
    return rules


def _nginx(by: str) -> str:
    return f'sum by ({by}) (rate(nginx_http_requests_total{{job="nginx"}}[{RATE_WINDOW}]))'


def recording_rules(replica: bool = True) -> list[dict[str, str]]:
    """QPS per tier, per server and at the load balancer; the 5xx ratio; response time; replica lag."""
    fe = f'job="haproxy",proxy="{HAPROXY_FRONTEND}"'
    requests = f"sum(rate(haproxy_frontend_http_requests_total{{{fe}}}[{RATE_WINDOW}]))"
    errors = f'sum(rate(haproxy_frontend_http_responses_total{{{fe},code="5xx"}}[{RATE_WINDOW}]))'
    response_time = "\nor ".join(
        f'label_replace(avg(haproxy_backend_response_time_average_seconds{{job="haproxy",proxy="{proxy}"}}),'
        f' "tier", "{tier}", "", "")'
        for tier, proxy in HAPROXY_BACKENDS.items()
    )
    rules = [
        {"record": "foobar:tier:qps", "expr": _nginx("tier")},
        {"record": "foobar:server:qps", "expr": _nginx("tier, server")},
        {"record": "foobar:lb:qps", "expr": requests},
        {"record": "foobar:lb:5xx_ratio", "expr": f"{errors} / {requests}"},
        {"record": "foobar:backend:response_time_seconds", "expr": response_time},
    ]
    if replica:
        rules.append(
            {
                "record": "foobar:replica:lag_seconds",
                "expr": f"max(mysql_slave_status_seconds_behind_master{{{_REPLICA}}})",
            }
        )
    return rules


def prometheus_rules(
    stack: str,
    thresholds: Thresholds | ThresholdArgs | None = None,
    *,
    window_scale: float = 1.0,
    replica: bool = True,
) -> dict[str, Any]:
    """The rules file as data: ``{"groups": [alerting group, recording group]}``.

    ``thresholds``: a Thresholds, anything with MonitoringArgs' threshold fields, or None for the
    defaults. ``window_scale`` multiplies every ``for:`` (the local site passes e.g. 1/8 so a demo sees
    an alert within a minute); thresholds and expressions stay exactly the same. Pass ``replica=False``
    when there is no replica."""
    if thresholds is None:
        t = DEFAULT_THRESHOLDS
    elif isinstance(thresholds, Thresholds):
        t = thresholds
    else:
        t = Thresholds.from_args(thresholds)
    return {
        "groups": [
            {
                "name": f"foobar-{stack}-alerts",
                "rules": alert_rules(stack, t, window_scale=window_scale, replica=replica),
            },
            {"name": f"foobar-{stack}-recording", "rules": recording_rules(replica)},
        ]
    }


def render_rules_yaml(
    stack: str,
    thresholds: Thresholds | ThresholdArgs | None = None,
    *,
    window_scale: float = 1.0,
    replica: bool = True,
) -> str:
    """``prometheus_rules`` as the YAML file Prometheus and promtool read."""
    data = prometheus_rules(stack, thresholds, window_scale=window_scale, replica=replica)
    return yaml.dump(data, Dumper=_RulesDumper, sort_keys=False, width=1000)


class _RulesDumper(yaml.SafeDumper):
    """Multi-line expressions as literal blocks, as people write them."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_RulesDumper.add_representer(str, _str)


def iter_rows(*, prometheus: bool | None = None) -> Iterator[Alarm]:
    """The rows, optionally only those with (True) or without (False) a Prometheus rendering."""
    for row in ALARMS:
        if prometheus is None or (row.prometheus is not None) == prometheus:
            yield row
