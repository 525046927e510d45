"""Pulumi.yaml's `config:` section, generated from the table in config/settings.py.

    .venv/bin/python -m tools.configdoc      # rewrites Pulumi.yaml below its `config:` line

The CLI reads the types and defaults there (and `pulumi config` shows the descriptions); the program does not
rely on them (mocks, older CLIs), so the table stays the one home of each key and this file is its copy.
tests/test_settings.py fails when the file and the table differ. `app` is left out: Pulumi's project schema
cannot type objects, so its keys are documented in the README and checked by the program alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml

from config.settings import KEYS
from config.table import Key

PULUMI_YAML = Path(__file__).resolve().parent.parent / "Pulumi.yaml"
SECTION = "\nconfig:\n"
SCHEMA_TYPES = {str: "string", int: "integer", bool: "boolean", list: "array"}


def description(row: Key) -> str:
    """The row's doc, after the profile that reads the key when only one does."""
    return row.doc if row.profile == "both" else f"{row.profile}: {row.doc}"


def scalar(value: Any) -> str:
    """A YAML value as a person would write it: plain where YAML reads it back as the same string, otherwise
    JSON (which YAML reads too)."""
    if isinstance(value, str) and value and value == value.strip() and _reads_back(value):
        return value
    return json.dumps(value, ensure_ascii=False)


def _reads_back(text: str) -> bool:
    try:
        return bool(yaml.safe_load(text) == text)
    except yaml.YAMLError:
        return False


def config_section(keys: tuple[Key, ...]) -> str:
    """The lines after `config:`, one block per key, in the table's order."""
    lines: list[str] = []
    for row in keys:
        kind = get_origin(row.type) or row.type
        if kind not in SCHEMA_TYPES:
            continue
        lines += [f"  {row.name}:", f"    type: {SCHEMA_TYPES[kind]}"]
        if kind is list:
            (item,) = get_args(row.type)
            lines += ["    items:", f"      type: {SCHEMA_TYPES[item]}"]
        lines += [f"    default: {scalar(row.default)}", f"    description: {scalar(description(row))}"]
    return "\n".join(lines) + "\n"


def render(text: str) -> str:
    """Pulumi.yaml's text with its config section generated; what comes before `config:` is kept."""
    head = text.split(SECTION, 1)[0]
    return head + SECTION + config_section(KEYS)


def main() -> None:
    PULUMI_YAML.write_text(render(PULUMI_YAML.read_text()))


if __name__ == "__main__":
    main()
