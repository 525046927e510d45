"""Shared pieces of the benchmarks: the machine, wrk on the host, sampling inside a guest, medians.

Every load generator here is bounded in time (wrk's -d, a subprocess timeout) and aimed only at a guest's
own address on the local bridge, never anywhere else.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
APP = "photofeed"

from localboot.rootfs import DEFAULT_RELEASE  # noqa: E402  (after the project is on sys.path)


def machine() -> str:
    """One line naming this machine, for the figures."""
    cpu = "?"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())[1])
    distro = "?"
    with open("/etc/os-release") as release:
        for line in release:
            if line.startswith("PRETTY_NAME="):
                distro = line.split("=", 1)[1].strip().strip('"')
    return (
        f"{os.cpu_count()} vCPU {cpu}, {mem_kib // 1024} MiB, {distro}, kernel {platform.release()}; "
        f"guest Debian {DEFAULT_RELEASE} (systemd-nspawn)"
    )


def header(title: str) -> None:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"# {title}\n# {now} — {machine()}\n", flush=True)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


@contextlib.contextmanager
def revision_tree(rev: str) -> Iterator[tuple[str, Path]]:
    """For a benchmark's --compare: git revision `rev` of this project (its short name, and its files exported
    into a temporary folder that uses this tree's .venv), so that a child run measures that revision's program."""
    short = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", rev], capture_output=True, text=True, check=True
    ).stdout.strip()
    with tempfile.TemporaryDirectory(prefix=f"djangoship-{short}-") as tree:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", short], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True)
        os.symlink(ROOT / ".venv", Path(tree) / ".venv")
        yield short, Path(tree)


def child_run(script: str, tree: Path, *args: str) -> Any:
    """`script` (this tree's benchmark) run with `tree`'s project first on its path (`--project`); what it
    measured, as the JSON it wrote (`--json`)."""
    out = tree / "measured.json"
    subprocess.run(
        [sys.executable, script, "--project", str(tree), "--json", str(out), *args], cwd=tree, check=True, timeout=3600
    )
    return json.loads(out.read_text())


def require(tool: str) -> str:
    path = shutil.which(tool)
    if not path:
        sys.exit(f"{tool} is not installed on this machine (apt-get install {tool})")
    return path


@dataclass
class WrkResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx_3xx: int
    socket_errors: int
    transfer_per_second: str
    raw: str
    # CPU milliseconds per request by guest service, when the caller measured it (guest_cpu_seconds).
    cpu_ms: dict[str, float] = field(default_factory=dict)


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk(
    url: str,
    *,
    connections: int,
    seconds: int,
    threads: int = 2,
    headers: dict[str, str] | None = None,
    cpus: str | None = None,
    netns_pid: int | None = None,
    stand_in: bool = False,
) -> WrkResult:
    """`wrk --latency` against a guest's URL, bounded by -d and a hard timeout.

    With `netns_pid` (a guest's init), the host's wrk runs inside that guest's network namespace, so
    `http://127.0.0.1/…` is the guest's own loopback — how PERF-NOTES measured — while wrk itself stays a
    host process (outside the guest's CPU pinning and cgroup). With `stand_in`, the URL is one of the harness's
    stand-ins on the host's own loopback (the scaled profile's load balancer)."""
    if not re.match(r"^http://(10\.|127\.)", url):
        raise ValueError(f"benchmarks only load a guest on the local bridge or loopback, not {url}")
    if url.startswith("http://127.") and netns_pid is None and not stand_in:
        raise ValueError("a loopback URL needs the guest's network namespace (netns_pid), or is a stand-in's")
    argv = [require("wrk"), f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    for key, value in (headers or {}).items():
        argv += ["-H", f"{key}: {value}"]
    argv.append(url)
    if netns_pid is not None:
        argv = ["nsenter", f"--net=/proc/{netns_pid}/ns/net", *argv]
    if cpus:
        argv = ["taskset", "-c", cpus, *argv]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M)[1])
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M)[1])
    requests = int(re.search(r"(\d+) requests in", out)[1])
    non_ok = int(m[1]) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    errors = (
        sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", m[0]))
        if (m := re.search(r"Socket errors:.*", out))
        else 0
    )
    transfer = re.search(r"Transfer/sec:\s+(\S+)", out)[1]
    return WrkResult(rps, p50, p99, requests, non_ok, errors, transfer, out)


def gsh(guest: Any, command: str, timeout: float = 300, check: bool = True) -> str:
    """A shell command inside the guest, as root (nsenter)."""
    result = guest.exec(["bash", "-c", command], timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(
            f"{command!r} failed ({result.returncode}): {result.stderr.decode()}{result.stdout.decode()}"
        )
    return result.stdout.decode()


def write_file(guest: Any, path: str, content: str, mode: str = "0644") -> None:
    q = shlex.quote(path)
    result = guest.exec(
        ["bash", "-c", f'mkdir -p "$(dirname {q})" && cat > {q} && chmod {mode} {q}'],
        input=content.encode(),
        timeout=30,
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr.decode())


def seed_rows(guest: Any, count: int = 100) -> None:
    """~count rows in the example app's table, through its own manage command."""
    code = (
        f"from feed.models import Photo\n"
        f"missing = {count} - Photo.objects.count()\n"
        f"rows = [Photo(title=f'bench row {{i}}', image='photos/none.png') for i in range(max(0, missing))]\n"
        f"Photo.objects.bulk_create(rows)\n"
        f"print(Photo.objects.count())\n"
    )
    gsh(guest, f"{APP}-manage shell <<'PY'\n{code}PY")


def pin_guest(guest: Any, cpus: str) -> None:
    """Every process of the guest (its systemd too, so services restarted later inherit it) on `cpus`."""
    gsh(guest, f'for p in /proc/[0-9]*; do taskset -a -p -c {cpus} "${{p#/proc/}}" > /dev/null 2>&1 || true; done')


def guest_cpu_seconds(guest: Any) -> dict[str, float]:
    """CPU seconds used so far by each service of the guest (cgroup v2 `cpu.stat`, read from the host).

    Processes that come and go (a PostgreSQL backend forked per connection) are counted too, which
    per-process sampling would miss. Keys: unit names without `.service`; PostgreSQL's cluster unit is
    `postgresql`."""
    init_cgroup = ""
    for line in Path(f"/proc/{guest.init_pid}/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            init_cgroup = line[3:]
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines() if line.split()[2] == "cgroup2"]
    if not init_cgroup or not mounts:
        return {}
    # The guest's systemd lives in <its root>/init.scope; its services in <its root>/system.slice.
    system_slice = Path(mounts[0] + str(Path(init_cgroup).parent)) / "system.slice"
    usage: dict[str, float] = {}
    for stat in [*system_slice.glob("*.service/cpu.stat"), *system_slice.glob("*/*.service/cpu.stat")]:
        name = stat.parent.name.removesuffix(".service")
        name = "postgresql" if name.startswith("postgresql@") else name
        for line in stat.read_text().splitlines():
            if line.startswith("usage_usec "):
                usage[name] = usage.get(name, 0.0) + int(line.split()[1]) / 1e6
    return usage
