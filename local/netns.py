"""Network namespaces as test hosts: list, stop and delete ours, and signals that let a cleanup run.

Shared by the load-balancer pair (``local.pair``, ``fbp-``) and the boot harness (``local.boot``,
``fbb-``): each names its namespaces by a prefix, and touches only those.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType


class NetnsError(RuntimeError):
    """A command on the namespaces failed or hung; the message names it."""


def run(
    argv: Sequence[str], timeout: float = 10.0, check: bool = True, error: type[Exception] = NetnsError
) -> subprocess.CompletedProcess[str]:
    """``argv``'s exit status and output (undecodable bytes replaced: a journal export has binary
    fields); ``error`` names the command when it fails (with ``check``) or hangs."""
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, errors="replace", timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise error(f"{' '.join(argv)}: no answer after {timeout:.0f} s") from None
    if check and done.returncode:
        raise error(f"{' '.join(argv)}: exit {done.returncode}: {(done.stderr or done.stdout).strip()[-2000:]}")
    return done


def namespaces(prefix: str) -> list[str]:
    """Every network namespace whose name starts with ``prefix``."""
    done = run(["ip", "-j", "netns", "list"], check=False)
    if done.returncode or not done.stdout.strip():
        return []
    return sorted(n["name"] for n in json.loads(done.stdout) if n.get("name", "").startswith(prefix))


def ns_pids(ns: str) -> list[int]:
    done = run(["ip", "netns", "pids", ns], check=False)
    return [int(p) for p in done.stdout.split() if p.isdigit()]


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def kill(pids: Sequence[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def gone(pids: Sequence[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not [p for p in pids if Path(f"/proc/{p}").exists() and not zombie(p)]:
            return True
        time.sleep(0.05)
    return False


def zombie(pid: int) -> bool:
    with contextlib.suppress(OSError, IndexError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    return True


def cleanup(prefix: str, names: Sequence[str] | None = None, term_timeout: float = 3.0) -> list[str]:
    """Stop every process in the ``prefix`` namespaces (SIGTERM, then SIGKILL) and delete them;
    returns their names.

    Only processes inside those namespaces are signalled, each by its pid: nothing of ours runs
    elsewhere."""
    found = namespaces(prefix) if names is None else [n for n in names if n in namespaces(prefix)]
    pids = {ns: ns_pids(ns) for ns in found}
    # keepalived first: a clean stop gives the address up (priority-0 advert) before its HAProxy goes.
    for group in pids.values():
        kill([p for p in group if comm(p) == "keepalived"], signal.SIGTERM)
    gone([p for group in pids.values() for p in group if comm(p) == "keepalived"], term_timeout)
    for group in pids.values():
        kill(group, signal.SIGTERM)
    everyone = [p for group in pids.values() for p in group]
    if not gone(everyone, term_timeout):
        for ns in found:
            kill(ns_pids(ns), signal.SIGKILL)
        gone(everyone, term_timeout)
    for ns in found:
        run(["ip", "netns", "del", ns], check=False)
    return found


@contextlib.contextmanager
def signals_raise() -> Iterator[None]:
    """SIGTERM and SIGHUP raise KeyboardInterrupt (like Ctrl-C), so every ``finally`` runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait until the cleanup is done (then they arrive as usual)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    wanted = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, wanted)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
