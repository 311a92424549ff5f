"""The CloudWatch agent of every server role: its JSON config, its Prometheus scrape config and the
cloud-config pieces that install and start it. Pure functions, no Pulumi.

Metrics: host metrics (cpu, mem, disk, procstat of the role's daemons) in the ``foobar`` namespace,
and request counters scraped from Prometheus exporters and turned into CloudWatch metrics through
the agent's embedded metric format (EMF): HAProxy's built-in exporter on the load balancer, the
``prometheus-nginx-exporter`` package (which reads nginx's stub_status) on web and app servers.
The agent sends counters as the delta since the previous scrape, so QPS is ``SUM(counter) / PERIOD``.

``METRICS`` lists every metric the agents emit with its dimensions; alarms and the dashboard are
checked against it. Log groups are created centrally (components/monitoring.py) with retention;
the agent only writes into them.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
import yaml

from userdata.configs import STATS_ADDRESS_FROM_ENV as PRIVATE_IP_REF

ROLES = ("lb", "web", "app")
NAMESPACE = "foobar"
INTERVAL_SECONDS = 60

AGENT_DIR = "/opt/aws/amazon-cloudwatch-agent"
AGENT_CTL = f"{AGENT_DIR}/bin/amazon-cloudwatch-agent-ctl"
AGENT_CONFIG_PATH = f"{AGENT_DIR}/etc/foobar-agent.json"
PROMETHEUS_CONFIG_PATH = f"{AGENT_DIR}/etc/foobar-prometheus.yaml"
SETUP_SCRIPT_PATH = "/usr/local/sbin/foobar-monitoring-setup"
SETUP_UNIT = "foobar-monitoring-setup.service"
SETUP_UNIT_PATH = f"/etc/systemd/system/{SETUP_UNIT}"
SETUP_RETRY_S = 60
"""The setup runs as its own unit, not as a cloud-init step: a download that can't succeed (no way out
yet, a mirror down) retries on its own, visibly in the journal, while cloud-init finishes and the
role serves; it would otherwise hold cloud-init for its 10 minutes of retries and then fail the boot."""
AGENT_DEB_URL = "https://amazoncloudwatch-agent.s3.amazonaws.com/ubuntu/${arch}/latest/amazon-cloudwatch-agent.deb"
SUMO_INSTALLER_URL = "https://download-otel.sumologic.com/latest/download/install.sh"
CURL_OPTIONS = (
    "--fail --silent --show-error --location --connect-timeout 10 --retry 10 --retry-all-errors --retry-max-time 600"
)
"""Downloads at boot retry every error (not only curl's "transient" ones: a refused connection or a
name that doesn't resolve yet are what a server meets before its way out works), for 10 minutes."""

# What the server configs must use so the counters below exist.
HAPROXY_EXPORTER_PORT = 8404
"""HAProxy serves ``/metrics`` (use-service prometheus-exporter) on <private address>:8404 only."""
HAPROXY_FRONTEND = "https"
"""The public HTTPS frontend; its request counter is the site's QPS."""
HAPROXY_BACKENDS = {"web": "web", "app": "app"}
"""Backend proxy names per tier, as in userdata/templates/haproxy.cfg.j2."""
NGINX_STUB_STATUS_URL = "http://127.0.0.1:8081/stub_status"
"""nginx's local-only stub_status listener on web and app servers."""
NGINX_EXPORTER_ADDRESS = "127.0.0.1:9113"
NGINX_EXPORTER_DROPIN = "/etc/systemd/system/prometheus-nginx-exporter.service.d/foobar.conf"

_SSM_NAME = re.compile(r"^/?[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*$")
_STACK = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")


@dataclass(frozen=True)
class LogFile:
    """One log file the agent ships; ``key`` is the last part of its log group name."""

    key: str
    path: str


COMMON_LOGS = (
    LogFile("auth", "/var/log/auth.log"),
    LogFile("cloud-init", "/var/log/cloud-init-output.log"),
)
_NGINX_LOGS = (
    LogFile("nginx-access", "/var/log/nginx/access.log"),
    LogFile("nginx-error", "/var/log/nginx/error.log"),
)
LOG_FILES: dict[str, tuple[LogFile, ...]] = {
    "lb": (LogFile("haproxy", "/var/log/haproxy.log"), *COMMON_LOGS),
    "web": (*_NGINX_LOGS, *COMMON_LOGS),
    "app": (*_NGINX_LOGS, LogFile("app", "/var/log/foobar-app.log"), *COMMON_LOGS),
}
PROMETHEUS_LOG_KEY = "prometheus"
"""Log group of the EMF events the agent builds from scraped Prometheus metrics."""

PROCSTAT: dict[str, tuple[dict[str, str], ...]] = {
    "lb": ({"exe": "haproxy"},),
    "web": ({"exe": "nginx"},),
    "app": ({"exe": "nginx"}, {"pattern": "gunicorn"}),
}


@dataclass(frozen=True)
class Metric:
    """A CloudWatch metric an agent emits: namespace, name and the exact dimension names."""

    namespace: str
    name: str
    dimensions: tuple[str, ...]


_HOST = (
    Metric(NAMESPACE, "cpu_usage_active", ("InstanceId",)),
    Metric(NAMESPACE, "mem_used_percent", ("InstanceId",)),
    Metric(NAMESPACE, "disk_used_percent", ("InstanceId",)),
)
_SR = ("Stack", "Role")
_HAPROXY = (
    Metric(NAMESPACE, "haproxy_frontend_http_requests_total", (*_SR, "proxy")),
    Metric(NAMESPACE, "haproxy_frontend_http_responses_total", (*_SR, "proxy", "code")),
    # Requests refused at the door: over a per-client limit (429), a body too big (413), /readyz from outside.
    Metric(NAMESPACE, "haproxy_frontend_requests_denied_total", (*_SR, "proxy")),
    Metric(NAMESPACE, "haproxy_backend_http_requests_total", (*_SR, "proxy")),
    Metric(NAMESPACE, "haproxy_backend_http_responses_total", (*_SR, "proxy", "code")),
    Metric(NAMESPACE, "haproxy_backend_response_time_average_seconds", (*_SR, "proxy")),
    Metric(NAMESPACE, "haproxy_backend_active_servers", (*_SR, "proxy")),
    Metric(NAMESPACE, "haproxy_backend_status", (*_SR, "proxy", "state")),
    Metric(NAMESPACE, "haproxy_server_status", (*_SR, "proxy", "state")),
)
_NGINX = (
    Metric(NAMESPACE, "nginx_http_requests_total", _SR),
    Metric(NAMESPACE, "nginx_connections_active", _SR),
    Metric(NAMESPACE, "nginx_up", _SR),
)
METRICS: dict[str, tuple[Metric, ...]] = {
    "lb": (*_HOST, *_HAPROXY),
    "web": (*_HOST, *_NGINX),
    "app": (*_HOST, *_NGINX),
}
COUNTERS = frozenset(m.name for m in (*_HAPROXY, *_NGINX) if m.name.endswith("_total"))
"""Counters: the agent stores the delta per scrape, so per-second rates are SUM / PERIOD."""

_UNITS = {
    "haproxy_backend_response_time_average_seconds": "Seconds",
    "nginx_connections_active": "Count",
    **{name: "Count" for name in COUNTERS},
}


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}; got {role!r}")


