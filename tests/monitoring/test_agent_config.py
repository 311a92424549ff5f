"""The agent config of every role against the agent's own JSON schema, and against METRICS."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from components.monitoring import AWS_METRICS
from userdata import agent

SCHEMA = json.loads((Path(__file__).parent / "vendor" / "cloudwatch-agent-schema.json").read_text())
VALIDATOR = jsonschema.Draft4Validator(SCHEMA)


@pytest.mark.parametrize("role", agent.ROLES)
def test_config_is_valid_against_the_agent_schema(role: str) -> None:
    config = agent.agent_config(role, "dev")
    errors = [e.message for e in VALIDATOR.iter_errors(config)]
    assert errors == []


def test_schema_rejects_a_broken_config() -> None:
    """The vendored schema does catch mistakes (the validator is not a no-op)."""
    config = agent.agent_config("web", "dev")
    config["logs"]["logs_collected"]["files"]["collect_list"][0]["retention_in_days"] = 2
    config["metrics"]["metrics_collected"]["procstat"] = [{"measurement": ["pid_count"]}]
    assert len(list(VALIDATOR.iter_errors(config))) >= 2


@pytest.mark.parametrize("role", agent.ROLES)
def test_logs_go_to_the_central_log_groups(role: str) -> None:
    config = agent.agent_config(role, "dev")
    files = config["logs"]["logs_collected"]["files"]["collect_list"]
    central = agent.log_group_names("dev")
    assert {f["file_path"] for f in files} == {f.path for f in agent.LOG_FILES[role]}
    for entry in files:
        assert entry["log_group_name"] in central.values()
        assert entry["log_group_name"].startswith(f"/foobar/dev/{role}/")
        assert "retention_in_days" not in entry  # the central side owns retention
    prom = config["logs"]["metrics_collected"]["prometheus"]
    assert prom["log_group_name"] == central[(role, agent.PROMETHEUS_LOG_KEY)]
    assert prom["prometheus_config_path"] == agent.PROMETHEUS_CONFIG_PATH


@pytest.mark.parametrize("role", agent.ROLES)
def test_every_prometheus_metric_is_declared_with_its_dimensions(role: str) -> None:
    """Each METRICS entry from an exporter is selected by a declaration with exactly its dimensions."""
    emf = agent.agent_config(role, "dev")["logs"]["metrics_collected"]["prometheus"]["emf_processor"]
    assert emf["metric_namespace"] == agent.NAMESPACE
    exported = [m for m in agent.METRICS[role] if m.name.startswith(("haproxy_", "nginx_"))]
    assert exported
    for metric in exported:
        matches = [
            d
            for d in emf["metric_declaration"]
            if any(re.fullmatch(sel.strip("^$"), metric.name) for sel in d["metric_selectors"])
        ]
        assert matches, metric.name
        assert any(list(metric.dimensions) in d["dimensions"] for d in matches), metric.name
    # and nothing is declared that METRICS doesn't know
    names = {m.name for m in exported}
    for d in emf["metric_declaration"]:
        for sel in d["metric_selectors"]:
            assert sel.strip("^$") in names


@pytest.mark.parametrize("role", agent.ROLES)
def test_host_metrics_match_metrics_constant(role: str) -> None:
    config = agent.agent_config(role, "dev")["metrics"]
    assert config["namespace"] == agent.NAMESPACE
    assert config["append_dimensions"] == {"InstanceId": "${aws:InstanceId}"}
    assert ["InstanceId"] in config["aggregation_dimensions"]
    collected = config["metrics_collected"]
    for metric in agent.METRICS[role]:
        if metric.name.startswith(("haproxy_", "nginx_")):
            continue
        plugin, measurement = metric.name.split("_", 1)
        assert measurement in collected[plugin]["measurement"], metric.name
        assert metric.dimensions == ("InstanceId",)
    daemons = [p.get("exe") or p.get("pattern") for p in collected["procstat"]]
    assert daemons == {"lb": ["haproxy"], "web": ["nginx"], "app": ["nginx", "gunicorn"]}[role]


@pytest.mark.parametrize("role", agent.ROLES)
def test_scrape_config_labels_and_keeps_only_known_metrics(role: str) -> None:
    target = agent.exporter_target(role, "10.20.0.10")
    scrape = yaml.safe_load(agent.prometheus_scrape_config(role, "dev", target=target))
    (job,) = scrape["scrape_configs"]
    assert job["static_configs"] == [{"targets": [target], "labels": {"Stack": "dev", "Role": role}}]
    keep = job["metric_relabel_configs"][0]
    assert keep["action"] == "keep"
    for name in agent.prometheus_metric_names(role):
        assert re.fullmatch(keep["regex"], name)
    assert not re.fullmatch(keep["regex"], "haproxy_process_start_time_seconds")
    assert target == ("10.20.0.10:8404" if role == "lb" else "127.0.0.1:9113")


def test_bad_input_names_the_argument() -> None:
    with pytest.raises(ValueError, match="role"):
        agent.agent_config("db", "dev")
    # Without an address (AWS, no fixed addresses) the boot fills it in: the config holds the reference.
    assert agent.exporter_target("lb") == "${FOOBAR_PRIVATE_IP}:8404"
    with pytest.raises(ValueError, match="sumoTokenParameter"):
        agent.setup_script("web", "dev", region="eu-west-1", sumo_token_parameter="bad name; rm -rf /")
    with pytest.raises(ValueError, match="target"):
        agent.prometheus_scrape_config("web", "dev", target="no-port")


def test_aws_metric_table_is_disjoint_from_agent_namespace() -> None:
    assert all(ns.startswith("AWS/") for ns, _ in AWS_METRICS)


@pytest.mark.parametrize("role", agent.ROLES)
def test_cloud_config_parts_pass_cloud_init_schema(role: str, tmp_path: Path) -> None:
    """The parts, dropped into a minimal document, are valid cloud-config (cloud-init's own checker)."""
    parts = agent.agent_cloud_config_parts(
        role, "dev", region="eu-west-1", private_address="10.20.0.10", sumo_token_parameter="/foobar/dev/sumo-token"
    )
    assert set(parts) == {"packages", "write_files", "runcmd"}
    doc = tmp_path / "user-data"
    doc.write_text("#cloud-config\n" + yaml.safe_dump(parts, sort_keys=False))
    result = subprocess.run(["cloud-init", "schema", "-c", str(doc)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    files = {f["path"]: f for f in parts["write_files"]}
    assert json.loads(files[agent.AGENT_CONFIG_PATH]["content"]) == agent.agent_config(role, "dev")
    assert files[agent.SETUP_SCRIPT_PATH]["permissions"] == "0755"
    # Its own unit, retried, not a cloud-init step that holds the boot for its download's retries.
    assert parts["runcmd"] == [
        ["systemctl", "enable", agent.SETUP_UNIT],
        ["systemctl", "start", "--no-block", agent.SETUP_UNIT],
    ]
    unit = files[agent.SETUP_UNIT_PATH]["content"]
    assert f"ExecStart={agent.SETUP_SCRIPT_PATH}\n" in unit
    assert "Restart=on-failure\n" in unit and "StartLimitIntervalSec=0\n" in unit
    # Not oneshot: a oneshot's start job lasts through its restarts, so on a later boot without a way
    # out multi-user.target (and cloud-final after it) would wait for the download for ever.
    assert "Type=exec\n" in unit and "oneshot" not in unit
    assert ("prometheus-nginx-exporter" in parts["packages"]) == (role != "lb")
    script = files[agent.SETUP_SCRIPT_PATH]["content"]
    assert subprocess.run(["bash", "-n"], input=script, text=True, check=False).returncode == 0
    assert "set -x" not in script


def _fake_bin(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text("#!/bin/bash\n" + body)
    path.chmod(0o755)


def test_setup_script_passes_the_token_only_through_the_environment(tmp_path: Path) -> None:
    """Run the boot script with stand-ins for curl, dpkg, systemctl, aws and the installer: the token
    read from SSM reaches the installer's environment, never its arguments nor the script's output."""
    token = "SUMO-TOKEN-" + "x" * 20
    bin_dir, record = tmp_path / "bin", tmp_path / "record"
    bin_dir.mkdir()
    record.mkdir()
    _fake_bin(bin_dir, "systemctl", f'echo "$*" >> {record}/systemctl\n')
    _fake_bin(bin_dir, "dpkg-query", "exit 1\n")
    _fake_bin(bin_dir, "dpkg", f'[ "$1" = --print-architecture ] && echo arm64 || echo "$*" >> {record}/dpkg\n')
    _fake_bin(bin_dir, "aws", f'echo "$*" >> {record}/aws\necho {token}\n')
    installer = f'echo "$*" > {record}/installer-args\necho "$SUMOLOGIC_INSTALLATION_TOKEN" > {record}/installer-env\n'
    _fake_bin(
        bin_dir,
        "curl",
        f'echo "$*" >> {record}/curl\nout=""\nwhile [ $# -gt 0 ]; do [ "$1" = -o ] && out="$2"; shift; done\n'
        f"cat > \"$out\" <<'EOF'\n{installer}EOF\n",
    )
    _fake_bin(bin_dir, "agent-ctl", f'echo "$*" > {record}/ctl\n')
    script = agent.setup_script(
        "web",
        "dev",
        region="eu-west-1",
        sumo_token_parameter="/foobar/dev/sumo-token",
        agent_ctl=str(bin_dir / "agent-ctl"),
    )
    # otelcol-sumo is not installed here, so the Sumo branch runs
    result = subprocess.run(
        ["bash", "-c", script],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert token not in result.stdout + result.stderr
    assert (record / "installer-env").read_text().strip() == token
    assert token not in (record / "installer-args").read_text()
    assert "host.group=foobar-dev-web" in (record / "installer-args").read_text()
    assert "--name /foobar/dev/sumo-token --with-decryption" in (record / "aws").read_text()
    assert "ubuntu/arm64/latest/amazon-cloudwatch-agent.deb" in (record / "curl").read_text()
    assert (record / "ctl").read_text().split() == [
        "-a",
        "fetch-config",
        "-m",
        "ec2",
        "-s",
        "-c",
        f"file:{agent.AGENT_CONFIG_PATH}",
    ]
    assert "restart prometheus-nginx-exporter" in (record / "systemctl").read_text()
    assert token not in script
