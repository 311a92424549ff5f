"""Assembles the ``#cloud-config`` user-data of each role from the rendered files.

The document is built as data and dumped with PyYAML (no hand-made YAML quoting); multi-line files
use literal blocks so the user-data stays readable. Big or binary files (the site, the app code, the
boot module) go as ``gz+b64``. Output is deterministic (gzip without timestamps, sorted files), so
``user_data_replace_on_change`` replaces a server only when something really changed.
"""

from __future__ import annotations

import ast
import base64
import functools
import gzip
import io
import ipaddress
import json
import re
import tarfile
from collections.abc import Collection
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from userdata import RoleValues, for_ec2
from userdata.agent import HAPROXY_BACKENDS, PROMETHEUS_CONFIG_PATH, agent_cloud_config_parts
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
    PRIVATE_IP_ENV,
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
NODE_DIR = Path(__file__).resolve().parent.parent / "node"
BOOT_MODULE = Path(__file__).resolve().parent / "scripts" / "foobar_boot.py"

PACKAGES: dict[str, list[str]] = {
    "lb": ["haproxy", "python3-boto3", "python3-cryptography", "python3-jinja2", "curl"],
    "web": ["nginx", "python3-boto3"],
    "app": ["nginx", "python3-boto3", "gunicorn", "python3-flask", "python3-pymysql"],
}
PAIR_PACKAGES = ["keepalived"]
"""What a load balancer of a pair adds (lbCount 2): VRRP between the two."""
DAEMON = {"lb": "haproxy", "web": "nginx", "app": "nginx"}
INSTALL_DEADLINE_S = {"role": 900, "agent": 600}
"""How long first boot retries apt: the role's packages (then it fails), the agent's (after the daemon runs)."""

BOOT = "/usr/local/sbin/foobar-boot"
"""The boot module, shipped as one executable: ``foobar-boot JOB CONFIG.json``."""
ETC_DIR = "/etc/foobar"
PACKAGES_PLAN = f"{ETC_DIR}/packages.json"
AGENT_PACKAGES_PLAN = f"{ETC_DIR}/agent-packages.json"
TLS_PLAN = f"{ETC_DIR}/tls.json"
APP_ENV_PLAN = f"{ETC_DIR}/app-env.json"
ACM_PLAN = f"{ETC_DIR}/acm.json"
APP_ROOT = "/opt/foobar"
APP_ENV_FILE = f"{ETC_DIR}/app.env"
RDS_CA_FILE = f"{ETC_DIR}/rds-ca.pem"
RDS_CA_URL = "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem"
UNIT_DIR = "/etc/systemd/system"
INTERNAL_CA = f"{ETC_DIR}/internal-ca.pem"
"""Web and app: the internal CA, to check their own /healthz as the load balancer does."""
PRIVATE_ADDRESS_PLAN = f"{ETC_DIR}/private-address.json"
PRIVATE_ADDRESS_ENV = f"{ETC_DIR}/private-address.env"
"""LB: ``FOOBAR_PRIVATE_IP=<address>``, written at boot from IMDS; haproxy.service loads it."""
HAPROXY_DROPIN = f"{UNIT_DIR}/haproxy.service.d/foobar.conf"
KEEPALIVED_DROPIN = f"{UNIT_DIR}/keepalived.service.d/foobar.conf"
PAIR_UNIT = "foobar-pair.service"
EIP_UNIT = "foobar-eip.service"
EIP_CONFIG = f"{ETC_DIR}/eip.json"
"""node.eip's settings: the site's Elastic IP, the stack, the region; one LB or a pair."""
EIP_NOTIFY = f"/usr/bin/python3 {APP_ROOT}/node/eip.py --config {EIP_CONFIG} --syslog notify"
"""What keepalived runs on each change of state (it appends the state): the MASTER claims the EIP.
The file itself, not ``-m``: keepalived can't set PYTHONPATH, and node.eip needs nothing else of node."""
DISCOVERY_UNIT = "foobar-discovery.service"
DISCOVERY_CACHE = "/var/lib/foobar/discovery.json"
"""The agent's last known members, so a restarted agent has a set while the groups can't be read."""
DISCOVERY_INTERVAL_S = 5
LAUNCH_PLAN = f"{ETC_DIR}/launch-hook.json"
LAUNCH_HOOK = "foobar-launch"
"""components.groups.LAUNCH_HOOK: the hook the boot completes (a test keeps the two equal)."""
LAUNCH_CHECK_DEADLINE_S = 600
APP_DATABASE_WAIT_S = 3600
"""How long a new app server waits (in Pending:Wait, with heartbeats) for the database's settings:
a first deploy creates RDS, Multi-AZ and the replica, in parallel with the servers."""
"""How long the boot waits for its own /healthz before it abandons the launch: below the hook's 900 s."""
IMDS_DEADLINE_S = 120
KEY_MODE = 0o600
EC2_USER_DATA_LIMIT = 16384


