"""systemd's `OnCalendar=` expressions (systemd.time(7), "Calendar Events"), checked at preview.

The server reads these expressions, not Python: a schedule systemd refuses leaves a timer that never fires,
found only by someone reading the journal. So the rules here are systemd's own, as `systemd-analyze calendar`
applies them (tests/fast/test_workers.py holds this module to the real command, expression by expression):

    [WEEKDAYS] [[YEAR-]MONTH-DAY] [HOUR:MINUTE[:SECOND]] [TIMEZONE]      or a shorthand (`daily`), or @EPOCH

Each date or time component is `*` or a comma list of `VALUE`, `START..END`, either with `/REPEAT`; `~` in place
of the day's dash counts days from the month's end. A value must be in its range, a range must go forwards,
and a repetition must step at least once within the range of its component (`*:59/1` is refused).
"""

from __future__ import annotations

import re
import zoneinfo
from decimal import Decimal, InvalidOperation

SHORTHANDS = frozenset(
    {
        "minutely",
        "hourly",
        "daily",
        "weekly",
        "monthly",
        "quarterly",
        "semiannually",
        "semi-annually",
        "biannually",
        "yearly",
        "annually",
    }
)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WEEKDAY_NAMES = {name: index for index, name in enumerate(WEEKDAYS)} | {
    full: index
    for index, full in enumerate(("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"))
}
# Each component's range; the year's is systemd's MIN_YEAR..MAX_YEAR.
RANGES = {"year": (1970, 2199), "month": (1, 12), "day": (1, 31), "hour": (0, 23), "minute": (0, 59), "second": (0, 59)}
LAST_DAYS = 28  # `~N`: at most the 28th day from the month's end (every month has one)
_NUMBER = re.compile(r"\d+")
_SECONDS = re.compile(r"\d+(\.\d+)?")


class CalendarError(ValueError):
    """Why systemd would refuse the expression."""


def check_calendar(expression: str) -> str:
    """The expression unchanged when systemd accepts it; else CalendarError saying what is wrong."""
    if not expression or expression != expression.strip():
        raise CalendarError("empty, or blanks around it")
    words = expression.split()
    if words[0].lower() in SHORTHANDS:
        _timezone(words[1:])
        return expression
    if words[0].startswith("@"):
        if not _NUMBER.fullmatch(words[0][1:]):
            raise CalendarError(f"{words[0]!r} is not @ followed by seconds since 1970")
        _timezone(words[1:])
        return expression
    parts = list(words)
    found = False
    if (
        parts
        and re.fullmatch(r"[A-Za-z.,-]+", parts[0])
        and parts[0].lower() not in ("utc",)
        and _is_weekdays(parts[0])
    ):
        _weekdays(parts.pop(0))
        found = True
    if parts and ":" not in parts[0] and ("-" in parts[0] or "~" in parts[0]):
        _date(parts.pop(0))
        found = True
    if parts and ":" in parts[0]:
        _time(parts.pop(0))
        found = True
    if not found:
        raise CalendarError("no weekday, date (MONTH-DAY) or time (HOUR:MINUTE) in it")
    _timezone(parts)
    return expression


def _is_weekdays(word: str) -> bool:
    first = re.split(r"[,.-]", word, maxsplit=1)[0].lower()
    return first in WEEKDAY_NAMES


def _weekdays(word: str) -> None:
    for item in word.split(","):
        ends = item.split("..") if ".." in item else item.split("-")
        if len(ends) > 2 or any(end.lower() not in WEEKDAY_NAMES for end in ends):
            raise CalendarError(f"{item!r} is not a weekday (Mon … Sun) or a range of them (Mon..Fri)")
        if WEEKDAY_NAMES[ends[0].lower()] > WEEKDAY_NAMES[ends[-1].lower()]:
            raise CalendarError(f"{item!r} goes backwards (weekday ranges run Mon..Sun)")


def _date(word: str) -> None:
    last = "~" in word
    if last:
        head, _, day = word.rpartition("~")
        if "~" in head:
            raise CalendarError(f"{word!r} has more than one ~")
        fields = head.split("-") + [day]
    else:
        fields = word.split("-")
    if len(fields) == 2:
        fields = ["*", *fields]
    if len(fields) != 3:
        raise CalendarError(f"{word!r} is not a date: [YEAR-]MONTH-DAY")
    _chain(fields[0], "year")
    _chain(fields[1], "month")
    _chain(fields[2], "day", highest=LAST_DAYS if last else None)


def _time(word: str) -> None:
    fields = word.split(":")
    if len(fields) not in (2, 3):
        raise CalendarError(f"{word!r} is not a time: HOUR:MINUTE[:SECOND]")
    _chain(fields[0], "hour")
    _chain(fields[1], "minute")
    if len(fields) == 3:
        _chain(fields[2], "second")


def _chain(text: str, component: str, highest: int | None = None) -> None:
    """`highest`: a lower bound for the values than the component's (`~` days); repetitions still step
    within the component's whole range, as systemd checks them."""
    if text == "*":
        return
    low, high = RANGES[component]
    for item in text.split(","):
        value, slash, repeat = item.partition("/")
        start, dots, stop = value.partition("..")
        first = _value(start, component, low, highest or high)
        if dots:
            last = _value(stop, component, low, highest or high)
            if last < first:
                raise CalendarError(f"{component} {item!r} goes backwards")
        if slash:
            step = _value(repeat, component, 0, None)
            if step <= 0 or first + step >= high + 1:
                raise CalendarError(f"{component} {item!r}: the repetition must be > 0 and step within {low}..{high}")


def _value(text: str, component: str, low: int, high: int | None) -> Decimal:
    pattern = _SECONDS if component == "second" else _NUMBER
    if not pattern.fullmatch(text):
        raise CalendarError(f"{component} {text!r} is not a number")
    try:
        # systemd keeps seconds to the microsecond: 59.9999999 rounds to 60, out of range.
        number = round(Decimal(text), 6) if component == "second" else Decimal(int(text))
    except InvalidOperation as error:
        raise CalendarError(f"{component} {text!r} is not a number") from error
    if component == "year" and high is not None:
        if len(text.lstrip("0") or "0") <= 2 and number < 100:
            number += 2000 if number < 70 else 1900  # two-digit years, as systemd reads them
        elif len(text) == 3:
            raise CalendarError(f"year {text!r}: two or four digits")
    if number < low or (high is not None and number >= high + 1):  # seconds may be 59.5
        raise CalendarError(f"{component} {text!r} is outside {low}..{high}")
    return number


def _timezone(rest: list[str]) -> None:
    if not rest:
        return
    if len(rest) > 1:
        raise CalendarError(f"{' '.join(rest)!r} is not one time zone")
    zone = rest[0]
    if zone.lower() == "utc" or zone in _zones():
        return
    raise CalendarError(f"{zone!r} is not a time zone (UTC, or a name such as Europe/Berlin)")


def _zones() -> frozenset[str]:
    try:
        return frozenset(zoneinfo.available_timezones())
    except Exception:  # no time zone database on this machine: only UTC can be checked
        return frozenset()