def _check_stack(stack: str) -> None:
    if not _STACK.match(stack):
        raise ValueError(f"stack must be 1-100 letters, digits, '_', '.' or '-'; got {stack!r}")


def default_log_group_prefix(stack: str) -> str:
    return f"/foobar/{stack}"


def log_group_name(stack: str, role: str, key: str, *, prefix: str | None = None) -> str:
    """``/foobar/<stack>/<role>/<key>``: the one naming rule shared by the agent and the central side."""
    return f"{prefix or default_log_group_prefix(stack)}/{role}/{key}"


def log_group_names(stack: str, *, prefix: str | None = None) -> dict[tuple[str, str], str]:
    """Every log group any agent writes to, keyed by (role, key): what the central side must create."""
    names: dict[tuple[str, str], str] = {}
    for role in ROLES:
        for key in (*(f.key for f in LOG_FILES[role]), PROMETHEUS_LOG_KEY):
            names[(role, key)] = log_group_name(stack, role, key, prefix=prefix)
    return names


# PRIVATE_IP_REF stands for the server's private address where it isn't known before boot (no fixed
# addresses): HAProxy expands it from its environment, and the boot writes it into the agent's files.


def exporter_target(role: str, private_address: str = "") -> str:
    """host:port the agent scrapes: HAProxy's exporter on the private address, or the local nginx exporter.

    Without an address (AWS: found at boot), the target holds PRIVATE_IP_REF for the boot to fill in.
    """
    _check_role(role)
    if role == "lb":
        return f"{private_address or PRIVATE_IP_REF}:{HAPROXY_EXPORTER_PORT}"
    return NGINX_EXPORTER_ADDRESS


