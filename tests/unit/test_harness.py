"""The harness itself: a shared run is what a run of its own would have been, and each caller's own."""

from __future__ import annotations

import pulumi

from tests.unit import harness
from tests.unit.harness import Recorder, Registration, Run, run, run_with


def _by_name(r: Run) -> list[Registration]:
    """Registrations in a stable order (the engine's order varies with the event loop's)."""
    return sorted(r.resources, key=lambda x: (x.type, x.name))


def test_a_shared_run_is_what_the_program_registers(runs: dict[str, Run]) -> None:
    shared = run("dev")
    assert _by_name(shared) == _by_name(run_with(Recorder, "dev"))  # run_with always runs the program
    assert sorted(map(str, shared.mocks.invokes)) == sorted(map(str, runs["dev"].mocks.invokes))


def test_each_call_gets_its_own_copy(runs: dict[str, Run]) -> None:
    before = harness.RUNS
    first, second = run("prod"), run("prod")
    assert before == harness.RUNS  # served by the session's run of prod
    assert first.resources == second.resources == runs["prod"].resources
    first.resources[0].inputs["changed-by-a-test"] = True
    first.mocks.invokes.clear()
    assert "changed-by-a-test" not in second.resources[0].inputs and second.mocks.invokes
    assert "changed-by-a-test" not in run("prod").resources[0].inputs


def test_a_shared_run_leaves_its_own_stack_and_config(runs: dict[str, Run]) -> None:
    run("prod")
    assert (pulumi.get_stack(), pulumi.Config("foobar").get("domain")) == ("prod", "www.foobar.com")
    run("dev", domain="dev.foobar.com")  # repeats dev's own value: the same configuration
    assert (pulumi.get_stack(), pulumi.Config("foobar").get("domain")) == ("dev", "dev.foobar.com")
    assert harness.LAST is not None and harness.LAST.region == "eu-west-1"


def test_a_different_configuration_is_not_shared(runs: dict[str, Run]) -> None:
    """dev with an LB pair (as test_edge runs it, so no run of its own) is not dev's run."""
    instances = "aws:ec2/instance:Instance"
    assert len(run("dev", lbCount=2).of_type(instances)) == len(runs["dev"].of_type(instances)) + 1
