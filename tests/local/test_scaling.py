"""Scaling and rolling the local site's tiers, the way the groups do on AWS: under a steady load
through the load balancer, no request fails, and the servers that join really serve."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from local.site import Layout, LocalSite, LocalSiteError, State, alive, main
from node.discovery import Runtime
from tests.local.support import running, tls_context

# Addresses of their own: this site runs next to the one of test_local_site.py.
LAYOUT = Layout(
    lb="127.0.113.1",
    web=("127.0.123.1", "127.0.123.2"),
    app=("127.0.133.1",),
    db_primary="127.0.143.1",
    db_replica="127.0.143.2",
)
PATHS = {"web": "/robots.txt", "app": "/api/entries"}
"""A path the load balancer sends to each tier."""
LOAD_MAX_S = 60.0


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSite]:
    yield from running(tmp_path_factory.mktemp("scaling"), LAYOUT)


_ctx = tls_context


class Load(threading.Thread):
    """Sequential HTTPS GETs through the load balancer until stopped (at most LOAD_MAX_S): mostly on
    one kept-alive connection, a new connection every 20 requests. Counts every failure."""

    def __init__(self, site: LocalSite, path: str) -> None:
        super().__init__(daemon=True)
        self.ctx, self.path = _ctx(site), path
        self.marker = uuid.uuid4().hex
        self.done = 0
        self.failures: list[str] = []
        self._stop_at = time.monotonic() + LOAD_MAX_S
        self._stopping = threading.Event()

    def run(self) -> None:
        conn: http.client.HTTPSConnection | None = None
        while not self._stopping.is_set() and time.monotonic() < self._stop_at:
            if conn is None or self.done % 20 == 0:
                if conn is not None:
                    conn.close()
                conn = http.client.HTTPSConnection(LAYOUT.lb, 443, context=self.ctx, timeout=10)
            try:
                conn.request("GET", f"{self.path}?load={self.marker}")
                resp = conn.getresponse()
                resp.read()
                if not 200 <= resp.status < 400:
                    self.failures.append(f"HTTP {resp.status}")
            except (OSError, http.client.HTTPException) as err:
                self.failures.append(f"{type(err).__name__}: {err}")
                conn.close()
                conn = None
            self.done += 1
        if conn is not None:
            conn.close()

    def __enter__(self) -> Load:
        self.start()
        time.sleep(0.3)  # already flowing when the change begins
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.3)
        self._stopping.set()
        self.join(15)


def _servers(site: LocalSite, tier: str) -> dict[str, tuple[str, int]]:
    """name -> (address, nginx pid) of the tier's members."""
    state = State.load(site.state_file)
    return {s.name: (s.address, state.pids[s.name]) for s in state.tier(tier)}


def _served(site: LocalSite, marker: str) -> set[str]:
    """The servers whose nginx logged a request carrying ``marker``."""
    time.sleep(0.2)
    return {log.parent.parent.name for log in site.dir.glob("*/logs/access.log") if marker in log.read_text()}


def _up_slots(site: LocalSite, tier: str) -> set[str]:
    """Addresses of the slots HAProxy sends requests to."""
    return {s.address for s in Runtime(site.admin_socket).slots(tier).values() if s.up}


def _spread(site: LocalSite, tier: str, n: int = 12) -> set[str]:
    """Which servers answer ``n`` requests through the load balancer."""
    marker = uuid.uuid4().hex
    conn = http.client.HTTPSConnection(LAYOUT.lb, 443, context=_ctx(site), timeout=10)
    for _ in range(n):
        conn.request("GET", f"{PATHS[tier]}?m={marker}")
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200
    conn.close()
    return _served(site, marker)


def test_scale_out_then_in_under_load(site: LocalSite) -> None:
    before = _servers(site, "web")
    with Load(site, PATHS["web"]) as load:
        site.scale("web", 3)
    assert load.failures == [] and load.done > 0
    three = _servers(site, "web")
    assert len(three) == 3 and set(before) < set(three)
    assert _spread(site, "web") == set(three)  # roundrobin reaches every one, the new one too
    assert _up_slots(site, "web") == {a for a, _ in three.values()}

    with Load(site, PATHS["web"]) as load:
        site.scale("web", 1)
    assert load.failures == [] and load.done > 0
    (left,) = _servers(site, "web")
    assert left in before  # the newest leave first
    assert _spread(site, "web") == {left}
    assert _up_slots(site, "web") == {three[left][0]}
    assert not any(alive(pid) for name, (_, pid) in three.items() if name != left)


@pytest.mark.parametrize(("tier", "count"), [("web", 2), ("app", 1)])
def test_roll_replaces_every_server_without_a_failed_request(site: LocalSite, tier: str, count: int) -> None:
    site.scale(tier, count)
    old = _servers(site, tier)
    started = time.monotonic()
    with Load(site, PATHS[tier]) as load:
        site.roll(tier)
    took = time.monotonic() - started
    new = _servers(site, tier)
    assert load.failures == [], f"{len(load.failures)} of {load.done} requests failed: {load.failures[:5]}"
    assert load.done > 50, load.done
    assert len(new) == count and not set(new) & set(old)
    assert not {pid for _, pid in new.values()} & {pid for _, pid in old.values()}
    assert not any(alive(pid) for _, pid in old.values())
    assert _up_slots(site, tier) == {a for a, _ in new.values()}
    # The new servers really served the load, and nothing else serves the tier now.
    served = _served(site, load.marker)
    assert set(new) <= served <= set(new) | set(old)
    assert _spread(site, tier) == set(new)
    assert took < 30 * count, took


def test_bad_input_names_the_argument(site: LocalSite, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv, named in (
        (["scale", "db", "3"], "argument TIER: invalid choice: 'db'"),
        (["scale", "web", "21"], "argument N: 21 is outside 1..20"),
        (["scale", "web", "0"], "argument N: 0 is outside 1..20"),
        (["scale", "web", "many"], "argument N: 'many' is not a whole number"),
        (["roll", "lb"], "argument TIER: invalid choice: 'lb'"),
    ):
        with pytest.raises(SystemExit) as exit_:
            main([*argv, "--dir", str(site.dir)])
        assert exit_.value.code == 2 and named in capsys.readouterr().err, argv
    with pytest.raises(LocalSiteError, match=r"^TIER: 'db'"):
        site.scale("db", 2)
    with pytest.raises(LocalSiteError, match=r"^N: 21 is outside 1\.\.20"):
        site.scale("web", 21)
    assert main(["roll", "web", "--dir", str(tmp_path / "none")]) == 1
    assert "roll web: the local site in" in capsys.readouterr().err
    assert json.loads(site.members_file.read_text())["web"]  # nothing was changed by the refusals


def test_down_stops_the_servers_scale_and_roll_started(site: LocalSite) -> None:
    """Last in this module: every server the site ever had is gone after down, its port closed."""
    state = State.load(site.state_file)
    pids = dict(state.pids)
    started = [home.name for home in site.dir.iterdir() if home.name.startswith(("web", "app")) and home.is_dir()]
    assert len(started) > len(LAYOUT.web) + len(LAYOUT.app)  # the tests above added servers
    site.down()
    assert not any(alive(pid) for pid in pids.values())
    for tier in ("web", "app"):
        for host in list(LAYOUT.network(tier).hosts())[:10]:
            with socket.socket() as sock:
                assert sock.connect_ex((str(host), 443)) != 0, f"{host}:443 still open after down"