class _Dumper(yaml.SafeDumper):
    """Literal blocks for multi-line strings, so configs and units read as files in the user-data."""


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    if "\n" in data and not any(line != line.rstrip() for line in data.splitlines()):
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


class _Flow(list[str]):
    """A command line, dumped on one line (``- [systemctl, restart, nginx]``)."""


def _flow(dumper: yaml.SafeDumper, data: _Flow) -> yaml.SequenceNode:
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)


_Dumper.add_representer(str, _str)
_Dumper.add_representer(_Flow, _flow)


def _entry(path: str, mode: int, **rest: str) -> dict[str, Any]:
    """A write_files entry; 0644 is cloud-init's default mode, so it isn't spelled out (16 KB)."""
    return {"path": path, **({} if mode == 0o644 else {"permissions": f"0{mode:o}"}), **rest}


def _text(path: str, content: str, mode: int = 0o644) -> dict[str, Any]:
    """A text file as it is, unless it travels smaller gzip+base64: every role's user-data must stay
    under 16 KB (the tests hold it under 14)."""
    packed = packed_file(path, content.encode(), mode)
    return packed if len(packed["content"]) < len(content) else _entry(path, mode, content=content)


def packed_file(path: str, content: bytes, mode: int = 0o644) -> dict[str, Any]:
    """gzip (no timestamp, so the output is stable) then base64."""
    data = base64.b64encode(gzip.compress(content, compresslevel=9, mtime=0)).decode()
    return _entry(path, mode, encoding="gz+b64", content=data)


def without_comments(text: str) -> str:
    """A daemon config or unit without its comment lines: they explain the repository's templates to
    their readers, and cost the server's 16 KB of user-data."""
    return "".join(line for line in text.splitlines(keepends=True) if not line.lstrip().startswith("#"))


