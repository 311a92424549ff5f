from __future__ import annotations

import pytest

from tests.unit.harness import Run, run

EXPIRES = "2026-12-01T18:00:00Z"


@pytest.fixture(scope="session")
def runs() -> dict[str, Run]:
    """The real program for dev, prod and a per-pull-request stack copied from dev."""
    return {
        "dev": run("dev"),
        "prod": run("prod"),
        "pr-7": run("pr-7", base="dev", ephemeral=True, expiresAt=EXPIRES),
    }


@pytest.fixture(params=["dev", "prod", "pr-7"])
def stack_run(request: pytest.FixtureRequest, runs: dict[str, Run]) -> Run:
    return runs[request.param]
