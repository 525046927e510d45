"""The djangoship policy pack: `pulumi preview --policy-pack policy` (and `up`) serve it to the engine.

Creating the PolicyPack starts the analyzer's gRPC server and blocks, so the policies themselves live in
djangoship_policies.py, where tests import them.
"""

from pulumi_policy import EnforcementLevel, PolicyPack

from djangoship_policies import POLICIES, STACK_POLICIES

PolicyPack(
    name="djangoship",
    # Mandatory: a violation fails the preview and stops `pulumi up` before any change is made.
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[*POLICIES, *STACK_POLICIES],
)
