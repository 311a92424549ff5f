"""Assembles the ``#cloud-config`` user-data of each role from the rendered files.

The document is built as data and dumped with PyYAML (no hand-made YAML quoting); multi-line files
use literal blocks so the user-data stays readable. Big or binary files (the site, the app code, the
boot module) go as ``gz+b64``. Output is deterministic (gzip without timestamps, sorted files), so
``user_data_replace_on_change`` replaces a server only when something really changed.
"""

from __future__ import annotations

import ast
import base64
import gzip
import io
import json
import re
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from userdata import RoleValues
from userdata.agent import agent_cloud_config_parts
from userdata.configs import (
    APP_UPSTREAM,
    ENV,
    HAPROXY_CA,
    HAPROXY_CFG,
    HAPROXY_INTERNAL_PEM,
    HAPROXY_SITE_PEM,
    NGINX_CERT,
    NGINX_CONF,
    NGINX_KEY,
    SITE_ROOT,
    WSGI_APP,
    HaproxyConfig,
    NginxAppConfig,
    NginxWebConfig,
    gunicorn_args,
    render_haproxy_cfg,
    render_nginx_app,
    render_nginx_web,
)
from userdata.site import SITE_DIR, fingerprint_files, read_site

APP_DIR = Path(__file__).resolve().parent.parent / "app"
BOOT_MODULE = Path(__file__).resolve().parent / "scripts" / "foobar_boot.py"

PACKAGES: dict[str, list[str]] = {
    "lb": ["haproxy", "python3-boto3", "python3-cryptography"],
    "web": ["nginx", "python3-boto3"],
    "app": ["nginx", "python3-boto3", "gunicorn", "python3-flask", "python3-pymysql"],
}
DAEMON = {"lb": "haproxy", "web": "nginx", "app": "nginx"}

LIB_DIR = "/usr/local/lib/foobar"
BOOT_MODULE_PATH = f"{LIB_DIR}/foobar_boot.py"
ETC_DIR = "/etc/foobar"
FETCH_TLS = "/usr/local/sbin/foobar-fetch-tls"
REFRESH_CERT = "/usr/local/sbin/foobar-refresh-cert"
APP_ENV_SCRIPT = "/usr/local/sbin/foobar-app-env"
APP_ROOT = "/opt/foobar"
APP_ENV_FILE = f"{ETC_DIR}/app.env"
RDS_CA_FILE = f"{ETC_DIR}/rds-ca.pem"
RDS_CA_URL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"
UNIT_DIR = "/etc/systemd/system"
FETCH_APP = "/usr/local/sbin/foobar-fetch-app"
FETCH_SITE = "/usr/local/sbin/foobar-fetch-site"
KEY_MODE = 0o600
EC2_USER_DATA_LIMIT = 16384


class _Dumper(yaml.SafeDumper):
    """Literal blocks for multi-line strings, so configs and units read as files in the user-data."""


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    if "\n" in data and not any(line != line.rstrip() for line in data.splitlines()):
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_Dumper.add_representer(str, _str)


PACK_ABOVE = 1024
"""Text files larger than this travel gzip+base64: every role's user-data must stay under 16 KB."""


def _text(path: str, content: str, mode: int = 0o644, *, defer: bool = False) -> dict[str, Any]:
    if len(content) > PACK_ABOVE:
        entry = packed_file(path, content.encode(), mode)
    else:
        entry = {"path": path, "permissions": f"0{mode:o}", "content": content}
    if defer:
        entry["defer"] = True
    return entry


def packed_file(path: str, content: bytes, mode: int = 0o644) -> dict[str, Any]:
    """gzip (no timestamp, so the output is stable) then base64."""
    data = base64.b64encode(gzip.compress(content, compresslevel=9, mtime=0)).decode()
    return {"path": path, "permissions": f"0{mode:o}", "encoding": "gz+b64", "content": data}


def _json(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True) + "\n"


def _unit(name: str, **context: object) -> dict[str, Any]:
    return _text(f"{UNIT_DIR}/{name}", ENV.get_template(f"systemd/{name}.j2").render(**context))


def _wrapper(path: str, job: str, config: str, purpose: str) -> dict[str, Any]:
    text = ENV.get_template("wrapper.sh.j2").render(module=BOOT_MODULE_PATH, job=job, config=config, purpose=purpose)
    return _text(path, text, 0o755)


def shipped_module(source: str) -> str:
    """The boot module as shipped: same code, without docstrings and comments (they stay in the repo).

    User-data has 16 KB; the explanations are for readers of the repository, not for the server.
    """
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            body = node.body
            first = body[0].value if body and isinstance(body[0], ast.Expr) else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                node.body = body[1:] or [ast.Pass()]
    return "#!/usr/bin/python3\n" + ast.unparse(tree) + "\n"