def _emf_declarations(role: str) -> list[dict[str, Any]]:
    """Which scraped series become CloudWatch metrics, and with which dimensions (see METRICS)."""
    if role != "lb":
        names = [m.name for m in _NGINX]
        return [
            {
                "source_labels": ["job"],
                "label_matcher": "^nginx$",
                "dimensions": [list(_SR)],
                "metric_selectors": [f"^{n}$" for n in names],
            }
        ]
    backends = "|".join(HAPROXY_BACKENDS[t] for t in ("web", "app"))
    return [
        {
            "source_labels": ["proxy"],
            "label_matcher": f"^{HAPROXY_FRONTEND}$",
            "dimensions": [[*_SR, "proxy"]],
            "metric_selectors": ["^haproxy_frontend_http_requests_total$", "^haproxy_frontend_requests_denied_total$"],
        },
        {
            "source_labels": ["proxy", "code"],
            "label_separator": ";",
            "label_matcher": f"^{HAPROXY_FRONTEND};5xx$",
            "dimensions": [[*_SR, "proxy", "code"]],
            "metric_selectors": ["^haproxy_frontend_http_responses_total$"],
        },
        {
            "source_labels": ["proxy"],
            "label_matcher": f"^({backends})$",
            "dimensions": [[*_SR, "proxy"]],
            "metric_selectors": [
                "^haproxy_backend_http_requests_total$",
                "^haproxy_backend_response_time_average_seconds$",
                "^haproxy_backend_active_servers$",
            ],
        },
        {
            "source_labels": ["proxy", "code"],
            "label_separator": ";",
            "label_matcher": f"^({backends});5xx$",
            "dimensions": [[*_SR, "proxy", "code"]],
            "metric_selectors": ["^haproxy_backend_http_responses_total$"],
        },
        {
            "source_labels": ["proxy", "state"],
            "label_separator": ";",
            "label_matcher": f"^({backends});DOWN$",
            "dimensions": [[*_SR, "proxy", "state"]],
            "metric_selectors": ["^haproxy_backend_status$", "^haproxy_server_status$"],
        },
    ]


def agent_config(
    role: str,
    stack: str,
    *,
    log_group_prefix: str | None = None,
    prometheus: bool = True,
    interval: int = INTERVAL_SECONDS,
) -> dict[str, Any]:
    """The agent's JSON config for one role (the documented schema, validated in the tests)."""
    _check_role(role)
    _check_stack(stack)
    if not 1 <= interval <= 172800:
        raise ValueError(f"interval must be 1 to 172800 seconds; got {interval}")
    procstat = [{**match, "measurement": ["pid_count", "cpu_usage", "memory_rss"]} for match in PROCSTAT[role]]
    config: dict[str, Any] = {
        "agent": {"metrics_collection_interval": interval, "logfile": f"{AGENT_DIR}/logs/amazon-cloudwatch-agent.log"},
        "metrics": {
            "namespace": NAMESPACE,
            "append_dimensions": {"InstanceId": "${aws:InstanceId}"},
            # A roll-up with InstanceId only, so alarms don't depend on device or filesystem names.
            "aggregation_dimensions": [["InstanceId"]],
            "metrics_collected": {
                "cpu": {"measurement": ["usage_active", "usage_iowait"], "totalcpu": True},
                "mem": {"measurement": ["used_percent"]},
                "disk": {"measurement": ["used_percent"], "resources": ["/"], "drop_device": True},
                "procstat": procstat,
            },
        },
        "logs": {
            "logs_collected": {
                "files": {
                    "collect_list": [
                        {
                            "file_path": f.path,
                            "log_group_name": log_group_name(stack, role, f.key, prefix=log_group_prefix),
                            "log_stream_name": "{instance_id}",
                            "timezone": "UTC",
                        }
                        for f in LOG_FILES[role]
                    ]
                }
            },
            "force_flush_interval": 15,
        },
    }
    if prometheus:
        config["logs"]["metrics_collected"] = {
            "prometheus": {
                "cluster_name": f"foobar-{stack}",
                "log_group_name": log_group_name(stack, role, PROMETHEUS_LOG_KEY, prefix=log_group_prefix),
                "prometheus_config_path": PROMETHEUS_CONFIG_PATH,
                "emf_processor": {
                    "metric_declaration_dedup": True,
                    "metric_namespace": NAMESPACE,
                    "metric_unit": {m.name: _UNITS[m.name] for m in METRICS[role] if m.name in _UNITS},
                    "metric_declaration": _emf_declarations(role),
                },
            }
        }
    return config


