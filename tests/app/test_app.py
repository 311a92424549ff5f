"""The guestbook through Flask's test client against the real primary and replica (TLS)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import guestbook
from app.main import create_app
from local.mariadb import AppAccount, CertificateAuthority
from tests.app.conftest import SPARE_ADDR, Pair, start_single, wait_for


def _names(client: FlaskClient) -> list[str]:
    response = client.get("/api/entries")
    assert response.status_code == 200
    return [e["name"] for e in response.get_json()["entries"]]


def test_healthz_needs_no_database(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_when_both_answer(client: FlaskClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ready"
    assert body["checks"] == {"writer": "ok", "reader": "ok", "schema": "ok"}


def test_api_write_then_read_back_from_replica(client: FlaskClient) -> None:
    response = client.post("/api/entries", json={"name": "  Ada  ", "message": "Hello from the API"})
    assert response.status_code == 201
    entry = response.get_json()["entry"]
    assert entry["name"] == "Ada"  # trimmed
    assert entry["message"] == "Hello from the API"
    assert entry["created_at"].endswith("Z")
    listed = wait_for(lambda: [e for e in client.get("/api/entries").get_json()["entries"] if e["id"] == entry["id"]])
    assert listed == [entry]


def test_writes_go_to_primary_and_reads_to_replica(client: FlaskClient, pair: Pair) -> None:
    """With the replica's SQL thread paused the new row is on the primary but not yet listed."""
    pair.replica.execute("STOP SLAVE SQL_THREAD")
    try:
        response = client.post("/api/entries", json={"name": "Lag", "message": "written while the replica waits"})
        assert response.status_code == 201
        new_id = response.get_json()["entry"]["id"]
        on_primary = pair.primary.execute("SELECT name FROM guestbook.entries WHERE id = %s", (new_id,))
        assert on_primary == [{"name": "Lag"}]
        ids = [e["id"] for e in client.get("/api/entries").get_json()["entries"]]
        assert new_id not in ids
    finally:
        pair.replica.execute("START SLAVE SQL_THREAD")
    wait_for(lambda: new_id in [e["id"] for e in client.get("/api/entries").get_json()["entries"]])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "", "message": "hi"}, "name"),
        ({"name": "   ", "message": "hi"}, "name"),
        ({"message": "hi"}, "name"),
        ({"name": 42, "message": "hi"}, "name"),
        ({"name": "x" * (guestbook.NAME_MAX + 1), "message": "hi"}, "name"),
        ({"name": "Bob", "message": ""}, "message"),
        ({"name": "Bob"}, "message"),
        ({"name": "Bob", "message": "m" * (guestbook.MESSAGE_MAX + 1)}, "message"),
        (["name", "message"], "body"),
    ],
)
def test_api_validation_names_the_field(client: FlaskClient, body: object, field: str) -> None:
    response = client.post("/api/entries", json=body)
    assert response.status_code == 400
    assert response.get_json()["field"] == field
    assert field in response.get_json()["error"]


def test_api_limits_are_accepted_at_the_edge(client: FlaskClient) -> None:
    body = {"name": "n" * guestbook.NAME_MAX, "message": "é" * guestbook.MESSAGE_MAX}
    response = client.post("/api/entries", json=body)
    assert response.status_code == 201
    assert response.get_json()["entry"]["message"] == body["message"]


