"""AWS clients with one retry policy, and AWS errors turned into one readable line."""

from __future__ import annotations

from typing import Any, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    InvalidRegionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)

# Adaptive mode retries throttling (and transient errors) with backoff and a client-side rate
# limiter, so a verify of a large stack or a reap of many stacks does not fail on "Rate exceeded".
CLIENT_CONFIG = Config(
    retries={"mode": "adaptive", "total_max_attempts": 10},
    connect_timeout=10,
    read_timeout=30,
    user_agent_extra="foobar-ops",
)

ACCESS_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnauthorizedOperation",
        "AuthFailure",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "ExpiredToken",
        "ExpiredTokenException",
        "SignatureDoesNotMatch",
    }
)


class Clients(Protocol):
    """What the checks need from a session: a client by service name. Tests may pass their own."""

    def client(self, service_name: str, **kwargs: Any) -> Any: ...


class Session:
    """A boto3 session in one region whose clients all share ``CLIENT_CONFIG``."""

    def __init__(self, region: str) -> None:
        self.region = region
        self._session = boto3.session.Session(region_name=region)

    def client(self, service_name: str, **kwargs: Any) -> Any:
        return self._session.client(service_name, config=CLIENT_CONFIG, **kwargs)  # type: ignore[call-overload]


def describe_aws_error(err: Exception, region: str | None) -> str:
    """One line that says what went wrong with AWS and what to do, without a traceback."""
    if isinstance(err, NoCredentialsError | PartialCredentialsError):
        return (
            "no AWS credentials found - set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
            "or assume a role (in CI: aws-actions/configure-aws-credentials)"
        )
    if isinstance(err, NoRegionError):
        return "no AWS region - pass --region or set AWS_REGION"
    if isinstance(err, InvalidRegionError):
        return f"invalid AWS region {region!r} - pass --region with a name like eu-west-1"
    if isinstance(err, EndpointConnectionError):
        return (
            f"cannot reach the AWS endpoint {err.kwargs.get('endpoint_url', '')} - "
            f"check the region ({region!r}) and the network"
        )
    if isinstance(err, ClientError):
        error = err.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        message = str(error.get("Message", "")).splitlines()[0] if error.get("Message") else ""
        operation = err.operation_name
        if code in ACCESS_DENIED_CODES:
            return f"access denied calling {operation} ({code}): {message} - check the role's permissions"
        return f"AWS error calling {operation} ({code}): {message}"
    if isinstance(err, BotoCoreError):
        return f"AWS client error: {str(err).splitlines()[0]}"
    return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"


AWS_ERRORS: tuple[type[Exception], ...] = (BotoCoreError, ClientError)
