"""The load-balancer pair on one machine (local.pair), failing over for real: two HAProxies with
keepalived in network namespaces, the web tier behind them, wrk and a prober in a client namespace.

The pair comes up once for the module and both failovers are measured once (about 35 s here); each
test checks one promise of the measurement:

- the MASTER's HAProxy killed: keepalived's health check fails, the BACKUP takes the address and
  traffic is back within 4 s;
- the MASTER killed whole (no priority-0 advert): the BACKUP waits out the 3-advert timeout and
  traffic is back within 4 s all the same;
- a client over its limit on the old MASTER is still answered 429 by the new one (the stick table came
  through ``peers``), while a client that never was over it gets 200.

Only addresses inside the test's own namespaces are used (198.18.0.0/24): nothing on loopback.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from local.pair import (
    LBS,
    PREFIX,
    TARGET_S,
    LocalPair,
    Measurement,
    Scenario,
    Unavailable,
    check_available,
    namespaces,
    ns_pids,
    table,
)
from userdata import EdgeLimits


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPair]:
    lines: list[str] = []
    made = LocalPair(tmp_path_factory.mktemp("pair"), say=lines.append)
    try:
        made.__enter__()
    except Unavailable as err:
        pytest.skip(f"local pair: {err}")
    try:
        yield made
    finally:
        made.__exit__(None, None, None)
        print("\n".join(lines))


@pytest.fixture(scope="module")
def measured(pair: LocalPair) -> Measurement:
    return pair.measure(duration=10.0, kill_after=2.0)


def _scenario(m: Measurement, kind: str) -> Scenario:
    return next(s for s in m.scenarios if s.kind == kind)


def test_a_start_interrupted_halfway_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C while the load balancers start: what was started is stopped, the namespaces deleted."""
    seen: list[int] = []

    def interrupted(self: LocalPair, lb: object) -> None:
        seen.extend(p for ns in self.made for p in ns_pids(ns))
        raise KeyboardInterrupt

    monkeypatch.setattr(LocalPair, "_start_keepalived", interrupted)
    try:
        check_available()
    except Unavailable as err:
        pytest.skip(f"local pair: {err}")
    with pytest.raises(KeyboardInterrupt), LocalPair(tmp_path / "pair"):
        pass
    assert len(seen) >= 6  # nginx x2, HAProxy x2 (+ workers), discovery x2 were running
    assert not [n for n in namespaces() if n.startswith(PREFIX)]
    assert not [p for p in seen if Path(f"/proc/{p}").exists()]


def test_the_pair_comes_up_with_one_master_serving_through_the_address(pair: LocalPair) -> None:
    holders = pair.holders()
    assert len(holders) == 1, holders
    master = holders[0]
    other = next(n for n in LBS if n != master)
    assert (pair.state(master), pair.state(other)) == ("MASTER", "BACKUP")
    for name in LBS:
        assert pair.healthy(name) and pair.web_up(name), name
        assert pair.peers_established(name), pair.admin(name, "show peers")
        peers = (pair.dir / name / "peers.cfg").read_text()
        assert "ssl crt" in peers and "verify required verifyhost lb.foobar.internal" in peers
    assert pair.site_status() == 200


def test_killing_the_masters_haproxy_moves_the_address_within_the_target(measured: Measurement) -> None:
    s = _scenario(measured, "haproxy")
    report = table(measured)
    other = next(n for n in LBS if n != s.killed)
    assert s.before == [s.killed] and s.after == [other], report
    # Health failed: FAULT (keepalived's notify), and the other one MASTER.
    assert [st for t, st in s.transitions[s.killed] if t >= 0][:1] == ["FAULT"], report
    assert [st for t, st in s.transitions[other] if t >= 0][-1:] == ["MASTER"], report
    o = s.outage
    assert o.failed >= 1 and o.outage_s is not None, report  # it really broke
    assert o.outage_s <= TARGET_S, report
    assert o.failed_after_recovery == 0, report  # back for good
    assert s.wrk.requests > 0, report


def test_the_restored_haproxy_rejoins_as_backup_without_taking_the_address_back(measured: Measurement) -> None:
    first, second = _scenario(measured, "haproxy"), _scenario(measured, "node")
    # nopreempt: the one that took over is still MASTER when the second failover starts.
    assert second.before == first.after, table(measured)


def test_killing_the_whole_master_moves_the_address_within_the_target(measured: Measurement) -> None:
    s = _scenario(measured, "node")
    report = table(measured)
    other = next(n for n in LBS if n != s.killed)
    assert s.before == [s.killed] and s.after == [other], report
    # SIGKILL: no priority-0 advert, no notify from the dead one; the BACKUP waited for adverts that
    # stopped coming (3 x 1 s + skew after the last one, which came at most 1 s before the kill).
    assert [st for t, st in s.transitions[s.killed] if t >= 0] == [], report
    assert s.vip_moved_s > 2.0, report
    o = s.outage
    assert o.failed >= 1 and o.outage_s is not None, report
    assert o.outage_s <= TARGET_S, report
    assert o.failed_after_recovery == 0, report
    assert s.wrk.requests > 0, report


def test_a_client_over_its_limit_stays_limited_after_the_failover(measured: Measurement) -> None:
    s = _scenario(measured, "node")
    c = s.limit
    assert c is not None
    report = table(measured)
    limit = EdgeLimits().requests_per_10s
    other = next(n for n in LBS if n != s.killed)
    # Over the limit at the old MASTER...
    assert c.statuses.get(429, 0) >= 1 and c.last_status == 429, report
    assert c.statuses.get(200, 0) == limit, report  # "more than N in 10 s": exactly N got through
    # ...the BACKUP knew it through peers before the failover, and answers it 429 as the new MASTER.
    assert c.peer_rate > limit, report
    assert c.served_by == [other], report
    assert c.limited_after == 429, report
    assert c.new_master_rate > limit, report
    # A client that never went over its limit gets its answer right away: the 429 is the shared counter.
    assert c.fresh_after == 200, report
    assert c.fresh_after_s <= TARGET_S + 0.5, report


def test_down_stops_everything_and_deletes_the_namespaces(pair: LocalPair, measured: Measurement) -> None:
    """Last (after the measurement): every process of the pair is gone, and every namespace it made."""
    made = list(pair.made)
    pids = [p for ns in made for p in ns_pids(ns)]
    assert len(made) == 6 and pids
    assert sorted(pair.down()) == sorted(made)
    assert not [n for n in namespaces() if n.startswith(PREFIX)]
    assert not [p for p in pids if Path(f"/proc/{p}").exists()]