def test_api_rejects_non_json(client: FlaskClient) -> None:
    response = client.post("/api/entries", data={"name": "a", "message": "b"})
    assert response.status_code == 415
    assert response.get_json()["field"] == "body"
    response = client.post("/api/entries", data="{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["field"] == "body"


@pytest.mark.parametrize("limit", ["0", "101", "ten"])
def test_api_list_limit_is_validated(client: FlaskClient, limit: str) -> None:
    response = client.get(f"/api/entries?limit={limit}")
    assert response.status_code == 400
    assert response.get_json()["field"] == "limit"


def test_api_list_limit(client: FlaskClient) -> None:
    for i in range(3):
        assert client.post("/api/entries", json={"name": f"L{i}", "message": "m"}).status_code == 201
    wait_for(lambda: "L2" in _names(client))
    entries = client.get("/api/entries?limit=2").get_json()["entries"]
    assert [e["name"] for e in entries] == ["L2", "L1"]


def test_form_post_redirects_and_page_lists_entry_escaped(client: FlaskClient) -> None:
    response = client.post(
        "/entries",
        data={"name": "Form <b>user</b>", "message": "<script>alert(1)</script>"},
        headers={"Origin": "http://localhost"},
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/"
    page = wait_for(lambda: (p := client.get("/").get_data(as_text=True)) and "Form &lt;b&gt;user" in p and p)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>" not in page
    assert '<form method="post" action="/entries">' in page


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Referer": "https://evil.example/page"},
        {"Origin": "https://localhost.evil.example"},
        {"Sec-Fetch-Site": "cross-site", "Origin": "http://localhost"},
    ],
)
def test_form_post_from_another_site_is_refused(client: FlaskClient, headers: dict[str, str], pair: Pair) -> None:
    before = pair.primary.execute("SELECT COUNT(*) AS n FROM guestbook.entries")[0]["n"]
    response = client.post("/entries", data={"name": "csrf", "message": "forged"}, headers=headers)
    assert response.status_code == 403
    assert pair.primary.execute("SELECT COUNT(*) AS n FROM guestbook.entries")[0]["n"] == before


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "same-origin"},
        {"Referer": "http://localhost/"},
        {"Origin": "http://localhost"},
        {"Origin": "https://LOCALHOST:8443"},  # behind a proxy that passes Host without the port
    ],
)
def test_form_post_same_origin_variants_are_accepted(client: FlaskClient, headers: dict[str, str]) -> None:
    response = client.post("/entries", data={"name": "same", "message": "origin"}, headers=headers)
    assert response.status_code == 303


def test_form_validation_error_is_shown(client: FlaskClient) -> None:
    response = client.post("/entries", data={"name": "Eve", "message": " "}, headers={"Origin": "http://localhost"})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert 'data-field="message"' in page
    assert "message must not be empty" in page
    assert 'value="Eve"' in page


def test_unknown_paths_and_methods(client: FlaskClient) -> None:
    response = client.get("/api/nope")
    assert response.status_code == 404
    assert response.get_json() == {"error": "Not Found"}
    assert client.get("/nope").status_code == 404
    assert client.delete("/api/entries").status_code == 405


