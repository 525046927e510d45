"""scripts/lib/restart-unit.sh.j2 as rendered, run by bash against a stand-in `systemctl` (a shell function that
records its calls): a start systemd could not spawn (Result=resources, "Failed to spawn executor" on a loaded
machine) is made once more; a unit's own failure is the answer at once."""

from __future__ import annotations

import subprocess

import pytest

from rendered.helpers import plan_for
from server.host import render

# The stand-in: each start/restart fails while the count in $fail_starts lasts; `show -p Result` says $result.
STAND_IN = """
calls=()
systemctl() {
    calls+=("$*")
    case $1 in
        start|restart)
            if [ "$fail_starts" -gt 0 ]; then fail_starts=$((fail_starts - 1)); return 1; fi ;;
        show) echo "$result" ;;
    esac
    return 0
}
"""


def run(function: str, result: str, fail_starts: int) -> tuple[int, list[str], str]:
    library = render("scripts/lib/restart-unit.sh.j2", plan_for("debian-13-t2.micro"))
    script = (
        f"{STAND_IN}{library}\nfail_starts={fail_starts} result={result}\n"
        f'{function} gunicorn.service gunicorn.socket; status=$?\nprintf "%s\\n" "${{calls[@]}}"\nexit $status\n'
    )
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)
    return done.returncode, done.stdout.splitlines(), done.stderr


@pytest.mark.parametrize("function", ["restart_unit", "start_unit"])
def test_a_start_systemd_could_not_spawn_is_made_once_more(function):
    verb = function.removesuffix("_unit")
    status, calls, said = run(function, "resources", fail_starts=1)
    assert status == 0, (calls, said)
    assert [call for call in calls if call.startswith(verb)] == [f"{verb} gunicorn.service"] * 2, calls
    assert "systemd could not spawn gunicorn.service (result: resources): starting it once more" in said


@pytest.mark.parametrize("function", ["restart_unit", "start_unit"])
def test_only_once_and_never_for_the_units_own_failure(function):
    verb = function.removesuffix("_unit")
    status, calls, _ = run(function, "resources", fail_starts=2)
    assert status != 0 and [call for call in calls if call.startswith(verb)] == [f"{verb} gunicorn.service"] * 2
    status, calls, said = run(function, "exit-code", fail_starts=1)
    assert status != 0 and [call for call in calls if call.startswith(verb)] == [f"{verb} gunicorn.service"], calls
    assert "once more" not in said
