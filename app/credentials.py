"""Database credentials: given directly, or read from the RDS-managed secret in Secrets Manager.

RDS rotates a managed master password, so the secret is read again when the database refuses a login
(the first time at once, then at most once per ``min_refresh_interval``). Values are never logged, and
errors never carry them.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from app.config import SecretCredentials, StaticCredentials

log = logging.getLogger(__name__)


class CredentialsError(RuntimeError):
    """The credentials could not be obtained; the message names the source, never a value."""


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str = field(repr=False)


class CredentialsProvider:
    """Current credentials for new connections; :meth:`refresh` re-reads a secret after a failed login."""

    def __init__(
        self,
        source: StaticCredentials | SecretCredentials,
        *,
        client: Any = None,
        min_refresh_interval: float = 30.0,
    ) -> None:
        self._source = source
        self._client = client
        self._min_refresh_interval = min_refresh_interval
        self._lock = threading.Lock()
        self._current: Credentials | None = None
        self._refreshed_at: float | None = None

    @property
    def refreshable(self) -> bool:
        return isinstance(self._source, SecretCredentials)

    def get(self) -> Credentials:
        with self._lock:
            if self._current is None:
                self._current = self._load()
            return self._current

    def refresh(self) -> bool:
        """Re-read the secret (rate-limited); True when new credentials were fetched."""
        if not self.refreshable:
            return False
        with self._lock:
            now = time.monotonic()
            if self._refreshed_at is not None and now - self._refreshed_at < self._min_refresh_interval:
                return False
            self._refreshed_at = now
            self._current = self._load()
            log.info("database credentials re-read from Secrets Manager")
            return True

    def _load(self) -> Credentials:
        source = self._source
        if isinstance(source, StaticCredentials):
            return Credentials(user=source.user, password=source.password)
        return _read_secret(source, self._client)


def _quiet_aws_sdk_logs() -> None:
    """botocore's DEBUG output includes response bodies, i.e. the secret: never let it below INFO."""
    for name in ("botocore", "boto3", "s3transfer", "urllib3"):
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.INFO:
            logger.setLevel(logging.INFO)


def _read_secret(source: SecretCredentials, client: Any) -> Credentials:
    _quiet_aws_sdk_logs()
    if client is None:
        try:
            import boto3  # imported only on AWS: local runs need no AWS SDK
        except ImportError:
            raise CredentialsError("FOOBAR_DB_SECRET_ARN is set but boto3 is not installed") from None
        client = boto3.client("secretsmanager", region_name=source.region)
    try:
        response = client.get_secret_value(SecretId=source.secret_arn)
    except Exception as exc:  # botocore raises many types; only the class and code are safe to show
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
        raise CredentialsError(
            f"cannot read FOOBAR_DB_SECRET_ARN={source.secret_arn} in FOOBAR_REGION={source.region}:"
            f" {type(exc).__name__} {code}".rstrip()
        ) from None
    try:
        data = json.loads(response["SecretString"])
    except (KeyError, TypeError, ValueError):
        raise CredentialsError(
            f"secret FOOBAR_DB_SECRET_ARN={source.secret_arn} is not a JSON string with username and password"
        ) from None
    if not isinstance(data, dict):
        raise CredentialsError(f"secret FOOBAR_DB_SECRET_ARN={source.secret_arn} must hold a JSON object")
    for key in ("username", "password"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise CredentialsError(f"secret FOOBAR_DB_SECRET_ARN={source.secret_arn} lacks a non-empty {key!r}")
    return Credentials(user=data["username"], password=data["password"])
