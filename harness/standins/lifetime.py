"""The stand-ins' servers (PostgreSQL, Redis, dnsmasq) are children of the harness's process and end with it."""

from __future__ import annotations

import ctypes
import signal


def die_with_parent() -> None:
    """`preexec_fn` of a server's Popen: in the child, SIGTERM when the harness's process ends, killed or not, so
    that no server outlives its run (a dnsmasq left behind would keep its bridge address's port 53 from the next run
    on that subnet; a cluster, its port 5432)."""
    PR_SET_PDEATHSIG = 1  # noqa: N806
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
