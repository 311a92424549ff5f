"""The load balancer's micro-cache on the local site, with the real HAProxy, app and replication.

Anonymous GETs of the app's pages are answered from HAProxy's memory for about a second; posts,
the API and anything that carries a cookie always reach the app. The two freshness rules: a browser
that has just signed the guestbook sees its entry at once (its cookie sends it past the cache to the
primary), and everybody else sees it within ``SHARED_CACHE_S`` plus the replica's lag.
"""

from __future__ import annotations

import gzip
import http.client
import json
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from app.config import SHARED_CACHE_S, WROTE_COOKIE
from local.site import Layout, LocalSite
from tests.local.support import replica as replica_of
from tests.local.support import running, tls_context

LAYOUT = Layout(
    lb="127.0.117.1",
    web=("127.0.127.1",),
    app=("127.0.137.1",),
    db_primary="127.0.147.1",
    db_replica="127.0.147.2",
)
ORIGIN = f"https://{LAYOUT.lb}"
SLACK_S = 0.5
"""Polling, one render and the cache's whole-second clock, on top of ``SHARED_CACHE_S``."""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSite]:
    yield from running(tmp_path_factory.mktemp("site"), LAYOUT)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: str

    @property
    def hit(self) -> bool:
        return self.headers.get("x-cache") == "HIT"


def ask(site: LocalSite, path: str, method: str = "GET", body: str | None = None, **headers: str) -> Answer:
    conn = http.client.HTTPSConnection(LAYOUT.lb, 443, context=tls_context(site), timeout=10)
    try:
        conn.request(method, path, body=body, headers={"Accept-Encoding": "gzip", **headers})
        resp = conn.getresponse()
        raw = resp.read()
        if resp.getheader("Content-Encoding") == "gzip":
            raw = gzip.decompress(raw)
        return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, raw.decode())
    finally:
        conn.close()


def app_requests(site: LocalSite) -> int:
    """Requests the app box's nginx has logged: what got past the cache."""
    lines = (site.dir / "app1" / "logs" / "access.log").read_text().splitlines()
    return sum(1 for line in lines if "/healthz" not in line)


def fresh_miss(site: LocalSite) -> Answer:
    """An anonymous GET / that went to the app just after a second began, so the copy it left lives
    almost a whole second: HAProxy's cache expires a copy at the end of the wall-clock second after
    the one it was stored in (a copy stored at 10.9 s is gone at 11.0 s)."""
    time.sleep(1 - time.time() % 1 + 0.02)
    answer = ask(site, "/")
    assert answer.status == 200, answer
    assert not answer.hit, "a copy outlived the second after the one it was stored in"
    return answer


def test_an_anonymous_page_is_answered_from_the_cache_for_about_a_second(site: LocalSite) -> None:
    first = fresh_miss(site)
    before = app_requests(site)
    second = ask(site, "/")
    assert second.hit, second.headers
    assert second.body == first.body
    assert second.headers["strict-transport-security"].startswith("max-age=")
    assert "server" not in second.headers
    time.sleep(0.2)
    assert app_requests(site) == before, "a cache hit reached the app"
    time.sleep(SHARED_CACHE_S + 0.1)
    assert not ask(site, "/").hit, "the copy outlived its second"


def test_cookies_posts_and_the_api_always_reach_the_app(site: LocalSite) -> None:
    fresh_miss(site)
    assert ask(site, "/").hit
    with_cookie = ask(site, "/", Cookie="theme=dark")
    assert with_cookie.status == 200 and not with_cookie.hit
    assert with_cookie.headers["cache-control"] == "no-store"
    # The same post twice: two entries, neither answered by the cache.
    body = json.dumps({"name": "twice", "message": f"posted twice {uuid.uuid4().hex}"})
    ids = []
    for _ in range(2):
        posted = ask(site, "/api/entries", "POST", body, **{"Content-Type": "application/json"})
        assert posted.status == 201 and not posted.hit, posted
        ids.append(json.loads(posted.body)["entry"]["id"])
    assert ids[0] != ids[1]
    for _ in range(2):
        listed = ask(site, "/api/entries")
        assert listed.status == 200 and not listed.hit
    # A reload (the browser asks no-cache or max-age=0) goes to the app while a copy is there.
    for asked in ("no-cache", "max-age=0"):
        fresh_miss(site)
        assert ask(site, "/").hit
        assert not ask(site, "/", **{"Cache-Control": asked}).hit, asked


def test_only_the_gzipped_copy_is_kept(site: LocalSite) -> None:
    """HAProxy would hand a plain copy to every client (all accept identity), so browsers would get the
    page uncompressed: only the gzipped copy is kept, and a client without gzip always reaches the app."""
    fresh_miss(site)
    zipped = ask(site, "/")
    assert zipped.hit and zipped.headers.get("content-encoding") == "gzip", zipped.headers
    plain = [ask(site, "/", **{"Accept-Encoding": "identity"}) for _ in range(2)]
    assert [p.hit for p in plain] == [False, False]
    assert all("content-encoding" not in p.headers and "<form" in p.body for p in plain)
    assert ask(site, "/").headers.get("content-encoding") == "gzip"


def test_the_writer_sees_its_entry_at_once_and_others_within_a_second_plus_the_replicas_lag(
    site: LocalSite,
) -> None:
    message = f"fresh {uuid.uuid4().hex}"
    replica = replica_of(site)
    replica.execute("STOP SLAVE SQL_THREAD")  # the replica lags for as long as this test wants
    try:
        fresh_miss(site)
        assert ask(site, "/").hit  # the cache holds the page from before the post
        form = urllib.parse.urlencode({"name": "Writer", "message": message})
        posted = ask(
            site, "/entries", "POST", form, Origin=ORIGIN, **{"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert posted.status == 303, posted
        cookie = posted.headers["set-cookie"].split(";", 1)[0]
        assert cookie == f"{WROTE_COOKIE}=1"
        # Post-redirect-get: the writer's GET / carries the cookie and lists the entry at once.
        own = ask(site, posted.headers["location"], Cookie=cookie)
        assert own.status == 200 and not own.hit
        assert message in own.body
        # Everybody else reads the replica, through the cache: not there while the replica lags...
        assert message not in ask(site, "/").body
        time.sleep(SHARED_CACHE_S + 0.1)
        assert message not in fresh_miss(site).body
    finally:
        replica.execute("START SLAVE SQL_THREAD")
    # ...and there within a second once the replica has it.
    deadline = time.monotonic() + 10
    while not replica.execute("SELECT id FROM foobar.entries WHERE message = %s", (message,)):
        assert time.monotonic() < deadline, "the replica never caught up"
        time.sleep(0.02)
    caught_up = time.monotonic()
    while message not in ask(site, "/").body:
        assert time.monotonic() - caught_up <= SHARED_CACHE_S + SLACK_S, "readers still see the old page"
        time.sleep(0.05)
