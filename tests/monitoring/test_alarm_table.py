"""One alarm table, two renderings: CloudWatch alarms (Monitoring) and Prometheus rules (the local site).

The table's rows expand to exactly the CloudWatch alarms Monitoring creates; every row with a Prometheus
rendering becomes alerting rules with the same threshold and a ``for:`` equal to CloudWatch's window.
promtool checks the rules file and runs it on synthetic series: each alert must fire with its labels
once ``for:`` has passed, and not just under the threshold or when the condition doesn't last. The
numbers in the scenarios are written out (defaults: CPU 80 %, 5xx 5 %, 600 refused a minute, 50
connections, 60 s lag), so changing a threshold or an expression in the table makes them fail.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import alarms
from components.alarms import ALARMS, Scope, Thresholds, cloudwatch_alarms, prometheus_rules, render_rules_yaml
from tests.monitoring.support import monitoring_args
from tests.monitoring.test_component import ALARM, _build

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool missing: apt-get install --no-install-recommends prometheus"
)

BOTH = {"lb-5xx-rate", "lb-refused", "backend-down", "server-down", "instance-cpu", "db-connections", "db-replica-lag"}
AWS_ONLY = {
    "instance-status-check",
    "instance-disk",
    "group-in-service",
    "group-status-check",
    "group-cpu",
    "db-cpu",
    "db-free-storage",
}
FOR = {
    "lb-5xx-rate": "3m",  # 3 of 5 datapoints
    "lb-refused": "5m",
    "web-backend-down": "2m",
    "app-backend-down": "2m",
    "web-server-down": "3m",
    "app-server-down": "3m",
    "instance-cpu": "5m",
    "db-primary-connections": "3m",
    "db-replica-connections": "3m",
    "db-replica-lag": "5m",
}
SEVERITY = {"lb-5xx-rate": "critical", "lb-refused": "critical", "web-backend-down": "critical"}
SEVERITY |= {"app-backend-down": "critical", "db-replica-lag": "critical"}

INSTANCES = {"lb": ["i-lb0", "i-lb1"]}
GROUPS = {"web": "g-web", "app": "g-app"}
DATABASES = [("primary", "db-p"), ("replica", "db-r")]


def _cw(thresholds: Thresholds | None = None, databases: list[tuple[str, str]] = DATABASES) -> list[Any]:
    return cloudwatch_alarms(
        "dev",
        thresholds or Thresholds(),
        instance_ids=INSTANCES,
        group_names=GROUPS,
        databases=databases,
    )


def _alerts(data: dict[str, Any]) -> list[dict[str, Any]]:
    (group,) = [g for g in data["groups"] if g["name"] == "foobar-dev-alerts"]
    return group["rules"]


# ---------------------------------------------------------------- the table


def test_which_rows_have_both_renderings() -> None:
    keys = Counter(a.key for a in ALARMS)
    assert all(n == 1 for n in keys.values()), keys
    assert {a.key for a in ALARMS if a.prometheus is not None} == BOTH
    assert {a.key for a in ALARMS if a.prometheus is None} == AWS_ONLY
    assert all(a.aws_only for a in ALARMS if a.prometheus is None)


def test_a_row_says_either_how_prometheus_renders_it_or_why_not() -> None:
    row = ALARMS[0]
    with pytest.raises(ValueError, match="either"):
        alarms.Alarm(**{**row.__dict__, "aws_only": "both"})
    with pytest.raises(ValueError, match="either"):
        alarms.Alarm(**{**row.__dict__, "prometheus": None})


def test_every_row_is_one_cloudwatch_alarm_per_expansion() -> None:
    expansions = {Scope.SITE: 1, Scope.BACKEND: 2, Scope.INSTANCE: 2, Scope.GROUP: 2, Scope.DATABASE: 2}
    expansions[Scope.REPLICA] = 1
    rendered = _cw()
    per_row = Counter(c.row.key for c in rendered)
    assert per_row == {a.key: expansions[a.scope] for a in ALARMS}
    assert len({c.name for c in rendered}) == len(rendered)
    assert {c.name for c in rendered if c.row.key == "instance-cpu"} == {"foobar-dev-lb-0-cpu", "foobar-dev-lb-1-cpu"}
    no_replica = _cw(databases=DATABASES[:1])
    assert not [c for c in no_replica if "replica" in c.name]
    assert len(no_replica) == len(rendered) - 4  # cpu, free storage, connections, lag


def test_monitoring_creates_exactly_the_tables_alarms() -> None:
    """The component declares no alarm of its own: its alarms are the table's, expanded."""
    mocks = _build()
    created = {r.inputs["name"]: r.inputs for r in mocks.resources if r.type == ALARM}
    table = cloudwatch_alarms(
        "dev",
        Thresholds(group_min_sizes={"web": 2, "app": 1}),
        instance_ids={"lb": ["i-lb0"]},
        group_names={"web": "foobar-dev-web-x", "app": "foobar-dev-app-x"},
        databases=[("primary", "db-primary-x"), ("replica", "db-replica-x")],
    )
    assert set(created) == {c.name for c in table} and len(created) == len(table)
    for c in table:
        inputs = created[c.name]
        assert inputs["alarmDescription"] == c.description
        assert inputs["threshold"] == pytest.approx(c.kwargs["threshold"])
        assert inputs["evaluationPeriods"] == c.kwargs["evaluation_periods"]
        assert inputs["comparisonOperator"] == c.row.comparison
        assert bool(inputs.get("okActions")) == c.row.announce_ok


