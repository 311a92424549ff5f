"""The rendered user-data of every role, checked with cloud-init and the real daemons."""

from __future__ import annotations

import base64
import dataclasses
import gzip
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from tests.configs.checks import (
    CheckFailed,
    Pki,
    check_cloud_config,
    check_haproxy,
    check_nginx,
    decoded_files,
    known_cloud_config_keys,
    peers_alone,
    written_files,
)
from tests.configs.conftest import ARN, STACKS
from userdata import RoleValues, cloud_config, for_ec2, from_ec2
from userdata import configs as c
from userdata import render as r

CASES = [(stack, role) for stack in STACKS for role in ("lb", "web", "app")]
NODE_SHA256 = hashlib.sha256(r.node_archive()).hexdigest()


def aws(values: RoleValues) -> RoleValues:
    """The values as components/site.py gives them on AWS: no server has a fixed private address,
    and the load balancer's discovery agent comes from S3 (it doesn't fit in its user-data)."""
    return aws_lb(values) if values.role == "lb" else values


def aws_lb(values: RoleValues) -> RoleValues:
    return dataclasses.replace(
        values,
        private_address="",
        node_archive_url=f"s3://foobar-{values.stack}-artifacts/lb/{NODE_SHA256}.tar.gz",
        node_archive_sha256=NODE_SHA256,
    )


@pytest.fixture(scope="module")
def rendered() -> dict[tuple[str, str], str]:
    return {(stack, role): cloud_config(aws(STACKS[stack][role])) for stack, role in CASES}


@pytest.mark.parametrize(("stack", "role"), CASES)
def test_cloud_init_accepts_user_data(rendered: dict[tuple[str, str], str], tmp: Path, stack: str, role: str) -> None:
    text = rendered[stack, role]
    assert text.startswith("#cloud-config\n")
    path = tmp / "user-data"
    path.write_text(text)
    check_cloud_config(path)
    # cloud-init ignores unknown top-level keys: every key used must be one a module reads.
    assert set(yaml.safe_load(text)) <= known_cloud_config_keys()


@pytest.mark.parametrize(("stack", "role"), CASES)
def test_user_data_is_small_and_holds_no_secret(rendered: dict[tuple[str, str], str], stack: str, role: str) -> None:
    text = rendered[stack, role]
    sent = len(base64.b64decode(for_ec2(text)))  # what EC2 counts against its 16 KB: the gzip
    assert sent < 12 * 1024, f"{role} user-data is {sent} bytes gzipped"
    everything = text.encode() + b"".join(data for data, _ in decoded_files(text).values())
    assert b"PRIVATE KEY" not in everything
    # No literal password: neither quoted in code nor as an environment line.
    assert not re.search(rb"(?i)passw(or)?d\w*\s*[=:]\s*[\"'][^\"']+[\"']", everything)
    assert not re.search(rb"(?im)^\w*PASSWORD\w*=", everything)


def test_rendering_is_deterministic() -> None:
    for role in ("lb", "web", "app"):
        assert cloud_config(aws(STACKS["prod"][role])) == cloud_config(aws(STACKS["prod"][role]))


def _file(text: str, path: str) -> tuple[bytes, dict[str, object]]:
    files = decoded_files(text)
    assert path in files, f"{path} not in user-data"
    return files[path]


BOOT = "/usr/local/sbin/foobar-boot"
ROLE_PACKAGES = {
    # curl: keepalived's health check of HAProxy, before the agent's packages.
    "lb": ["haproxy", "python3-boto3", "python3-cryptography", "python3-jinja2", "curl"],
    "web": ["nginx", "python3-boto3"],
    "app": ["nginx", "python3-boto3", "gunicorn", "python3-flask", "python3-pymysql"],
}
AGENT_PACKAGES = {
    "lb": [],  # curl came with the role's: no second install step
    "web": ["curl", "prometheus-nginx-exporter"],
    "app": ["curl", "prometheus-nginx-exporter"],
}


MONITORING_SETUP = "systemctl start --no-block foobar-monitoring-setup.service"


def _runcmd(text: str) -> list[str]:
    return [step if isinstance(step, str) else " ".join(step) for step in yaml.safe_load(text)["runcmd"]]


def test_no_package_install_that_runs_once_without_retry(rendered: dict[tuple[str, str], str]) -> None:
    """cloud-init's package module runs once at a fixed point of the boot, and nothing retries it: the
    load balancer, whose way out comes with its Elastic IP a moment after launch, never got haproxy.
    Packages come from the boot's install job instead, which retries apt until a deadline."""
    one_shot = {"packages", "package_update", "package_upgrade", "package_reboot_if_required"}
    for (stack, role), text in rendered.items():
        doc = yaml.safe_load(text)
        assert not one_shot & set(doc), f"{role}: {sorted(one_shot & set(doc))}"
        assert not any("apt-get" in step or "apt " in step for step in _runcmd(text)), "apt only through the job"
        paths = ["/etc/foobar/packages.json"] + (["/etc/foobar/agent-packages.json"] if AGENT_PACKAGES[role] else [])
        plans = {path: json.loads(_file(text, path)[0]) for path in paths}
        pair = ["keepalived"] if role == "lb" and stack == "prod" else []  # prod runs a pair (lbCount 2)
        assert plans["/etc/foobar/packages.json"]["packages"] == ROLE_PACKAGES[role] + pair
        if AGENT_PACKAGES[role]:
            assert plans["/etc/foobar/agent-packages.json"]["packages"] == AGENT_PACKAGES[role]
        else:
            assert "/etc/foobar/agent-packages.json" not in decoded_files(text)
        for plan in plans.values():
            assert 60 <= plan["deadline_s"] <= 3600, "bounded: a boot that can't install fails, visibly"