def tls_files(values: RoleValues) -> list[dict[str, Any]]:
    """Which files the fetch job writes from which SSM parameters (key files 0600)."""
    if values.role == "lb":
        return [
            {"path": HAPROXY_INTERNAL_PEM, "parts": ["tls-cert", "tls-key"], "mode": KEY_MODE},
            # With ACM the refresh job owns the served PEM; the internal one only fills the gap until then.
            {
                "path": HAPROXY_SITE_PEM,
                "parts": ["tls-cert", "tls-key"],
                "mode": KEY_MODE,
                "keep_existing": bool(values.acm_certificate_arn),
            },
            {"path": HAPROXY_CA, "parts": ["ca-cert"], "mode": 0o644},
        ]
    return [
        {"path": NGINX_CERT, "parts": ["tls-cert"], "mode": 0o644},
        {"path": NGINX_KEY, "parts": ["tls-key"], "mode": KEY_MODE},
    ]


def app_files(app_dir: Path = APP_DIR) -> dict[str, bytes]:
    """The app package, ``{path under app/: content}``: its Python files and the data files they read
    (templates); caches, compiled files, dotfiles and tests left out."""
    if not app_dir.is_dir():
        raise ValueError(f"app directory {app_dir} does not exist")
    out: dict[str, bytes] = {}
    for p in sorted(app_dir.rglob("*")):
        rel = p.relative_to(app_dir)
        if not p.is_file() or p.suffix in (".pyc", ".pyo") or p.name.startswith(("test_", ".")):
            continue
        if any(part in ("__pycache__", "tests") or part.startswith(".") for part in rel.parts):
            continue
        out[rel.as_posix()] = p.read_bytes()
    return out


def app_archive(app_dir: Path = APP_DIR) -> bytes:
    """The app package as a reproducible ``.tar.gz`` (``app/...``; fixed times, owners and modes).

    Same code, same bytes: its sha256 goes into the user-data, so a server is replaced exactly when the
    code changes. Upload it where ``RoleValues.app_archive_url`` points.
    """
    return _archive("app", app_files(app_dir))


def site_archive(site_dir: Path = SITE_DIR) -> bytes:
    """The fingerprinted static site as a reproducible ``.tar.gz`` (``foobar/...``), unpacked into
    /var/www on the web servers. Upload it where ``RoleValues.site_archive_url`` points."""
    files, _ = fingerprint_files(read_site(site_dir))
    return _archive(PurePosixPath(SITE_ROOT).name, dict(sorted(files.items())))


