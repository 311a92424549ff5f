"""Settings: every bad or missing variable stops the app with a message naming it, never the password."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import ConfigError, SecretCredentials, StaticCredentials, load_config
from local.mariadb import CertificateAuthority

PASSWORD = "Sup3r-s3cret-pa55"


@pytest.fixture
def env(ca: CertificateAuthority) -> dict[str, str]:
    return {
        "FOOBAR_DB_WRITER_HOST": "db-primary.internal",
        "FOOBAR_DB_READER_HOST": "127.0.40.2",
        "FOOBAR_DB_NAME": "guestbook",
        "FOOBAR_DB_USER": "guestbook",
        "FOOBAR_DB_PASSWORD": PASSWORD,
        "FOOBAR_DB_CA_FILE": str(ca.cert),
    }


def test_valid_local_config_has_defaults(env: dict[str, str]) -> None:
    config = load_config(env)
    assert config.port == 3306
    assert config.writer_host == "db-primary.internal"
    assert config.reader_host == "127.0.40.2"
    assert isinstance(config.credentials, StaticCredentials)
    assert config.credentials.password == PASSWORD
    assert PASSWORD not in repr(config)


def test_secret_arn_config(env: dict[str, str]) -> None:
    del env["FOOBAR_DB_USER"], env["FOOBAR_DB_PASSWORD"]
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!db-1234-AbCdEf"
    env.update(FOOBAR_DB_SECRET_ARN=arn, FOOBAR_REGION="eu-west-1")
    assert load_config(env).credentials == SecretCredentials(secret_arn=arn, region="eu-west-1")


@pytest.mark.parametrize(
    "variable",
    ["FOOBAR_DB_WRITER_HOST", "FOOBAR_DB_READER_HOST", "FOOBAR_DB_NAME", "FOOBAR_DB_CA_FILE", "FOOBAR_DB_PASSWORD"],
)
def test_missing_variable_is_named(env: dict[str, str], variable: str) -> None:
    del env[variable]
    with pytest.raises(ConfigError, match=variable):
        load_config(env)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FOOBAR_DB_PORT", "http"),
        ("FOOBAR_DB_PORT", "70000"),
        ("FOOBAR_DB_WRITER_HOST", "db host; rm"),
        ("FOOBAR_DB_NAME", "guest-book"),
        ("FOOBAR_DB_POOL_SIZE", "0"),
        ("FOOBAR_DB_CONNECT_TIMEOUT", "soon"),
        ("FOOBAR_LOG_LEVEL", "LOUD"),
        ("FOOBAR_DB_CA_FILE", "/nonexistent/ca.pem"),
    ],
)
def test_invalid_value_is_named(env: dict[str, str], variable: str, value: str) -> None:
    env[variable] = value
    with pytest.raises(ConfigError, match=variable) as info:
        load_config(env)
    assert PASSWORD not in str(info.value)


def test_ca_file_that_is_not_pem_is_refused(env: dict[str, str], tmp_path: Path) -> None:
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate\n")
    env["FOOBAR_DB_CA_FILE"] = str(bogus)
    with pytest.raises(ConfigError, match="FOOBAR_DB_CA_FILE"):
        load_config(env)


def test_no_credentials_at_all(env: dict[str, str]) -> None:
    del env["FOOBAR_DB_USER"], env["FOOBAR_DB_PASSWORD"]
    with pytest.raises(ConfigError, match="FOOBAR_DB_SECRET_ARN"):
        load_config(env)


def test_both_credential_sources_is_an_error(env: dict[str, str]) -> None:
    env.update(FOOBAR_DB_SECRET_ARN="arn:aws:secretsmanager:eu-west-1:123456789012:secret:x", FOOBAR_REGION="eu-west-1")
    with pytest.raises(ConfigError, match="not both") as info:
        load_config(env)
    assert PASSWORD not in str(info.value)


def test_secret_arn_needs_region_and_valid_arn(env: dict[str, str]) -> None:
    del env["FOOBAR_DB_USER"], env["FOOBAR_DB_PASSWORD"]
    env["FOOBAR_DB_SECRET_ARN"] = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:x"
    with pytest.raises(ConfigError, match="FOOBAR_REGION"):
        load_config(env)
    env.update(FOOBAR_DB_SECRET_ARN="my-secret", FOOBAR_REGION="eu-west-1")
    with pytest.raises(ConfigError, match="FOOBAR_DB_SECRET_ARN"):
        load_config(env)
