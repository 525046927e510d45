"""Pulumi.yaml's `config:` section and docs/configuration.md's key tables, generated from the table in
config/settings.py.

    .venv/bin/python -m tools.configdoc      # rewrites both

Pulumi.yaml: everything below its `config:` line. The CLI reads the types and defaults there (and `pulumi config`
shows the descriptions); the program does not rely on them (mocks, older CLIs), so the table stays the one home
of each key and this file is its copy. `app` is left out there: Pulumi's project schema cannot type objects, so
its keys are documented in docs/configuration.md and checked by the program alone.

docs/configuration.md: the text between each `<!-- configdoc: NAME -->` line and the next
`<!-- /configdoc -->` line (NAME `keys` for the top-level keys, `app` for `app.*`); the rest of the page is
written by hand. tests/fast/test_settings.py fails when either file and the table differ.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml

from config.settings import APP_KEYS, KEYS
from config.table import Key

ROOT = Path(__file__).resolve().parent.parent
PULUMI_YAML = ROOT / "Pulumi.yaml"
CONFIGURATION_MD = ROOT / "docs" / "configuration.md"
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


def as_in_doc(value: Any) -> str:
    """A default as the doc's table writes it: a non-empty string as it is, anything else as JSON."""
    return value if isinstance(value, str) and value else json.dumps(value, ensure_ascii=False)


def key_table(keys: tuple[Key, ...], prefix: str = "") -> str:
    """A markdown table, one row per key in the table's order: the key, its default, its description."""
    lines = ["| key | default | meaning |", "|---|---|---|"]
    for row in keys:
        meaning = description(row).replace("|", "\\|")
        lines.append(f"| `{prefix}{row.name}` | `{as_in_doc(row.default)}` | {meaning} |")
    return "\n".join(lines) + "\n"


TABLES = {"keys": lambda: key_table(KEYS), "app": lambda: key_table(APP_KEYS, "app.")}
BLOCK = re.compile(r"(<!-- configdoc: (\w+) -->\n).*?(<!-- /configdoc -->)", re.S)


def render_doc(text: str) -> str:
    """docs/configuration.md's text with each generated block rewritten; the hand-written rest is kept."""
    found = [match[2] for match in BLOCK.finditer(text)]
    if sorted(found) != sorted(TABLES):
        raise ValueError(f"docs/configuration.md: expected one block each of {sorted(TABLES)}, found {found}")
    return BLOCK.sub(lambda match: match[1] + TABLES[match[2]]() + match[3], text)


def main() -> None:
    PULUMI_YAML.write_text(render(PULUMI_YAML.read_text()))
    CONFIGURATION_MD.write_text(render_doc(CONFIGURATION_MD.read_text()))


if __name__ == "__main__":
    main()
