"""A flood at the load balancer's door and normal clients beside it, for the test and the benchmark.

Every client comes from a loopback address of its own (HAProxy counts per source address): the
flooder's keep-alive connections send a fixed rate during the flood slices of a :class:`Plan`, the
normal clients send a steady rate the whole time and time every request. Each runs in a process of
its own (a pool of the ``spawn`` kind), so one client's timings never wait for another's turn at the
GIL; the functions here are what those processes run.
"""

from __future__ import annotations

import http.client
import math
import os
import re
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Plan:
    """When the flood runs: ``2 * cycles`` slices from ``start`` (wall clock, shared by the processes),
    idle ones (even) and flood ones (odd) alternating, so the load of others on a shared machine falls
    on both alike."""

    lb: str
    ca: str
    path: str
    start: float
    slice_s: float
    cycles: int

    @property
    def end(self) -> float:
        return self.start + 2 * self.cycles * self.slice_s

    def slice_of(self, t: float) -> int:
        return math.floor((t - self.start) / self.slice_s)

    def flooding(self, t: float) -> bool:
        return 0 <= self.slice_of(t) < 2 * self.cycles and self.slice_of(t) % 2 == 1


@dataclass
class FloodResult:
    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    retry_after: Counter[str] = field(default_factory=Counter)
    """Retry-After values of the 429s ("" when one had none)."""
    reconnects: int = 0
    late: bool = False
    """The process was not ready before the plan's start."""


@dataclass(frozen=True)
class Sample:
    sent_at: float
    latency: float
    status: int


def connection(lb: str, ca: str, source: str, timeout: float = 10.0) -> http.client.HTTPSConnection:
    """HTTPS (HTTP/1.1) to the load balancer from ``source``, verified against the site's CA."""
    ctx = ssl.create_default_context(cafile=ca)
    return http.client.HTTPSConnection(lb, 443, context=ctx, timeout=timeout, source_address=(source, 0))


def get(conn: http.client.HTTPSConnection, path: str) -> tuple[int, str]:
    """One GET on a kept-alive connection: the status and the Retry-After header ("" without one)."""
    conn.request("GET", path)
    resp = conn.getresponse()
    resp.read()
    return resp.status, resp.getheader("Retry-After") or ""


def ready(_: int) -> int:
    """Warms a pool process before the plan's clock starts (this module is imported on its first task)."""
    time.sleep(0.3)
    return os.getpid()


def flood(plan: Plan, source: str, rate: float, connections: int, part: int = 0, parts: int = 1) -> FloodResult:
    """One flooder process of ``parts``: ``connections`` keep-alive connections taking their turns among
    all the processes', ``rate`` requests/s in all during the flood slices, nothing during the idle ones.
    It stands in for a client elsewhere on the internet, so its own CPU here should not compete with
    the site's: it runs at the lowest priority."""
    os.nice(19)
    result = FloodResult()
    lock = threading.Lock()
    conns = [connection(plan.lb, plan.ca, source) for _ in range(connections)]
    for conn in conns:
        conn.connect()
    result.late = time.time() > plan.start
    total = connections * parts
    interval = total / rate

    def worker(k: int, conn: http.client.HTTPSConnection) -> None:
        phase = (part * connections + k) / total
        for flood_slice in range(1, 2 * plan.cycles, 2):
            begin, stop = plan.start + flood_slice * plan.slice_s, plan.start + (flood_slice + 1) * plan.slice_s
            i = 0
            while (due := begin + (i + phase) * interval) < stop:
                i += 1
                if (wait := due - time.time()) > 0:
                    time.sleep(wait)
                if time.time() >= stop:
                    break
                try:
                    status, retry_after = get(conn, plan.path)
                except (OSError, http.client.HTTPException):
                    conn.close()  # answered with a close: a new connection, as a client would
                    with lock:
                        result.reconnects += 1
                    continue
                with lock:
                    result.sent += 1
                    result.statuses[status] += 1
                    if status == 429:
                        result.retry_after[retry_after] += 1

    threads = [threading.Thread(target=worker, args=(k, c)) for k, c in enumerate(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for conn in conns:
        conn.close()
    return result


def normal(plan: Plan, source: str, rate: float, phase: float) -> tuple[bool, list[Sample]]:
    """A normal client: one keep-alive connection, ``rate`` requests/s from the plan's start to its end,
    each request timed. Warmed up first (the handshake and HAProxy's first backend connection aren't
    what is compared). Returns whether it was late for the start, and the samples."""
    conn = connection(plan.lb, plan.ca, source)
    for _ in range(3):
        get(conn, plan.path)
    late = time.time() > plan.start
    samples = []
    i = 0
    while (due := plan.start + (i + phase) / rate) < plan.end:
        i += 1
        if (wait := due - time.time()) > 0:
            time.sleep(wait)
        sent_at = time.time()
        began = time.perf_counter()
        status, _ = get(conn, plan.path)
        samples.append(Sample(sent_at, time.perf_counter() - began, status))
    conn.close()
    return late, samples


def split(plan: Plan, samples: list[Sample]) -> tuple[list[float], list[float]]:
    """Latencies (s) of the samples that began and ended in one idle slice, and in one flood slice (one
    that straddles a change belongs to neither)."""
    same = [s for s in samples if plan.slice_of(s.sent_at) == plan.slice_of(s.sent_at + s.latency)]
    return [s.latency for s in same if not plan.flooding(s.sent_at)], [
        s.latency for s in same if plan.flooding(s.sent_at)
    ]


def nearest_rank(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)] if ordered else float("nan")


def static_asset(site_dir: Path) -> str:
    """The fingerprinted stylesheet of a local site: a cheap path the load balancer sends to the web tier."""
    found = sorted(
        p.name for p in (site_dir / "www" / "static").glob("*.css") if re.search(r"\.[0-9a-f]{12}\.css$", p.name)
    )
    if not found:
        raise LookupError(f"no fingerprinted .css under {site_dir / 'www' / 'static'}")
    return f"/static/{found[0]}"