def prometheus_metric_names(role: str) -> list[str]:
    """The exporter series the agent keeps (everything else is dropped before it costs anything)."""
    _check_role(role)
    return sorted(m.name for m in METRICS[role] if m.name.startswith(("haproxy_", "nginx_")))


def prometheus_scrape_config(role: str, stack: str, *, target: str, interval: int = INTERVAL_SECONDS) -> str:
    """The Prometheus scrape config the agent reads: one job, static labels Stack and Role."""
    _check_role(role)
    _check_stack(stack)
    if not re.match(r"^([A-Za-z0-9.\-\[\]:]+|\$\{FOOBAR_PRIVATE_IP\}):\d{1,5}$", target):
        raise ValueError(f"target must be host:port; got {target!r}")
    job: dict[str, Any] = {
        "job_name": "haproxy" if role == "lb" else "nginx",
        "metrics_path": "/metrics",
        "static_configs": [{"targets": [target], "labels": {"Stack": stack, "Role": role}}],
        "metric_relabel_configs": [
            {
                "source_labels": ["__name__"],
                "regex": "|".join(prometheus_metric_names(role)),
                "action": "keep",
            }
        ],
    }
    if role == "lb":
        job["params"] = {"scope": ["frontend", "backend", "server"]}
    config = {
        "global": {"scrape_interval": f"{interval}s", "scrape_timeout": "10s"},
        "scrape_configs": [job],
    }
    return yaml.safe_dump(config, sort_keys=False)


def nginx_exporter_command(
    scrape_uri: str = NGINX_STUB_STATUS_URL, listen_address: str = NGINX_EXPORTER_ADDRESS
) -> list[str]:
    """The exporter's command line; double-dash flags work with 0.11 (Go flags) and 1.x (kingpin)."""
    return [
        "/usr/bin/prometheus-nginx-exporter",
        f"--nginx.scrape-uri={scrape_uri}",
        f"--web.listen-address={listen_address}",
    ]


_JINJA = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
_JINJA.filters["q"] = shlex.quote

_SETUP_SCRIPT = _JINJA.from_string(
    """#!/bin/bash
# foobar {{ role }}: install and start the CloudWatch agent with the config cloud-init wrote
{%- if sumo_parameter %}, and the Sumo Logic collector{% endif %}.
# Safe to run again. Never traces commands: a token passes through this script.
set -euo pipefail
{%- if nginx_exporter %}
systemctl daemon-reload
systemctl enable prometheus-nginx-exporter
systemctl restart prometheus-nginx-exporter
{%- endif %}
if ! dpkg-query -W -f='${Status}' amazon-cloudwatch-agent 2>/dev/null | grep -q 'install ok installed'; then
  arch="$(dpkg --print-architecture)"
  deb="$(mktemp --suffix=.deb)"
  curl {{ curl }} -o "$deb" "{{ deb_url }}"
  # At first boot apt-daily may hold dpkg's lock: try again for up to 5 minutes, then fail.
  for attempt in 1 2 3 4 5 6 7 8 9 10; do
    dpkg -i -E "$deb" && break
    [ "$attempt" -lt 10 ] || exit 1
    sleep 30
  done
  rm -f "$deb"
fi
{{ agent_ctl|q }} -a fetch-config -m ec2 -s -c file:{{ config_path|q }}
{%- if sumo_parameter %}
if [ ! -x /usr/local/bin/otelcol-sumo ]; then
  # snapd may still be seeding during first boot: wait for it before installing the AWS CLI.
  command -v aws >/dev/null || { snap wait system seed.loaded && snap install aws-cli --classic; }
  # The installation token goes from SSM straight into the installer's environment: it is never an
  # argument (visible in ps), never echoed, never in user-data.
  SUMOLOGIC_INSTALLATION_TOKEN="$(aws ssm get-parameter --region {{ region|q }} --name {{ sumo_parameter|q }} \\
    --with-decryption --query Parameter.Value --output text)"
  export SUMOLOGIC_INSTALLATION_TOKEN
  installer="$(mktemp)"
  curl {{ curl }} -o "$installer" {{ sumo_url|q }}
  bash "$installer" --tag {{ ("host.group=foobar-" ~ stack ~ "-" ~ role)|q }} \\
    --tag {{ ("deployment.environment=" ~ stack)|q }}
  unset SUMOLOGIC_INSTALLATION_TOKEN
  rm -f "$installer"
fi
{%- endif %}
"""
)