def test_thresholds_come_from_monitoring_args() -> None:
    args = monitoring_args(
        group_min_sizes={"web": 3, "app": 1},
        db_allocated_storage_gib=50,
        cpu_alarm_percent=70,
        replica_lag_alarm_seconds=30,
    )
    t = args.thresholds()
    assert (t.cpu_percent, t.replica_lag_seconds, t.group_min_sizes["web"]) == (70, 30, 3)
    assert t.db_free_storage_bytes == 5 * 1024**3
    # Defaults: one place (Thresholds), read by MonitoringArgs.
    defaults = Thresholds()
    assert (args.disk_alarm_percent, args.lb_5xx_alarm_percent) == (defaults.disk_percent, defaults.lb_5xx_percent)
    assert (args.db_connections_alarm, args.refused_alarm_per_minute) == (50, 600)
    rules = {r["labels"]["alarm"]: r for r in _alerts(prometheus_rules("dev", args))}
    assert rules["instance-cpu"]["expr"].endswith(" > 70")
    assert " > 30\nor " in rules["db-replica-lag"]["expr"]


@pytest.mark.parametrize(
    "thresholds",
    [Thresholds(), Thresholds(cpu_percent=65.5, db_connections=70, lb_5xx_percent=2, refused_per_minute=100)],
)
def test_every_prometheus_alert_has_the_cloudwatch_threshold(thresholds: Thresholds) -> None:
    cloudwatch = {c.suffix: c for c in _cw(thresholds)}
    rules = _alerts(prometheus_rules("dev", thresholds))
    labels = [r["labels"]["alarm"] for r in rules]
    assert sorted(labels) == sorted(FOR), "one Prometheus alert per expansion of every row with both renderings"
    for rule in rules:
        label = rule["labels"]["alarm"]
        cw = cloudwatch["lb-0-cpu" if label == "instance-cpu" else label]
        op = alarms._OPS[cw.row.comparison]
        first = rule["expr"].split("\nor ")[0]
        assert first.endswith(f" {op} {alarms.number(cw.kwargs['threshold'])}"), (label, first)
        assert rule["annotations"]["summary"].replace("host {{ $labels.instance }}", "lb server 0") == cw.description
        assert rule["labels"]["severity"] == SEVERITY.get(label, "warning")
        assert rule["alert"] == alarms.alert_name(label)


