"""How a table of config keys is declared, read and checked (the table itself is in `settings.py`).

A table is a frozen dataclass; each field declared with `key(default, doc, *checks, profile=…, secret=…)` is
one config key. Its name in `pulumi config` is the field's name in camelCase; its type says how the raw value
is read — text, a whole number, true/false, a list or map (the CLI hands those over as JSON text), or a nested
table (`app`, whose keys are `app.*`). The checks then run in order on the value read, each returning it
(possibly normalised: lower-cased, a default filled in, a path made absolute), and may look at the keys above
them in the table.

Reading never stops at the first problem: `read_table` raises one `ConfigError` listing them all, each
naming its key. A problem shows a value only when the check passes it explicitly, and never the value of a
key set with `--secret`, of an unknown key (a misspelt secret key is still a secret) or of malformed JSON.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Literal, get_args, get_origin, get_type_hints

Profile = Literal["both", "single", "scaled"]  # which profile reads the key
# Whether the key may (or must) be set with `pulumi config set --secret`; "always": it may, and is handled as a
# secret either way (never shown in a problem), for values that are secrets more often than not (app.files).
Secret = Literal["no", "may", "must", "always"]
Check = Callable[[Any, "Given"], Any]

_ROW = "djangoship.key"  # where a field keeps its row, in the dataclass field's metadata
HIDDEN: Any = object()  # a problem's value when it must not be shown


class ConfigError(Exception):
    """Every invalid key at once, each line naming the key, what is allowed and — when it may be shown — the
    bad value."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid stack configuration:\n  - " + "\n  - ".join(problems))


@dataclass(frozen=True)
class Key:
    """One row of a table."""

    name: str  # as in `pulumi config set NAME`: the field's name in camelCase
    attr: str  # the field's name
    type: Any  # the field's type: how the raw value is read
    default: Any
    doc: str  # one line: Pulumi.yaml's description (after "scaled: " or "single: " for one profile's keys)
    checks: tuple[Check, ...]
    profile: Profile
    secret: Secret


def key(default: Any, doc: str, *checks: Check, profile: Profile = "both", secret: Secret = "no") -> Any:
    """Declare a table's field as a config key. The field has no dataclass default: a table is only ever
    built by `read_table`, from config with the key's default filled in."""
    row = {"default": default, "doc": doc, "checks": checks, "profile": profile, "secret": secret}
    return field(metadata={_ROW: row})


@functools.cache
def rows(table: type) -> tuple[Key, ...]:
    """The table's keys, in their declared order."""
    hints = get_type_hints(table)
    return tuple(
        Key(name=_camel(item.name), attr=item.name, type=hints[item.name], **item.metadata[_ROW])
        for item in fields(table)
        if _ROW in item.metadata
    )


def _camel(attr: str) -> str:
    first, *rest = attr.split("_")
    return first + "".join(word.capitalize() for word in rest)


def is_table(kind: Any) -> bool:
    return isinstance(kind, type) and is_dataclass(kind) and bool(rows(kind))


class _Rejected(Exception):
    """A key this check depends on was rejected (and reported): this one cannot be checked, quietly."""


@dataclass
class Given:
    """What a check sees: the key it checks, the values accepted above it, and where to report problems."""

    key: str  # "instanceType", "app.env"
    secret: bool  # set with --secret: no problem may show its value
    accepted: dict[str, Any]  # keys above, by name ("app.source" inside app), once they passed every check
    problems: list[str]
    failed: bool = False

    def fail(self, allowed: str, value: Any = HIDDEN, *, key: str | None = None) -> None:
        """Report that the value (or an item of it, or another key it clashes with) is not allowed."""
        shown = "(value not shown)" if value is HIDDEN or self.secret else f"= {_show(value)}"
        self.problems.append(f"{key or self.key} {shown} is invalid: {allowed}")
        self.failed = True

    def problem(self, text: str) -> None:
        """Report a problem that is not about the value's form: `{key} {text}`."""
        self.problems.append(f"{self.key} {text}")
        self.failed = True

    def value_of(self, name: str) -> Any:
        """The value of a key above this one. If that key was rejected, this check stops without a word:
        the problem to fix is already reported."""
        if name not in self.accepted:
            raise _Rejected(name)
        return self.accepted[name]


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else json.dumps(value)


def read_table(table: type, raw: Mapping[str, Any], secret_keys: Collection[str] = ()) -> dict[str, Any]:
    """The table's values by field name, from raw config (without the `project:` namespace), or a
    ConfigError listing every problem."""
    problems: list[str] = []
    values = _read(table, raw, "", secret=False, secret_keys=secret_keys, accepted={}, problems=problems)
    if problems:
        raise ConfigError(problems)
    return values


