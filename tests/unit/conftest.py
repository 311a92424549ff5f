from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest

from tests.unit import harness
from tests.unit.harness import Run, run

EXPIRES = "2026-12-01T18:00:00Z"


@pytest.fixture(scope="session")
def runs() -> Iterator[dict[str, Run]]:
    """The real program for dev, prod and a per-pull-request stack copied from dev.

    Shared by every test that asks, so read-only: a test that changed a registration or an invoke
    would change what the tests after it see, and fails the session here instead."""
    shared = {
        "dev": run("dev"),
        "prod": run("prod"),
        "pr-7": run("pr-7", base="dev", ephemeral=True, expiresAt=EXPIRES),
    }
    recorded = copy.deepcopy({stack: (r.resources, r.mocks.invokes) for stack, r in shared.items()})
    yield shared
    changed = [stack for stack, r in shared.items() if (r.resources, r.mocks.invokes) != recorded[stack]]
    assert not changed, f"a test changed the shared runs of {changed}: copy a registration before changing it"


@pytest.fixture(params=["dev", "prod", "pr-7"])
def stack_run(request: pytest.FixtureRequest, runs: dict[str, Run]) -> Run:
    return runs[request.param]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """What the mocked program cost: its runs, and the calls an earlier identical run served."""
    if harness.RUNS:
        terminalreporter.write_line(
            f"tests/unit: the program ran {harness.RUNS} times under mocks ({harness.FAILED_RUNS} stopped "
            f"with an error); {harness.SHARED_CALLS} more calls shared an identical earlier run"
        )
