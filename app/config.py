"""Settings from ``FOOBAR_*`` environment variables, checked once at start.

A bad or missing value stops the app with a message naming the variable; a password is never echoed.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

MAX_BODY_BYTES = 64 * 1024
"""The largest request body the app takes (413 above); the load balancers refuse bigger ones first."""
SHARED_CACHE_S = 1
"""How long a shared cache (the load balancers' micro-cache) may keep an anonymous page: a burst of
readers costs one render a second, and nobody sees a page older than this plus the replica's lag."""
WROTE_COOKIE = "foobar_wrote"
"""Set on a browser that has just signed the guestbook: its reads go to the primary and no shared cache
answers it, so after post-redirect-get it sees its own entry at once, whatever the replica's lag."""
READ_OWN_WRITES_S = 10
"""How long that cookie lives: longer than a healthy replica's lag plus ``SHARED_CACHE_S``."""


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names the variable."""


@dataclass(frozen=True)
class StaticCredentials:
    """User and password given directly (local runs and tests)."""

    user: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class SecretCredentials:
    """An RDS-managed Secrets Manager secret (JSON with ``username`` and ``password``)."""

    secret_arn: str
    region: str


@dataclass(frozen=True)
class Config:
    """Everything the app needs; built by :func:`load_config`."""

    writer_host: str
    reader_host: str
    port: int
    database: str
    credentials: StaticCredentials | SecretCredentials
    ca_file: Path
    pool_size: int = 8
    connect_timeout: float = 5.0
    query_timeout: float = 10.0
    log_level: str = "INFO"


_HOST_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_ARN_RE = re.compile(r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+$")
_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

VARIABLES = (
    "FOOBAR_DB_WRITER_HOST",
    "FOOBAR_DB_READER_HOST",
    "FOOBAR_DB_PORT",
    "FOOBAR_DB_NAME",
    "FOOBAR_DB_USER",
    "FOOBAR_DB_PASSWORD",
    "FOOBAR_DB_SECRET_ARN",
    "FOOBAR_REGION",
    "FOOBAR_DB_CA_FILE",
    "FOOBAR_DB_POOL_SIZE",
    "FOOBAR_DB_CONNECT_TIMEOUT",
    "FOOBAR_DB_QUERY_TIMEOUT",
    "FOOBAR_LOG_LEVEL",
)


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise ConfigError(f"{name} is required but not set")
    return value


def _host(env: Mapping[str, str], name: str) -> str:
    value = _required(env, name)
    if not _HOST_RE.match(value):
        raise ConfigError(f"{name}={value!r} is not a host name or IPv4 address")
    return value


def _number(env: Mapping[str, str], name: str, default: float, low: float, high: float, integer: bool) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{name}={raw!r} must be {kind} between {low:g} and {high:g}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={raw!r} must be between {low:g} and {high:g}")
    return value


def _credentials(env: Mapping[str, str]) -> StaticCredentials | SecretCredentials:
    user = env.get("FOOBAR_DB_USER", "").strip()
    password = env.get("FOOBAR_DB_PASSWORD", "")
    arn = env.get("FOOBAR_DB_SECRET_ARN", "").strip()
    if arn and (user or password):
        raise ConfigError("set either FOOBAR_DB_SECRET_ARN or FOOBAR_DB_USER/FOOBAR_DB_PASSWORD, not both")
    if arn:
        if not _ARN_RE.match(arn):
            raise ConfigError(f"FOOBAR_DB_SECRET_ARN={arn!r} is not a Secrets Manager secret ARN")
        region = _required(env, "FOOBAR_REGION")
        if not _REGION_RE.match(region):
            raise ConfigError(f"FOOBAR_REGION={region!r} is not an AWS region name like eu-west-1")
        return SecretCredentials(secret_arn=arn, region=region)
    if not user and not password:
        raise ConfigError(
            "database credentials missing: set FOOBAR_DB_SECRET_ARN (AWS) or FOOBAR_DB_USER and FOOBAR_DB_PASSWORD"
        )
    if not user:
        raise ConfigError("FOOBAR_DB_USER is required when FOOBAR_DB_PASSWORD is set")
    if not password:
        raise ConfigError("FOOBAR_DB_PASSWORD is required when FOOBAR_DB_USER is set")
    if len(user) > 80:
        raise ConfigError(f"FOOBAR_DB_USER={user!r} is longer than 80 characters")
    return StaticCredentials(user=user, password=password)


def _ca_file(env: Mapping[str, str]) -> Path:
    raw = _required(env, "FOOBAR_DB_CA_FILE")
    path = Path(raw)
    if not path.is_file():
        raise ConfigError(f"FOOBAR_DB_CA_FILE={raw!r} does not exist or is not a file")
    try:
        ssl.create_default_context(cafile=str(path))
    except (ssl.SSLError, OSError, ValueError):
        raise ConfigError(f"FOOBAR_DB_CA_FILE={raw!r} is not readable PEM with at least one CA certificate") from None
    return path


def load_config(env: Mapping[str, str]) -> Config:
    """Validate the environment and return the settings; raises :class:`ConfigError` naming the variable."""
    level = env.get("FOOBAR_LOG_LEVEL", "INFO").strip().upper() or "INFO"
    if level not in _LOG_LEVELS:
        raise ConfigError(f"FOOBAR_LOG_LEVEL={level!r} must be one of {', '.join(_LOG_LEVELS)}")
    database = _required(env, "FOOBAR_DB_NAME")
    if not _NAME_RE.match(database):
        raise ConfigError(f"FOOBAR_DB_NAME={database!r} must be 1-64 letters, digits or '_'")
    return Config(
        writer_host=_host(env, "FOOBAR_DB_WRITER_HOST"),
        reader_host=_host(env, "FOOBAR_DB_READER_HOST"),
        port=int(_number(env, "FOOBAR_DB_PORT", 3306, 1, 65535, integer=True)),
        database=database,
        credentials=_credentials(env),
        ca_file=_ca_file(env),
        pool_size=int(_number(env, "FOOBAR_DB_POOL_SIZE", 8, 1, 100, integer=True)),
        connect_timeout=_number(env, "FOOBAR_DB_CONNECT_TIMEOUT", 5.0, 0.5, 60, integer=False),
        query_timeout=_number(env, "FOOBAR_DB_QUERY_TIMEOUT", 10.0, 1, 300, integer=False),
        log_level=level,
    )