def _read(
    table: type,
    raw: Mapping[str, Any],
    prefix: str,
    *,
    secret: bool,
    secret_keys: Collection[str],
    accepted: dict[str, Any],
    problems: list[str],
) -> dict[str, Any]:
    """Read one table level; a key that fails is left out of the result (and its problem reported)."""
    known = rows(table)
    names = sorted(row.name for row in known)
    for name in sorted(set(raw) - set(names)):
        problems.append(f"{prefix}{name} is an unknown key (its value is not shown); known keys are {', '.join(names)}")
    values: dict[str, Any] = {}
    for row in known:
        hidden = secret or row.name in secret_keys or row.secret == "always"
        given = Given(prefix + row.name, hidden, accepted, problems)
        try:
            value = _check(row, raw.get(row.name, row.default), given, secret_keys)
        except _Rejected:
            continue
        if not given.failed:
            accepted[given.key] = values[row.attr] = value
    return values


def _check(row: Key, raw: Any, given: Given, secret_keys: Collection[str]) -> Any:
    """Read the raw value as the row's type, then run the row's checks until one reports a problem."""
    value = _parse(row.type, raw, given, verbatim=row.secret == "must")
    if is_table(row.type) and not given.failed:
        inner = rows(row.type)
        found = _read(
            row.type,
            value,
            given.key + ".",
            secret=given.secret,
            secret_keys=(),
            accepted=given.accepted,
            problems=given.problems,
        )
        if len(found) < len(inner):
            raise _Rejected(given.key)
        value = row.type(**found)
    if row.secret == "must" and value and not given.secret:
        given.problem("must be set with --secret, or it is stored in plain text")
    for check in row.checks:
        if given.failed:
            break
        value = check(value, given)
    return value


def _parse(kind: Any, value: Any, given: Given, *, verbatim: bool = False) -> Any:
    """The raw value as `kind`; a value of the wrong type is reported (and the key rejected)."""
    origin = get_origin(kind) or kind
    if origin in (list, dict) or is_table(kind):
        expected = list if origin is list else dict
        if isinstance(value, str):  # the CLI's form of lists and maps
            try:
                value = json.loads(value)
            except json.JSONDecodeError as error:
                given.fail(f"not valid JSON ({error.msg})")
                return expected()
        if not isinstance(value, expected):
            given.fail(f"expected a {'list' if expected is list else 'map'}", value)
            return expected()
        if origin is list:
            (item,) = get_args(kind)
            return [_parse(item, element, given) for element in value]
        return value
    if kind is str:
        if not isinstance(value, str):
            given.fail("expected a string", value)
            return ""
        # Blanks around a value are a typo, except in a secret that must be one: a key file ends in a newline.
        return value if verbatim else value.strip()
    if kind is bool:
        if isinstance(value, str) and value.strip().lower() in {"true", "false"}:
            return value.strip().lower() == "true"
        if not isinstance(value, bool):
            given.fail("expected true or false", value)
        return value
    if kind is int:
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            given.fail("expected a whole number", value)
        return value
    raise TypeError(f"{given.key}: no reader for {kind!r}")


# --- checks that any table may use ----------------------------------------------------------------------------


def one_of(choices: Collection[str]) -> Check:
    def check(value: str, given: Given) -> str:
        if value not in choices:
            given.fail(f"one of {', '.join(choices)}", value)
        return value

    return check


def matches(pattern: str, allowed: str) -> Check:
    """The whole value matches the regular expression."""
    compiled = re.compile(pattern)

    def check(value: str, given: Given) -> str:
        if not compiled.fullmatch(value):
            given.fail(allowed, value)
        return value

    return check


def between(low: int, high: int) -> Check:
    def check(value: int, given: Given) -> int:
        if not low <= value <= high:
            given.fail(f"expected a whole number from {low} to {high}", value)
        return value

    return check


def optional(check: Check) -> Check:
    """Empty is allowed (it means: not used, or worked out by the program); anything else must pass `check`."""

    def optional_check(value: Any, given: Given) -> Any:
        return check(value, given) if value else value

    return optional_check


def each(check: Check) -> Check:
    """`check` on every item of a list (every bad item is reported, not only the first)."""

    def each_check(values: list[Any], given: Given) -> list[Any]:
        return [check(value, given) for value in values]

    return each_check


def lower_case(value: str, given: Given) -> str:
    return value.lower()