def test_security_headers(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert client.get("/api/entries").headers["Cache-Control"] == "no-store"


def test_unexpected_errors_show_no_stack_trace(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("internal detail xyz")

    monkeypatch.setattr(guestbook, "latest_entries", boom)
    for path in ("/", "/api/entries"):
        response = client.get(path)
        assert response.status_code == 500
        text = response.get_data(as_text=True)
        assert "Traceback" not in text
        assert "internal detail xyz" not in text
    assert "internal detail xyz" in caplog.text  # the detail goes to the log instead


def test_schema_creation_is_idempotent(pair: Pair) -> None:
    first = create_app(pair.env())
    second = create_app(pair.env())
    for application in (first, second):
        assert application.test_client().get("/readyz").status_code == 200
        application.extensions["foobar"].db.close()
    tables = pair.primary.execute("SHOW TABLES FROM guestbook")
    assert [next(iter(t.values())) for t in tables] == ["entries"]


def test_workers_starting_together_create_the_schema_once(pair: Pair) -> None:
    """Several processes' create_app on an empty database at the same moment all succeed."""
    account = AppAccount("racedb", "racer", "pw-race-123")
    pair.primary.create_database(account.database, account.user, account.password)
    env = pair.env(FOOBAR_DB_NAME=account.database, FOOBAR_DB_USER=account.user, FOOBAR_DB_PASSWORD=account.password)
    apps: list[Flask] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def boot() -> None:
        start.wait()
        try:
            apps.append(create_app(env))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=boot) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert len(apps) == 4
    for application in apps:
        assert application.extensions["foobar"].schema_ready()
        application.extensions["foobar"].db.close()
    assert pair.primary.execute("SHOW TABLES FROM racedb LIKE 'entries'")


def test_readyz_503_when_reader_stops_and_recovers(pair: Pair, tmp_path: Path) -> None:
    """A reader that goes away flips /readyz to 503; after a restart the pool reconnects by itself."""
    spare = start_single(tmp_path, pair.ca, "spare", SPARE_ADDR, pair.account)
    try:
        env = pair.env(FOOBAR_DB_READER_HOST=SPARE_ADDR)
        env["FOOBAR_DB_PORT"] = str(spare.port)
        # The port is shared by writer and reader, so the spare plays both roles here.
        env["FOOBAR_DB_WRITER_HOST"] = SPARE_ADDR
        application = create_app(env)
        client = application.test_client()
        assert client.get("/readyz").status_code == 200
        spare.stop()
        response = client.get("/readyz")
        assert response.status_code == 503
        body = response.get_json()
        assert body["status"] == "unavailable"
        assert set(body["failed"]) == {"writer", "reader"}
        assert client.get("/").status_code == 503
        assert client.post("/api/entries", json={"name": "a", "message": "b"}).status_code == 503
        spare.start()
        assert client.get("/readyz").status_code == 200
        assert client.post("/api/entries", json={"name": "back", "message": "again"}).status_code == 201
        application.extensions["foobar"].db.close()
    finally:
        spare.stop()


def test_readyz_503_names_only_the_unreachable_reader(pair: Pair) -> None:
    application = create_app(pair.env(FOOBAR_DB_READER_HOST="127.0.40.250"))
    response = application.test_client().get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["failed"] == ["reader"]
    assert body["checks"]["writer"] == "ok"
    assert body["checks"]["reader"].startswith("failed: OperationalError")
    application.extensions["foobar"].db.close()


def test_wrong_ca_is_refused(pair: Pair, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A CA that did not sign the servers' certificates: no connection at all, schema creation deferred."""
    caplog.set_level(logging.DEBUG)
    other_ca = CertificateAuthority.create(tmp_path / "other-ca", "some other CA")
    application = create_app(pair.env(FOOBAR_DB_CA_FILE=str(other_ca.cert)))
    client = application.test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["failed"] == ["writer", "reader"]
    assert client.post("/api/entries", json={"name": "a", "message": "b"}).status_code == 503
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text
    assert pair.account.password not in caplog.text
    application.extensions["foobar"].db.close()


def test_server_name_mismatch_is_refused(pair: Pair, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Right CA, but the certificate names another address: hostname checking refuses it."""
    spare = start_single(tmp_path, pair.ca, "wrongname", SPARE_ADDR, pair.account, san="127.0.40.99")
    try:
        env = pair.env(FOOBAR_DB_WRITER_HOST=SPARE_ADDR, FOOBAR_DB_READER_HOST=SPARE_ADDR)
        env["FOOBAR_DB_PORT"] = str(spare.port)
        application = create_app(env)
        assert application.test_client().get("/readyz").status_code == 503
        assert "mismatch" in caplog.text.lower()
        application.extensions["foobar"].db.close()
    finally:
        spare.stop()


def test_wrong_password_never_shows_up(pair: Pair, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "Wr0ng-pa55word-zz"
    application = create_app(pair.env(FOOBAR_DB_PASSWORD=wrong))
    client = application.test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"]["writer"] == "failed: OperationalError 1045"
    texts = [response.get_data(as_text=True), client.get("/").get_data(as_text=True), caplog.text]
    texts.append(client.post("/api/entries", json={"name": "a", "message": "b"}).get_data(as_text=True))
    assert "Access denied" in caplog.text
    for text in texts:
        assert wrong not in text
        assert pair.account.password not in text
    application.extensions["foobar"].db.close()
