"""The site's Elastic IP follows keepalived's MASTER between the two load balancers.

keepalived's ``virtual_ipaddress`` means nothing to AWS: the public address is an Elastic IP, and it
must be associated with whichever load balancer keepalived made MASTER. Two parts do it:

- ``notify``: keepalived runs it on every state change (``notify "... notify"``; keepalived appends
  ``TYPE NAME STATE PRIORITY``). It records the state in a file (written atomically), and when the
  state is MASTER it claims the address (``AssociateAddress`` with reassociation), retrying with
  backoff until it holds it, until the state file no longer says MASTER, or until a deadline. Then it
  publishes the state as a tag of its own instance (``foobar-vrrp-state``) for the peer to read.
  AWS takes a few seconds (5 to 6 measured) to route the address after the call succeeds.
- ``reconcile``: a loop (a systemd service) that repairs what a failed claim or a split brain
  leaves: the rule is "the MASTER is the one that holds the Elastic IP". A MASTER claims an address
  that is free, or held by something that isn't a running load balancer of this stack, or by a peer
  that doesn't say MASTER. When both say MASTER (adverts don't pass: keepalived issue #950) the
  holder wins and the other steps down: it writes ``1`` to a file keepalived tracks (``track_file``
  with ``weight 0``: FAULT), and ``0`` after a hold-off so keepalived comes back. A node that is
  not MASTER never claims. Each round also repairs its own state tag when a notify couldn't publish it.

With a single load balancer (``--single``) there is no keepalived: it is always the MASTER and
holds the address, except while another running load balancer of the stack says MASTER and holds it
(the old one during a replacement: the holder keeps it until it goes, instead of both taking it in turn).

Only the Python standard library and boto3/botocore: the servers have python3-boto3.
"""

from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
import os
import signal
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

log = logging.getLogger("foobar.eip")

EC2_ACTIONS: tuple[str, ...] = (
    "ec2:AssociateAddress",
    "ec2:CreateTags",
    "ec2:DescribeAddresses",
    "ec2:DescribeInstances",
)
"""Every EC2 API action this module calls, as IAM names: the load balancer's role allows exactly these."""

STATE_TAG = "foobar-vrrp-state"
"""The tag on each load balancer's instance that publishes its keepalived state to the peer."""
PROJECT, ROLE = "foobar", "lb"
MASTER = "MASTER"
UNKNOWN = "UNKNOWN"
"""Own state when the state file is missing or empty (keepalived hasn't said anything yet)."""
RUNNING = "running"
MISSING = "missing"
"""A holder's state when DescribeInstances doesn't know its instance."""

DEFAULT_STATE_FILE = "/run/foobar/vrrp-state"
DEFAULT_FAULT_FILE = "/run/foobar/vrrp-fault"
IMDS = "http://169.254.169.254"
API_ERRORS = (BotoCoreError, ClientError)
"""What a call to AWS raises when it fails (EndpointConnectionError, timeouts, throttling, denied ...)."""

Action = Literal["hold", "claim", "step-down"]


# -- settings ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    allocation_id: str
    stack: str
    region: str
    instance_id: str = ""
    """Empty: read from the instance metadata (IMDSv2) when first needed."""
    single: bool = False
    state_file: Path = Path(DEFAULT_STATE_FILE)
    fault_file: Path = Path(DEFAULT_FAULT_FILE)
    claim_deadline: float = 120.0
    interval: float = 5.0
    step_down_s: float = 30.0
    step_down_max_s: float = 600.0
    """Repeated step-downs double the hold-off up to this (a lasting split brain would otherwise move
    the address every hold-off)."""
    syslog: bool = False


