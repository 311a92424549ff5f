"""Boot the servers from their real user-data: systemd and cloud-init in containers, AWS stood in.

The user-data is the program's own for the dev stack, taken from one mocked run of ``__main__.py``
(``local.mocked``), with real TLS material. Each role boots its copy of the Debian 12 image
(``local.image``) with ``systemd-nspawn --boot`` and cloud-init's NoCloud datasource, inside its own
network namespace, at an address of the dev stack's own subnets:

    fbb-hub   the bridge fbb-br: the subnets' routers (.1), the AWS endpoints (moto over HTTPS,
              198.18.1.1), the metadata service (169.254.169.254) and RDS (MariaDB 198.18.1.11 and
              .12): ``local.standin``, seeded from the same mocked run
    fbb-lb    10.20.0.10   public subnet of the first zone
    fbb-web   10.20.64.10  web subnet
    fbb-app   10.20.128.10 app subnet

What the harness adds to a container, outside the user-data: the NoCloud seed, ``/etc/hosts``
naming the endpoints, the stand-in CA in the trust store, and on the app server the RDS CA bundle
(the stand-in's CA: RDS's own can't be downloaded here and wouldn't sign the stand-in database).
Everything else comes from the user-data. Addresses live only inside the ``fbb-`` namespaces; every
container is stopped and every namespace deleted on exit, also on an error, Ctrl-C or SIGTERM.

    python -m local.boot web          # the stand-in, then one role; a shell command to look inside
    python -m local.boot lb web app   # every role, and the site end to end through them
    python -m local.boot down         # stop what a crashed run left behind
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from local import image, netns
from local.mariadb import CertificateAuthority, write_private
from local.netns import comm, deferred_signals, kill, ns_pids, signals_raise
from local.standin import DB_ADDRESSES, ENDPOINT_ADDRESS, IMDS_ADDRESS, endpoint_names

if TYPE_CHECKING:
    from components.plan import Tier
    from local.mocked import Deployment

ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = ROOT / ".cache" / "boot-run"
PREFIX = "fbb-"
HUB = f"{PREFIX}hub"
BRIDGE = f"{PREFIX}br"
ROLES = ("lb", "web", "app")
SUBNET_TIER: dict[str, Tier] = {"lb": "public", "web": "web", "app": "app"}
HOST_NUMBER = 10
"""Each server's address: the 10th of its subnet (AWS keeps the first four and the last)."""
BOOT_TIMEOUT_S = 240


class BootError(RuntimeError):
    """A container could not be prepared, booted or checked; the message says which and why."""


@dataclass(frozen=True)
class Node:
    """One server's place in the boot network."""

    role: str
    subnet: ipaddress.IPv4Network
    zone: str

    @property
    def namespace(self) -> str:
        return f"{PREFIX}{self.role}"

    @property
    def address(self) -> str:
        return str(self.subnet.network_address + HOST_NUMBER)

    @property
    def gateway(self) -> str:
        return str(self.subnet.network_address + 1)


def plan_nodes(deployment: Deployment, roles: Sequence[str] = ROLES) -> list[Node]:
    """Each role in the first zone's subnet of its tier, as the dev stack places it."""
    from components.plan import subnet_cidr

    return [
        Node(
            role, ipaddress.IPv4Network(subnet_cidr(deployment.vpc_cidr, SUBNET_TIER[role], 0)), f"{deployment.region}a"
        )
        for role in roles
    ]


def run(argv: Sequence[str], timeout: float = 30.0, check: bool = True) -> subprocess.CompletedProcess[str]:
    return netns.run(argv, timeout, check, error=BootError)


def in_hub(*argv: str) -> list[str]:
    return ["ip", "netns", "exec", HUB, *argv]