def test_boot_order(rendered: dict[tuple[str, str], str]) -> None:
    for (_, role), text in rendered.items():
        runcmd = _runcmd(text)
        daemon = r.DAEMON[role]
        assert runcmd[0] == "set -e", "a step that gave up ends the boot (and cloud-init reports an error)"
        assert runcmd[1] == f"{BOOT} install /etc/foobar/packages.json", "packages first, with retries"
        tls = runcmd.index(f"{BOOT} fetch-tls /etc/foobar/tls.json")
        restart = runcmd.index(f"systemctl restart {daemon}")
        assert 1 < tls < runcmd.index(f"systemctl enable {daemon}") < restart
        # Monitoring after the daemon: a download that can never succeed doesn't keep the site down.
        agent = runcmd.index(
            f"{BOOT} install /etc/foobar/agent-packages.json" if AGENT_PACKAGES[role] else MONITORING_SETUP
        )
        assert restart < agent <= len(runcmd) - 1
        assert runcmd[-1] == MONITORING_SETUP, "the agent starts last, after the daemon"
        if role == "lb":
            # HAProxy binds its stats listener to the private address: learnt before it starts.
            assert runcmd[2] == f"{BOOT} private-address /etc/foobar/private-address.json"
            starts = [n for n, step in enumerate(runcmd) if step.startswith("systemctl start --no-block ")]
            (start,) = [n for n in starts if runcmd[n] != MONITORING_SETUP]
            assert restart < start < agent and "foobar-discovery.service" in runcmd[start].split()
        else:
            # Out of service until it answers: the hook after the daemon (and the app) start, and
            # before monitoring, which never keeps a server that answers out of service.
            hook = runcmd.index(f"{BOOT} launch-hook /etc/foobar/launch-hook.json")
            assert restart < hook < agent and not [s for s in runcmd if "private-address" in s]
            if role == "app":
                assert runcmd.index("systemctl start --no-block foobar-app.service") < hook


def test_daemon_configs_are_put_in_place_after_their_packages(rendered: dict[tuple[str, str], str]) -> None:
    """cloud-init writes every file before runcmd, so a daemon config at its package's path would be
    there before the package: dpkg would meet a conffile it didn't write, and nginx's first start
    (in the package's postinst) would fail on certificates not fetched yet. So it waits in
    /etc/foobar and the install job copies it after the packages."""
    for (_, role), text in rendered.items():
        path = c.HAPROXY_CFG if role == "lb" else c.NGINX_CONF
        written = written_files(text)
        assert not [p for p in written if p.startswith(("/etc/haproxy/", "/etc/nginx/"))], role
        plan = json.loads(written["/etc/foobar/packages.json"][0])
        (placed,) = plan["files"]
        assert placed["dest"] == path and placed["mode"] == 0o644 and placed["src"].startswith("/etc/foobar/")
        assert _file(text, path)[0] == written[placed["src"]][0]


def _run_boot_script(text: str, tmp: Path, fail: str = "") -> tuple[int, list[str]]:
    """The runcmd script as cloud-init writes it (its own ``shellify``), run with every command
    replaced by a stub that records its call; the stub of the command containing ``fail`` exits 1."""
    runcmd = yaml.safe_load(text)["runcmd"]
    code = "import json, sys; from cloudinit.util import shellify; print(shellify(json.load(sys.stdin)), end='')"
    script = subprocess.run(
        ["/usr/bin/python3", "-c", code], input=json.dumps(runcmd), capture_output=True, text=True, check=True
    ).stdout
    stubs, record = tmp / "stubs", tmp / "calls"
    stubs.mkdir(parents=True)
    for name in {*(Path(step[0]).name for step in runcmd if isinstance(step, list)), "systemctl"}:
        (stubs / name).write_text(
            f'#!/bin/sh\necho "{name} $*" >> {record}\ncase "{name} $*" in *"{fail or "-never-"}"*) exit 1;; esac\n'
        )
        (stubs / name).chmod(0o755)
    script = re.sub(r"'/usr/local/sbin/([^']+)'", rf"'{stubs}/\1'", script)
    (tmp / "runcmd").write_text(script)
    (tmp / "runcmd").chmod(0o755)
    result = subprocess.run([str(tmp / "runcmd")], env={"PATH": f"{stubs}:/usr/bin:/bin"}, check=False)
    return result.returncode, [line.strip() for line in record.read_text().splitlines()] if record.exists() else []


@pytest.mark.parametrize("role", ["lb", "web", "app"])
def test_boot_stops_at_a_step_that_gave_up(rendered: dict[tuple[str, str], str], tmp: Path, role: str) -> None:
    text, daemon = rendered["prod", role], r.DAEMON[role]
    status, calls = _run_boot_script(text, tmp / "ok")
    assert status == 0 and calls[-1] == MONITORING_SETUP
    assert calls[0] == "foobar-boot install /etc/foobar/packages.json"
    # Packages that never came: no TLS fetch, no daemon started on a half-made server, and a failed boot.
    status, calls = _run_boot_script(text, tmp / "no-packages", fail="install /etc/foobar/packages.json")
    assert status != 0 and calls == ["foobar-boot install /etc/foobar/packages.json"]
    status, calls = _run_boot_script(text, tmp / "no-tls", fail="fetch-tls")
    assert status != 0 and f"systemctl restart {daemon}" not in calls
    if role == "lb":  # no private address: HAProxy would have no stats listener to bind
        status, calls = _run_boot_script(text, tmp / "no-address", fail="private-address")
        assert status != 0 and "systemctl restart haproxy" not in calls
    else:  # abandoned: the group replaces the server, monitoring it is moot
        status, calls = _run_boot_script(text, tmp / "abandoned", fail="launch-hook")
        assert status != 0 and f"systemctl restart {daemon}" in calls
        assert not [c for c in calls if "foobar-monitoring-setup" in c]
    # The monitoring agent's packages failing: reported, but the daemon already runs. (Its download
    # retries in its own unit, which cloud-init only starts: test_monitoring_setup_is_its_own_unit...)
    if AGENT_PACKAGES[role]:
        status, calls = _run_boot_script(text, tmp / "no-agent", fail="install /etc/foobar/agent-packages.json")
        assert status != 0 and f"systemctl restart {daemon}" in calls


