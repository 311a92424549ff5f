"""Keep HAProxy's backends equal to the members of the tiers, without a reload.

Each backend is a row of ``server-template`` slots (``web1`` .. ``web20``), all in maintenance
with no address at start. Every few seconds the agent reads the members of each tier from a
source (the Auto Scaling groups on AWS, a file on the local site), compares them with what HAProxy
runs (``show servers state``), and applies the difference over the admin socket:

- a new member takes a free slot: ``set server B/S addr A port P``, then ``state ready``;
- a member its group is terminating (``Terminating:Wait``) is drained: ``state drain`` (no new
  requests, its sessions finish);
- a member gone from its group goes to maintenance: ``state maint``, and its slot is free again.

Runtime changes are lost when HAProxy restarts, and its server-state file doesn't bring addresses
back, so the agent re-applies its whole set whenever HAProxy (re)starts. When the source fails,
the agent keeps the last set it knew (also across its own restarts, from a cache file) and tries
again; it never empties a backend because a call failed, nor because a source said a tier has no
member at all.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

log = logging.getLogger("foobar.discovery")

State = Literal["ready", "drain"]
MAX_MEMBERS = 20
"""The most members a tier may have (settings: webMax, appMax <= 20)."""
SLOTS = 2 * MAX_MEMBERS
"""Slots per backend: an instance refresh at max healthy 200 % runs up to twice the members."""
BACKEND_PORT = 443

# HAProxy's srv_admin_state bits (include/haproxy/server-t.h).
ADMIN_FMAINT, ADMIN_IMAINT, ADMIN_CMAINT, ADMIN_FDRAIN, ADMIN_RMAINT = 0x01, 0x02, 0x04, 0x08, 0x20
# CMAINT marks a slot that the configuration declared ``disabled``; it stays set after ``state
# ready`` (checked on 2.6: admin state 5 -> 4), so it alone doesn't mean out of service.
ADMIN_MAINT = ADMIN_FMAINT | ADMIN_IMAINT | ADMIN_RMAINT


@dataclass(frozen=True, order=True)
class Member:
    """One server of a tier as its source sees it."""

    address: str
    port: int = BACKEND_PORT
    state: State = "ready"

    @property
    def endpoint(self) -> tuple[str, int]:
        return (self.address, self.port)


@dataclass(frozen=True)
class Slot:
    """One server-template slot as HAProxy runs it."""

    name: str
    address: str
    port: int
    admin: int
    """srv_admin_state bits."""
    op: int = 2
    """srv_op_state: 0 stopped (down), 1 starting, 2 running (up), 3 stopping."""

    @property
    def in_maintenance(self) -> bool:
        return bool(self.admin & ADMIN_MAINT)

    @property
    def unaddressed(self) -> bool:
        """After a restart HAProxy brings a slot's state back from the state file, not its address."""
        return self.address in ("0.0.0.0", "::", "-", "")

    @property
    def draining(self) -> bool:
        return bool(self.admin & ADMIN_FDRAIN)

    @property
    def up(self) -> bool:
        """HAProxy sends it requests: running, and neither in maintenance nor draining."""
        return self.op == 2 and not self.in_maintenance and not self.draining and not self.unaddressed


class SourceError(RuntimeError):
    """The source could not say who the members are; the message is safe to log."""


class Source(Protocol):
    def members(self) -> dict[str, list[Member]]:
        """Members per tier ("web", "app"); raises SourceError when it can't tell."""
        ...


# -- sources -----------------------------------------------------------------------------------

LIFECYCLE: dict[str, State | None] = {
    "InService": "ready",
    "Terminating": "drain",
    "Terminating:Wait": "drain",
    "Terminating:Proceed": "drain",
    "Detaching": "drain",
    "EnteringStandby": "drain",
    "Standby": "drain",
}
"""Group lifecycle state -> what the load balancer does with it; absent states (Pending:Wait, ...)
are not members yet: they complete their launch hook only once they answer /healthz."""


