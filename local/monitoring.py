"""Prometheus and its exporters for the local site: the central server DESIGN §7 puts on one machine.

What runs, each on a loopback address of the site's layout (defaults in brackets):

    Prometheus            monitor address :9090   [127.0.60.1]  scraping every 5 s, rules from the alarm table
    node exporter         monitor address :9100   [127.0.60.1]  job ``node``
    HAProxy's exporter    load balancer   :8404   [127.0.10.1]  job ``haproxy`` (built into HAProxy)
    nginx exporter        each web/app server :9113 -> its stub_status :8081   job ``nginx``, ``tier``, ``server``
    mysqld exporter       each database   :9104   [127.0.50.x]  job ``mysql``, ``db="primary"|"replica"``

The nginx targets come and go with the servers: the site rewrites ``targets/nginx.json`` (file_sd) on
every change of its members, and Prometheus picks the file up without a restart. The alert and
recording rules are ``components.alarms.prometheus_rules(stack="local")`` (the same table as the
CloudWatch alarms), with their windows scaled down by :data:`WINDOW_SCALE` so that they fire within
seconds here; they are checked with ``promtool check rules`` before Prometheus starts.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from userdata.agent import nginx_exporter_command

if TYPE_CHECKING:
    from local.site import Layout

SCRAPE_INTERVAL_S = 5
EVALUATION_INTERVAL_S = 5
WINDOW_SCALE = 0.05
"""How much shorter the alarm table's ``for:`` windows are on the local site than on AWS: 1/20, so a server
down for 3 min on AWS alerts after 9 s here, a stopped replica (5 min) after 15 s."""
BINARIES = {
    "prometheus": "prometheus",
    "promtool": "prometheus",
    "prometheus-node-exporter": "prometheus-node-exporter",
    "prometheus-mysqld-exporter": "prometheus-mysqld-exporter",
    "prometheus-nginx-exporter": "prometheus-nginx-exporter",
}
RAW_TIER_QPS = 'sum by (tier) (rate(nginx_http_requests_total{job="nginx"}[30s]))'
"""QPS per tier without the recording rules (what ``foobar:tier:qps`` records)."""
DATABASES = ("primary", "replica")


class MonitoringError(RuntimeError):
    """Prometheus or an exporter could not be configured or started; the message says which and why."""


def which(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if not found:
        raise MonitoringError(f"{name} not found (Debian package {BINARIES.get(name, name)})")
    return found


def _spawn(command: Sequence[str], log: Path, env: Mapping[str, str] | None = None) -> int:
    """A daemon of the site in its own session, output appended to ``log``; its pid."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(command),
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=dict(env) if env is not None else None,
        )
    return proc.pid