def make_network(nodes: Sequence[Node]) -> None:
    """The hub with its bridge and services' addresses, and one namespace per node on a veth to it."""
    run(["ip", "netns", "add", HUB])
    hub = ["ip", "-n", HUB]
    run([*hub, "link", "set", "lo", "up"])
    run([*hub, "link", "add", BRIDGE, "type", "bridge"])
    run([*hub, "link", "set", BRIDGE, "up"])
    for address in (ENDPOINT_ADDRESS, IMDS_ADDRESS, *DB_ADDRESSES):
        run([*hub, "addr", "add", f"{address}/32", "dev", BRIDGE])
    run(in_hub("sysctl", "-q", "-w", "net.ipv4.ip_forward=1"))
    for node in nodes:
        run(["ip", "netns", "add", node.namespace])
        outer = f"{PREFIX}{node.role}-h"
        run(["ip", "link", "add", outer, "type", "veth", "peer", "name", "eth0", "netns", node.namespace])
        run(["ip", "link", "set", outer, "netns", HUB])
        run([*hub, "link", "set", outer, "master", BRIDGE, "up"])
        run([*hub, "addr", "add", f"{node.gateway}/{node.subnet.prefixlen}", "dev", BRIDGE])
        inner = ["ip", "-n", node.namespace]
        run([*inner, "link", "set", "lo", "up"])
        run([*inner, "addr", "add", f"{node.address}/{node.subnet.prefixlen}", "dev", "eth0"])
        run([*inner, "link", "set", "eth0", "up"])
        run([*inner, "route", "add", "default", "via", node.gateway])


