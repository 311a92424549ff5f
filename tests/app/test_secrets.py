"""Credentials from an RDS-managed Secrets Manager secret (moto stands in for AWS)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from app.credentials import CredentialsError
from app.main import create_app
from tests.app.conftest import Pair

REGION = "eu-west-1"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for key in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield boto3.client("secretsmanager", region_name=REGION)


def _secret_env(pair: Pair, arn: str) -> dict[str, str]:
    return pair.env(FOOBAR_DB_USER="", FOOBAR_DB_PASSWORD="", FOOBAR_DB_SECRET_ARN=arn, FOOBAR_REGION=REGION)


def test_app_reads_the_rds_secret(pair: Pair, aws: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = aws
    secret = {"username": pair.account.user, "password": pair.account.password, "engine": "mysql"}
    arn = client.create_secret(Name="rds!db-test", SecretString=json.dumps(secret))["ARN"]
    caplog.clear()  # from here on only what the app (and the AWS SDK it drives) logs
    application = create_app(_secret_env(pair, arn))
    web = application.test_client()
    assert web.get("/readyz").status_code == 200
    assert web.post("/api/entries", json={"name": "from-secret", "message": "ok"}).status_code == 201
    assert pair.account.password not in caplog.text
    assert logging.getLogger("botocore").getEffectiveLevel() >= logging.INFO
    application.extensions["foobar"].db.close()


def test_rotated_password_is_picked_up(pair: Pair, aws: Any) -> None:
    """RDS rotates the managed password: a refused login makes the app read the secret again."""
    client = aws
    pair.primary.create_database("guestbook", "rotuser", "pw-before-rotation")
    pair.replica.wait_caught_up(pair.primary)
    secret = {"username": "rotuser", "password": "pw-before-rotation"}
    arn = client.create_secret(Name="rds!db-rot", SecretString=json.dumps(secret))["ARN"]
    application = create_app(_secret_env(pair, arn))
    web = application.test_client()
    assert web.get("/readyz").status_code == 200

    pair.primary.execute("ALTER USER 'rotuser'@'%' IDENTIFIED BY 'pw-after-rotation'")
    pair.replica.wait_caught_up(pair.primary)
    secret["password"] = "pw-after-rotation"
    client.put_secret_value(SecretId=arn, SecretString=json.dumps(secret))
    for server in (pair.primary, pair.replica):  # drop the pooled sessions so new logins are needed
        for row in server.execute("SELECT id FROM information_schema.processlist WHERE user = 'rotuser'"):
            server.execute(f"KILL {int(row['id'])}")
    response = web.get("/readyz")
    assert response.status_code == 200, response.get_json()
    application.extensions["foobar"].db.close()


def test_missing_secret_is_a_clear_start_error(pair: Pair, aws: Any) -> None:
    arn = f"arn:aws:secretsmanager:{REGION}:123456789012:secret:rds!db-missing-AbCdEf"
    with pytest.raises(CredentialsError, match="FOOBAR_DB_SECRET_ARN") as info:
        create_app(_secret_env(pair, arn))
    assert "ResourceNotFoundException" in str(info.value)


@pytest.mark.parametrize(
    ("secret_string", "problem"),
    [("not json", "JSON"), (json.dumps({"username": "u"}), "password"), (json.dumps(["x"]), "object")],
)
def test_malformed_secret_is_named_without_its_value(pair: Pair, aws: Any, secret_string: str, problem: str) -> None:
    client = aws
    arn = client.create_secret(Name="rds!db-bad", SecretString=secret_string)["ARN"]
    with pytest.raises(CredentialsError, match="FOOBAR_DB_SECRET_ARN") as info:
        create_app(_secret_env(pair, arn))
    assert problem in str(info.value)
    assert secret_string not in str(info.value)
