"""Web and app tiers as Auto Scaling groups: launch template hardening, rolling refresh, hooks, scaling."""

from __future__ import annotations

from typing import Any

import pytest

from components.groups import (
    DRAIN_SECONDS,
    LAUNCH_HOOK,
    TERMINATE_HOOK,
    ServerGroupArgs,
)
from components.servers import RoleAccess
from tests.unit.harness import Registration, Run, run
from tests.unit.test_servers import policies_of
from userdata import from_ec2

TIERS = ("web", "app")


def template(r: Run, tier: str) -> Registration:
    (lt,) = [x for x in r.of_type("aws:ec2/launchTemplate:LaunchTemplate") if x.name == f"foobar-{tier}-template"]
    return lt


def group(r: Run, tier: str) -> Registration:
    (g,) = [x for x in r.of_type("aws:autoscaling/group:Group") if x.name == f"foobar-{tier}-group"]
    return g


def test_web_and_app_are_groups_not_instances(stack_run: Run) -> None:
    roles = {i.name.split("-")[1] for i in stack_run.of_type("aws:ec2/instance:Instance")}
    assert roles == {"lb"}
    assert {g.name for g in stack_run.of_type("aws:autoscaling/group:Group")} == {f"foobar-{t}-group" for t in TIERS}


@pytest.mark.parametrize("tier", TIERS)
def test_launch_template_carries_the_hardening(stack_run: Run, tier: str) -> None:
    lt = template(stack_run, tier).inputs
    meta = lt["metadataOptions"]
    assert meta["httpTokens"] == "required" and meta["httpPutResponseHopLimit"] == 1
    (disk,) = lt["blockDeviceMappings"]
    assert disk["deviceName"] == "/dev/sda1"
    assert disk["ebs"]["encrypted"] == "true" and disk["ebs"]["volumeType"] == "gp3"
    (nic,) = lt["networkInterfaces"]
    assert nic["associatePublicIpAddress"] == "false"
    sg = next(g.id for g in stack_run.of_type("aws:ec2/securityGroup:SecurityGroup") if g.name.endswith(f"-{tier}"))
    assert nic["securityGroups"] == [sg] and "vpcSecurityGroupIds" not in lt
    profile = next(p for p in stack_run.of_type("aws:iam/instanceProfile:InstanceProfile") if f"-{tier}-" in p.name)
    assert lt["iamInstanceProfile"]["arn"] == profile.outputs["arn"]
    assert from_ec2(lt["userData"]).startswith("#cloud-config\n")  # gzip, then base64
    assert lt["updateDefaultVersion"] is True


def test_image_is_the_current_ubuntu_release_for_the_architecture() -> None:
    """Looked up at deploy time (a plain AMI id: rollback needs one), t3 -> t4g gets arm64."""
    r = run("dev", appInstanceType="t4g.small")
    assert template(r, "app").inputs["imageId"] == "ami-ubuntu-arm64"
    assert template(r, "web").inputs["imageId"] == "ami-ubuntu-amd64"
    looked_up = [a["filters"][0]["values"][0] for t, a in r.mocks.invokes if t == "aws:ec2/getAmi:getAmi"]
    assert any("noble-24.04-arm64" in p for p in looked_up) and any("noble-24.04-amd64" in p for p in looked_up)


def test_an_ephemeral_stacks_expiry_never_rolls_a_tier(runs: dict[str, Run]) -> None:
    """expires-at changes with every deploy of a per-PR stack: it stays off the template."""
    r = runs["pr-7"]
    for tier in TIERS:
        for spec in template(r, tier).inputs["tagSpecifications"]:
            assert "expires-at" not in spec["tags"]
        assert "expires-at" in {t["key"] for t in group(r, tier).inputs["tags"]}
    again = run("pr-7", base="dev", ephemeral=True, expiresAt="2026-12-02T18:00:00Z")
    for tier in TIERS:
        assert template(again, tier).inputs == template(r, tier).inputs


@pytest.mark.parametrize("tier", TIERS)
def test_group_spans_the_private_subnets_of_every_az(stack_run: Run, tier: str) -> None:
    s = stack_run.namespace["settings"]
    g = group(stack_run, tier).inputs
    subnets = [x.id for x in stack_run.of_type("aws:ec2/subnet:Subnet") if x.inputs["tags"]["tier"] == tier]
    assert sorted(g["vpcZoneIdentifiers"]) == sorted(subnets) and len(subnets) == s.az_count
    low, want, high = (getattr(s, f"{tier}_{k}") for k in ("min", "count", "max"))
    assert (g["minSize"], g["desiredCapacity"], g["maxSize"]) == (low, want, high)
    assert g["healthCheckType"] == "EC2"
    assert g["launchTemplate"]["id"] == template(stack_run, tier).id
    assert g["launchTemplate"]["version"] == "1"  # the number, not $Latest


@pytest.mark.parametrize("tier", TIERS)
def test_a_new_template_version_rolls_launch_before_terminate(stack_run: Run, tier: str) -> None:
    refresh = group(stack_run, tier).inputs["instanceRefresh"]
    assert refresh["strategy"] == "Rolling"
    p = refresh["preferences"]
    assert p["minHealthyPercentage"] == 100 and p["maxHealthyPercentage"] == 200
    assert p["skipMatching"] is True and p["autoRollback"] is True


@pytest.mark.parametrize("tier", TIERS)
def test_lifecycle_hooks_gate_launch_and_drain_termination(stack_run: Run, tier: str) -> None:
    hooks = {h["name"]: h for h in group(stack_run, tier).inputs["initialLifecycleHooks"]}
    launch, terminate = hooks[LAUNCH_HOOK], hooks[TERMINATE_HOOK]
    assert launch["lifecycleTransition"] == "autoscaling:EC2_INSTANCE_LAUNCHING"
    assert launch["defaultResult"] == "ABANDON"  # not ready in time: not in service
    assert terminate["lifecycleTransition"] == "autoscaling:EC2_INSTANCE_TERMINATING"
    assert terminate["defaultResult"] == "CONTINUE" and terminate["heartbeatTimeout"] == DRAIN_SECONDS


