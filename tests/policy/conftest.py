"""Shared fixtures: the real program's resources per stack, and a clean config for crafted resources."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pulumi
import pytest

from tests.policy.adapter import Finding, analyze, from_run
from tests.unit.harness import run

STACKS: dict[str, dict[str, Any]] = {"dev": {}, "prod": {}, "pr-1": {"base": "dev", "ephemeral": True}}


@pytest.fixture(scope="session")
def program() -> dict[str, tuple[list[Any], list[Finding]]]:
    """Per stack: the registered resources (as the engine sends them) and every finding.

    Analyzed right after each run, while the stack's config is the one set, as the CLI hands it over.
    """
    out: dict[str, tuple[list[Any], list[Finding]]] = {}
    for stack, kwargs in STACKS.items():
        resources = from_run(run(stack, **kwargs), stack)
        out[stack] = (resources, analyze(resources))
    pulumi.runtime.set_all_config({})
    return out


@pytest.fixture(autouse=True)
def no_stack_config() -> Iterator[None]:
    """Crafted resources judge ephemerality from their tags alone, not from a previous run's config."""
    pulumi.runtime.set_all_config({})
    yield
    pulumi.runtime.set_all_config({})
