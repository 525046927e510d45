"""Tags every AWS resource carries, so that a bill or a console search finds the stack's resources."""

from __future__ import annotations


def standard_tags(project: str, stack: str, name: str) -> dict[str, str]:
    return {"Name": name, "Project": project, "Stack": stack, "ManagedBy": "pulumi"}