def _json(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n"


def _unit(name: str, **context: object) -> dict[str, Any]:
    return _text(f"{UNIT_DIR}/{name}", without_comments(ENV.get_template(f"systemd/{name}.j2").render(**context)))


def _is_str(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


class _Unannotate(ast.NodeTransformer):
    """Drops type hints: with ``from __future__ import annotations`` they never run anyway."""

    def visit_arg(self, node: ast.arg) -> ast.arg:
        node.annotation = None
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.FunctionDef:
        node.returns = None
        self.generic_visit(node)
        return node

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.stmt | None:
        if node.value is None:
            return None
        return ast.copy_location(ast.Assign(targets=[node.target], value=node.value), node)


def shipped_module(source: str, jobs: Collection[str] | None = None) -> str:
    """The boot module as shipped: same code, without docstrings, comments and type hints.

    User-data has 16 KB; the explanations (and type hints, checked by mypy here) are for readers
    of the repository, not for the server. With ``jobs``, only those ``@job`` functions and the
    functions, classes, imports and constants they (or the module's other statements) use: a web
    server carries no ACM export, a load balancer no app.env writer nor launch hook.
    """
    return _shipped_module(source, None if jobs is None else frozenset(jobs))


@functools.lru_cache(maxsize=32)
def _shipped_module(source: str, jobs: frozenset[str] | None) -> str:
    """:func:`shipped_module`, worked out once per source and set of jobs: the AST passes are a tenth
    of a mocked run of the program, and the tests run it for the same few roles and stacks often."""
    tree = _Unannotate().visit(ast.parse(source))
    # Without hints, ``from __future__ import annotations`` has nothing left to do.
    tree.body = [s for s in tree.body if not (isinstance(s, ast.ImportFrom) and s.module == "__future__")]
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            body = [s for s in node.body if not (isinstance(s, ast.Expr) and _is_str(s.value))]
            node.body = body or [ast.Pass()]
    if jobs is not None:
        tree.body = _without_unused(_used_by(tree.body, set(jobs)))
    return "#!/usr/bin/python3\n" + ast.unparse(tree) + "\n"


def _bound(node: ast.stmt) -> list[str]:
    """The names a module-level import or plain assignment binds ([] for anything else)."""
    if isinstance(node, ast.Import | ast.ImportFrom):
        return [(a.asname or a.name).split(".")[0] for a in node.names]
    if isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets):
        return [t.id for t in node.targets if isinstance(t, ast.Name)]
    return []


def _without_unused(body: list[ast.stmt]) -> list[ast.stmt]:
    """``body`` without the imports and constants nothing left uses (typing's, once the hints are
    gone; hashlib on a server that unpacks no archive), until none is left."""
    while True:
        used = {
            n.id
            for s in body
            for n in ast.walk(s)
            if isinstance(n, ast.Name) and not (isinstance(s, ast.Assign) and any(n is t for t in s.targets))
        }
        kept: list[ast.stmt] = []
        for s in body:
            names = _bound(s)
            if isinstance(s, ast.Import | ast.ImportFrom) and names:
                s.names = [a for a, name in zip(s.names, names, strict=True) if name in used]
                if s.names:
                    kept.append(s)
            elif not names or set(names) & used:
                kept.append(s)
        if len(kept) == len(body) and all(len(_bound(a)) == len(_bound(b)) for a, b in zip(kept, body, strict=True)):
            return kept
        body = kept


Definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


def _job_name(node: ast.stmt) -> str | None:
    """``name`` of a function decorated ``@job("name")``."""
    for d in getattr(node, "decorator_list", []):
        if isinstance(d, ast.Call) and isinstance(d.func, ast.Name) and d.func.id == "job" and d.args:
            arg = d.args[0]
            return arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else None
    return None


def _used_by(body: list[ast.stmt], jobs: set[str]) -> list[ast.stmt]:
    """``body`` without the jobs not asked for and the definitions nothing kept refers to."""
    defined = {n.name: n for n in body if isinstance(n, Definition)}
    offered = {name for n in body if (name := _job_name(n))}
    if jobs - offered:
        raise ValueError(f"boot module has no job {sorted(jobs - offered)}; it has {sorted(offered)}")
    roots = [n for n in body if not isinstance(n, Definition) or _job_name(n) in jobs]
    keep: set[str] = set()
    todo = [n.id for root in roots for n in ast.walk(root) if isinstance(n, ast.Name)]
    todo += [n.name for n in roots if isinstance(n, Definition)]
    while todo:
        name = todo.pop()
        if name in defined and name not in keep:
            keep.add(name)
            todo += [n.id for n in ast.walk(defined[name]) if isinstance(n, ast.Name)]
    return [n for n in body if not isinstance(n, Definition) or n.name in keep]


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
        {"path": INTERNAL_CA, "parts": ["ca-cert"], "mode": 0o644},
    ]


def app_files(app_dir: Path = APP_DIR) -> dict[str, bytes]:
    """The app package, ``{path under app/: content}``: its Python files and the data files they read
    (templates); caches, compiled files, dotfiles and tests left out. ``node/`` is packed the same way."""
    if not app_dir.is_dir():
        raise ValueError(f"package directory {app_dir} does not exist")
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