def test_one_timer_renews_every_certificate(rendered: dict[tuple[str, str], str]) -> None:
    """Certificates are re-issued by ``pulumi up`` before they expire, without replacing servers: every
    role re-fetches its own from SSM after boot and daily, the LB also re-exports ACM's."""
    for (stack, role), text in rendered.items():
        timer = _file(text, "/etc/systemd/system/foobar-tls.timer")[0].decode()
        assert "OnBootSec=" in timer and "OnCalendar=daily" in timer and "Persistent=true" in timer
        service = _file(text, "/etc/systemd/system/foobar-tls.service")[0].decode()
        jobs = re.findall(r"^ExecStart=(.+)$", service, re.M)
        expected = [f"{BOOT} fetch-tls /etc/foobar/tls.json"]
        if role == "lb" and stack != "dev":
            expected.append(f"{BOOT} refresh-cert /etc/foobar/acm.json")
        assert jobs == expected, (stack, role)
        assert re.search(r"^TimeoutStartSec=\d+min$", service, re.M), "a stuck run can't block the next ones"
        assert "systemctl enable --now foobar-tls.timer" in _runcmd(text)
        assert not [p for p in decoded_files(text) if "refresh-cert" in p], "no second timer"


SHIPPED_JOBS = {
    "lb": {"install", "private-address", "fetch-tls", "fetch-app", "refresh-cert"},
    "web": {"install", "fetch-tls", "launch-hook"},
    "app": {"install", "fetch-tls", "fetch-app", "app-env", "launch-hook"},
}
"""Per role of the prod stack (ACM; the app from S3, the site inline, the discovery agent from S3)."""


@pytest.mark.parametrize("role", ["lb", "web", "app"])
def test_each_role_ships_the_jobs_it_runs_and_all_they_use(
    rendered: dict[tuple[str, str], str], tmp: Path, role: str
) -> None:
    text = rendered["prod", role]
    module = _file(text, BOOT)[0].decode()
    called = {cmd.split()[1] for cmd in _runcmd(text) if cmd.startswith(BOOT)}
    for unit in ("foobar-tls.service", "foobar-app-env.service"):
        if f"/etc/systemd/system/{unit}" in decoded_files(text):
            body = _file(text, f"/etc/systemd/system/{unit}")[0].decode()
            called |= {m.split()[0] for m in re.findall(rf"^ExecStart={BOOT} (.+)$", body, re.M)}
    namespace: dict[str, Any] = {"__name__": "shipped"}
    exec(compile(module, BOOT, "exec"), namespace)
    assert set(namespace["JOBS"]) == called == SHIPPED_JOBS[role]
    assert ("refresh_cert" in namespace) is (role == "lb") and ("app_env" in namespace) is (role == "app")
    assert ("private_address" in namespace) is (role == "lb") and ("launch_hook" in namespace) is (role != "lb")
    assert ("healthz" in namespace) is (role != "lb") and ("ipaddress" in namespace) is (role == "lb")
    # Nothing left refers to a function that was left out (ruff's undefined-name check).
    (tmp / "boot.py").write_text(module)
    ruff = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--isolated", "--select", "F821,F811", str(tmp / "boot.py")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ruff.returncode == 0, ruff.stdout


def test_tls_plan_keeps_keys_private(rendered: dict[tuple[str, str], str]) -> None:
    import json

    for (stack, role), text in rendered.items():
        plan = json.loads(_file(text, "/etc/foobar/tls.json")[0])
        assert plan["param_path"] == f"/foobar/{stack}/{role}"
        for f in plan["files"]:
            if "tls-key" in f["parts"]:
                assert f["mode"] == 0o600, f"{f['path']} holds a key"
        key_paths = {f["path"] for f in plan["files"] if "tls-key" in f["parts"]}
        assert key_paths == ({c.HAPROXY_SITE_PEM, c.HAPROXY_INTERNAL_PEM} if role == "lb" else {c.NGINX_KEY})


def test_lb_acm_refresh_only_with_an_arn(rendered: dict[tuple[str, str], str]) -> None:
    import json

    dev, prod = rendered["dev", "lb"], rendered["prod", "lb"]
    assert "/etc/foobar/acm.json" not in decoded_files(dev)
    acm = json.loads(_file(prod, "/etc/foobar/acm.json")[0])
    assert acm["certificate_arn"] == ARN and acm["pem_path"] == c.HAPROXY_SITE_PEM
    assert f"{BOOT} refresh-cert /etc/foobar/acm.json" in _runcmd(prod)
    # With ACM the fetch job must not overwrite the exported certificate; without it, it must.
    for text, keep in ((dev, False), (prod, True)):
        plan = json.loads(_file(text, "/etc/foobar/tls.json")[0])
        site = next(f for f in plan["files"] if f["path"] == c.HAPROXY_SITE_PEM)
        assert bool(site.get("keep_existing")) is keep