class AutoScalingSource:
    """The members of this stack's web and app groups, found by their tags (no group names needed,
    so the load balancer never changes when a group is replaced)."""

    def __init__(
        self,
        *,
        stack: str,
        region: str,
        tiers: Sequence[str] = ("web", "app"),
        port: int = BACKEND_PORT,
        autoscaling: Any = None,
        ec2: Any = None,
    ) -> None:
        self.stack, self.tiers, self.port = stack, tuple(tiers), port
        if autoscaling is None or ec2 is None:
            import boto3  # only on the load balancer

            autoscaling = autoscaling or boto3.client("autoscaling", region_name=region)
            ec2 = ec2 or boto3.client("ec2", region_name=region)
        self._autoscaling, self._ec2 = autoscaling, ec2

    def members(self) -> dict[str, list[Member]]:
        try:
            states = self._lifecycle_states()
            addresses = self._addresses([i for tier in states.values() for i in tier])
        except SourceError:
            raise
        except Exception as exc:  # botocore raises many types; the class and code are safe to show
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
            raise SourceError(f"{type(exc).__name__} {code}".strip()) from None
        found: dict[str, list[Member]] = {tier: [] for tier in self.tiers}
        for tier, instances in states.items():
            for instance_id, state in instances.items():
                if instance_id in addresses:
                    found[tier].append(Member(addresses[instance_id], self.port, state))
        return {tier: sorted(members) for tier, members in found.items()}

    def _lifecycle_states(self) -> dict[str, dict[str, State]]:
        states: dict[str, dict[str, State]] = {tier: {} for tier in self.tiers}
        pages = self._autoscaling.get_paginator("describe_auto_scaling_groups").paginate(
            Filters=[
                {"Name": "tag:project", "Values": ["foobar"]},
                {"Name": "tag:stack", "Values": [self.stack]},
            ]
        )
        for page in pages:
            for group in page["AutoScalingGroups"]:
                tags = {t["Key"]: t["Value"] for t in group.get("Tags", [])}
                tier = tags.get("role")
                if tier not in states:
                    continue
                for instance in group.get("Instances", []):
                    state = LIFECYCLE.get(instance.get("LifecycleState", ""))
                    if state == "ready" and instance.get("HealthStatus") == "Unhealthy":
                        state = "drain"
                    if state is not None:
                        states[tier][instance["InstanceId"]] = state
        return states

    def _addresses(self, instance_ids: Sequence[str]) -> dict[str, str]:
        addresses: dict[str, str] = {}
        if not instance_ids:
            return addresses
        pages = self._ec2.get_paginator("describe_instances").paginate(InstanceIds=list(instance_ids))
        for page in pages:
            for reservation in page["Reservations"]:
                for instance in reservation["Instances"]:
                    if instance.get("PrivateIpAddress"):
                        addresses[instance["InstanceId"]] = instance["PrivateIpAddress"]
        return addresses


class FileSource:
    """The local site's stand-in for the groups: a JSON file ``{"web": [{"address", "port", "state"}]}``
    that ``python -m local scale`` and ``roll`` write (atomically, by rename)."""

    def __init__(self, path: Path, tiers: Sequence[str] = ("web", "app")) -> None:
        self.path, self.tiers = Path(path), tuple(tiers)

    def members(self) -> dict[str, list[Member]]:
        try:
            data = json.loads(self.path.read_text())
            return {
                tier: sorted(
                    Member(str(m["address"]), int(m.get("port", BACKEND_PORT)), m.get("state", "ready"))
                    for m in data.get(tier, [])
                )
                for tier in self.tiers
            }
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SourceError(f"cannot read members from {self.path}: {type(exc).__name__}") from None

    @staticmethod
    def write(path: Path, members: Mapping[str, Iterable[Member]]) -> None:
        tmp = Path(f"{path}.tmp")
        tmp.write_text(json.dumps({t: [asdict(m) for m in ms] for t, ms in members.items()}, indent=1))
        os.replace(tmp, path)


# -- HAProxy's runtime API ---------------------------------------------------------------------


class RuntimeError_(RuntimeError):
    """HAProxy's admin socket refused or failed a command."""