def node_archive(node_dir: Path = NODE_DIR) -> bytes:
    """The ``node`` package (the load balancer's discovery agent) as a reproducible ``.tar.gz``
    (``node/...``), unpacked into /opt/foobar on the load balancer. Upload it where
    ``RoleValues.node_archive_url`` points: it doesn't fit in the load balancer's 16 KB of user-data."""
    return _archive("node", app_files(node_dir))


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


def _archive_of(values: RoleValues, kind: str) -> tuple[str, str]:
    """``RoleValues.<kind>_archive_url`` and ``<kind>_archive_sha256`` (kind: app, site, node)."""
    return getattr(values, f"{kind}_archive_url"), getattr(values, f"{kind}_archive_sha256")


def _fetch_archive(values: RoleValues, kind: str, target: str, files: list[dict[str, Any]]) -> list[str]:
    """Adds the plan of the job that unpacks the role's S3 archive as ``target`` (its top folder is
    target's name) to ``files``; returns the runcmd step that runs it."""
    path = PurePosixPath(target)
    url, sha256 = _archive_of(values, kind)
    fetch = {"region": values.region, "archive_url": url, "sha256": sha256, "dest": str(path.parent), "top": path.name}
    config = f"{ETC_DIR}/{kind}-archive.json"
    files.append(_text(config, _json(fetch)))
    return [BOOT, "fetch-app", config]


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
    for kind in ("app", "site", "node"):
        _check_archive(kind, *_archive_of(values, kind))
    if values.acm_certificate_arn and values.role != "lb":
        raise ValueError("RoleValues.acm_certificate_arn: only the 'lb' role serves the public certificate")
    if _archive_of(values, "node")[0] and values.role != "lb":
        raise ValueError("RoleValues.node_archive_url: only the 'lb' role runs the discovery agent")
    if values.lb_count not in (1, 2):
        raise ValueError(f"RoleValues.lb_count: {values.lb_count!r}; a load balancer or a pair (1 or 2)")
    if values.role == "lb" and not re.match(r"^eipalloc-[0-9a-f]{8,17}$", values.eip_allocation_id):
        raise ValueError(
            f"RoleValues.eip_allocation_id: {values.eip_allocation_id!r} is not an Elastic IP allocation id"
            " (eipalloc-...); the load balancer claims the site's address with it"
        )
    if values.eip_allocation_id and values.role != "lb":
        raise ValueError("RoleValues.eip_allocation_id: only the 'lb' role holds the site's address")
    try:
        ipaddress.ip_network(values.vpc_cidr, strict=True)
    except ValueError:
        raise ValueError(f"RoleValues.vpc_cidr: {values.vpc_cidr!r} is not a network like 10.20.0.0/16") from None


def staged_path(path: str) -> str:
    """Where cloud-init writes a daemon's config: the install job moves it in place after the package."""
    return f"{ETC_DIR}/{PurePosixPath(path).name}"


def _discovery_args(values: RoleValues, cfg: HaproxyConfig) -> list[str]:
    """The agent's command line: this stack's groups, HAProxy's admin socket and server-state file."""
    args = ["--socket", cfg.stats_socket, "--source", "asg", "--stack", values.stack, "--region", values.region]
    for tier, backend in HAPROXY_BACKENDS.items():
        args += ["--backend", f"{tier}={backend}"]
    args += ["--interval", str(DISCOVERY_INTERVAL_S), "--cache", DISCOVERY_CACHE]
    return [*args, "--state-file", cfg.server_state_file]


def packages(values: RoleValues) -> list[str]:
    """The role's Debian packages; a load balancer of a pair also runs keepalived."""
    return PACKAGES[values.role] + (PAIR_PACKAGES if values.role == "lb" and values.lb_count == 2 else [])


