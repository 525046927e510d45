"""Config rules that follow someone else's: systemd's calendar events, CIDR notation as a reviewer reads it.

The OnCalendar check (`config/oncalendar.py`) runs at preview on any operator's machine, without systemd; here
it is held to systemd's own verdict (`systemd-analyze calendar`) on every expression below.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from config.oncalendar import CalendarError, check_calendar
from config.settings import ConfigError, load_settings
from harness.mockrun import run_program
from tests.conftest import skip_or_fail

# Accepted and refused forms (systemd.time(7)), the edge of every component's range, and the mistakes an
# operator makes ("every day", a cron line, 24:00).
CALENDAR_EVENTS = """
daily|Daily|weekly UTC|hourly UTC|minutely|monthly|quarterly|semiannually|biannually|annually|yearly
every day|daily daily|tomorrow|now|*|01|5|UTC|30 3 * * *|@daily
Mon|Monday|mOnDaY|Mo|Mon-Fri|Mon..Fri|Mon..Mon|Fri..Mon|Mon,Wed..Fri|Mon..Tue,Thu..Sun|Mon-Tue..Thu|Mon Tue
Mon-Fri 03:00|mon,fri *-*-* 3:0|Mon *-*-01..07 02:00|Sat,Sun 20..22:00/2|Mon,Tue 2027-01-01 00:00|Mon 01|Mon *
03:30 Mon|*-*-* 03:30 Mon|*-*-* Mon
*-*-* 03:30:00|*-*-* 03:30:00 UTC|*-*-* 03:30:00 utc|*-*-* 03:30:00 Europe/Berlin|*-*-* 03:30:00 Mars/Base
*-*-* 03:30 UTC UTC|*-*-* 3:30 +01:00|*-*-* 03:30:00 ,|*-*-*T03:30|*-*-*  03:30|00:00:00 UTC|03:30|*:*|*:*:*
*-02~03|*-02~03-01|*-*~1|*-*~01..03|2027-02-30|*-*-0|*-*-32|*-0-1|*-13-1|01-01|1-1|*-*|1-2-3-4
1969-01-01|2200-01-01|26-01-01|0003-01-01|2027..2030-01-01|2027-01-01/2|1/2-01-01|2027-*-* 00:00
*/2-*-*|*-*/2-*|*-01/2-*|*-*-*/2|*-*-1/2|*-01..03-01|*-01..03/2-01|*-*-1,15|*-*-01,,15|*-*-01,
*-*-* 24:00|*-*-* 23:60|24:00|00:00:60|3:30:60|3:30:59.5|12:00:59.999999|12:00:59.9999999|*-*-* 3.5:00
*:0/15|*:00/0|*:*/15|*/15:00|*-*-* 0/6:00|3..1:00|1..3:00|1..3..5:00|*-*-* 1..3/2:00|*-*-* 03:30:
*-*-* *:*:00/15|*-*-* 00:00:00/0.5|*-*-* 00:00:05..10|*-*-* 00:00:5.5..10|*-*-* 003:30|*-*-* 3:5:7
"""


def calendar_event_is_valid(event: str) -> bool:
    try:
        check_calendar(event)
    except CalendarError:
        return False
    return True


def _events() -> list[str]:
    return [event for line in CALENDAR_EVENTS.strip().splitlines() for event in line.split("|")]


def test_oncalendar_agrees_with_systemd():
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        skip_or_fail("systemd-analyze is not installed")
    disagreements = []
    accepted = 0
    for event in _events():
        systemd = subprocess.run([analyze, "calendar", event], capture_output=True, timeout=10).returncode == 0
        accepted += systemd
        if calendar_event_is_valid(event) != systemd:
            disagreements.append((event, "systemd accepts" if systemd else "systemd refuses"))
    assert disagreements == []
    # Not vacuous: both verdicts are well represented.
    assert 40 < accepted < len(_events()) - 40, accepted


@pytest.mark.parametrize("schedule", ["daily", "Mon..Fri 02:00", "*-*-* 03:30:00", "Sun *-*-1..7 04:00 UTC"])
def test_backup_schedule_takes_systemd_calendar_events(schedule):
    assert load_settings({"backupSchedule": schedule}, project="p", stack="s").backup_schedule == schedule


def test_backup_schedule_problem_names_the_key_and_the_value():
    with pytest.raises(ConfigError, match=r"backupSchedule = 'every day' is invalid: a systemd OnCalendar"):
        load_settings({"backupSchedule": "every day"}, project="p", stack="s")


@pytest.mark.parametrize(
    "given,declared",
    [
        (["203.0.113.7"], ["203.0.113.7/32"]),
        (["203.0.113.0/24", "203.0.113.128/25"], ["203.0.113.0/24"]),
        (["198.51.100.0/25", "198.51.100.128/25"], ["198.51.100.0/24"]),
        (["0.0.0.0/1", "128.0.0.0/1"], ["0.0.0.0/0"]),
    ],
)
def test_ssh_networks_are_declared_as_what_they_open(given, declared):
    """What the security group says is what is open: a host is /32, overlaps and halves are merged, and the
    internet split in two (a bypass of the policy pack's check for 0.0.0.0/0) is declared as 0.0.0.0/0."""
    run = run_program({"sshAllowedCidrs": given})
    (group,) = run.of_type("aws:ec2/securityGroup:SecurityGroup")
    (ssh,) = [rule for rule in group.inputs["ingress"] if rule["fromPort"] == 22]
    assert ssh["cidrBlocks"] == declared
