"""Small helpers shared by the localboot modules: running commands, reading mounts,
removing trees safely.

Everything here runs as root on CI machines, so the helpers are deliberately strict:
commands are argv lists (never a shell string), failures raise with the command's stderr,
and tree removal refuses to cross into another file system (a leftover bind or overlay
mount must never lead ``rm`` into the host's files).
"""

from __future__ import annotations

import errno
import fcntl
import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path


class CommandError(RuntimeError):
    """A host command failed; the message carries argv, exit code and stderr."""


class GuestError(RuntimeError):
    """The guest failed to boot, stopped unexpectedly, or did not answer in time."""


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    input: bytes | None = None,
    timeout: float = 120,
    check: bool = True,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``argv`` (no shell), capture output, and raise :class:`CommandError` with
    stderr when it fails and ``check`` is true."""
    args = [os.fspath(a) for a in argv]
    try:
        proc = subprocess.run(
            args,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
            env=env,
        )
    except subprocess.TimeoutExpired as exc:
        raise CommandError(f"command timed out after {timeout}s: {args!r}") from exc
    if check and proc.returncode != 0:
        stderr = proc.stderr.decode(errors="replace").strip()
        stdout = proc.stdout.decode(errors="replace").strip()
        detail = stderr or stdout
        raise CommandError(f"command failed with exit {proc.returncode}: {args!r}\n{detail[-4000:]}")
    return proc


def _unescape_mountinfo(field: str) -> str:
    """/proc/self/mountinfo escapes space, tab, newline and backslash as octal."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 4 <= len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mount_points() -> list[Path]:
    """All mount points of this process's mount namespace, in mount order."""
    points = []
    with open("/proc/self/mountinfo", encoding="utf-8") as fh:
        for line in fh:
            fields = line.split(" ")
            points.append(Path(_unescape_mountinfo(fields[4])))
    return points


def mounts_under(path: Path) -> list[Path]:
    """Mount points at or below ``path`` (deepest first, so they can be unmounted in order)."""
    root = Path(os.path.realpath(path))
    found = [p for p in mount_points() if p == root or root in p.parents]
    # Reverse mount order, then deepest path first: children before parents.
    found.reverse()
    found.sort(key=lambda p: len(p.parts), reverse=True)
    return found


def is_mounted(path: Path) -> bool:
    """True when ``path`` itself is a mount point."""
    return Path(os.path.realpath(path)) in set(mount_points())


def unmount_tree(path: Path, *, attempts: int = 10, delay: float = 0.5) -> None:
    """Unmount everything mounted at or under ``path``.

    Busy mounts are retried (a dying container may still hold them for a moment); as a
    last resort the mount is detached lazily so that the caller's cleanup can go on. Raises
    if something is still mounted afterwards.
    """
    for attempt in range(attempts):
        remaining = mounts_under(path)
        if not remaining:
            return
        last = attempt == attempts - 1
        for point in remaining:
            argv = ["umount", "-l", str(point)] if last else ["umount", str(point)]
            run(argv, check=False, timeout=30)
        if mounts_under(path):
            time.sleep(delay)
    if mounts_under(path):
        raise CommandError(f"could not unmount {mounts_under(path)} under {path}")


def remove_tree(path: Path) -> None:
    """Remove ``path`` recursively after unmounting anything under it.

    ``rm --one-file-system`` is the second safety net: should a mount appear under the tree
    in between, rm skips it instead of deleting through it.
    """
    if not path.exists() and not path.is_symlink():
        return
    unmount_tree(path)
    run(["rm", "-rf", "--one-file-system", "--", str(path)], timeout=300)


class FileLock:
    """An exclusive ``flock`` on a file, acquired with a bounded wait."""

    def __init__(self, path: Path, timeout: float) -> None:
        self._path = path
        self._timeout = timeout
        self._fd: int | None = None

    def __enter__(self) -> FileLock:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise TimeoutError(
                        f"lock {self._path} is held by another process (waited {self._timeout}s)"
                    ) from None
                time.sleep(1)
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