def _pair_args(values: RoleValues, cfg: HaproxyConfig) -> list[str]:
    """node.pair's command line: the stack's load balancers from EC2, mutual TLS between their
    HAProxy peers with the internal certificate; with a pair, keepalived whose MASTER claims the EIP."""
    args = [
        *("--own-address", "${" + PRIVATE_IP_ENV + "}", "--source", "ec2"),
        *("--stack", values.stack, "--region", values.region),
        *("--haproxy-config", HAPROXY_CFG, "--peers-file", cfg.peers_file),
        *("--peers-cert", HAPROXY_INTERNAL_PEM, "--peers-ca", cfg.ca_file),
        *("--peers-verify-name", f"lb.{values.internal_domain}"),
    ]
    return [*args, "--notify", f'"{EIP_NOTIFY}"'] if values.lb_count == 2 else [*args, "--no-keepalived"]


def _lb_parts(values: RoleValues, cfg: HaproxyConfig, files: list[dict[str, Any]], node_dir: Path) -> list[str]:
    """The load balancer's own pieces: the private-address plan and HAProxy's drop-in that loads its
    result, the discovery agent's code (from S3, or inline while it fits) and unit. Returns the step
    that fetches the code, if any."""
    dropin = ENV.get_template("systemd/haproxy-foobar.conf.j2").render(
        name=PRIVATE_IP_ENV, env_file=PRIVATE_ADDRESS_ENV, pair_unit=PAIR_UNIT, config=HAPROXY_CFG, peers=cfg.peers_file
    )
    files.append(_text(HAPROXY_DROPIN, without_comments(dropin)))
    pair = values.lb_count == 2
    files.append(
        _unit(
            PAIR_UNIT,
            keepalived=pair,
            env_file=PRIVATE_ADDRESS_ENV,
            code_root=APP_ROOT,
            args=" ".join(_pair_args(values, cfg)),
        )
    )
    eip = {
        "allocation-id": values.eip_allocation_id,
        "stack": values.stack,
        "region": values.region,
        "single": not pair,
    }
    files.append(_text(EIP_CONFIG, _json(eip)))
    files.append(_unit(EIP_UNIT, pair=pair, code_root=APP_ROOT, config=EIP_CONFIG, run_dir="foobar"))
    if pair:
        keepalived = ENV.get_template("systemd/keepalived-foobar.conf.j2").render(pair_unit=PAIR_UNIT)
        files.append(_text(KEEPALIVED_DROPIN, without_comments(keepalived)))
    step: list[str] = []
    if _archive_of(values, "node")[0]:
        step = _fetch_archive(values, "node", f"{APP_ROOT}/node", files)
    else:
        files += [packed_file(f"{APP_ROOT}/node/{rel}", data) for rel, data in app_files(node_dir).items()]
    state = PurePosixPath(cfg.server_state_file).parent
    files.append(
        _unit(
            DISCOVERY_UNIT,
            code_root=APP_ROOT,
            args=" ".join(_discovery_args(values, cfg)),
            state_dir=PurePosixPath(DISCOVERY_CACHE).parent.name,
            socket_dir=PurePosixPath(cfg.stats_socket).parent,
            state_file_dir=state,
        )
    )
    return step