def _wait_http(url: str, pid: int, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except Exception as err:
            last = str(err)
        with contextlib.suppress(ChildProcessError):
            done, _status = os.waitpid(pid, os.WNOHANG)
            if done:
                raise MonitoringError(f"{url}: the process exited; see {log}")
        time.sleep(0.2)
    raise MonitoringError(f"{url} did not answer within {timeout:.0f} s (last: {last}); see {log}")


class Monitoring:
    """The monitoring of one local site, in ``<site dir>/monitoring``."""

    def __init__(self, directory: Path, layout: Layout) -> None:
        self.home = Path(directory)
        self.layout = layout
        self.targets_file = self.home / "targets" / "nginx.json"
        self.rules_file = self.home / "rules.yml"
        self.config_file = self.home / "prometheus.yml"

    # ---- addresses ------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.layout.monitor}:{self.layout.prometheus_port}/"

    def graph_url(self, expr: str | None = None) -> str:
        query = urllib.parse.urlencode(
            {"g0.expr": expr or self.qps_expression(), "g0.tab": "0", "g0.range_input": "15m"}
        )
        return f"{self.url}graph?{query}"

    def qps_expression(self) -> str:
        return "foobar:tier:qps" if self.rules_file.exists() else RAW_TIER_QPS

    # ---- files ----------------------------------------------------------------------------------
    def write_targets(self, servers: Mapping[str, Sequence[str]]) -> None:
        """The nginx exporters to scrape, per tier: rewritten atomically (Prometheus watches the file)."""
        port = self.layout.nginx_exporter_port
        groups = [
            {"targets": [f"{address}:{port}"], "labels": {"tier": tier, "server": address}}
            for tier, addresses in servers.items()
            for address in addresses
        ]
        self.targets_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.targets_file.with_name(self.targets_file.name + ".tmp")
        tmp.write_text(json.dumps(groups, indent=2) + "\n")
        os.replace(tmp, self.targets_file)

    def write_rules(self) -> bool:
        """The alarm table's rules file, checked with promtool; False when ``components.alarms`` isn't there."""
        try:
            alarms = importlib.import_module("components.alarms")
        except ModuleNotFoundError as err:
            if err.name not in ("components.alarms",):
                raise
            self.rules_file.unlink(missing_ok=True)
            return False
        rules: dict[str, Any] = alarms.prometheus_rules(stack="local", window_scale=WINDOW_SCALE)
        self.home.mkdir(parents=True, exist_ok=True)
        self.rules_file.write_text(yaml.safe_dump(rules, sort_keys=False))
        check = subprocess.run(
            [which("promtool"), "check", "rules", str(self.rules_file)], capture_output=True, text=True
        )
        if check.returncode:
            raise MonitoringError(f"promtool check rules {self.rules_file}: {(check.stdout + check.stderr).strip()}")
        return True

    def config(self, rules: bool) -> dict[str, Any]:
        lay = self.layout
        dbs = {"primary": lay.db_primary, "replica": lay.db_replica}
        return {
            "global": {
                "scrape_interval": f"{SCRAPE_INTERVAL_S}s",
                "scrape_timeout": f"{SCRAPE_INTERVAL_S - 1}s",
                "evaluation_interval": f"{EVALUATION_INTERVAL_S}s",
                "external_labels": {"stack": "local"},
            },
            "rule_files": [str(self.rules_file)] if rules else [],
            "scrape_configs": [
                {"job_name": "haproxy", "static_configs": [{"targets": [f"{lay.lb}:{lay.stats_port}"]}]},
                {
                    "job_name": "nginx",
                    "file_sd_configs": [{"files": [str(self.targets_file)], "refresh_interval": "5s"}],
                },
                {"job_name": "node", "static_configs": [{"targets": [f"{lay.monitor}:{lay.node_exporter_port}"]}]},
                {
                    "job_name": "mysql",
                    "static_configs": [
                        {"targets": [f"{address}:{lay.mysqld_exporter_port}"], "labels": {"db": db}}
                        for db, address in dbs.items()
                    ],
                },
            ],
        }

    # ---- processes ------------------------------------------------------------------------------
    def start_prometheus(self) -> int:
        lay = self.layout
        rules = self.write_rules()
        self.config_file.write_text(yaml.safe_dump(self.config(rules), sort_keys=False))
        check = subprocess.run(
            [which("promtool"), "check", "config", str(self.config_file)], capture_output=True, text=True
        )
        if check.returncode:
            raise MonitoringError(f"promtool check config {self.config_file}: {(check.stdout + check.stderr).strip()}")
        log = self.home / "prometheus.log"
        pid = _spawn(
            [
                which("prometheus"),
                f"--config.file={self.config_file}",
                f"--storage.tsdb.path={self.home / 'data'}",
                "--storage.tsdb.retention.time=2d",
                f"--web.listen-address={lay.monitor}:{lay.prometheus_port}",
                "--web.enable-lifecycle",
                "--log.level=warn",
            ],
            log,
        )
        _wait_http(f"{self.url}-/ready", pid, log)
        return pid

    def start_node_exporter(self) -> int:
        lay = self.layout
        log = self.home / "node-exporter.log"
        pid = _spawn(
            [which("prometheus-node-exporter"), f"--web.listen-address={lay.monitor}:{lay.node_exporter_port}"], log
        )
        _wait_http(f"http://{lay.monitor}:{lay.node_exporter_port}/metrics", pid, log)
        return pid

    def start_nginx_exporter(self, server_home: Path, address: str) -> int:
        """The exporter next to one web or app server, reading that server's stub_status."""
        lay = self.layout
        command = nginx_exporter_command(
            scrape_uri=f"http://{address}:{lay.status_port}/stub_status",
            listen_address=f"{address}:{lay.nginx_exporter_port}",
        )
        command[0] = which("prometheus-nginx-exporter")
        log = server_home / "logs" / "nginx-exporter.log"
        pid = _spawn(command, log)
        _wait_http(f"http://{address}:{lay.nginx_exporter_port}/metrics", pid, log)
        return pid

    def start_mysqld_exporter(self, db: str, address: str, my_cnf: Path) -> int:
        """The exporter of one database; its account's password is in ``my_cnf`` (0600), never on a command line."""
        lay = self.layout
        log = self.home / f"mysqld-exporter-{db}.log"
        pid = _spawn(
            [
                which("prometheus-mysqld-exporter"),
                f"--config.my-cnf={my_cnf}",
                f"--web.listen-address={address}:{lay.mysqld_exporter_port}",
                "--collect.slave_status",
                "--collect.global_status",
            ],
            log,
        )
        _wait_http(f"http://{address}:{lay.mysqld_exporter_port}/metrics", pid, log)
        return pid
