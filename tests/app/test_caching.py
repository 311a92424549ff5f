"""What the app lets caches keep, and reading your own writes: the two halves of the micro-cache's rules.

Only an anonymous page that rendered fine may be shared, by shared caches only and for
``SHARED_CACHE_S``; a browser that has just signed the guestbook carries a cookie that sends its reads to
the primary (and past every shared cache), so it sees its entry at once while the replica still lags.
"""

from __future__ import annotations

import uuid
from email.utils import parsedate_to_datetime

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.config import READ_OWN_WRITES_S, SHARED_CACHE_S, WROTE_COOKIE
from tests.app.conftest import Pair, wait_for

FORM_ORIGIN = {"Origin": "https://localhost"}


def https_client(app: Flask) -> FlaskClient:
    """A client over HTTPS, so a ``Secure`` cookie comes back as a browser would send it."""
    client = app.test_client()
    client.environ_base["wsgi.url_scheme"] = "https"
    return client


@pytest.fixture
def browser(app: Flask) -> FlaskClient:
    return https_client(app)


def test_an_anonymous_page_may_be_shared_briefly_but_not_kept_by_the_browser(browser: FlaskClient) -> None:
    response = browser.get("/")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == f"public, s-maxage={SHARED_CACHE_S}"
    # s-maxage binds shared caches only; for the browser the copy is stale at once.
    assert parsedate_to_datetime(response.headers["Expires"]).timestamp() <= 0
    assert "max-age=" not in response.headers["Cache-Control"].replace("s-maxage=", "")


@pytest.mark.parametrize(
    ("path", "cookie"),
    [
        ("/", "anything"),
        ("/", WROTE_COOKIE),
        ("/api/entries", ""),
        ("/healthz", ""),
        ("/readyz", ""),
        ("/no/such/page", ""),
    ],
)
def test_nothing_else_is_stored_anywhere(browser: FlaskClient, path: str, cookie: str) -> None:
    if cookie:
        browser.set_cookie(cookie, "1")
    response = browser.get(path)
    assert response.request.headers.get("Cookie", "") == (f"{cookie}=1" if cookie else "")
    assert response.headers["Cache-Control"] == "no-store", (path, cookie, response.status_code)
    assert "Expires" not in response.headers


def test_a_form_post_marks_the_writer_and_is_not_stored(browser: FlaskClient) -> None:
    response = browser.post("/entries", data={"name": "W", "message": "marked"}, headers=FORM_ORIGIN)
    assert response.status_code == 303
    assert response.headers["Cache-Control"] == "no-store"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"{WROTE_COOKIE}=1;")
    for attribute in (f"Max-Age={READ_OWN_WRITES_S}", "Secure", "HttpOnly", "Path=/", "SameSite=Lax"):
        assert attribute in cookie, cookie


def test_a_refused_form_post_marks_nobody(browser: FlaskClient) -> None:
    response = browser.post("/entries", data={"name": "W", "message": " "}, headers=FORM_ORIGIN)
    assert response.status_code == 400
    assert "Set-Cookie" not in response.headers


def test_the_writer_sees_its_entry_at_once_while_others_wait_for_the_replica(
    app: Flask, browser: FlaskClient, pair: Pair
) -> None:
    """Replication paused: the writer's page (cookie) is read from the primary and lists the new entry;
    another visitor's page, read from the replica, does not until replication goes on."""
    message = f"own write {uuid.uuid4().hex}"
    pair.replica.execute("STOP SLAVE SQL_THREAD")
    try:
        response = browser.post("/entries", data={"name": "Writer", "message": message}, headers=FORM_ORIGIN)
        assert response.status_code == 303
        own = browser.get("/")  # the redirect's GET, with the cookie the post set
        assert own.status_code == 200
        assert message in own.get_data(as_text=True)
        assert own.headers["Cache-Control"] == "no-store"
        other = https_client(app).get("/")
        assert other.status_code == 200
        assert message not in other.get_data(as_text=True)
        # The API reads the writer's way too while the cookie lives.
        assert any(e["message"] == message for e in browser.get("/api/entries").get_json()["entries"])
    finally:
        pair.replica.execute("START SLAVE SQL_THREAD")
    visitor = https_client(app)
    wait_for(lambda: message in visitor.get("/").get_data(as_text=True))