@dataclass
class Container:
    """One server: its root file system (a copy of the image), seeded, and systemd-nspawn booting it."""

    node: Node
    home: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def rootfs(self) -> Path:
        return self.home / "rootfs"

    @property
    def console_log(self) -> Path:
        return self.home / "console.log"

    def prepare(self, source: Path, user_data: str, instance_id: str, hosts: str, trust: bytes) -> None:
        shutil.rmtree(self.home, ignore_errors=True)
        self.home.mkdir(parents=True)
        run(["cp", "-a", "--reflink=auto", str(source), str(self.rootfs)], timeout=300)
        seed = self.rootfs / "var/lib/cloud/seed/nocloud"
        seed.mkdir(parents=True)
        (seed / "user-data").write_text(user_data)
        (seed / "meta-data").write_text(f"instance-id: {instance_id}\nlocal-hostname: {self.node.role}\n")
        (self.rootfs / "etc/hosts").write_text(hosts)
        # No resolver: a name the hosts file doesn't know fails at once, as the internet is out of reach.
        (self.rootfs / "etc/resolv.conf").write_text("")
        (self.rootfs / "usr/local/share/ca-certificates/foobar-boot-standin.crt").write_bytes(trust)
        run(["chroot", str(self.rootfs), "update-ca-certificates"], timeout=120)

    def start(self) -> None:
        argv = [
            "systemd-nspawn",
            "--quiet",
            "--boot",
            "--register=no",
            "--keep-unit",
            f"--directory={self.rootfs}",
            f"--machine={self.node.namespace}",
            f"--network-namespace-path=/run/netns/{self.node.namespace}",
            "--resolv-conf=off",
            "--timezone=off",
            "--console=read-only",
        ]
        with self.console_log.open("ab") as out:
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)

    def init_pid(self) -> int:
        """The container's systemd (PID 1 inside), found among the namespace's processes."""
        for pid in ns_pids(self.node.namespace):
            if _is_init(pid):
                return pid
        raise BootError(f"{self.node.role}: no systemd running in {self.node.namespace} (see {self.console_log})")

    def exec(self, *argv: str, timeout: float = 30.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command inside the container (its mounts, pids and network), as root."""
        pid = self.init_pid()
        return run(["nsenter", "-t", str(pid), "-m", "-u", "-i", "-n", "-p", "--", *argv], timeout, check)

    def wait_cloud_init(self, timeout: float = BOOT_TIMEOUT_S) -> dict[str, object]:
        """``cloud-init status --wait``; its result (``/run/cloud-init/result.json``), or a BootError
        with the tail of cloud-init's output log."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise BootError(f"{self.node.role}: systemd-nspawn exited {self.process.returncode}: {self.tail()}")
            with contextlib.suppress(BootError):
                self.exec("cloud-init", "status", "--wait", timeout=max(1.0, deadline - time.monotonic()), check=False)
                result = self.exec("cat", "/run/cloud-init/result.json", check=False)
                if result.returncode == 0:
                    data: dict[str, object] = json.loads(result.stdout)["v1"]
                    return data
            if time.monotonic() > deadline:
                raise BootError(f"{self.node.role}: cloud-init not done after {timeout:.0f} s: {self.tail()}")
            time.sleep(1)

    def tail(self, lines: int = 40) -> str:
        log = self.rootfs / "var/log/cloud-init-output.log"
        text = log.read_text(errors="replace") if log.exists() else "(no cloud-init-output.log)"
        return f"{log}:\n" + "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)  # nspawn asks the container's systemd to power off
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def api_names(deployment: Deployment) -> list[str]:
    """The AWS endpoint names the servers call: the services' and the stack's buckets'."""
    return endpoint_names(deployment.region, sorted({o.bucket for o in deployment.objects}))


def hosts_file(deployment: Deployment) -> str:
    """The containers' /etc/hosts: the AWS endpoints and the database names, at the stand-in."""
    names = api_names(deployment)
    lines = ["127.0.0.1 localhost", f"{ENDPOINT_ADDRESS} {' '.join(names)}"]
    db = deployment.database
    lines += [f"{DB_ADDRESSES[0]} {db.writer_host}", f"{DB_ADDRESSES[1]} {db.reader_host}"]
    return "\n".join(lines) + "\n"


def seed_plan(deployment: Deployment, nodes: Sequence[Node], objects: Path) -> dict[str, object]:
    """What ``local.standin.seed`` puts into moto: the mocked run's values, each server at its node's
    address (an LB with its own tags, web and app as members of their group, with the group's), and
    the site's Elastic IP."""
    servers: list[dict[str, object]] = []
    lb = next(i for i in deployment.instances if i.role == "lb")
    for node in nodes:
        server: dict[str, object] = {"role": node.role, "address": node.address, "subnet": str(node.subnet)}
        server["zone"] = node.zone
        if node.role == "lb":
            server["tags"] = lb.tags
        else:
            group = deployment.groups[node.role]
            server.update(tags=group.member_tags, group=group.name, group_tags=group.tags)
        servers.append(server)
    files = []
    for i, obj in enumerate(deployment.objects):
        path = objects / f"{i}.bin"
        path.write_bytes(obj.body)
        files.append({"bucket": obj.bucket, "key": obj.key, "file": str(path)})
    db = deployment.database
    return {
        "vpc_cidr": deployment.vpc_cidr,
        "allocation_id": deployment.address.allocation_id,
        "servers": servers,
        "objects": files,
        "secrets": [{"name": db.secret_name, "arn": db.secret_arn, "value": db.secret_string}],
        "parameters": [{"name": p.name, "type": p.type, "value": p.value} for p in deployment.parameters],
    }


class Boot:
    """The boot network, the stand-in for AWS and the containers of ``roles``; a context manager."""

    def __init__(self, roles: Sequence[str] = ROLES, home: Path = RUN_DIR, echo: bool = False) -> None:
        unknown = [r for r in roles if r not in ROLES]
        if unknown or not roles:
            raise BootError(f"roles: choose from {', '.join(ROLES)}; got {', '.join(roles) or 'none'}")
        self.roles = list(dict.fromkeys(roles))
        self.home = home
        self.containers: dict[str, Container] = {}
        self.standin: subprocess.Popen[bytes] | None = None
        self.deployment: Deployment | None = None
        self.members: dict[str, dict[str, str]] = {}
        self.nodes: list[Node] = []
        self.echo = echo
        self._lock_file: IO[str] | None = None

    def say(self, text: str) -> None:
        if self.echo:
            print(text, flush=True)

    @property
    def ca(self) -> CertificateAuthority:
        return CertificateAuthority(cert=self.home / "pki" / "ca.pem", key=self.home / "pki" / "ca.key")

    def __enter__(self) -> Boot:
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def up(self) -> None:
        from local.mocked import mocked_deployment

        check_available()
        self._lock()
        down()  # what a crashed run left
        rootfs = image.build()
        shutil.rmtree(self.home, ignore_errors=True)
        (self.home / "pki").mkdir(parents=True)
        self.home.chmod(0o700)
        self.say("boot: the dev stack's user-data, from a mocked run of the program")
        deployment = self.deployment = mocked_deployment("dev")
        (self.home / "site-ca.pem").write_text(deployment.internal_ca_pem)
        nodes = self.nodes = plan_nodes(deployment, ROLES)
        make_network(nodes)
        self.say(f"boot: the AWS stand-in in {HUB} (moto on {ENDPOINT_ADDRESS}:443, IMDS, MariaDB)")
        self._start_standin(deployment, nodes)
        hosts, trust = hosts_file(deployment), self.ca.cert.read_bytes()
        for node in nodes:
            if node.role not in self.roles:
                continue
            container = self.containers[node.role] = Container(node, self.home / node.role)
            member = self.members[node.address]
            container.prepare(rootfs, deployment.user_data[node.role], member["instance_id"], hosts, trust)
            if node.role == "app":
                from userdata.render import RDS_CA_FILE

                target = container.rootfs / RDS_CA_FILE.lstrip("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(trust)
        for container in self.containers.values():
            self.say(f"boot: {container.node.role} at {container.node.address} ({container.node.namespace})")
            container.start()

    def _start_standin(self, deployment: Deployment, nodes: Sequence[Node]) -> None:
        ca = CertificateAuthority.create(self.home / "pki", "foobar boot stand-in CA", days=7)
        names = api_names(deployment)
        endpoint = ca.issue_server_cert(
            self.home / "pki" / "endpoint", "amazonaws.com", dns_names=names, ip_addresses=[ENDPOINT_ADDRESS]
        )
        objects = self.home / "objects"
        objects.mkdir()
        plan = {
            "region": deployment.region,
            "account": deployment.account,
            "ca_cert": str(ca.cert),
            "ca_key": str(ca.key),
            "endpoint_cert": str(endpoint.cert),
            "endpoint_key": str(endpoint.key),
            "database": {
                "name": deployment.database.name,
                "user": deployment.database.username,
                "password": deployment.database.password,
                "writer": deployment.database.writer_host,
                "reader": deployment.database.reader_host,
                "port": deployment.database.port,
            },
            "seed": seed_plan(deployment, nodes, objects),
        }
        plan_file = self.home / "standin.json"
        write_private(plan_file, json.dumps(plan).encode())
        python = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").exists() else sys.executable
        with (self.home / "standin.out").open("ab") as log:
            self.standin = subprocess.Popen(
                in_hub(python, "-m", "local.standin", str(plan_file)),
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 180
        ready = self.home / "ready"
        while not ready.exists():
            if self.standin.poll() is not None or time.monotonic() > deadline:
                tail = (self.home / "standin.out").read_text(errors="replace").splitlines()[-30:]
                raise BootError("the AWS stand-in did not come up:\n" + "\n".join(tail))
            time.sleep(0.2)
        self.members = {m["address"]: m for m in json.loads(ready.read_text())["members"]}

    def _lock(self) -> None:
        """One boot run at a time on a machine: a second would tear the first one's namespaces down."""
        self.home.parent.mkdir(parents=True, exist_ok=True)
        lock = (self.home.parent / "boot.lock").open("w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise BootError("another boot run is up (make boot or the boot tests): stop it first") from None
        self._lock_file = lock

    def down(self) -> None:
        if self._lock_file is None:
            return  # never up (another run holds the lock): nothing of ours to stop
        with deferred_signals():
            self._down()
            if self._lock_file is not None:
                self._lock_file.close()  # releases the lock
                self._lock_file = None

    def _down(self) -> None:
        for container in self.containers.values():
            with contextlib.suppress(Exception):
                container.stop()
        if self.standin is not None and self.standin.poll() is None:
            self.standin.terminate()
            try:
                self.standin.wait(30)
            except subprocess.TimeoutExpired:
                self.standin.kill()
        down()

    def request(self, path: str = "/", json_body: dict[str, str] | None = None) -> tuple[int, str]:
        """An HTTPS request to the site through the load balancer container, from the hub (inside
        the VPC), verified against the stack's CA: (status, body)."""
        assert self.deployment is not None
        lb = next(n for n in self.nodes if n.role == "lb")
        domain = self.deployment.domain
        argv = ["curl", "-sS", "--max-time", "10", "--cacert", str(self.home / "site-ca.pem")]
        argv += ["--resolve", f"{domain}:443:{lb.address}", "-w", "\n%{http_code}"]
        if json_body is not None:
            argv += ["-H", "Content-Type: application/json", "--data", json.dumps(json_body)]
        done = run(in_hub(*argv, f"https://{domain}{path}"), check=False)
        if done.returncode:
            raise BootError(f"https://{domain}{path} through {lb.address}: {done.stderr.strip()}")
        body, _, status = done.stdout.rpartition("\n")
        return int(status), body


def check_available() -> None:
    """Raises BootError naming what this machine lacks to boot containers."""
    if os.geteuid() != 0:
        raise BootError("needs root (network namespaces, systemd-nspawn, debootstrap)")
    missing = [t for t in (*image.missing_tools(), "nsenter", "ip", "curl") if shutil.which(t) is None]
    if missing:
        raise BootError(f"missing {', '.join(sorted(set(missing)))} (Debian: debootstrap systemd-container util-linux)")


def down() -> list[str]:
    """Stop every container and the stand-in (everything in an ``fbb-`` namespace) and delete them.

    A container's systemd takes SIGTERM as "re-execute", so each is first asked to power off
    (SIGRTMIN+4, as ``systemctl poweroff`` does), then whatever is left gets SIGTERM and SIGKILL."""
    with deferred_signals():
        inits = [pid for ns in netns.namespaces(PREFIX) for pid in ns_pids(ns) if _is_init(pid)]
        kill(inits, signal.SIGRTMIN + 4)
        netns.gone(inits, 30.0)
        return netns.cleanup(PREFIX, term_timeout=10.0)


def _is_init(pid: int) -> bool:
    with contextlib.suppress(OSError, StopIteration):
        status = Path(f"/proc/{pid}/status").read_text()
        nspid = next(line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:"))
        return len(nspid) > 1 and nspid[-1] == "1" and comm(pid) == "systemd"
    return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.boot", description=__doc__.split("\n\n")[0])
    parser.add_argument("roles", nargs="+", help="lb, web and/or app; or down")
    args = parser.parse_args(argv)
    if args.roles == ["down"]:
        print(f"stopped: {', '.join(down()) or 'nothing'}")
        return 0
    try:
        with signals_raise(), Boot(args.roles, echo=True) as boot:
            for role, container in boot.containers.items():
                result = container.wait_cloud_init()
                print(f"{role}: cloud-init done, errors: {result.get('errors') or 'none'}", flush=True)
                print(f"  look inside: nsenter -t {container.init_pid()} -a bash", flush=True)
            print("running; Ctrl-C stops every container and deletes the namespaces", flush=True)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        print("boot: stopped; every container and fbb- namespace is gone", flush=True)
        return 130
    except (BootError, image.ImageError) as err:
        print(f"boot: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