def test_app_box_runs_gunicorn_gthread_with_env_file(rendered: dict[tuple[str, str], str]) -> None:
    import json

    text = rendered["prod", "app"]
    unit = _file(text, "/etc/systemd/system/foobar-app.service")[0].decode()
    assert "--worker-class gthread" in unit and "--bind 127.0.0.1:8000" in unit
    assert "EnvironmentFile=/etc/foobar/app.env" in unit and "'app.main:create_app()'" in unit
    env = json.loads(_file(text, "/etc/foobar/app-env.json")[0])
    assert env["ca_url"] == "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"
    assert env["ca_file"] == "/etc/foobar/rds-ca.pem" and env["db_port"] == 3306 and env["db_name"] == "foobar"
    runcmd = yaml.safe_load(text)["runcmd"]
    assert ["systemctl", "start", "--no-block", "foobar-app.service"] in runcmd, "cloud-init must not wait for RDS"


def test_app_code_embedded_when_no_archive_url(tmp: Path) -> None:
    app = tmp / "app"
    (app / "__pycache__").mkdir(parents=True)
    (app / "tests").mkdir()
    (app / "__init__.py").write_text("")
    (app / "main.py").write_text("def create_app():\n    return None\n")
    (app / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"\0")
    (app / "tests" / "test_main.py").write_text("")
    values = RoleValues(role="app", stack="dev", region="eu-west-1", domain="d.example", param_path="/foobar/dev/app")
    files = decoded_files(r.render_cloud_config(values, app_dir=app))
    shipped = {p for p in files if p.startswith("/opt/foobar/app/")}
    assert shipped == {"/opt/foobar/app/__init__.py", "/opt/foobar/app/main.py"}
    assert files["/opt/foobar/app/main.py"][0] == (app / "main.py").read_bytes()
    assert files["/opt/foobar/app/main.py"][1]["encoding"] == "gz+b64"


def test_too_big_user_data_is_refused_with_a_hint(tmp: Path) -> None:
    app = tmp / "app"
    app.mkdir()
    (app / "main.py").write_bytes(__import__("os").urandom(12000))  # random: gzip cannot shrink it
    values = RoleValues(role="app", stack="dev", region="eu-west-1", domain="d.example", param_path="/foobar/dev/app")
    with pytest.raises(ValueError, match="app_archive_url"):
        r.render_cloud_config(values, app_dir=app)


def test_web_box_ships_fingerprinted_site(rendered: dict[tuple[str, str], str]) -> None:
    files = decoded_files(rendered["prod", "web"])
    site = {p.removeprefix(c.SITE_ROOT + "/"): data for p, (data, _) in files.items() if p.startswith(c.SITE_ROOT)}
    css = [p for p in site if re.fullmatch(r"static/app\.[0-9a-f]{12}\.css", p)]
    assert len(css) == 1 and site["static/app.css"] == site[css[0]]  # the plain name stays for the app
    assert f'href="/{css[0]}"'.encode() in site["index.html"]
    assert {"index.html", "404.html", "favicon.ico", "robots.txt"} <= set(site)


def test_bad_values_are_refused_naming_the_setting() -> None:
    base = STACKS["dev"]["lb"]
    from dataclasses import replace

    with pytest.raises(ValueError, match=r"HaproxyConfig\.stats_address"):
        c.HaproxyConfig(stats_address="10.0.0.1; rm")
    with pytest.raises(ValueError, match=r"RoleValues\.acm_certificate_arn"):
        cloud_config(replace(base, acm_certificate_arn="not-an-arn"))
    with pytest.raises(ValueError, match=r"RoleValues\.app_archive_sha256"):
        cloud_config(replace(STACKS["dev"]["app"], app_archive_sha256="abc"))


# The AWS files as rendered, with the server paths pointed at files that exist here.


def _localize(text: str, mapping: dict[str, Path]) -> str:
    for aws_path, local in sorted(mapping.items(), key=lambda kv: -len(kv[0])):
        text = text.replace(aws_path, str(local))
    return text


@pytest.mark.parametrize("stack", list(STACKS))
def test_haproxy_cfg_from_user_data_passes_haproxy(
    rendered: dict[tuple[str, str], str], pki: Pki, tmp: Path, stack: str
) -> None:
    cfg = _file(rendered[stack, "lb"], c.HAPROXY_CFG)[0].decode()
    local = _localize(
        cfg,
        {
            c.HAPROXY_SITE_PEM: pki.combined("www.foobar.com"),
            c.HAPROXY_CA: pki.ca,
            "/run/haproxy/admin.sock": tmp / "admin.sock",
            c.HAPROXY_SERVER_STATE: tmp / "server-state",
        },
    )
    (tmp / "server-state").write_text("1\n")  # the agent's file: without it HAProxy warns
    path = tmp / "haproxy.cfg"
    path.write_text(local)
    check_haproxy(path)
    _assert_haproxy_policy(cfg, STACKS[stack]["lb"])