class Runtime:
    """HAProxy's admin socket (``stats socket ... level admin``): one command per connection."""

    def __init__(self, socket_path: str | Path, timeout: float = 2.0) -> None:
        self.socket_path, self.timeout = str(socket_path), timeout

    def command(self, line: str) -> str:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(self.socket_path)
                sock.sendall(line.encode() + b"\n")
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
        except OSError as exc:
            raise RuntimeError_(f"HAProxy admin socket {self.socket_path}: {exc.strerror or exc}") from None
        return b"".join(chunks).decode(errors="replace")

    def process(self) -> str:
        """Something that changes when HAProxy (re)starts: its pid and start time."""
        info = dict(line.split(": ", 1) for line in self.command("show info").splitlines() if ": " in line)
        return f"{info.get('Pid', '?')}/{info.get('Start_time_sec', info.get('Uptime_sec', '?'))}"

    def slots(self, backend: str) -> dict[str, Slot]:
        text = self.command(f"show servers state {backend}")
        lines = [line for line in text.splitlines() if line and not line.startswith("#")]
        if not lines or not lines[0].strip().isdigit():
            raise RuntimeError_(f"show servers state {backend}: {text.strip()[:200]}")
        found: dict[str, Slot] = {}
        for line in lines[1:]:
            fields = line.split()
            # be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state ... srv_port (index 18)
            found[fields[3]] = Slot(fields[3], fields[4], int(fields[18]), int(fields[6]), int(fields[5]))
        return found

    def apply(self, commands: Sequence[str]) -> list[str]:
        """Run each command; returns the ones HAProxy refused (with its answer)."""
        refused = []
        for line in commands:
            answer = self.command(line).strip()
            if answer and not answer.startswith(("IP changed", "no need to change", "port changed")):
                refused.append(f"{line}: {answer}")
        return refused


# -- the plan: pure ----------------------------------------------------------------------------


def _slot_order(name: str) -> tuple[int, str]:
    digits = "".join(ch for ch in name if ch.isdigit())
    return (int(digits) if digits else 0, name)


def plan(backend: str, members: Sequence[Member], slots: Mapping[str, Slot]) -> list[str]:
    """The runtime API commands that make ``slots`` serve exactly ``members``.

    A member keeps the slot that already has its address (no churn); a new one takes the free slot
    with the lowest number. A slot whose address is no member's goes to maintenance.
    """
    wanted = {m.endpoint: m for m in members}
    by_endpoint = {(s.address, s.port): s for s in slots.values()}
    commands: list[str] = []
    # Only slots already in maintenance are free: a slot still serving a leaving member goes to
    # maintenance first (below) and is reused in a later round.
    free = sorted(
        (s.name for s in slots.values() if (s.address, s.port) not in wanted and (s.in_maintenance or s.unaddressed)),
        key=_slot_order,
    )
    for member in sorted(members):
        slot = by_endpoint.get(member.endpoint)
        if slot is None:
            if not free:
                log.error("backend %s has no free slot for %s:%s", backend, *member.endpoint)
                continue
            name = free.pop(0)
            commands.append(f"set server {backend}/{name} addr {member.address} port {member.port}")
            if not slots[name].in_maintenance:
                # A reload brought the slot back 'ready' from the state file, without its address:
                # it would wait `rise` checks before serving. The member is in service already.
                commands.append(f"set server {backend}/{name} health up")
            slot = Slot(name, member.address, member.port, slots[name].admin)
        if member.state == "ready" and (slot.in_maintenance or slot.draining):
            commands.append(f"set server {backend}/{slot.name} state ready")
        elif member.state == "drain" and not slot.draining:
            commands.append(f"set server {backend}/{slot.name} state drain")
    for slot in sorted(slots.values(), key=lambda s: _slot_order(s.name)):
        if (slot.address, slot.port) not in wanted and not slot.in_maintenance and not slot.unaddressed:
            commands.append(f"set server {backend}/{slot.name} state maint")
    return commands


# -- the agent ---------------------------------------------------------------------------------