def test_for_is_the_cloudwatch_window_and_scales() -> None:
    rules = _alerts(prometheus_rules("dev"))
    assert {r["labels"]["alarm"]: r["for"] for r in rules} == FOR
    scaled = _alerts(prometheus_rules("dev", window_scale=1 / 8))
    assert {r["labels"]["alarm"]: r["for"] for r in scaled}["lb-5xx-rate"] == "22s500ms"
    assert [r["expr"] for r in scaled] == [r["expr"] for r in rules]  # same expressions and thresholds
    assert alarms.duration(90) == "1m30s" and alarms.duration(0.0001) == "0s"
    with pytest.raises(ValueError, match="window_scale"):
        prometheus_rules("dev", window_scale=0)


def test_no_replica_no_replica_rules() -> None:
    data = prometheus_rules("dev", replica=False)
    text = yaml.safe_dump(data)
    assert "replica" not in text
    assert {r["labels"]["alarm"] for r in _alerts(data)} == set(FOR) - {"db-replica-connections", "db-replica-lag"}


def test_the_yaml_is_the_data() -> None:
    cases: list[dict[str, Any]] = [{}, {"window_scale": 1 / 8, "replica": False}]
    for kwargs in cases:
        assert yaml.safe_load(render_rules_yaml("dev", **kwargs)) == prometheus_rules("dev", **kwargs)


def test_rule_file_naming() -> None:
    assert alarms.rule_file_name("dev") == "foobar-dev.rules.yml"
    assert Path("rules", alarms.rule_file_name("dev")).match(alarms.RULE_FILE_GLOB)


# ---------------------------------------------------------------- promtool


def _promtool(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL
    return subprocess.run([PROMTOOL, *argv], cwd=cwd, capture_output=True, text=True, timeout=60)


@needs_promtool
@pytest.mark.parametrize(
    "kwargs", [{}, {"window_scale": 1 / 8}, {"replica": False}, {"thresholds": Thresholds(cpu_percent=90.5)}]
)
def test_promtool_check_rules(tmp_path: Path, kwargs: dict[str, Any]) -> None:
    path = tmp_path / alarms.rule_file_name("dev")
    path.write_text(render_rules_yaml("dev", **kwargs))
    done = _promtool("check", "rules", path.name, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def _series(name: str, values: str, **labels: str) -> dict[str, str]:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{inner}}}", "values": values}


def _fe(name: str, values: str, lb: str, **labels: str) -> dict[str, str]:
    return _series(name, values, job="haproxy", instance=lb, proxy="https", **labels)


def _active(proxy: str, values: str, lb: str = "lb1") -> dict[str, str]:
    return _series("haproxy_backend_active_servers", values, job="haproxy", instance=lb, proxy=proxy)


def _down(proxy: str, server: str, values: str) -> dict[str, str]:
    return _series(
        "haproxy_server_status", values, job="haproxy", instance="lb1", proxy=proxy, server=server, state="DOWN"
    )


def _idle(instance: str, values: str) -> list[dict[str, str]]:
    return [
        _series("node_cpu_seconds_total", values, job="node", instance=instance, cpu=str(c), mode="idle")
        for c in (0, 1)
    ]


def _mysql(metric: str, db: str, values: str) -> dict[str, str]:
    return _series(f"mysql_{metric}", values, job="mysql", instance=f"{db}:9104", db=db)


def _replica(lag: str | None, io: str, sql: str) -> list[dict[str, str]]:
    series = [
        _mysql("slave_status_slave_io_running", "replica", io),
        _mysql("slave_status_slave_sql_running", "replica", sql),
    ]
    if lag is not None:
        series.append(_mysql("slave_status_seconds_behind_master", "replica", lag))
    return series


REQUESTS = "haproxy_frontend_http_requests_total"
RESPONSES = "haproxy_frontend_http_responses_total"
DENIED = "haproxy_frontend_requests_denied_total"
# Pair: 100 requests a second through each load balancer (1500 per 15 s scrape).
PAIR_TRAFFIC = [_fe(REQUESTS, "100000+1500x40", "lb1"), _fe(REQUESTS, "200000+1500x40", "lb2")]