def build_cloud_config(
    values: RoleValues, *, app_dir: Path = APP_DIR, site_dir: Path = SITE_DIR, node_dir: Path = NODE_DIR
) -> dict[str, Any]:
    """The cloud-config of one server as data (see :func:`render_cloud_config`).

    No ``packages``: cloud-init's package module runs once, at a fixed point of the boot, and
    nothing retries it, so a server whose way out came a moment later (the load balancer before its
    Elastic IP) never got its daemon. The first runcmd step installs them, retrying until a deadline
    (``foobar-boot install``), then puts the daemon's config in place; ``set -e`` stops the boot at
    a step that gave up, so cloud-init reports it and no daemon starts half-configured.
    """
    _validate(values)
    role, daemon = values.role, DAEMON[values.role]
    tls = {"region": values.region, "param_path": values.param_path, "files": tls_files(values), "reload_unit": daemon}
    files: list[dict[str, Any]] = [_text(TLS_PLAN, _json(tls))]
    steps: list[list[str]] = [[BOOT, "fetch-tls", TLS_PLAN]]
    services: list[str] = []
    last: list[list[str]] = []  # after the daemon and the role's services: web and app complete their launch hook
    private_files: list[dict[str, Any]] = []  # LB: what the private-address job fills in from a staged copy

    if role == "lb":
        haproxy = HaproxyConfig.for_aws(values)
        daemon_config = (HAPROXY_CFG, render_haproxy_cfg(haproxy))
        # HAProxy's stats listener binds to the private address: known only at boot (IMDS).
        steps.insert(0, [BOOT, "private-address", PRIVATE_ADDRESS_PLAN])
        if fetch := _lb_parts(values, haproxy, files, node_dir):
            steps.append(fetch)
        services += [DISCOVERY_UNIT, PAIR_UNIT, EIP_UNIT, *(["keepalived.service"] if values.lb_count == 2 else [])]
        if values.acm_certificate_arn:
            acm = {
                "region": values.region,
                "certificate_arn": values.acm_certificate_arn,
                "pem_path": HAPROXY_SITE_PEM,
                "reload_unit": daemon,
            }
            files.append(_text(ACM_PLAN, _json(acm)))
            steps.append([BOOT, "refresh-cert", ACM_PLAN])
    elif role == "web":
        daemon_config = (NGINX_CONF, render_nginx_web(NginxWebConfig.for_aws(values)))
        if values.site_archive_url:
            steps.append(_fetch_archive(values, "site", SITE_ROOT, files))
        else:
            site, _ = fingerprint_files(read_site(site_dir))
            files += [packed_file(f"{SITE_ROOT}/{rel}", content) for rel, content in sorted(site.items())]
    else:
        daemon_config = (NGINX_CONF, render_nginx_app(NginxAppConfig.for_aws(values)))
        if values.app_archive_url:
            steps.append(_fetch_archive(values, "app", f"{APP_ROOT}/app", files))
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
            _text(APP_ENV_PLAN, _json(env_config)),
            _unit("foobar-app-env.service", boot=BOOT, plan=APP_ENV_PLAN, env_file=APP_ENV_FILE),
            _unit(
                "foobar-app.service",
                env_file=APP_ENV_FILE,
                app_root=APP_ROOT,
                args=" ".join(gunicorn_args(APP_UPSTREAM, workers=2, threads=8)),
                wsgi=WSGI_APP,
            ),
        ]
        services.append("foobar-app.service")
    if role != "lb":
        launch = {
            "region": values.region,
            "hook": LAUNCH_HOOK,
            "name": f"{role}.{values.internal_domain}",
            "ca_file": INTERNAL_CA,
            "deadline_s": LAUNCH_CHECK_DEADLINE_S,
        }
        if role == "app":  # gunicorn waits for the database's settings; the hook waits with it
            launch.update(wait_for_file=APP_ENV_FILE, wait_deadline_s=APP_DATABASE_WAIT_S)
        files.append(_text(LAUNCH_PLAN, _json(launch)))
        last.append([BOOT, "launch-hook", LAUNCH_PLAN])

    # One timer renews what the boot fetched: the internal certificate, and on the LB the ACM export.
    refresh = [step[1:] for step in steps if step[1] in ("fetch-tls", "refresh-cert")]
    files += [_unit("foobar-tls.service", boot=BOOT, jobs=refresh, reload_unit=daemon), _unit("foobar-tls.timer")]
    # The daemon's config waits beside the other plans; the install job puts it in place after the package.
    config_path, config_text = daemon_config
    files.append(_text(staged_path(config_path), without_comments(config_text)))
    install = {
        "packages": packages(values),
        "deadline_s": INSTALL_DEADLINE_S["role"],
        "files": [{"src": staged_path(config_path), "dest": config_path, "mode": 0o644}],
    }
    files.append(_text(PACKAGES_PLAN, _json(install)))
    runcmd: list[str | list[str]] = ["set -e", [BOOT, "install", PACKAGES_PLAN], *steps]
    runcmd += [
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "--now", "foobar-tls.timer"],
        ["systemctl", "enable", daemon],
        ["systemctl", "restart", daemon],
    ]
    if services:
        # The app waits for the database parameters in foobar-app-env; cloud-init must not wait with it.
        runcmd += [["systemctl", "enable", *services], ["systemctl", "start", "--no-block", *services]]
    # The launch hook before monitoring: a monitoring download that can't succeed never keeps a
    # server that answers out of service.
    runcmd += last

    # The monitoring agent (and the Sumo Logic collector when configured), its files packed small.
    # It comes after the daemon runs: a monitoring download that can't succeed never keeps the site down.
    agent = agent_cloud_config_parts(
        role,
        values.stack,
        region=values.region,
        private_address=values.private_address,
        log_group_prefix=values.log_group_prefix or None,
        sumo_token_parameter=values.sumo_token_parameter,
    )
    for entry in agent["write_files"]:
        path, mode, content = entry["path"], int(entry["permissions"], 8), entry["content"]
        if path.endswith(".json"):
            content = json.dumps(json.loads(content), separators=(",", ":")) + "\n"  # the same, smaller
        if path == PROMETHEUS_CONFIG_PATH and "${" + PRIVATE_IP_ENV + "}" in content:
            # Its scrape target is the private address: the private-address job writes it from this copy.
            private_files.append({"src": staged_path(path), "dest": path, "mode": mode})
            path = staged_path(path)
        files.append(_text(path, content, mode))
    if role == "lb":
        plan = {
            "name": PRIVATE_IP_ENV,
            "env_file": PRIVATE_ADDRESS_ENV,
            "files": private_files,
            "deadline_s": IMDS_DEADLINE_S,
        }
        files.append(_text(PRIVATE_ADDRESS_PLAN, _json(plan)))
    agent_packages = [p for p in agent["packages"] if p not in packages(values)]
    if agent_packages:
        agent_install = {"packages": agent_packages, "deadline_s": INSTALL_DEADLINE_S["agent"]}
        files.append(_text(AGENT_PACKAGES_PLAN, _json(agent_install)))
        runcmd.append([BOOT, "install", AGENT_PACKAGES_PLAN])
    runcmd += agent["runcmd"]

    # The boot module carries the jobs this server runs: the runcmd steps, and app-env (run by its unit).
    jobs = {"install", *(step[1] for step in [*steps, *last]), *(["app-env"] if role == "app" else [])}
    boot = packed_file(BOOT, shipped_module(BOOT_MODULE.read_text(), jobs).encode(), 0o755)
    return {"write_files": [boot, *files], "runcmd": runcmd}


