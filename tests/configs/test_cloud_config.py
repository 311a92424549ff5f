"""The rendered user-data of every role, checked with cloud-init and the real daemons."""

from __future__ import annotations

import json
import re
from pathlib import Path

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
)
from tests.configs.conftest import ARN, STACKS
from userdata import RoleValues, cloud_config
from userdata import configs as c
from userdata import render as r

CASES = [(stack, role) for stack in STACKS for role in ("lb", "web", "app")]


@pytest.fixture(scope="module")
def rendered() -> dict[tuple[str, str], str]:
    return {(stack, role): cloud_config(STACKS[stack][role]) for stack, role in CASES}


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
    assert len(text.encode()) < 14 * 1024, f"{role} user-data is {len(text.encode())} bytes"
    everything = text.encode() + b"".join(data for data, _ in decoded_files(text).values())
    assert b"PRIVATE KEY" not in everything
    # No literal password: neither quoted in code nor as an environment line.
    assert not re.search(rb"(?i)passw(or)?d\w*\s*[=:]\s*[\"'][^\"']+[\"']", everything)
    assert not re.search(rb"(?im)^\w*PASSWORD\w*=", everything)


def test_rendering_is_deterministic() -> None:
    for role in ("lb", "web", "app"):
        assert cloud_config(STACKS["prod"][role]) == cloud_config(STACKS["prod"][role])


def test_packages_and_boot_order(rendered: dict[tuple[str, str], str]) -> None:
    agent = {"curl"}  # the CloudWatch agent's installer; web and app also export nginx's stub_status
    expected = {
        "lb": {"haproxy", "python3-boto3", "python3-cryptography"} | agent,
        "web": {"nginx", "python3-boto3", "prometheus-nginx-exporter"} | agent,
        "app": {"nginx", "python3-boto3", "gunicorn", "python3-flask", "python3-pymysql", "prometheus-nginx-exporter"}
        | agent,
    }
    for (_, role), text in rendered.items():
        doc = yaml.safe_load(text)
        assert set(doc["packages"]) == expected[role]
        runcmd = [" ".join(step) for step in doc["runcmd"]]
        daemon = r.DAEMON[role]
        assert runcmd[0] == r.FETCH_TLS, "TLS files come first"
        assert runcmd.index(f"systemctl restart {daemon}") > runcmd.index(r.FETCH_TLS)
        assert runcmd.index(f"systemctl enable {daemon}") > 0
        assert runcmd[-1] == "/usr/local/sbin/foobar-monitoring-setup", "the agent starts last, after the daemon"


def _file(text: str, path: str) -> tuple[bytes, dict[str, object]]:
    files = decoded_files(text)
    assert path in files, f"{path} not in user-data"
    return files[path]


def test_daemon_configs_are_deferred_until_packages_exist(rendered: dict[tuple[str, str], str]) -> None:
    for (_, role), text in rendered.items():
        path = c.HAPROXY_CFG if role == "lb" else c.NGINX_CONF
        assert _file(text, path)[1].get("defer") is True


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
    assert r.REFRESH_CERT not in decoded_files(dev)
    acm = json.loads(_file(prod, "/etc/foobar/acm.json")[0])
    assert acm["certificate_arn"] == ARN and acm["pem_path"] == c.HAPROXY_SITE_PEM
    timer = _file(prod, "/etc/systemd/system/foobar-refresh-cert.timer")[0].decode()
    assert "OnBootSec=" in timer and "OnCalendar=daily" in timer
    assert [r.REFRESH_CERT] in yaml.safe_load(prod)["runcmd"]
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

    with pytest.raises(ValueError, match=r"RoleValues\.private_address"):
        cloud_config(replace(base, private_address=""))
    with pytest.raises(ValueError, match=r"HaproxyConfig\.web_servers"):
        cloud_config(replace(base, web_backends=()))
    with pytest.raises(ValueError, match=r"Server\.address"):
        cloud_config(replace(base, app_backends=("10.0.0.1; rm",)))
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
        },
    )
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
    assert 'http-response set-header Strict-Transport-Security "max-age=63072000; includeSubDomains"' in lines
    assert "http-response del-header Server" in lines
    assert "http-request use-service prometheus-exporter if { path /metrics }" in lines
    for role in ("web", "app"):
        name = f"{role}.{values.internal_domain}"
        assert (
            f"default-server ssl verify required ca-file {c.HAPROXY_CA} sni str({name}) verifyhost {name} "
            f"check check-sni {name}"
        ) in " ".join(lines)
        assert f"http-check send meth GET uri /healthz ver HTTP/1.1 hdr Host {name}" in lines
    servers = [line.split() for line in lines if line.startswith("server ")]
    expected = [*values.web_backends, *values.app_backends]
    assert [s[2] for s in servers] == [f"{a}:443" for a in expected]
    # Stats and metrics only on the private address; the public binds are on 80/443 only.
    binds = [line for line in lines if line.startswith("bind ")]
    assert binds == [
        "bind :80",
        f"bind :443 ssl crt {c.HAPROXY_SITE_PEM} alpn h2,http/1.1",
        f"bind {values.private_address}:8404",
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
            web_servers=c.servers("web", ["127.0.0.2"]),
            app_servers=c.servers("app", ["127.0.0.3"]),
            stats_address="127.0.0.1",
            cert_file=str(pki.combined("www.foobar.com")),
            ca_file=str(pki.ca),
            chroot="",
            stats_socket="",
        )
    )
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
    runcmd = [" ".join(step) for step in yaml.safe_load(text)["runcmd"]]
    assert runcmd.index("/usr/local/sbin/foobar-fetch-site") < runcmd.index("systemctl restart nginx")
    with pytest.raises(ValueError, match="site_archive_sha256"):
        cloud_config(dataclasses.replace(web, site_archive_sha256="nope"))


def test_the_app_writes_the_log_the_agent_ships(rendered: dict[tuple[str, str], str]) -> None:
    """The CloudWatch agent collects files: the app's unit must write the one the agent reads."""
    from userdata.agent import LOG_FILES

    unit = decoded_files(rendered["prod", "app"])["/etc/systemd/system/foobar-app.service"][0].decode()
    written = re.search(r"^StandardOutput=append:(\S+)$", unit, re.M)
    assert written, unit
    assert written.group(1) in {f.path for f in LOG_FILES["app"]}
    assert "LogsDirectory=foobar" in unit and "StandardError=inherit" in unit
