"""The policy pack (policy/djangoship_policies.py) as the analyzer runs it, for the tests that check resources
against it: the pack itself, its policies by name, and resources recorded under mocks, altered or made up."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import pulumi_policy
from google.protobuf import json_format, struct_pb2
from pulumi_policy.deserialize import deserialize_properties
from pulumi_policy.policy import PolicyCustomTimeouts, PolicyResourceOptions
from pulumi_policy.proxy import unknown_checking_proxy

from harness.mockrun import ProgramRun, Registered

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "policy"))
import djangoship_policies as pack  # noqa: E402 (the pack's folder is not a package)

SG = pack.SECURITY_GROUP
INSTANCE = pack.INSTANCE
POLICY = {policy.name: policy for policy in pack.POLICIES}
PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"


def validation_args(resource: Registered, config: dict[str, Any] | None = None) -> pulumi_policy.ResourceValidationArgs:
    """ResourceValidationArgs as the analyzer builds them from the engine's request (policy.py, `Analyze`)."""
    struct = struct_pb2.Struct()
    struct.update(resource.inputs)
    props = unknown_checking_proxy(deserialize_properties(json_format.MessageToDict(struct)))
    opts = PolicyResourceOptions(False, resource.ignore_changes, None, [], PolicyCustomTimeouts(0, 0, 0), [], None)
    return pulumi_policy.ResourceValidationArgs(
        resource.type, props, resource.urn, resource.name, opts, None, config or {}, {}
    )


def violations(policy_name: str, resource: Registered, config: dict[str, Any] | None = None) -> list[str]:
    found: list[str] = []
    result = POLICY[policy_name].validate(
        validation_args(resource, config), lambda message, urn=None: found.append(message)
    )
    assert result is None, "the policies are synchronous"
    return found


def all_violations(run: ProgramRun) -> dict[str, list[str]]:
    return {
        name: [message for resource in run.resources.values() for message in violations(name, resource)]
        for name in POLICY
    }


def mutated(resource: Registered, **inputs: Any) -> Registered:
    """A copy of a recorded resource with some inputs replaced (None removes one)."""
    copied = copy.deepcopy(resource)
    for key, value in inputs.items():
        if value is None:
            copied.inputs.pop(key, None)
        else:
            copied.inputs[key] = value
    return copied


def synthetic(type_: str, name: str, inputs: dict[str, Any], stack: str = "dev") -> Registered:
    """A resource the program does not declare (yet), for the resource types a policy also covers."""
    return Registered(
        type_, name, f"urn:pulumi:{stack}::djangoship::{type_}::{name}", "", inputs, set(), [], [], None, None, None, {}
    )