def setup_script(
    role: str, stack: str, *, region: str, sumo_token_parameter: str = "", agent_ctl: str = AGENT_CTL
) -> str:
    """The boot script that installs the agent (and optionally Sumo Logic) and starts it."""
    _check_role(role)
    _check_stack(stack)
    if not re.match(r"^[a-z]{2}(-[a-z]+)+-\d$", region):
        raise ValueError(f"region must look like eu-west-1; got {region!r}")
    if sumo_token_parameter and not _SSM_NAME.match(sumo_token_parameter):
        raise ValueError(
            "sumoTokenParameter must be empty or the name of an SSM SecureString parameter "
            f"(e.g. /foobar/prod/sumo-token); got {sumo_token_parameter!r}"
        )
    return _SETUP_SCRIPT.render(
        role=role,
        stack=stack,
        region=region,
        nginx_exporter=role != "lb",
        deb_url=AGENT_DEB_URL,
        agent_ctl=agent_ctl,
        config_path=AGENT_CONFIG_PATH,
        sumo_parameter=sumo_token_parameter,
        sumo_url=SUMO_INSTALLER_URL,
        curl=CURL_OPTIONS,
    )


def agent_cloud_config_parts(
    role: str,
    stack: str,
    *,
    region: str,
    private_address: str = "",
    log_group_prefix: str | None = None,
    sumo_token_parameter: str = "",
) -> dict[str, list[Any]]:
    """What a role's cloud-config needs for monitoring: ``packages``, ``write_files`` and ``runcmd``
    entries (plain lists to append to the document's own). No secret is in any of them."""
    target = exporter_target(role, private_address)
    config = agent_config(role, stack, log_group_prefix=log_group_prefix)
    write_files: list[dict[str, str]] = [
        {
            "path": AGENT_CONFIG_PATH,
            "content": json.dumps(config, indent=2) + "\n",
            "owner": "root:root",
            "permissions": "0644",
        },
        {
            "path": PROMETHEUS_CONFIG_PATH,
            "content": prometheus_scrape_config(role, stack, target=target),
            "owner": "root:root",
            "permissions": "0644",
        },
        {
            "path": SETUP_SCRIPT_PATH,
            "content": setup_script(role, stack, region=region, sumo_token_parameter=sumo_token_parameter),
            "owner": "root:root",
            "permissions": "0755",
        },
    ]
    write_files.append({"path": SETUP_UNIT_PATH, "content": setup_unit(), "owner": "root:root", "permissions": "0644"})
    packages: list[str] = ["curl"]
    if role != "lb":
        packages.append("prometheus-nginx-exporter")
        write_files.append(
            {
                "path": NGINX_EXPORTER_DROPIN,
                "content": _exporter_dropin(),
                "owner": "root:root",
                "permissions": "0644",
            }
        )
    runcmd = [["systemctl", "enable", SETUP_UNIT], ["systemctl", "start", "--no-block", SETUP_UNIT]]
    return {"packages": packages, "write_files": write_files, "runcmd": runcmd}


def setup_unit() -> str:
    """The setup's unit: started once by cloud-init (and at every boot), retried until it succeeds.

    Type=exec, not oneshot: a oneshot's start job lasts through its restarts, so on a later boot with
    no way out multi-user.target (and cloud-final after it) would wait for the download."""
    return (
        "[Unit]\n"
        "Description=foobar: install and start the monitoring agent (retried until its download succeeds)\n"
        "Wants=network-online.target\n"
        "After=network-online.target\n"
        "StartLimitIntervalSec=0\n"
        "\n[Service]\n"
        "Type=exec\n"
        f"ExecStart={SETUP_SCRIPT_PATH}\n"
        "Restart=on-failure\n"
        f"RestartSec={SETUP_RETRY_S}\n"
        "\n[Install]\n"
        "WantedBy=multi-user.target\n"
    )


def _exporter_dropin() -> str:
    """Bind the exporter to loopback (the package default listens on every address)."""
    command = " ".join(shlex.quote(part) for part in nginx_exporter_command())
    return f"[Service]\nExecStart=\nExecStart={command}\n"


def metrics_by_name(role: str | None = None) -> Mapping[str, Metric]:
    """Look-up of METRICS by metric name, for one role or all."""
    roles = ROLES if role is None else (role,)
    return {m.name: m for r in roles for m in METRICS[r]}