SETTINGS: dict[str, tuple[type, str]] = {
    "region": (str, "AWS region (else AWS_REGION / AWS_DEFAULT_REGION)"),
    "allocation-id": (str, "the Elastic IP's allocation id (eipalloc-...)"),
    "instance-id": (str, "this instance (default: from IMDSv2)"),
    "stack": (str, "the stack tag the peer load balancer must have"),
    "single": (bool, "one load balancer, no keepalived: always MASTER"),
    "state-file": (str, f"keepalived's state as notify records it (default {DEFAULT_STATE_FILE})"),
    "fault-file": (str, f"the file keepalived tracks with track_file (default {DEFAULT_FAULT_FILE})"),
    "claim-deadline": (float, "notify: give up claiming after this many seconds (default 120)"),
    "interval": (float, "reconcile: seconds between rounds (default 5)"),
    "step-down-s": (float, "reconcile: first hold-off in FAULT after a split brain (default 30)"),
    "step-down-max-s": (float, "reconcile: longest hold-off after repeated split brains (default 600)"),
    "syslog": (bool, "also log to syslog (/dev/log): keepalived discards a notify script's output"),
}
"""Every setting: CLI option (``--name``) and --config key (``name`` or ``name_with_underscores``)."""
REQUIRED = ("allocation-id", "stack", "region")
COMMON = ("region", "allocation-id", "instance-id", "stack", "single", "state-file", "fault-file", "syslog")
NOTIFY_ONLY = ("claim-deadline",)
RECONCILE_ONLY = ("interval", "step-down-s", "step-down-max-s")


class UsageError(ValueError):
    """A setting is missing or wrong; the message names it."""