@pytest.mark.parametrize("tier", TIERS)
def test_members_complete_hooks_of_their_own_group_only(stack_run: Run, tier: str) -> None:
    stack = stack_run.namespace["settings"].stack
    statements = [st for d in policies_of(stack_run, tier) for st in d["Statement"]]
    (complete,) = [st for st in statements if "autoscaling:CompleteLifecycleAction" in st["Action"]]
    assert complete["Resource"].endswith(f":autoScalingGroupName/foobar-{stack}-{tier}-*")
    assert complete["Condition"]["StringEquals"] == {
        "autoscaling:ResourceTag/stack": stack,
        "autoscaling:ResourceTag/role": tier,
    }
    other = "app" if tier == "web" else "web"
    assert not [st for d in policies_of(stack_run, other) for st in d["Statement"] if st is complete]


def test_the_load_balancer_may_read_the_groups_but_change_nothing(stack_run: Run) -> None:
    statements = [st for d in policies_of(stack_run, "lb") for st in d["Statement"]]
    actions = {a for st in statements if st["Effect"] == "Allow" for a in _list(st["Action"])}
    assert {"autoscaling:DescribeAutoScalingGroups", "ec2:DescribeInstances"} <= actions
    assert not [a for a in actions if a.startswith("autoscaling:") and not a.startswith("autoscaling:Describe")]


@pytest.mark.parametrize("tier", TIERS)
def test_group_and_members_carry_the_stack_tags(stack_run: Run, tier: str) -> None:
    """Provider default tags reach neither a group's members nor the group; the discovery agent and
    the hook permission find a group by these tags."""
    s = stack_run.namespace["settings"]
    tags = {t["key"]: t["value"] for t in group(stack_run, tier).inputs["tags"]}
    assert tags["stack"] == s.stack and tags["role"] == tier and tags["project"] == "foobar"
    assert ("expires-at" in tags) is s.ephemeral
    for spec in template(stack_run, tier).inputs["tagSpecifications"]:
        assert spec["tags"]["stack"] == s.stack and spec["tags"]["role"] == tier and "expires-at" not in spec["tags"]


@pytest.mark.parametrize("tier", TIERS)
def test_target_tracking_holds_the_cpu(stack_run: Run, tier: str) -> None:
    s = stack_run.namespace["settings"]
    (policy,) = [p for p in stack_run.of_type("aws:autoscaling/policy:Policy") if p.name == f"foobar-{tier}-cpu-target"]
    assert policy.inputs["autoscalingGroupName"] == group(stack_run, tier).outputs["name"]
    ttc = policy.inputs["targetTrackingConfiguration"]
    assert ttc["predefinedMetricSpecification"]["predefinedMetricType"] == "ASGAverageCPUUtilization"
    assert ttc["targetValue"] == s.scaling_cpu_target


def test_a_scaling_step_changes_no_server_and_no_template() -> None:
    """webCount is the size a group starts with: a new count touches only the group's desired size
    (which `pulumi up` then leaves to the scaling policy), never the load balancer."""
    base, more = run("dev"), run("dev", webCount=3, webMax=4)
    assert group(more, "web").inputs["desiredCapacity"] == 3
    lb = lambda r: [i.inputs["userDataBase64"] for i in r.of_type("aws:ec2/instance:Instance")]  # noqa: E731
    assert lb(base) == lb(more)
    assert template(base, "web").inputs == template(more, "web").inputs
    assert group(base, "web").protect is False


def test_desired_size_is_left_to_the_scaling_policy(stack_run: Run) -> None:
    """A `pulumi up` must not undo what the scaling policy decided."""
    for tier in TIERS:
        assert group(stack_run, tier).ignore_changes == ["desiredCapacity"]


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"min_size": 0}, "min_size"),
        ({"min_size": 3, "desired": 2}, "min_size"),
        ({"desired": 5, "max_size": 4}, "max_size"),
        ({"max_size": 21, "desired": 2}, "max_size"),
        ({"subnet_ids": []}, "subnet_ids"),
        ({"cpu_target": 0}, "cpu_target"),
    ],
)
def test_bad_group_arguments_are_named(changes: dict[str, Any], match: str) -> None:
    args = ServerGroupArgs(
        access=RoleAccess("web", "/foobar/dev/web", "aws", "eu-west-1", "123456789012"),
        stack="dev",
        desired=2,
        min_size=1,
        max_size=4,
        instance_type="t3.micro",
        subnet_ids=["subnet-1"],
        security_group_id="sg-1",
        user_data="#cloud-config\n",
        root_volume_gib=16,
        provider=None,  # type: ignore[arg-type]
        tags={},
    )
    for key, value in changes.items():
        setattr(args, key, value)
    with pytest.raises(ValueError, match=match):
        args.validate()


def _list(x: object) -> list[Any]:
    return x if isinstance(x, list) else [x]


def test_members_wait_for_their_way_out_and_log_groups(stack_run: Run) -> None:
    routes = {x.urn for x in stack_run.of_type("aws:ec2/route:Route")}
    for tier in TIERS:
        g = group(stack_run, tier)
        assert routes & set(g.dependencies), tier
        groups = {
            x.urn for x in stack_run.of_type("aws:cloudwatch/logGroup:LogGroup") if f"/{tier}/" in x.inputs["name"]
        }
        assert groups and groups <= set(g.dependencies), tier
