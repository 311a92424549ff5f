"""The guestbook itself: schema, input rules, and the two queries (insert on the writer, list on the reader)."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from pymysql.connections import Connection

from app.db import Database

log = logging.getLogger(__name__)

NAME_MAX = 80
MESSAGE_MAX = 1000
LIST_DEFAULT = 50
LIST_MAX = 100

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS entries (
    id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name VARCHAR({NAME_MAX}) NOT NULL,
    message VARCHAR({MESSAGE_MAX}) NOT NULL,
    created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci
"""
_SCHEMA_LOCK = "foobar_guestbook_schema"


class ValidationError(ValueError):
    """One input field is wrong; ``field`` names it for the 400 answer."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Entry:
    id: int
    name: str
    message: str
    created_at: dt.datetime
    """UTC (connections run with time_zone '+00:00')."""

    def as_json(self) -> dict[str, Any]:
        stamp = self.created_at.replace(tzinfo=dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return {"id": self.id, "name": self.name, "message": self.message, "created_at": stamp}


def validate(name: object, message: object) -> tuple[str, str]:
    """Trimmed ``(name, message)``; raises :class:`ValidationError` naming the first bad field."""
    cleaned = []
    for field, value, limit in (("name", name, NAME_MAX), ("message", message, MESSAGE_MAX)):
        if value is None:
            raise ValidationError(field, f"{field} is required")
        if not isinstance(value, str):
            raise ValidationError(field, f"{field} must be a string")
        value = value.strip()
        if not value:
            raise ValidationError(field, f"{field} must not be empty")
        if len(value) > limit:
            raise ValidationError(field, f"{field} must be at most {limit} characters")
        if "\x00" in value:
            raise ValidationError(field, f"{field} must not contain NUL characters")
        cleaned.append(value)
    return cleaned[0], cleaned[1]


def parse_limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return LIST_DEFAULT
    try:
        limit = int(raw)
    except ValueError:
        raise ValidationError("limit", f"limit must be an integer from 1 to {LIST_MAX}") from None
    if not 1 <= limit <= LIST_MAX:
        raise ValidationError("limit", f"limit must be an integer from 1 to {LIST_MAX}")
    return limit


def ensure_schema(db: Database) -> None:
    """Create the table on the writer; a named lock keeps workers that start together from racing."""

    def create(conn: Connection[Any]) -> None:
        with conn.cursor() as cur:
            cur.execute("SELECT GET_LOCK(%s, 30) AS got", (_SCHEMA_LOCK,))
            try:
                cur.execute(SCHEMA)
            finally:
                cur.execute("SELECT RELEASE_LOCK(%s)", (_SCHEMA_LOCK,))

    db.run("writer", create)


def add_entry(db: Database, name: str, message: str) -> Entry:
    """Insert on the writer (primary); returns the stored row as written."""

    def insert(conn: Connection[Any]) -> Entry:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO entries (name, message) VALUES (%s, %s)", (name, message))
            new_id = int(cur.lastrowid)
            cur.execute("SELECT id, name, message, created_at FROM entries WHERE id = %s", (new_id,))
            row = cur.fetchone()
        return _entry(row)

    return db.run("writer", insert)


def latest_entries(db: Database, limit: int = LIST_DEFAULT, *, endpoint: str = "reader") -> list[Entry]:
    """Newest first, from the reader (replica), where a just-written entry shows up a moment later; from
    the writer for a client that must see its own write at once."""

    def select(conn: Connection[Any]) -> list[Entry]:
        with conn.cursor() as cur:
            cur.execute("SELECT id, name, message, created_at FROM entries ORDER BY id DESC LIMIT %s", (limit,))
            return [_entry(row) for row in cur.fetchall()]

    return db.run(endpoint, select, retry=True)


def _entry(row: dict[str, Any]) -> Entry:
    return Entry(id=int(row["id"]), name=row["name"], message=row["message"], created_at=row["created_at"])
