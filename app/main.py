"""WSGI factory and routes: ``gunicorn -k gthread 'app.main:create_app()'``.

Reads come from the read replica, writes go to the primary. Errors answer with a short message and
never a stack trace; the detail goes to the log, which never holds a credential.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, current_app, jsonify, redirect, render_template, request
from werkzeug.exceptions import HTTPException

from app import guestbook
from app.config import MAX_BODY_BYTES, READ_OWN_WRITES_S, SHARED_CACHE_S, WROTE_COOKIE, load_config
from app.credentials import CredentialsProvider
from app.db import Database, DatabaseUnavailable

log = logging.getLogger("app")
EPOCH = dt.datetime.fromtimestamp(0, tz=dt.UTC)

bp = Blueprint("guestbook", __name__)

_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
}


def create_app(env: Mapping[str, str] | None = None, *, secrets_client: Any = None) -> Flask:
    """Build the app from ``env`` (default: ``os.environ``).

    Bad settings raise :class:`app.config.ConfigError` naming the variable, so gunicorn refuses to start.
    The credentials are read now (fail fast on a wrong secret ARN); the schema is created now when the
    writer answers, and otherwise on the first ``/readyz`` or write once it does.
    """
    config = load_config(os.environ if env is None else env)
    _configure_logging(config.log_level)
    credentials = CredentialsProvider(config.credentials, client=secrets_client)
    credentials.get()
    db = Database(config, credentials)

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["foobar"] = _State(db)
    app.register_blueprint(bp)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    app.after_request(_security_headers)
    app.context_processor(lambda: {"name_max": guestbook.NAME_MAX, "message_max": guestbook.MESSAGE_MAX})
    _state(app).schema_ready(log_failure=True)
    log.info(
        "guestbook ready to serve: writer=%s reader=%s port=%d database=%s",
        config.writer_host,
        config.reader_host,
        config.port,
        config.database,
    )
    return app


class _State:
    """Per-process state: the pools and whether the schema is known to exist."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._schema_ok = False

    def schema_ready(self, log_failure: bool = False) -> bool:
        if not self._schema_ok:
            try:
                guestbook.ensure_schema(self.db)
                self._schema_ok = True
            except DatabaseUnavailable as exc:
                if log_failure:
                    log.warning("schema not created yet (%s); will retry", exc.reason)
        return self._schema_ok


def _state(app: Flask | None = None) -> _State:
    state: _State = (app or current_app).extensions["foobar"]
    return state


def _configure_logging(level: str) -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("app").setLevel(level)


# ------------------------------------------------------------------------------------------------ pages


@bp.get("/")
def index() -> tuple[str, int]:
    try:
        entries = guestbook.latest_entries(_state().db, endpoint=_read_endpoint())
    except DatabaseUnavailable:
        return render_template("index.html", entries=[], unavailable=True), 503
    return render_template("index.html", entries=entries), 200


@bp.post("/entries")
def post_entry_form() -> Any:
    if not _same_origin():
        return render_template("error.html", status=403, message="Cross-site form posts are not accepted."), 403
    name, message = request.form.get("name"), request.form.get("message")
    try:
        clean_name, clean_message = guestbook.validate(name, message)
        _require_schema()
        guestbook.add_entry(_state().db, clean_name, clean_message)
    except guestbook.ValidationError as exc:
        form = {"name": name or "", "message": message or ""}
        return render_template("index.html", entries=[], error=exc, form=form, skip_list=True), 400
    except DatabaseUnavailable:
        return render_template("error.html", status=503, message="The guestbook is unavailable, try again."), 503
    response = redirect("/", code=303)
    # Read your own writes: for a while this browser reads from the primary, past every shared cache.
    response.set_cookie(
        WROTE_COOKIE, "1", max_age=READ_OWN_WRITES_S, path="/", secure=True, httponly=True, samesite="Lax"
    )
    return response


def _read_endpoint() -> str:
    """The primary for a browser that has just written (it must see its entry), the replica otherwise."""
    return "writer" if request.cookies.get(WROTE_COOKIE) else "reader"


def _same_origin() -> bool:
    """CSRF defence for the form: the browser's Sec-Fetch-Site / Origin / Referer must name this host.

    Cross-site JavaScript cannot forge these headers; a post without any of them is refused.
    """
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site in ("same-origin", "none")
    source = request.headers.get("Origin") or request.headers.get("Referer")
    if not source or source == "null":
        return False
    # Host names only: a proxy may pass Host without the port the browser put in Origin.
    return (urlsplit(source).hostname or "") == (urlsplit("//" + request.host).hostname or "-")