def _assert_haproxy_policy(cfg: str, values: RoleValues) -> None:
    lines = [line.strip() for line in cfg.splitlines()]
    assert "ssl-default-bind-options prefer-client-ciphers ssl-min-ver TLSv1.2 no-tls-tickets" in lines
    assert f"ssl-default-bind-ciphers {c.TLS12_CIPHERS}" in lines
    assert "ssl-default-bind-curves X25519:prime256v1:secp384r1" in lines
    assert "http-request redirect scheme https code 308" in lines
    assert 'http-after-response set-header Strict-Transport-Security "max-age=63072000; includeSubDomains"' in lines
    assert "http-response del-header Server" in lines
    assert "http-request use-service prometheus-exporter if { path /metrics }" in lines
    for role in ("web", "app"):
        name = f"{role}.{values.internal_domain}"
        assert (
            f"default-server ssl verify required ca-file {c.HAPROXY_CA} sni str({name}) verifyhost {name} "
            f"check check-sni {name}"
        ) in " ".join(lines)
        assert f"http-check send meth GET uri /healthz ver HTTP/1.1 hdr Host {name}" in lines
        assert re.search(rf"default-server ssl .* check-sni {name} .* init-addr none$", cfg, re.M)
        assert f"server-template {role} 1-40 0.0.0.0:443 disabled" in lines  # 2 x webMax/appMax's 20
    # No backend server in the file: the discovery agent fills the slots and saves their state.
    assert not [line for line in lines if line.startswith("server ")]
    assert f"server-state-file {c.HAPROXY_SERVER_STATE}" in lines and "load-server-state-from-file global" in lines
    # Stats and metrics only on the private address; the public binds are on 80/443 only.
    binds = [line for line in lines if line.startswith("bind ")]
    assert binds == [
        "bind :80",
        f"bind :443 ssl crt {c.HAPROXY_SITE_PEM} alpn h2,http/1.1",
        'bind "${FOOBAR_PRIVATE_IP}:8404"',
    ]
    # HAProxy lets idle connections go before nginx does (75 s).
    for key in ("timeout http-keep-alive", "pool-purge-delay"):
        value = re.search(rf"{key} (\d+)s", cfg)
        assert value and int(value.group(1)) < c.BACKEND_KEEPALIVE_S


@pytest.mark.parametrize("role", ["web", "app"])
def test_nginx_conf_from_user_data_passes_nginx(
    rendered: dict[tuple[str, str], str], pki: Pki, tmp: Path, role: str
) -> None:
    conf = _file(rendered["prod", role], c.NGINX_CONF)[0].decode()
    crt, key = pki.leaf(f"{role}.foobar.internal")
    local = _localize(
        conf,
        {
            c.NGINX_CERT: crt,
            c.NGINX_KEY: key,
            "/run/nginx.pid": tmp / "nginx.pid",
            "/var/log/nginx/": tmp,
        },
    )
    local = local.replace("http {", f"http {{\n    client_body_temp_path {tmp}/body;\n    proxy_temp_path {tmp}/proxy;")
    path = tmp / "nginx.conf"
    path.write_text(local)
    check_nginx(path, tmp)
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in conf and "ssl_session_tickets off;" in conf
    assert "ssl_prefer_server_ciphers off;" in conf and "keepalive_timeout 75s;" in conf
    assert "listen 127.0.0.1:8081;" in conf and "stub_status;" in conf
    assert "gzip_vary on;" in conf


def test_checkers_reject_broken_files(pki: Pki, tmp: Path) -> None:
    """The checks above mean something: each tool fails on a broken file."""
    bad_haproxy = tmp / "bad.cfg"
    good = c.render_haproxy_cfg(
        c.HaproxyConfig(
            stats_address="127.0.0.1",
            server_state_file=str(tmp / "server-state"),
            cert_file=str(pki.combined("www.foobar.com")),
            ca_file=str(pki.ca),
            chroot="",
            stats_socket="",
        )
    )
    (tmp / "server-state").write_text("1\n")
    bad_haproxy.write_text(good)
    check_haproxy(bad_haproxy)
    bad_haproxy.write_text(good.replace("timeout client 30s\n", ""))  # only a warning: -dW makes it fatal
    with pytest.raises(CheckFailed, match="timeout"):
        check_haproxy(bad_haproxy)
    bad_haproxy.write_text(good.replace(str(pki.ca), str(tmp / "missing-ca.pem")))
    with pytest.raises(CheckFailed):
        check_haproxy(bad_haproxy)
    bad_nginx = tmp / "bad-nginx.conf"
    bad_nginx.write_text("events {}\nhttp { server { listen 127.0.0.1:1 ssl; bogus_directive on; } }\n")
    with pytest.raises(CheckFailed, match="bogus_directive"):
        check_nginx(bad_nginx, tmp)
    bad_cc = tmp / "bad-user-data"
    bad_cc.write_text("#cloud-config\npackages: 5\n")
    with pytest.raises(CheckFailed):
        check_cloud_config(bad_cc)
    bad_cc.write_text("packages: [nginx]\n")  # no #cloud-config header
    with pytest.raises(CheckFailed):
        check_cloud_config(bad_cc)


def test_web_fetches_the_site_from_s3_when_given_an_archive() -> None:
    import dataclasses

    web = dataclasses.replace(
        STACKS["prod"]["web"], site_archive_url="s3://foobar-artifacts/site/x.tar.gz", site_archive_sha256="b" * 64
    )
    text = cloud_config(web)
    files = decoded_files(text)
    assert not any(path.startswith("/var/www/foobar/") for path in files), "no site files inline"
    fetch = json.loads(files["/etc/foobar/site-archive.json"][0])
    assert fetch == {
        "region": web.region,
        "archive_url": "s3://foobar-artifacts/site/x.tar.gz",
        "sha256": "b" * 64,
        "dest": "/var/www",
        "top": "foobar",
    }
    runcmd = _runcmd(text)
    assert runcmd.index(f"{BOOT} fetch-app /etc/foobar/site-archive.json") < runcmd.index("systemctl restart nginx")
    with pytest.raises(ValueError, match="site_archive_sha256"):
        cloud_config(dataclasses.replace(web, site_archive_sha256="nope"))


def test_the_app_writes_the_log_the_agent_ships(rendered: dict[tuple[str, str], str]) -> None:
    """The CloudWatch agent collects files: the app's unit must write the one the agent reads."""
    from userdata.agent import LOG_FILES

    unit = decoded_files(rendered["prod", "app"])["/etc/systemd/system/foobar-app.service"][0].decode()
    written = re.search(r"^StandardOutput=append:(\S+)$", unit, re.M)
    assert written, unit
    assert written.group(1) in {f.path for f in LOG_FILES["app"]}
    assert "StandardError=inherit" in unit
    # systemd opens StandardOutput= before it creates LogsDirectory= (found booting the user-data:
    # "Failed at step STDOUT", restarting for ever): the file must be in a folder that always exists.
    assert str(PurePosixPath(written.group(1)).parent) == "/var/log"