# name -> (input series, [(eval time, alarm label, [extra labels of each firing alert])], rules kwargs)
# Rate-based conditions become true between 15 s (two samples) and 60 s (a full [1m] window) after
# the series start, so such alerts must not fire at ``for`` and must by ``for`` + 1m. Gauges: exactly at ``for``.
Check = tuple[str, str, list[dict[str, str]]]
SCENARIOS: dict[str, tuple[list[dict[str, str]], list[Check], dict[str, Any]]] = {
    "5xx 6 % over the pair (4 % and 8 %) fires after 3m": (
        [
            *PAIR_TRAFFIC,
            _fe(RESPONSES, "10000+60x40", "lb1", code="5xx"),
            _fe(RESPONSES, "7+120x40", "lb2", code="5xx"),
        ],
        [("3m", "lb-5xx-rate", []), ("4m", "lb-5xx-rate", [{}])],
        {},
    ),
    "5xx 4 % over the pair (0 % and 8 %) does not fire": (
        [*PAIR_TRAFFIC, _fe(RESPONSES, "10000+0x40", "lb1", code="5xx"), _fe(RESPONSES, "7+120x40", "lb2", code="5xx")],
        [("10m", "lb-5xx-rate", [])],
        {},
    ),
    "5xx 6 % for 2 minutes only does not fire": (
        [
            *PAIR_TRAFFIC,
            _fe(RESPONSES, "10000+180x8 11440+0x31", "lb1", code="5xx"),
            _fe(RESPONSES, "7+0x40", "lb2", code="5xx"),
        ],
        [("2m45s", "lb-5xx-rate", []), ("6m", "lb-5xx-rate", [])],
        {},
    ),
    "5xx 6 % does not fire when the threshold is 10 %": (
        [*PAIR_TRAFFIC, _fe(RESPONSES, "10000+180x40", "lb1", code="5xx"), _fe(RESPONSES, "7+0x40", "lb2", code="5xx")],
        [("10m", "lb-5xx-rate", [])],
        {"thresholds": Thresholds(lb_5xx_percent=10)},
    ),
    "601 refused a minute (300.5 on each of the pair) fires after 5m": (
        [_fe(DENIED, "1000000+75.125x40", "lb1"), _fe(DENIED, "3000+75.125x40", "lb2")],
        [("5m", "lb-refused", []), ("6m", "lb-refused", [{}])],
        {},
    ),
    "600 refused a minute (the threshold) does not fire": (
        [_fe(DENIED, "1000000+75x40", "lb1"), _fe(DENIED, "5000+75x40", "lb2")],
        [("10m", "lb-refused", [])],
        {},
    ),
    "no healthy web server (on one load balancer) fires after 2m": (
        [_active("web", "0x20"), _active("web", "2x20", "lb2"), _active("app", "2x20")],
        [
            ("1m45s", "web-backend-down", []),
            ("2m", "web-backend-down", [{}]),
            ("5m", "app-backend-down", []),
        ],
        {},
    ),
    "one healthy web server does not fire": (
        [_active("web", "1x20"), _active("app", "1x20")],
        [("5m", "web-backend-down", []), ("5m", "app-backend-down", [])],
        {},
    ),
    "no healthy app server fires after 15s at window scale 1/8": (
        [_active("web", "2x20"), _active("app", "0x20")],
        [("0s", "app-backend-down", []), ("15s", "app-backend-down", [{}]), ("1m", "web-backend-down", [])],
        {"window_scale": 1 / 8},
    ),
    "web1 down fires after 3m, for web1 only": (
        [_down("web", "web1", "1x20"), _down("web", "web2", "0x20"), _down("app", "app1", "0x20")],
        [
            ("2m45s", "web-server-down", []),
            ("3m", "web-server-down", [{"server": "web1"}]),
            ("5m", "app-server-down", []),
        ],
        {},
    ),
    "web1 down for 2m30s does not fire": (
        [_down("web", "web1", "1x10 0x10"), _down("web", "web2", "0x20")],
        [("2m45s", "web-server-down", []), ("5m", "web-server-down", [])],
        {},
    ),
    "90 % CPU on host1 fires after 5m, not host2 at 50 %": (
        [*_idle("host1", "1000+1.5x40"), *_idle("host2", "1000+7.5x40")],
        [("5m", "instance-cpu", []), ("6m", "instance-cpu", [{"instance": "host1"}])],
        {},
    ),
    "79 % CPU does not fire": (
        [*_idle("host1", "1000+3.15x40")],
        [("10m", "instance-cpu", [])],
        {},
    ),
    "51 connections on the replica fires after 3m, 50 on the primary doesn't": (
        [
            _mysql("global_status_threads_connected", "replica", "51x20"),
            _mysql("global_status_threads_connected", "primary", "50x20"),
        ],
        [
            ("2m45s", "db-replica-connections", []),
            ("3m", "db-replica-connections", [{}]),
            ("5m", "db-primary-connections", []),
        ],
        {},
    ),
    "51 connections on the primary fires after 3m": (
        [_mysql("global_status_threads_connected", "primary", "51x20")],
        [("2m45s", "db-primary-connections", []), ("3m", "db-primary-connections", [{}])],
        {},
    ),
    "61 s behind fires after 5m": (
        _replica("61x30", "1x30", "1x30"),
        [("4m45s", "db-replica-lag", []), ("5m", "db-replica-lag", [{}])],
        {},
    ),
    "60 s behind (the threshold) does not fire": (
        _replica("60x30", "1x30", "1x30"),
        [("10m", "db-replica-lag", [])],
        {},
    ),
    "61 s behind for 4 minutes does not fire": (
        _replica("61x16 0x14", "1x30", "1x30"),
        [("4m45s", "db-replica-lag", []), ("7m", "db-replica-lag", [])],
        {},
    ),
    "replication stopped (lag NULL, both threads No) fires after 5m": (
        _replica(None, "0x30", "0x30"),
        [("4m45s", "db-replica-lag", []), ("5m", "db-replica-lag", [{}])],
        {},
    ),
    "I/O thread Connecting (0), SQL thread Yes fires after 5m": (
        _replica(None, "0x30", "1x30"),
        [("5m", "db-replica-lag", [{}])],
        {},
    ),
    "no replica status at all fires after 5m": (
        [_mysql("global_status_threads_connected", "replica", "3x30")],
        [("4m45s", "db-replica-lag", []), ("5m", "db-replica-lag", [{"job": "mysql", "db": "replica"}])],
        {},
    ),
    "replication stopped fires after 45s at window scale 1/8": (
        _replica(None, "0x30", "0x30"),
        [("30s", "db-replica-lag", []), ("45s", "db-replica-lag", [{}])],
        {"window_scale": 1 / 8},
    ),
    "a healthy replica does not fire": (
        _replica("0x30", "1x30", "1x30"),
        [("10m", "db-replica-lag", [])],
        {},
    ),
}