@dataclass
class Agent:
    source: Source
    runtime: Runtime
    backends: Mapping[str, str]
    """tier -> HAProxy backend name."""
    cache: Path | None = None
    """Where the last known members are kept, so a restarted agent has a set while the source fails."""
    state_file: Path | None = None
    """HAProxy's server-state-file: written after every change, read by HAProxy on reload."""

    def __post_init__(self) -> None:
        self.known: dict[str, list[Member]] = self._load_cache()
        self.process: str | None = None

    def _load_cache(self) -> dict[str, list[Member]]:
        if self.cache is None or not self.cache.exists():
            return {}
        try:
            data = json.loads(self.cache.read_text())
            return {t: [Member(m["address"], int(m["port"]), m["state"]) for m in ms] for t, ms in data.items()}
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("ignoring unreadable cache %s", self.cache)
            return {}

    def refresh(self) -> None:
        """Ask the source; on failure keep the last known set. A tier reported empty keeps its set too."""
        try:
            found = self.source.members()
        except SourceError as err:
            log.warning("source failed, keeping the last known members: %s", err)
            return
        for tier in self.backends:
            members = found.get(tier, [])
            if not members and self.known.get(tier):
                log.warning("source reports no %s member: keeping the last known %d", tier, len(self.known[tier]))
                continue
            self.known[tier] = members
        if self.cache is not None:
            FileSource.write(self.cache, self.known)

    def sync(self) -> list[str]:
        """One round: refresh, then apply the difference to HAProxy. Returns the commands applied."""
        self.refresh()
        process = self.runtime.process()
        if process != self.process:
            if self.process is not None:
                log.info("HAProxy restarted (%s -> %s): applying the whole set again", self.process, process)
            self.process = process
        return self._apply()

    def _apply(self) -> list[str]:
        """Make every backend serve the known members; returns the commands applied."""
        applied: list[str] = []
        for tier, backend in self.backends.items():
            commands = plan(backend, self.known.get(tier, []), self.runtime.slots(backend))
            for refused in self.runtime.apply(commands):
                log.error("HAProxy refused %s", refused)
            applied += commands
        for line in applied:
            log.info("%s", line)
        if applied and self.state_file is not None:
            self._save_state()
        return applied

    def _save_state(self) -> None:
        assert self.state_file is not None
        text = self.runtime.command("show servers state")
        tmp = Path(f"{self.state_file}.tmp")
        tmp.write_text(text)
        os.replace(tmp, self.state_file)

    def watch(self) -> bool:
        """Between rounds: has HAProxy (re)started? Then apply the known set at once, without asking
        the source (a reload starts with every slot empty; a second of that is all it may cost)."""
        try:
            if self.runtime.process() == self.process:
                return False
        except RuntimeError_:
            self.process = None
            return False
        log.info("HAProxy (re)started: applying the last known set")
        self.process = self.runtime.process()
        self._apply()
        return True

    def run(
        self,
        interval: float,
        *,
        rounds: int | None = None,
        watch_every: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """A round (source + HAProxy) every ``interval`` s; in between, HAProxy watched every ``watch_every`` s."""
        done = 0
        while rounds is None or done < rounds:
            try:
                self.sync()
            except RuntimeError_ as err:  # HAProxy not up yet, or restarting: the next round re-applies
                log.warning("%s", err)
                self.process = None
            done += 1
            if rounds is not None and done >= rounds:
                break
            waited = 0.0
            while waited < interval:
                step = min(watch_every, interval - waited)
                sleep(step)
                waited += step
                if waited < interval:
                    try:
                        self.watch()
                    except RuntimeError_ as err:
                        log.warning("%s", err)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="foobar-discovery", description=__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True, help="HAProxy's admin socket")
    parser.add_argument("--source", choices=("asg", "file"), required=True)
    parser.add_argument("--stack", help="with --source asg: the stack whose groups to read")
    parser.add_argument("--region", help="with --source asg")
    parser.add_argument("--members-file", type=Path, help="with --source file")
    parser.add_argument("--backend", action="append", default=[], metavar="TIER=BACKEND")
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--cache", type=Path)
    parser.add_argument("--state-file", type=Path)
    parser.add_argument("--once", action="store_true", help="one round, then exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s foobar-discovery %(levelname)s %(message)s")
    backends = dict(b.split("=", 1) for b in args.backend) or {"web": "web", "app": "app"}
    source: Source
    if args.source == "asg":
        if not args.stack or not args.region:
            parser.error("--source asg needs --stack and --region")
        source = AutoScalingSource(stack=args.stack, region=args.region, tiers=tuple(backends))
    else:
        if not args.members_file:
            parser.error("--source file needs --members-file")
        source = FileSource(args.members_file, tuple(backends))
    agent = Agent(source, Runtime(args.socket), backends, cache=args.cache, state_file=args.state_file)
    agent.run(args.interval, rounds=1 if args.once else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
