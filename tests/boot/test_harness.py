"""The boot harness's own logic, without booting: where each role sits, one run at a time."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from local import boot
from local.boot import Boot, BootError, plan_nodes


def test_each_role_sits_in_its_tiers_first_subnet_of_the_stacks_vpc() -> None:
    deployment: Any = SimpleNamespace(vpc_cidr="10.20.0.0/16", region="eu-west-1")
    nodes = {n.role: n for n in plan_nodes(deployment)}
    assert {r: n.address for r, n in nodes.items()} == {"lb": "10.20.0.10", "web": "10.20.64.10", "app": "10.20.128.10"}
    vpc = ipaddress.IPv4Network("10.20.0.0/16")
    for node in nodes.values():
        assert node.subnet.subnet_of(vpc) and ipaddress.IPv4Address(node.address) in node.subnet
        assert node.gateway == str(node.subnet.network_address + 1), "the VPC router's address"
        assert node.namespace.startswith(boot.PREFIX) and node.zone == "eu-west-1a"


def test_unknown_roles_are_refused_by_name() -> None:
    with pytest.raises(BootError, match="choose from lb, web, app; got db"):
        Boot(["db"])


def test_one_run_at_a_time_and_the_refused_one_stops_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stopped: list[str] = []

    def fake_down() -> list[str]:
        stopped.append("down")
        return []

    monkeypatch.setattr(boot, "down", fake_down)
    first, second = Boot(["web"], home=tmp_path / "run"), Boot(["web"], home=tmp_path / "run")
    first._lock()
    with pytest.raises(BootError, match="another boot run is up"):
        second._lock()
    second.down()
    assert stopped == [], "a run that never came up must not tear down the one that did"
    first.down()
    assert stopped == ["down"]
    second._lock()  # released
    second.down()