def _archive(top: str, files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel, content in files.items():
            info = tarfile.TarInfo(f"{top}/{rel}")
            info.size, info.mode, info.mtime = len(content), 0o644, 0
            tar.addfile(info, io.BytesIO(content))
    return gzip.compress(raw.getvalue(), compresslevel=9, mtime=0)


def _fetch_archive(values: RoleValues, kind: str, url: str, sha256: str, target: str) -> list[dict[str, Any]]:
    """The files of a boot job that unpacks an S3 archive as ``target`` (its top folder is target's name)."""
    path = PurePosixPath(target)
    fetch = {"region": values.region, "archive_url": url, "sha256": sha256, "dest": str(path.parent), "top": path.name}
    config = f"{ETC_DIR}/{kind}-archive.json"
    wrapper = FETCH_SITE if kind == "site" else FETCH_APP
    return [_text(config, _json(fetch)), _wrapper(wrapper, "fetch-app", config, f"Unpack the {kind} archive from S3.")]


def _check_archive(field: str, url: str, sha256: str) -> None:
    if url and not (url.startswith("s3://") and "/" in url.removeprefix("s3://")):
        raise ValueError(f"RoleValues.{field}_archive_url: {url!r} must look like s3://bucket/key")
    if url and not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise ValueError(f"RoleValues.{field}_archive_sha256: must be the archive's sha256 (64 hex digits)")


def _validate(values: RoleValues) -> None:
    if values.role not in PACKAGES:
        raise ValueError(f"RoleValues.role: {values.role!r} is not one of {sorted(PACKAGES)}")
    if not values.param_path.startswith("/") or values.param_path.endswith("/"):
        raise ValueError(f"RoleValues.param_path: {values.param_path!r} must start with '/' and not end with '/'")
    if not values.region:
        raise ValueError("RoleValues.region: must not be empty")
    if values.acm_certificate_arn and not values.acm_certificate_arn.startswith("arn:"):
        raise ValueError(f"RoleValues.acm_certificate_arn: {values.acm_certificate_arn!r} is not an ARN")
    _check_archive("app", values.app_archive_url, values.app_archive_sha256)
    _check_archive("site", values.site_archive_url, values.site_archive_sha256)
    if values.acm_certificate_arn and values.role != "lb":
        raise ValueError("RoleValues.acm_certificate_arn: only the 'lb' role serves the public certificate")


def build_cloud_config(values: RoleValues, *, app_dir: Path = APP_DIR, site_dir: Path = SITE_DIR) -> dict[str, Any]:
    """The cloud-config of one server as data (see :func:`render_cloud_config`)."""
    _validate(values)
    role, daemon = values.role, DAEMON[values.role]
    files: list[dict[str, Any]] = [
        packed_file(BOOT_MODULE_PATH, shipped_module(BOOT_MODULE.read_text()).encode(), 0o755),
        _text(
            f"{ETC_DIR}/tls.json",
            _json(
                {
                    "region": values.region,
                    "param_path": values.param_path,
                    "files": tls_files(values),
                    "reload_unit": daemon,
                }
            ),
        ),
        _wrapper(FETCH_TLS, "fetch-tls", f"{ETC_DIR}/tls.json", "Install this server's TLS files from SSM."),
        _unit("foobar-tls.service", reload_unit=daemon),
        _unit("foobar-tls.timer"),
    ]
    runcmd: list[list[str]] = [[FETCH_TLS]]
    timers = ["foobar-tls.timer"]
    services: list[str] = []

    if role == "lb":
        files.append(_text(HAPROXY_CFG, render_haproxy_cfg(HaproxyConfig.for_aws(values)), defer=True))
        if values.acm_certificate_arn:
            acm = {
                "region": values.region,
                "certificate_arn": values.acm_certificate_arn,
                "pem_path": HAPROXY_SITE_PEM,
                "reload_unit": daemon,
            }
            files += [
                _text(f"{ETC_DIR}/acm.json", _json(acm)),
                _wrapper(REFRESH_CERT, "refresh-cert", f"{ETC_DIR}/acm.json", "Serve the exported ACM certificate."),
                _unit("foobar-refresh-cert.service"),
                _unit("foobar-refresh-cert.timer"),
            ]
            runcmd.append([REFRESH_CERT])
            timers.append("foobar-refresh-cert.timer")
    elif role == "web":
        files.append(_text(NGINX_CONF, render_nginx_web(NginxWebConfig.for_aws(values)), defer=True))
        if values.site_archive_url:
            files += _fetch_archive(values, "site", values.site_archive_url, values.site_archive_sha256, SITE_ROOT)
            runcmd.append([FETCH_SITE])
        else:
            site, _ = fingerprint_files(read_site(site_dir))
            files += [packed_file(f"{SITE_ROOT}/{rel}", content) for rel, content in sorted(site.items())]
    else:
        files.append(_text(NGINX_CONF, render_nginx_app(NginxAppConfig.for_aws(values)), defer=True))
        if values.app_archive_url:
            files += _fetch_archive(values, "app", values.app_archive_url, values.app_archive_sha256, f"{APP_ROOT}/app")
            runcmd.append([FETCH_APP])
        else:
            code = app_files(app_dir)
            files += [packed_file(str(PurePosixPath(APP_ROOT) / "app" / rel), content) for rel, content in code.items()]
        env_config = {
            "region": values.region,
            "param_path": values.param_path,
            "env_file": APP_ENV_FILE,
            "ca_file": RDS_CA_FILE,
            "ca_url": RDS_CA_URL,
            "db_name": "foobar",
            "db_port": 3306,
        }
        files += [
            _text(f"{ETC_DIR}/app-env.json", _json(env_config)),
            _wrapper(APP_ENV_SCRIPT, "app-env", f"{ETC_DIR}/app-env.json", "Write the app's environment from SSM."),
            _unit("foobar-app-env.service", env_file=APP_ENV_FILE),
            _unit(
                "foobar-app.service",
                env_file=APP_ENV_FILE,
                app_root=APP_ROOT,
                args=" ".join(gunicorn_args(APP_UPSTREAM, workers=2, threads=8)),
                wsgi=WSGI_APP,
            ),
        ]
        services.append("foobar-app.service")

    runcmd += [
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "--now", *timers],
        ["systemctl", "enable", daemon],
        ["systemctl", "restart", daemon],
    ]
    if services:
        # The app waits for the database parameters in foobar-app-env; cloud-init must not wait with it.
        runcmd += [["systemctl", "enable", *services], ["systemctl", "start", "--no-block", *services]]
    # The monitoring agent (and the Sumo Logic collector when configured), its files packed small.
    agent = agent_cloud_config_parts(
        role,
        values.stack,
        region=values.region,
        private_address=values.private_address,
        log_group_prefix=values.log_group_prefix or None,
        sumo_token_parameter=values.sumo_token_parameter,
    )
    for entry in agent["write_files"]:
        files.append(packed_file(entry["path"], entry["content"].encode(), int(entry["permissions"], 8)))
    runcmd += agent["runcmd"]
    return {
        "package_update": True,
        "packages": [*PACKAGES[role], *(p for p in agent["packages"] if p not in PACKAGES[role])],
        "write_files": files,
        "runcmd": runcmd,
    }


def render_cloud_config(values: RoleValues, *, app_dir: Path = APP_DIR, site_dir: Path = SITE_DIR) -> str:
    """The ``#cloud-config`` user-data of one server: packages, files, and the boot order
    (TLS files first, then the daemon)."""
    doc = build_cloud_config(values, app_dir=app_dir, site_dir=site_dir)
    header = f"#cloud-config\n# foobar {values.role} server {values.index} of stack {values.stack}\n"
    text = header + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=4096, allow_unicode=False)
    size = len(text.encode())
    if size > EC2_USER_DATA_LIMIT:
        hint = " (set RoleValues.app_archive_url to ship the app code from S3)" if values.role == "app" else ""
        raise ValueError(f"user-data of the {values.role} role is {size} bytes, over EC2's {EC2_USER_DATA_LIMIT}{hint}")
    return text