def render_cloud_config(
    values: RoleValues, *, app_dir: Path = APP_DIR, site_dir: Path = SITE_DIR, node_dir: Path = NODE_DIR
) -> str:
    """The ``#cloud-config`` user-data of one server: files, and the boot order (packages with
    retries, the private address on the LB, TLS files, then the daemon and its services, the launch
    hook on web and app, then monitoring)."""
    doc = build_cloud_config(values, app_dir=app_dir, site_dir=site_dir, node_dir=node_dir)
    header = f"#cloud-config\n# foobar {values.role} server of stack {values.stack}\n"
    doc["runcmd"] = [_Flow(step) if isinstance(step, list) else step for step in doc["runcmd"]]
    text = header + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=4096, allow_unicode=False)
    size = len(base64.b64decode(for_ec2(text)))  # EC2 counts what it gets, before base64: the gzip
    if size > EC2_USER_DATA_LIMIT:
        hints = {
            "app": " (set RoleValues.app_archive_url to ship the app code from S3)",
            "lb": " (set RoleValues.node_archive_url to ship the discovery agent from S3)",
        }
        hint = hints.get(values.role, "")
        raise ValueError(
            f"user-data of the {values.role} role is {size} bytes gzipped, over EC2's {EC2_USER_DATA_LIMIT}{hint}"
        )
    return text