# No fixed address: the load balancer learns its own at boot, and finds its backends at run time.


def test_lb_takes_its_private_address_from_imds_before_haproxy_starts(
    rendered: dict[tuple[str, str], str], pki: Pki, tmp: Path
) -> None:
    """The rendered plan, run by the shipped job against a fake IMDSv2: the variable HAProxy's config
    binds its stats listener to comes from the env file its unit loads, and the agent scrapes there."""
    from tests.configs.test_boot import FakeImds
    from userdata.agent import PROMETHEUS_CONFIG_PATH

    text = rendered["prod", "lb"]
    files = written_files(text)
    dropin = files["/etc/systemd/system/haproxy.service.d/foobar.conf"][0].decode()
    assert re.findall(r"^EnvironmentFile=(.+)$", dropin, re.M) == ["-/etc/foobar/private-address.env"]
    assert PROMETHEUS_CONFIG_PATH not in files, "written by the job, from the staged copy"
    plan = json.loads(files["/etc/foobar/private-address.json"][0])
    assert plan["name"] == c.PRIVATE_IP_ENV and plan["env_file"] == "/etc/foobar/private-address.env"
    assert plan["files"] == [
        {"src": "/etc/foobar/foobar-prometheus.yaml", "dest": PROMETHEUS_CONFIG_PATH, "mode": 0o644}
    ]
    assert 0 < plan["deadline_s"] <= 300
    # Run it, the server's paths pointed into tmp.
    local = {
        path: tmp / path.lstrip("/") for path in (plan["env_file"], plan["files"][0]["src"], PROMETHEUS_CONFIG_PATH)
    }
    local[plan["files"][0]["src"]].parent.mkdir(parents=True)
    local[plan["files"][0]["src"]].write_bytes(files[plan["files"][0]["src"]][0])
    program = tmp / "foobar-boot"
    program.write_bytes(files[BOOT][0])
    with FakeImds({"local-ipv4": "127.0.0.1"}) as imds:
        (tmp / "plan.json").write_text(_localize(json.dumps({**plan, "imds": imds.base}), local))
        subprocess.run(["/usr/bin/python3", str(program), "private-address", str(tmp / "plan.json")], check=True)
    env = dict(line.split("=", 1) for line in local[plan["env_file"]].read_text().splitlines())
    assert env == {"FOOBAR_PRIVATE_IP": "127.0.0.1"}
    scrape = yaml.safe_load(local[PROMETHEUS_CONFIG_PATH].read_text())
    assert scrape["scrape_configs"][0]["static_configs"][0]["targets"] == ["127.0.0.1:8404"]
    # HAProxy's config from the same user-data takes it, and refuses to start without it.
    cfg = _file(text, c.HAPROXY_CFG)[0].decode()
    assert f'bind "${{{plan["name"]}}}:8404"' in cfg
    (tmp / "server-state").write_text("1\n")
    local_cfg = tmp / "haproxy.cfg"
    local_cfg.write_text(
        _localize(
            cfg,
            {
                c.HAPROXY_SITE_PEM: pki.combined("www.foobar.com"),
                c.HAPROXY_CA: pki.ca,
                "/run/haproxy/admin.sock": tmp / "admin.sock",
                c.HAPROXY_SERVER_STATE: tmp / "server-state",
            },
        )
    )
    base = {k: v for k, v in os.environ.items() if k != plan["name"]}
    for extra, ok in ((env, True), ({}, False)):
        result = subprocess.run(
            ["haproxy", "-c", "-q", "-f", str(local_cfg), "-f", str(peers_alone(tmp / "peers.cfg", "127.0.0.1"))],
            env={**base, **extra},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (result.returncode == 0) is ok, result.stdout + result.stderr


def test_discovery_agent_runs_on_the_lb(rendered: dict[tuple[str, str], str], tmp: Path) -> None:
    """foobar-discovery.service: the node package from S3, this stack's groups, HAProxy's admin socket
    and the server-state file haproxy.cfg loads; restarted for ever, started after HAProxy."""
    for stack in STACKS:
        text = rendered[stack, "lb"]
        files = written_files(text)
        unit = files["/etc/systemd/system/foobar-discovery.service"][0].decode()
        (command,) = re.findall(r"^ExecStart=(.+)$", unit, re.M)
        argv = shlex.split(command)
        assert argv[:3] == ["/usr/bin/python3", "-m", "node.discovery"]
        args = dict(zip(argv[3::2], argv[4::2], strict=True))
        cfg = _file(text, c.HAPROXY_CFG)[0].decode()
        assert f"stats socket {args['--socket']} " in cfg and f"server-state-file {args['--state-file']}\n" in cfg
        assert args["--state-file"] == c.HAPROXY_SERVER_STATE == "/var/lib/haproxy/server-state"
        assert (args["--source"], args["--stack"], args["--region"]) == ("asg", stack, "eu-west-1")
        assert args["--cache"] == "/var/lib/foobar/discovery.json" and args["--interval"] == "5"
        assert [a for a in argv if "=" in a and not a.startswith("-")] == ["web=web", "app=app"]
        for line in ("Restart=always", "StartLimitIntervalSec=0", "StateDirectory=foobar", "ProtectSystem=strict"):
            assert line in unit.splitlines(), line
        assert (
            "After=network-online.target haproxy.service" in unit
            and "Wants=network-online.target haproxy.service" in unit
        )
        assert "Environment=PYTHONPATH=/opt/foobar PYTHONDONTWRITEBYTECODE=1" in unit
        assert "ReadWritePaths=-/run/haproxy -/var/lib/haproxy" in unit
        fetch = json.loads(files["/etc/foobar/node-archive.json"][0])
        assert fetch == {
            "region": "eu-west-1",
            "archive_url": f"s3://foobar-{stack}-artifacts/lb/{NODE_SHA256}.tar.gz",
            "sha256": NODE_SHA256,
            "dest": "/opt/foobar",
            "top": "node",
        }
        runcmd = _runcmd(text)
        assert runcmd.index(f"{BOOT} fetch-app /etc/foobar/node-archive.json") < runcmd.index(
            "systemctl restart haproxy"
        )
        assert "foobar-discovery.service" in _enabled(runcmd)
        assert not [p for p in files if p.startswith("/opt/foobar/node/")], "no code inline"
    unit_file = written_files(rendered["prod", "lb"])["/etc/systemd/system/foobar-discovery.service"][0]
    _verify_units(tmp, {"foobar-discovery.service": unit_file})


def _enabled(runcmd: list[str]) -> set[str]:
    """The units the boot enables with `systemctl enable A B ...`."""
    return {unit for step in runcmd if step.startswith("systemctl enable ") for unit in step.split()[2:]}


def _verify_units(tmp: Path, units: dict[str, bytes]) -> None:
    """systemd itself reads each unit: no unknown key, no bad value."""
    for name, data in units.items():
        (tmp / name).write_bytes(data)
    verify = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *(str(tmp / name) for name in units)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    problems = [line for line in verify.stderr.splitlines() if any(name in line for name in units)]
    assert verify.returncode == 0 and not problems, verify.stderr


@pytest.mark.parametrize(("stack", "pair"), [("dev", False), ("prod", True)])
def test_lb_runs_the_pair_agent_and_the_eip_reconcile(
    rendered: dict[tuple[str, str], str], tmp: Path, stack: str, pair: bool
) -> None:
    """node.pair writes HAProxy's peers (and with a pair keepalived's config) before they start;
    node.eip keeps the site's Elastic IP on the MASTER, or on the single LB; HAProxy loads the peers."""
    text = rendered[stack, "lb"]
    values = STACKS[stack]["lb"]
    files = written_files(text)
    unit = files["/etc/systemd/system/foobar-pair.service"][0].decode()
    (command,) = re.findall(r"^ExecStart=(.+)$", unit, re.M)
    argv = shlex.split(command)
    assert argv[:3] == ["/usr/bin/python3", "-m", "node.pair"]
    flags = [a for a in argv[3:] if a.startswith("--")]
    args = dict(zip(argv[3::2], argv[4::2], strict=False))
    assert args["--own-address"] == "${FOOBAR_PRIVATE_IP}"  # systemd expands it from the env file
    assert (args["--source"], args["--stack"], args["--region"]) == ("ec2", stack, "eu-west-1")
    assert args["--peers-file"] == c.HAPROXY_PEERS and args["--haproxy-config"] == c.HAPROXY_CFG
    assert (args["--peers-cert"], args["--peers-ca"]) == (c.HAPROXY_INTERNAL_PEM, c.HAPROXY_CA)
    assert args["--peers-verify-name"] == "lb.foobar.internal"
    assert "Type=notify" in unit.splitlines() and "EnvironmentFile=/etc/foobar/private-address.env" in unit
    assert "Before=haproxy.service" + (" keepalived.service" if pair else "") in unit
    if pair:
        assert "--no-keepalived" not in flags and args["--notify"] == r.EIP_NOTIFY
        assert r.EIP_NOTIFY.startswith("/usr/bin/python3 /opt/foobar/node/eip.py --config /etc/foobar/eip.json")
        dropin = files[r.KEEPALIVED_DROPIN][0].decode()
        assert "After=haproxy.service foobar-pair.service" in dropin
    else:
        assert "--no-keepalived" in flags and "--notify" not in flags
        assert r.KEEPALIVED_DROPIN not in files
    eip = json.loads(files[r.EIP_CONFIG][0])
    assert eip == {
        "allocation-id": values.eip_allocation_id,
        "stack": stack,
        "region": "eu-west-1",
        "single": not pair,
    }
    reconcile = files["/etc/systemd/system/foobar-eip.service"][0].decode()
    assert "ExecStart=/usr/bin/python3 -m node.eip --config /etc/foobar/eip.json reconcile" in reconcile
    assert "RuntimeDirectory=foobar" in reconcile and "Restart=always" in reconcile
    haproxy = files[r.HAPROXY_DROPIN][0].decode()
    files_args = f"-f {c.HAPROXY_CFG} -f {c.HAPROXY_PEERS}"
    assert f"ExecStart=/usr/sbin/haproxy -Ws {files_args} -p $PIDFILE $EXTRAOPTS" in haproxy.splitlines()
    assert f"ExecReload=/usr/sbin/haproxy -Ws {files_args} -c -q $EXTRAOPTS" in haproxy.splitlines()
    assert haproxy.count("ExecStart=\n") == 1 and haproxy.count("ExecReload=\n") == 1  # the packaged ones go
    assert "Wants=foobar-pair.service" in haproxy and "After=foobar-pair.service" in haproxy
    enabled = _enabled(_runcmd(text))
    assert {"foobar-pair.service", "foobar-eip.service"} <= enabled
    assert ("keepalived.service" in enabled) is pair
    _verify_units(
        tmp,
        {
            name: files[f"/etc/systemd/system/{name}"][0]
            for name in ("foobar-pair.service", "foobar-eip.service", "foobar-discovery.service")
        },
    )


def test_lb_user_data_needs_the_sites_address() -> None:
    """Without its Elastic IP's allocation id, a load balancer could never claim the site's address."""
    lb = aws_lb(STACKS["prod"]["lb"])
    with pytest.raises(ValueError, match=r"RoleValues\.eip_allocation_id: '' is not an Elastic IP allocation id"):
        cloud_config(dataclasses.replace(lb, eip_allocation_id=""))
    with pytest.raises(ValueError, match=r"RoleValues\.lb_count: 3"):
        cloud_config(dataclasses.replace(lb, lb_count=3))
    with pytest.raises(ValueError, match=r"RoleValues\.vpc_cidr: 'ten'"):
        cloud_config(dataclasses.replace(lb, vpc_cidr="ten"))
    with pytest.raises(ValueError, match=r"RoleValues\.eip_allocation_id: only the 'lb' role"):
        cloud_config(dataclasses.replace(STACKS["prod"]["web"], eip_allocation_id="eipalloc-0a1b2c3d4e5f60718"))


def test_lb_without_the_node_archive_is_refused_with_a_hint() -> None:
    """The discovery agent doesn't fit in the load balancer's 16 KB: without its S3 archive, no user-data."""
    with pytest.raises(ValueError, match=r"over EC2's 16384 \(set RoleValues\.node_archive_url"):
        cloud_config(STACKS["prod"]["lb"])
    with pytest.raises(ValueError, match=r"RoleValues\.node_archive_sha256"):
        cloud_config(dataclasses.replace(aws_lb(STACKS["prod"]["lb"]), node_archive_sha256="nope"))
    with pytest.raises(ValueError, match=r"RoleValues\.node_archive_url: only the 'lb' role"):
        cloud_config(
            dataclasses.replace(STACKS["dev"]["web"], node_archive_url="s3://b/k", node_archive_sha256="a" * 64)
        )


@pytest.mark.parametrize("role", ["web", "app"])
def test_web_and_app_complete_their_launch_hook(rendered: dict[tuple[str, str], str], role: str) -> None:
    """The hook the group waits on, the name HAProxy checks the server under, and a deadline that
    leaves time to abandon before the hook times out by itself."""
    from components.groups import LAUNCH_HOOK, LAUNCH_TIMEOUT_SECONDS

    text = rendered["prod", role]
    plan = json.loads(_file(text, "/etc/foobar/launch-hook.json")[0])
    haproxy = c.HaproxyConfig.for_aws(STACKS["prod"]["lb"])
    assert plan["hook"] == LAUNCH_HOOK == r.LAUNCH_HOOK
    assert plan["name"] == (haproxy.web_name if role == "web" else haproxy.app_name) == f"{role}.foobar.internal"
    assert 60 <= plan["deadline_s"] <= LAUNCH_TIMEOUT_SECONDS - 240
    assert plan["region"] == "eu-west-1" and plan["ca_file"] == r.INTERNAL_CA
    tls = json.loads(_file(text, "/etc/foobar/tls.json")[0])
    assert {"path": r.INTERNAL_CA, "parts": ["ca-cert"], "mode": 0o644} in tls["files"], "the CA it checks against"


SAMPLE_USER_DATA = (
    "#cloud-config\n# foobar web server of stack dev\nwrite_files:\n- path: /etc/foobar/packages.json\n"
    '  content: \'{"packages":["nginx","python3-boto3"],"deadline_s":900}\'\nruncmd:\n- set -e\n'
    "- [/usr/local/sbin/foobar-boot, install, /etc/foobar/packages.json]\n"
) * 3


def test_user_data_travels_as_the_same_bytes_everywhere() -> None:
    """A byte of difference in what `pulumi up` sends replaces every server: the gzip must not depend
    on the machine (its zlib build) or the time. Pinned: a change of compressor shows here first."""
    sent = for_ec2(SAMPLE_USER_DATA)
    assert hashlib.sha256(sent.encode()).hexdigest() == (
        "4c0e707b5b413a95fe11933302c02ac3baf32986cb2c92d312ed86ae8c5830cf"
    )
    raw = base64.b64decode(sent)
    assert raw[:2] == b"\x1f\x8b" and raw[4:8] == b"\0\0\0\0", "gzip, with no timestamp"
    assert from_ec2(sent) == SAMPLE_USER_DATA == gzip.decompress(raw).decode()


@pytest.mark.parametrize("role", ["lb", "web", "app"])
def test_monitoring_setup_is_its_own_unit_after_the_daemon(
    rendered: dict[tuple[str, str], str], tmp: Path, role: str
) -> None:
    """The agent's download retries in its own unit, started without waiting, after the role's
    daemon runs: cloud-init finishes and the role serves whether or not the download can succeed."""
    from userdata.agent import SETUP_SCRIPT_PATH, SETUP_UNIT, SETUP_UNIT_PATH

    text = rendered["dev", role]
    runcmd = _runcmd(text)
    assert f"systemctl start --no-block {SETUP_UNIT}" in runcmd
    assert SETUP_UNIT in _enabled(runcmd)
    daemon = "haproxy" if role == "lb" else "nginx"
    assert runcmd.index(f"systemctl restart {daemon}") < runcmd.index(f"systemctl start --no-block {SETUP_UNIT}")
    assert not [step for step in runcmd if "foobar-monitoring-setup" in step and "systemctl" not in step]
    unit = written_files(text)[SETUP_UNIT_PATH][0]
    assert SETUP_SCRIPT_PATH.encode() in unit
    # systemd-analyze checks that the command exists; the script is written by cloud-init on the server.
    _verify_units(tmp, {SETUP_UNIT: unit.replace(SETUP_SCRIPT_PATH.encode(), b"/bin/true")})