def _expected(rule: dict[str, Any], extra: dict[str, str]) -> dict[str, Any]:
    labels = {**rule["labels"], **extra}
    annotations = {
        k: v.replace("{{ $labels.instance }}", extra.get("instance", "")) for k, v in rule["annotations"].items()
    }
    return {"exp_labels": labels, "exp_annotations": annotations}


def _run_rules_test(tmp_path: Path, rules_yaml: str, tests: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    (tmp_path / "rules.yml").write_text(rules_yaml)
    unit = {"rule_files": ["rules.yml"], "evaluation_interval": "15s", "tests": tests}
    (tmp_path / "test.yml").write_text(yaml.safe_dump(unit, sort_keys=False, width=1000))
    return _promtool("test", "rules", "test.yml", cwd=tmp_path)


@needs_promtool
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_promtool_alert_fires_when_it_should(tmp_path: Path, scenario: str) -> None:
    series, checks, kwargs = SCENARIOS[scenario]
    data = prometheus_rules("dev", **kwargs)
    rules = {r["labels"]["alarm"]: r for r in _alerts(data)}
    tests = [
        {
            "interval": "15s",
            "input_series": series,
            "alert_rule_test": [
                {
                    "eval_time": at,
                    "alertname": rules[label]["alert"],
                    "exp_alerts": [_expected(rules[label], extra) for extra in firing],
                }
                for at, label, firing in checks
            ],
        }
    ]
    done = _run_rules_test(tmp_path, yaml.safe_dump(data, sort_keys=False, width=1000), tests)
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_promtool_fails_a_wrong_expectation(tmp_path: Path) -> None:
    """The harness itself: an alert expected where none fires makes promtool fail."""
    data = prometheus_rules("dev")
    rule = {r["labels"]["alarm"]: r for r in _alerts(data)}["web-backend-down"]
    tests = [
        {
            "interval": "15s",
            "input_series": [_active("web", "1x20")],
            "alert_rule_test": [{"eval_time": "5m", "alertname": rule["alert"], "exp_alerts": [_expected(rule, {})]}],
        }
    ]
    done = _run_rules_test(tmp_path, yaml.safe_dump(data), tests)
    assert done.returncode != 0


@needs_promtool
def test_promtool_recording_rules_give_the_qps(tmp_path: Path) -> None:
    nginx = [
        _series("nginx_http_requests_total", "1000+15x20", job="nginx", instance="a", tier="web", server="127.0.20.1"),
        _series("nginx_http_requests_total", "1000+30x20", job="nginx", instance="b", tier="web", server="127.0.20.2"),
        _series("nginx_http_requests_total", "1000+7.5x20", job="nginx", instance="c", tier="app", server="127.0.30.1"),
    ]
    haproxy = [
        _fe(REQUESTS, "100000+1500x20", "lb1"),
        _fe(REQUESTS, "50000+750x20", "lb2"),
        _fe(RESPONSES, "1000+135x20", "lb1", code="5xx"),
        _fe(RESPONSES, "3+0x20", "lb2", code="5xx"),
        _series("haproxy_backend_response_time_average_seconds", "0.25x20", job="haproxy", instance="lb1", proxy="web"),
        _series("haproxy_backend_response_time_average_seconds", "0.75x20", job="haproxy", instance="lb2", proxy="web"),
        _series(
            "haproxy_backend_response_time_average_seconds", "0.125x20", job="haproxy", instance="lb1", proxy="app"
        ),
    ]
    lag = [_mysql("slave_status_seconds_behind_master", "replica", "7x20")]

    def samples(expr: str, *rows: tuple[str, float]) -> dict[str, Any]:
        return {"expr": expr, "eval_time": "3m", "exp_samples": [{"labels": lab, "value": v} for lab, v in rows]}

    tests = [
        {
            "interval": "15s",
            "input_series": [*nginx, *haproxy, *lag],
            "promql_expr_test": [
                samples("foobar:tier:qps", ('foobar:tier:qps{tier="web"}', 3), ('foobar:tier:qps{tier="app"}', 0.5)),
                samples(
                    "foobar:server:qps",
                    ('foobar:server:qps{tier="web",server="127.0.20.1"}', 1),
                    ('foobar:server:qps{tier="web",server="127.0.20.2"}', 2),
                    ('foobar:server:qps{tier="app",server="127.0.30.1"}', 0.5),
                ),
                samples("foobar:lb:qps", ("foobar:lb:qps", 150)),
                samples("foobar:lb:5xx_ratio", ("foobar:lb:5xx_ratio", 0.06)),
                samples(
                    "foobar:backend:response_time_seconds",
                    ('foobar:backend:response_time_seconds{tier="web"}', 0.5),
                    ('foobar:backend:response_time_seconds{tier="app"}', 0.125),
                ),
                samples("foobar:replica:lag_seconds", ("foobar:replica:lag_seconds", 7)),
            ],
        }
    ]
    done = _run_rules_test(tmp_path, render_rules_yaml("dev"), tests)
    assert done.returncode == 0, done.stdout + done.stderr
    records = [r["record"] for g in prometheus_rules("dev")["groups"] for r in g["rules"] if "record" in r]
    assert records == [
        "foobar:tier:qps",
        "foobar:server:qps",
        "foobar:lb:qps",
        "foobar:lb:5xx_ratio",
        "foobar:backend:response_time_seconds",
        "foobar:replica:lag_seconds",
    ]