def load_config(path: Path) -> dict[str, Any]:
    """The settings in a JSON file ``{"allocation-id": "eipalloc-...", "stack": "prod", ...}``."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"--config {path}: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"--config {path}: not a JSON object")
    found: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).replace("_", "-")
        if name not in SETTINGS:
            raise UsageError(f"--config {path}: unknown setting {key!r} (known: {', '.join(SETTINGS)})")
        kind = SETTINGS[name][0]
        if not _typed(kind, value):
            raise UsageError(f"--config {path}: {key} must be a {kind.__name__}, not {value!r}")
        found[name] = value
    return found


def _typed(kind: type, value: Any) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, str)


def settings_from(values: Mapping[str, Any], env: Mapping[str, str] = os.environ) -> Settings:
    """Settings from merged values (keys as in SETTINGS; None = not given)."""
    given = {k: v for k, v in values.items() if v is not None}
    given.setdefault("region", env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"))
    for name in REQUIRED:
        if not given.get(name):
            hint = " (or AWS_REGION)" if name == "region" else ""
            raise UsageError(f'missing setting {name}: give --{name}{hint}, or "{name}" in --config')
    for name in ("claim-deadline", "interval", "step-down-s", "step-down-max-s"):
        least = 0.0 if name == "claim-deadline" else 0.001
        if name in given and not float(given[name]) >= least:
            raise UsageError(f"{name} must be {'at least 0' if least == 0 else 'positive'}, not {given[name]!r}")
    kwargs: dict[str, Any] = {}
    for name, value in given.items():
        kind = SETTINGS[name][0]
        kwargs[name.replace("-", "_")] = Path(value) if name.endswith("-file") else kind(value)
    return Settings(**kwargs)


# -- files -------------------------------------------------------------------------------------


def write_atomic(path: Path, text: str) -> None:
    """Readers see the old content or the new one, never half of it (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # two notify processes may overlap
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_state(path: Path) -> str:
    """keepalived's last state as notify recorded it; UNKNOWN when there is none."""
    try:
        return Path(path).read_text().strip().upper() or UNKNOWN
    except OSError:
        return UNKNOWN


def read_fault(path: Path) -> int | None:
    """The fault file's number; None when it is missing or not a number."""
    try:
        return int(Path(path).read_text().strip() or "0")
    except (OSError, ValueError):
        return None


# -- the decision: pure ------------------------------------------------------------------------


@dataclass(frozen=True)
class Holder:
    """What the Elastic IP is associated with."""

    instance_id: str | None
    """None: a network interface that belongs to no instance."""
    state: str = RUNNING
    """The instance's EC2 state (running, stopped, ...), MISSING when EC2 doesn't know it."""
    tags: Mapping[str, str] = field(default_factory=dict)

    def is_lb_of(self, stack: str) -> bool:
        tags = self.tags
        return tags.get("project") == PROJECT and tags.get("stack") == stack and tags.get("role") == ROLE

    @property
    def vrrp_state(self) -> str:
        return self.tags.get(STATE_TAG, "").strip().upper() or UNKNOWN


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str


def decide(*, state: str, me: str, holder: Holder | None, stack: str, single: bool = False) -> Decision:
    """What this load balancer does about the Elastic IP, given its own state and the holder.

    ``holder`` None: the address is associated with nothing. The MASTER is the one that holds it.
    """
    if single:
        state = MASTER
    if state != MASTER:
        return Decision("hold", f"{state}: only the MASTER claims")
    if holder is None:
        return Decision("claim", "the address is associated with nothing")
    if holder.instance_id == me:
        return Decision("hold", "MASTER and the address is mine")
    if holder.instance_id is None:
        return Decision("claim", "the address is on a network interface of no instance")
    if holder.state != RUNNING:
        return Decision("claim", f"the address is on {holder.instance_id}, which is {holder.state}")
    if not holder.is_lb_of(stack):
        return Decision("claim", f"the address is on {holder.instance_id}, not a load balancer of stack {stack}")
    if holder.vrrp_state != MASTER:
        return Decision("claim", f"the address is on peer {holder.instance_id}, which says {holder.vrrp_state}")
    if single:
        return Decision(
            "hold", f"peer {holder.instance_id} says MASTER and holds the address: it keeps it until it goes"
        )
    return Decision("step-down", f"split brain: peer {holder.instance_id} says MASTER too and holds the address")


def hold_off(strikes: int, first: float, longest: float) -> float:
    """The time in FAULT after a step-down: doubles with each step-down in a row, up to ``longest``."""
    return min(first * 2 ** min(strikes, 30), max(first, longest))


# -- AWS ---------------------------------------------------------------------------------------


def ec2_client(region: str) -> Any:
    """An EC2 client with short timeouts and few retries of its own: the callers retry, and look at
    the state file between attempts."""
    import boto3  # only on the load balancer; after the state file is written
    from botocore.config import Config

    config = Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"})
    return boto3.client("ec2", region_name=region, config=config)


def imds_instance_id(
    *, timeout: float = 2.0, attempts: int = 3, opener: Any = None, sleep: Callable[[float], None] = time.sleep
) -> str:
    """This instance's id from the instance metadata service, IMDSv2 (a session token first)."""
    # Never through a proxy: http_proxy in the environment must not see the metadata service.
    opener = opener or urllib.request.build_opener(urllib.request.ProxyHandler({}))
    for attempt in range(1, attempts + 1):
        try:
            token_request = urllib.request.Request(
                f"{IMDS}/latest/api/token", method="PUT", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"}
            )
            with opener.open(token_request, timeout=timeout) as answer:
                token = answer.read().decode()
            id_request = urllib.request.Request(
                f"{IMDS}/latest/meta-data/instance-id", headers={"X-aws-ec2-metadata-token": token}
            )
            with opener.open(id_request, timeout=timeout) as answer:
                instance_id = str(answer.read().decode().strip())
            if instance_id.startswith("i-"):
                return instance_id
            raise OSError(f"not an instance id: {instance_id[:40]!r}")
        except OSError as exc:
            if attempt == attempts:
                raise OSError(f"instance metadata: {exc}") from None
            sleep(0.5 * attempt)
    raise AssertionError("unreachable")


def _why(exc: BaseException) -> str:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
    return f"{type(exc).__name__} {code}".strip() + f": {exc}"


def associate(ec2: Any, allocation_id: str, instance_id: str) -> str:
    """Move the address to ``instance_id`` (from wherever it is); returns the association id."""
    answer = ec2.associate_address(AllocationId=allocation_id, InstanceId=instance_id, AllowReassociation=True)
    return str(answer.get("AssociationId", ""))


def publish_state(
    ec2: Any, instance_id: str, state: str, *, attempts: int = 3, sleep: Callable[[float], None] = time.sleep
) -> bool:
    """Tag this instance ``foobar-vrrp-state=<state>``; best effort, a few attempts."""
    for attempt in range(1, attempts + 1):
        try:
            ec2.create_tags(Resources=[instance_id], Tags=[{"Key": STATE_TAG, "Value": state}])
            log.info("published %s=%s on %s", STATE_TAG, state, instance_id)
            return True
        except API_ERRORS as exc:
            log.warning("publishing %s=%s, attempt %d/%d: %s", STATE_TAG, state, attempt, attempts, _why(exc))
            if attempt < attempts:
                sleep(0.5 * 2 ** (attempt - 1))
    return False


def observe(ec2: Any, allocation_id: str, me: str) -> tuple[Holder | None, Holder]:
    """Who holds the address (None: nothing), and this instance as EC2 sees it (for its tags)."""
    addresses = ec2.describe_addresses(AllocationIds=[allocation_id])["Addresses"]
    if not addresses:
        raise LookupError(f"no Elastic IP {allocation_id}")
    address = addresses[0]
    holder_id = address.get("InstanceId") or None
    associated = bool(address.get("AssociationId") or holder_id or address.get("NetworkInterfaceId"))
    ids = [me] if holder_id in (None, me) else [me, holder_id]
    try:
        found = _instances(ec2, ids)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "InvalidInstanceID.NotFound" or len(ids) == 1:
            raise
        found = _instances(ec2, [me])  # the holder is gone from EC2's books
    own = found.get(me, Holder(me, MISSING))
    if not associated:
        return None, own
    if holder_id is None:
        return Holder(None), own
    return found.get(holder_id, Holder(holder_id, MISSING)), own


def _instances(ec2: Any, ids: Sequence[str]) -> dict[str, Holder]:
    found: dict[str, Holder] = {}
    for reservation in ec2.describe_instances(InstanceIds=list(ids))["Reservations"]:
        for instance in reservation["Instances"]:
            tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
            found[instance["InstanceId"]] = Holder(instance["InstanceId"], instance["State"]["Name"], tags)
    return found


# -- notify ------------------------------------------------------------------------------------


def claim(
    ec2: Any,
    settings: Settings,
    *,
    still_master: Callable[[], bool],
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    started: float | None = None,
) -> bool:
    """Associate the address with this instance, retrying with backoff until it's done, until
    ``still_master()`` is false, or until ``settings.claim_deadline`` has passed. True when done."""
    start = clock() if started is None else started
    deadline = start + settings.claim_deadline
    delay, attempt = 0.5, 0
    while True:
        if not still_master():
            log.warning("no longer MASTER after %d attempt(s): stopped claiming %s", attempt, settings.allocation_id)
            return False
        attempt += 1
        try:
            association = associate(ec2, settings.allocation_id, settings.instance_id)
        except API_ERRORS as exc:
            log.warning("claiming %s, attempt %d failed: %s", settings.allocation_id, attempt, _why(exc))
        else:
            log.info(
                "claimed %s for %s (%s) at attempt %d, %.2f s after the notification; AWS routes it within seconds",
                settings.allocation_id,
                settings.instance_id,
                association,
                attempt,
                clock() - start,
            )
            return True
        remaining = deadline - clock()
        if remaining <= 0:
            log.error(
                "gave up claiming %s after %d attempt(s) in %.1f s: the reconcile service keeps trying",
                settings.allocation_id,
                attempt,
                clock() - start,
            )
            return False
        sleep(min(delay, remaining))
        delay = min(delay * 2, 5.0)


def notify(
    settings: Settings,
    state: str,
    *,
    ec2: Any = None,
    instance_id: Callable[[], str] = imds_instance_id,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """keepalived's notify: record ``state``, claim the address if MASTER, publish the state tag.

    Always 0: keepalived ignores the result, and the reconcile service repairs a failed claim."""
    started = clock()
    state = state.strip().upper()
    write_atomic(settings.state_file, f"{state}\n")
    log.info("keepalived says %s (recorded in %s)", state, settings.state_file)
    try:
        if not settings.instance_id:
            settings = _with_instance_id(settings, instance_id())
        client = ec2 if ec2 is not None else ec2_client(settings.region)
    except (OSError, *API_ERRORS) as exc:
        log.error("cannot act on %s: %s", state, _why(exc))
        return 0
    if state == MASTER:
        claim(
            client,
            settings,
            still_master=lambda: read_state(settings.state_file) == MASTER,
            clock=clock,
            sleep=sleep,
            started=started,
        )
    # What the file says now: a later notify may have run while this one was claiming.
    publish_state(client, settings.instance_id, read_state(settings.state_file), sleep=sleep)
    return 0


def _with_instance_id(settings: Settings, instance_id: str) -> Settings:
    return replace(settings, instance_id=instance_id)


# -- reconcile ---------------------------------------------------------------------------------


class Reconciler:
    """The loop that makes "the MASTER holds the Elastic IP" true again when it isn't."""

    def __init__(self, settings: Settings, ec2: Any, *, clock: Callable[[], float] = time.monotonic) -> None:
        if not settings.instance_id:
            raise UsageError("Reconciler needs the instance id")
        self.settings, self.ec2, self.clock = settings, ec2, clock
        self.fault_until: float | None = None
        """While stepped down: when the fault file goes back to 0."""
        self.strikes = 0
        self.last_lift: float | None = None
        self.last_reason = ""

    def prepare(self) -> None:
        """keepalived wants the fault file to exist; one left at 1 (a restart while stepped down) is
        lifted after a hold-off like any step-down."""
        fault = read_fault(self.settings.fault_file)
        if fault is None:
            write_atomic(self.settings.fault_file, "0\n")
            log.info("created %s with 0", self.settings.fault_file)
        elif fault != 0:
            self.fault_until = self.clock() + self.settings.step_down_s
            log.warning("%s says %d: back to 0 in %.0f s", self.settings.fault_file, fault, self.settings.step_down_s)

    def own_state(self) -> str:
        return MASTER if self.settings.single else read_state(self.settings.state_file)

    def round(self) -> Decision:
        """One round: lift a finished step-down, look, decide, act, repair the own state tag."""
        s = self.settings
        self._lift_when_due()
        state = self.own_state()
        holder, own = observe(self.ec2, s.allocation_id, s.instance_id)
        decision = decide(state=state, me=s.instance_id, holder=holder, stack=s.stack, single=s.single)
        if decision.action == "hold":
            if decision.reason != self.last_reason:  # once, not every round
                log.info("holding: %s", decision.reason)
        elif self.own_state() != state:  # keepalived moved on while this round looked
            log.info("state changed from %s during the round: not acting (%s)", state, decision.reason)
        elif decision.action == "claim":
            log.warning("claiming %s: %s", s.allocation_id, decision.reason)
            started = self.clock()
            association = associate(self.ec2, s.allocation_id, s.instance_id)
            log.info("claimed %s (%s) in %.2f s", s.allocation_id, association, self.clock() - started)
        elif self.fault_until is not None:
            log.info("already stepped down until keepalived leaves MASTER: %s", decision.reason)
        else:
            self._step_down(decision.reason)
        self._repair_tag(state, own)
        self.last_reason = decision.reason
        return decision

    def _step_down(self, reason: str) -> None:
        s, now = self.settings, self.clock()
        recent = self.last_lift is not None and now - self.last_lift <= 2 * max(s.step_down_max_s, s.step_down_s)
        self.strikes = self.strikes + 1 if recent else 0
        wait = hold_off(self.strikes, s.step_down_s, s.step_down_max_s)
        write_atomic(s.fault_file, "1\n")
        self.fault_until = now + wait
        log.warning("stepping down for %.0f s (%s): wrote 1 to %s", wait, reason, s.fault_file)

    def _lift_when_due(self, force: bool = False) -> None:
        if self.fault_until is None or not (force or self.clock() >= self.fault_until):
            return
        write_atomic(self.settings.fault_file, "0\n")
        self.fault_until, self.last_lift = None, self.clock()
        log.info("hold-off over: wrote 0 to %s, keepalived comes back", self.settings.fault_file)

    def _repair_tag(self, state: str, own: Holder) -> None:
        if state == UNKNOWN or own.vrrp_state == state or self.own_state() != state:
            return
        log.info("own %s tag says %s, state is %s: repairing", STATE_TAG, own.vrrp_state, state)
        publish_state(self.ec2, self.settings.instance_id, state, attempts=1)

    def run(self, *, rounds: int | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        """A round every ``interval`` s; a failed round is logged and the next one tries again. On
        the way out a step-down is lifted, so keepalived isn't left in FAULT."""
        self.prepare()
        done = 0
        try:
            while rounds is None or done < rounds:
                try:
                    self.round()
                except Exception as exc:  # API errors, a missing address, a file that can't be written ...
                    log.warning("round failed, trying again in %.0f s: %s", self.settings.interval, _why(exc))
                done += 1
                if rounds is None or done < rounds:
                    sleep(self.settings.interval)
        except BaseException:  # SIGTERM (SystemExit), Ctrl-C
            self._lift_when_due(force=True)
            raise


# -- CLI ---------------------------------------------------------------------------------------


def _add(parser: argparse.ArgumentParser, names: Sequence[str]) -> None:
    for name in names:
        kind, text = SETTINGS[name]
        if kind is bool:
            parser.add_argument(f"--{name}", action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            parser.add_argument(f"--{name}", type=kind, default=None, help=text)


def parse_notify_words(words: Sequence[str]) -> str:
    """keepalived's ``TYPE NAME STATE [PRIORITY]``, or just ``STATE`` -> the state."""
    if len(words) == 1:
        state = words[0]
    elif len(words) in (3, 4):
        state = words[2]
    else:
        raise UsageError(f"notify takes STATE or TYPE NAME STATE [PRIORITY], not {' '.join(words)!r}")
    state = state.strip().upper()
    if not state.replace("_", "").isalpha():
        raise UsageError(f"notify: {state!r} is not a keepalived state")
    return state


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="foobar-eip", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, help="JSON file with the settings; options override it")
    _add(parser, COMMON)
    commands = parser.add_subparsers(dest="command", required=True)
    notify_parser = commands.add_parser("notify", help="keepalived's notify: record the state, claim if MASTER")
    _add(notify_parser, NOTIFY_ONLY)
    notify_parser.add_argument(
        "words", nargs="+", metavar="WORD", help="what keepalived appends: TYPE NAME STATE PRIORITY (or just STATE)"
    )
    reconcile_parser = commands.add_parser("reconcile", help="the loop that repairs the association")
    _add(reconcile_parser, RECONCILE_ONLY)
    reconcile_parser.add_argument("--once", action="store_true", help="one round, then exit")
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    ec2: Any = None,
    instance_id: Callable[[], str] = imds_instance_id,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    env: Mapping[str, str] = os.environ,
) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        values = load_config(args.config) if args.config else {}
        given = {n: getattr(args, n.replace("-", "_"), None) for n in SETTINGS}
        values.update({n: v for n, v in given.items() if v is not None})  # options override the file
        settings = settings_from(values, env)
        state = parse_notify_words(args.words) if args.command == "notify" else ""
    except UsageError as err:
        parser.error(str(err))
    _logging(settings.syslog)
    if args.command == "notify":
        return notify(settings, state, ec2=ec2, instance_id=instance_id, clock=clock, sleep=sleep)
    try:
        if not settings.instance_id:
            settings = _with_instance_id(settings, instance_id())
        client = ec2 if ec2 is not None else ec2_client(settings.region)
    except (OSError, *API_ERRORS) as exc:
        log.error("cannot start: %s", _why(exc))
        return 1
    if not args.once:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # so `finally` lifts a step-down
    log.info(
        "reconciling %s for %s (stack %s%s) every %.0f s",
        settings.allocation_id,
        settings.instance_id,
        settings.stack,
        ", single" if settings.single else "",
        settings.interval,
    )
    Reconciler(settings, client, clock=clock).run(rounds=1 if args.once else None, sleep=sleep)
    return 0


def _logging(syslog: bool) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s foobar-eip %(levelname)s %(message)s")
    if syslog and os.path.exists("/dev/log"):
        handler = logging.handlers.SysLogHandler(address="/dev/log")
        handler.ident = "foobar-eip: "
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        logging.getLogger().addHandler(handler)


if __name__ == "__main__":
    sys.exit(main())
