"""Run inside a guest (python3, no third-party module): hold apt's real locks while two of the program's steps reach
apt, and let go of them one by one as the steps show they wait — used by tests/guests/test_foreign_workers.py
(issue 34).

    python3 apt_lock_holder.py FIRST SECOND

FIRST and SECOND are the labels the steps run under (their script's $0, server/rootstep.py). The
locks are taken as apt and dpkg take them (fcntl record locks on the whole file): the package lists' lock
(`apt-get update`) and dpkg's frontend lock (every install). Then, each line of stdout saying what happened:

1. FIRST waits at apt: an `apt-get` below it, asleep in apt's own wait for the frontend lock (apt sleeps nowhere
   else);
2. SECOND waits for FIRST: a `flock` below it on the deployer's own apt lock (/run/lock/<app>-apt.lock);
3. the frontend lock is released: FIRST's install goes on; the package lists were removed by the test, so it
   fails and FIRST refreshes the lists: an `apt-get update` below it, which fails on the lists' lock, and
   another after it (asked again);
4. the lists' lock is released: FIRST updates, installs and lets SECOND have apt.

Every wait is bounded (BOUND seconds in all): then it says "gave up" and exits, which releases every lock.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time

LISTS_LOCK = "/var/lib/apt/lists/lock"
FRONTEND_LOCK = "/var/lib/dpkg/lock-frontend"
BOUND = 240.0
SLEEPS = {"35", "230", "101", "115"}  # nanosleep, clock_nanosleep: x86-64's numbers, then arm64's


def say(text: str) -> None:
    print(text, flush=True)


def hold(path: str) -> int:
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
    fcntl.lockf(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return descriptor


def read(path: str) -> str:
    try:
        with open(path, "rb") as stream:
            return stream.read().decode(errors="replace")
    except OSError:  # the process has gone
        return ""


def arguments(pid: str) -> list[str]:
    return read(f"/proc/{pid}/cmdline").split("\0")[:-1]


def parent(pid: str) -> str:
    stat = read(f"/proc/{pid}/stat")
    return stat.rsplit(")", 1)[1].split()[1] if ")" in stat else "0"


def below(pid: str, label: str) -> bool:
    """`pid` runs inside the step labelled `label`: an ancestor is `bash -c SCRIPT LABEL`."""
    while pid not in ("0", "1"):
        argv = arguments(pid)
        if argv[:2] == ["bash", "-c"] and argv[-1:] == [label]:
            return True
        pid = parent(pid)
    return False


def on_apt_lock(pid: str) -> bool:
    """A `flock` on the deployer's own apt lock (its descriptor argument points at /run/lock/<app>-apt.lock)."""
    argv = arguments(pid)
    try:
        return os.readlink(f"/proc/{pid}/fd/{argv[-1]}").endswith("-apt.lock")
    except (OSError, IndexError):
        return False


def asleep(pid: str) -> bool:
    return read(f"/proc/{pid}/syscall").split(" ", 1)[0] in SLEEPS


def found(label: str, program: str, words: tuple[str, ...], but: str = "", sleeping: bool = False) -> str:
    """The pid of a `program` with `words` among its arguments, running below `label` (not `but`)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if pid == but or read(f"/proc/{pid}/comm").strip() != program:
            continue
        if not all(word in arguments(pid) for word in words) or not below(pid, label):
            continue
        if (program != "flock" or on_apt_lock(pid)) and (not sleeping or asleep(pid)):
            return pid
    return ""


def wait_for(
    deadline: float,
    what: str,
    label: str,
    program: str,
    words: tuple[str, ...] = (),
    but: str = "",
    sleeping: bool = False,
) -> str:
    while time.monotonic() < deadline:
        pid = found(label, program, words, but, sleeping)
        if pid:
            say(f"{what}: {' '.join(arguments(pid))}")
            return pid
        time.sleep(0.02)  # an `apt-get update` that finds the lists' lock held lives for a fraction of a second
    say(f"gave up: no {program} {' '.join(words)} below {label} within {BOUND:.0f} s ({what})")
    sys.exit(1)


def main() -> None:
    first, second = sys.argv[1:3]
    deadline = time.monotonic() + BOUND
    lists, frontend = hold(LISTS_LOCK), hold(FRONTEND_LOCK)
    say(f"held {os.getpid()}")
    wait_for(deadline, "first waits at apt", first, "apt-get", sleeping=True)
    wait_for(deadline, "second waits for it", second, "flock", ("--timeout",))
    os.close(frontend)
    say("released the dpkg frontend lock")
    update = wait_for(deadline, "first refreshes the lists", first, "apt-get", ("update",))
    while os.path.exists(f"/proc/{update}") and time.monotonic() < deadline:
        time.sleep(0.02)  # it fails on the lists' lock, which this process holds
    wait_for(deadline, "and asks again", first, "apt-get", ("update",), but=update)
    os.close(lists)
    say("released the lists lock")


if __name__ == "__main__":
    main()