# -------------------------------------------------------------------------------------------------- API


@bp.get("/api/entries")
def list_entries() -> tuple[Response, int]:
    try:
        limit = guestbook.parse_limit(request.args.get("limit"))
        entries = guestbook.latest_entries(_state().db, limit, endpoint=_read_endpoint())
    except guestbook.ValidationError as exc:
        return _json_error(400, exc.message, exc.field)
    except DatabaseUnavailable:
        return _json_error(503, "database unavailable")
    return jsonify(entries=[e.as_json() for e in entries]), 200


@bp.post("/api/entries")
def create_entry() -> tuple[Response, int]:
    """JSON only: a cross-site form cannot send ``application/json`` without a CORS preflight."""
    if not request.is_json:
        return _json_error(415, "send a JSON object with Content-Type: application/json", "body")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return _json_error(400, "body must be a JSON object with name and message", "body")
    try:
        name, message = guestbook.validate(body.get("name"), body.get("message"))
        _require_schema()
        entry = guestbook.add_entry(_state().db, name, message)
    except guestbook.ValidationError as exc:
        return _json_error(400, exc.message, exc.field)
    except DatabaseUnavailable:
        return _json_error(503, "database unavailable")
    return jsonify(entry=entry.as_json()), 201


def _require_schema() -> None:
    if not _state().schema_ready():
        raise DatabaseUnavailable("writer", "schema not created")


# --------------------------------------------------------------------------------------------- probes


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    """The process answers: no database involved, so a database outage does not empty the LB pool."""
    return jsonify(status="ok"), 200


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """200 only when both writer and reader answer ``SELECT 1``; otherwise 503 naming what failed."""
    state = _state()
    checks: dict[str, str] = {}
    for endpoint in ("writer", "reader"):
        try:
            state.db.check(endpoint)
            checks[endpoint] = "ok"
        except DatabaseUnavailable as exc:
            checks[endpoint] = f"failed: {exc.reason}"
    if checks["writer"] == "ok":
        checks["schema"] = "ok" if state.schema_ready() else "failed"
    ready = all(v == "ok" for v in checks.values())
    failed = [k for k, v in checks.items() if v != "ok"]
    body = {"status": "ready" if ready else "unavailable", "checks": checks, "failed": failed}
    return jsonify(body), 200 if ready else 503


# --------------------------------------------------------------------------------------------- errors


def _json_error(status: int, message: str, field: str | None = None) -> tuple[Response, int]:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    return jsonify(body), status


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.path in ("/healthz", "/readyz")


def _http_error(exc: HTTPException) -> Any:
    status = exc.code or 500
    message = exc.name
    if _wants_json():
        return _json_error(status, message)
    return render_template("error.html", status=status, message=message), status


def _unexpected_error(exc: Exception) -> Any:
    log.error("unhandled error on %s %s", request.method, request.path, exc_info=exc)
    if _wants_json():
        return _json_error(500, "internal error")
    return render_template("error.html", status=500, message="Something went wrong."), 500


def _security_headers(response: Response) -> Response:
    for key, value in _SECURITY_HEADERS.items():
        response.headers.setdefault(key, value)
    if "Cache-Control" not in response.headers:
        if _shareable(response):
            # Shared caches may keep it briefly (s-maxage); a browser's copy is stale at once (Expires in
            # the past: s-maxage binds only shared caches). Not max-age=0: HAProxy (2.6 and 2.8) then stores nothing.
            response.headers["Cache-Control"] = f"public, s-maxage={SHARED_CACHE_S}"
            response.expires = EPOCH
        else:
            response.headers["Cache-Control"] = "no-store"
    return response


def _shareable(response: Response) -> bool:
    """Only an anonymous page that rendered fine: the API, the probes, errors, redirects and anything
    asked with a cookie (a writer reading its own entry) are never stored anywhere."""
    return (
        request.method in ("GET", "HEAD")
        and response.status_code == 200
        and "Cookie" not in request.headers
        and "Set-Cookie" not in response.headers
        and not request.path.startswith("/api/")
        and request.path not in ("/readyz", "/healthz")
    )
