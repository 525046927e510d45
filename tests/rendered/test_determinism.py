"""Determinism to the byte (across runs and hash seeds), and what the program really sends: the rendered
documents, secrets only on stdin, identical bytes from two runs."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import sys
from typing import Any

import pytest

from config.settings import load_settings
from rendered.helpers import (
    CONFIGS,
    PROGRAM_CONFIGS,
    PROGRAMS,
    ROOT,
    Sent,
    everything_rendered,
    plan_for,
    run,
    run_sent,
    user_data_for,
)
from server.host import (
    USER_DATA_LIMIT,
    HostPlan,
    plan_host,
)


@pytest.mark.parametrize("config_id", CONFIGS)
def test_renders_are_byte_identical(config_id: str) -> None:
    def fresh() -> HostPlan:
        return plan_host(load_settings(CONFIGS[config_id], project="djangoship", stack="dev"))

    assert everything_rendered(fresh()) == everything_rendered(fresh())


HASH_RENDERS = r"""
import hashlib, json, sys
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/tests"]  # the project, and the tests' shared conftest
from tests.rendered.helpers import CONFIGS, everything_rendered
from server.host import plan_host
from config.settings import load_settings
print(json.dumps({c: {k: hashlib.sha256(v.encode()).hexdigest() for k, v in everything_rendered(
    plan_host(load_settings(CONFIGS[c], project="djangoship", stack="dev"))).items()} for c in CONFIGS}))
"""


def test_renders_do_not_depend_on_hash_seed() -> None:
    """Two fresh interpreters with different hash seeds (set and dict order) render the same bytes."""
    digests = []
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        result = run([sys.executable, "-c", HASH_RENDERS, str(ROOT)], env=env, cwd=ROOT)
        assert result.returncode == 0, result.stderr
        digests.append(json.loads(result.stdout))
    assert digests[0] == digests[1]
    here = {k: hashlib.sha256(v.encode()).hexdigest() for k, v in everything_rendered(plan_for("domain-https")).items()}
    assert digests[0]["domain-https"] == here


def test_program_sends_the_rendered_documents(sent: dict[str, Sent]) -> None:
    for program, config_id in PROGRAM_CONFIGS:
        instance = sent[program].run.one("aws:ec2/instance:Instance").inputs
        user_data = user_data_for(config_id)
        if len(user_data.encode()) <= USER_DATA_LIMIT:
            assert instance["userData"] == user_data and not instance.get("userDataBase64")
        else:
            assert gzip.decompress(base64.b64decode(instance["userDataBase64"])).decode() == user_data


def test_secrets_travel_only_on_stdin(sent: dict[str, Sent]) -> None:
    for name, result in sent.items():
        secrets = [value for value in result.state.passwords.values() if value]
        # app.files, --secret or not: each line of each (a repr of the whole would escape its newlines).
        secrets += [
            line for text in PROGRAMS[name].get("app", {}).get("files", {}).values() for line in text.split("\n")
        ]
        secrets = [secret for secret in secrets if secret]
        assert len(secrets) >= 3, f"{name}: the mock generated no passwords: nothing would be checked"
        instance = result.run.one("aws:ec2/instance:Instance").inputs
        commands = [s for s in result.run.steps() if s.type == "command:remote:Command"]
        # What is plain: user-data, each command line, its script (on stdin before the secret) and its triggers.
        public = [instance.get("userData") or ""]
        public += [text for s in commands for text in (s.inputs["create"], s.sent.script, repr(s.inputs["triggers"]))]
        stdin = "".join(s.sent.rest for s in commands)
        for secret in secrets:
            assert not any(secret in text for text in public), f"{name}: a secret is in user-data or a command line"
        assert any(secret in stdin for secret in secrets), f"{name}: no secret on stdin: the check is vacuous"
        for text in public:
            assert "PRIVATE KEY" not in text


def test_two_program_runs_send_identical_bytes(sent: dict[str, Sent]) -> None:
    first, second = sent["http"].run, run_sent(PROGRAMS["http"]).run
    instance = "aws:ec2/instance:Instance"
    assert first.one(instance).inputs["userData"] == second.one(instance).inputs["userData"]

    def steps(program_run: Any) -> list[tuple[str, Any, Any, Any]]:
        # The script on stdin, not the whole stdin: the secrets after it are each run's own.
        return [
            (s.name, s.inputs.get("create"), s.sent.script if "stdin" in s.inputs else None, s.inputs.get("triggers"))
            for s in program_run.steps()
        ]

    assert steps(first) == steps(second)
    assert len(steps(first)) == 7
