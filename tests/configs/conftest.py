"""Shared fixtures: role values like dev and prod stacks, and a test PKI made with openssl."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from tests.configs.checks import Pki, make_pki
from userdata import RoleValues
from userdata.render import app_archive

ARN = "arn:aws:acm:eu-west-1:123456789012:certificate/0b0c5c8e-1111-2222-3333-444455556666"


def _values(stack: str, n: int, arn: str, lb_count: int = 1) -> dict[str, RoleValues]:
    base: dict[str, Any] = {"stack": stack, "region": "eu-west-1", "domain": "www.foobar.com"}
    archive = app_archive()
    return {
        "lb": RoleValues(
            role="lb",
            param_path=f"/foobar/{stack}/lb",
            private_address="10.0.0.10",
            acm_certificate_arn=arn,
            lb_count=lb_count,
            eip_allocation_id="eipalloc-0a1b2c3d4e5f60718",
            vpc_cidr="10.0.0.0/16",
            **base,
        ),
        "web": RoleValues(role="web", param_path=f"/foobar/{stack}/web", private_address="10.0.16.10", **base),
        "app": RoleValues(
            role="app",
            param_path=f"/foobar/{stack}/app",
            private_address="10.0.32.10",
            app_archive_url=f"s3://foobar-{stack}-artifacts/app/{hashlib.sha256(archive).hexdigest()}.tar.gz",
            app_archive_sha256=hashlib.sha256(archive).hexdigest(),
            **base,
        ),
    }


STACKS = {
    "dev": _values("dev", 1, ""),
    "prod": _values("prod", 3, ARN, lb_count=2),
    "big": _values("big", 10, ARN),
}


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"), ["web.foobar.internal", "app.foobar.internal", "www.foobar.com"])


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    return tmp_path
