"""What a deploy ships: a release id and, for a local folder, a byte-for-byte reproducible archive.

Pure Python, no Pulumi: the same folder gives the same archive and id on every run and every machine,
so `pulumi up` with nothing changed re-runs nothing, and any change to a file gives a new release.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import subprocess
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pathspec

from config.checks import SSH_GIT_URL

# Never shipped, in .gitignore syntax (server/release.py is their one home; docs/deploying.md lists them): local state,
# caches and build output, then whatever is a secret by its name (a folder named `credentials` is code, and ships),
# then database dumps by name (every row: password hashes, sessions; `*.sql` ships: schema files and raw SQL are
# code). Then each .gitignore in the folder (its patterns
# relative to its own folder), then a .deployignore at the top, read last: `!path` there ships a file that a line
# above leaves out (`!certs/rds-ca.pem`, `!static/dist/`). A file holding a private key is never shipped.
DEFAULT_IGNORE = """
.git/
.hg/
.svn/
.venv/
venv/
__pycache__/
node_modules/
media/
staticfiles/
.pytest_cache/
.mypy_cache/
.ruff_cache/
.tox/
*.pyc
*.pyo
*.sqlite3
.DS_Store
.env
.env.*
!.env.example
!.env.sample
!.env.template
!.env.dist
.envrc
.aws/
.ssh/
.gnupg/
.docker/
.kube/
.netrc
.pgpass
.git-credentials
.pypirc
.npmrc
id_rsa
id_dsa
id_ecdsa
id_ed25519
*.pem
*.key
*.p12
*.pfx
*.jks
*.keystore
*.tfstate
*.tfstate.*
*.env
*.tfvars
*.tfvars.json
credentials
!credentials/
credentials.json
client_secret*.json
secrets.json
secrets.yaml
secrets.yml
*.dump
dump.rdb
"""
# With app.directory, what the archive keeps of the source beside that folder: the files at its top that the
# project's dependencies and Python may be declared in (the deploy looks for them there after the project's folder,
# and so does config/apppython.py). A frontend, docs or scripts beside the project are not shipped, and a change
# to them alone is no new release.
TOP_FILES = """
/pyproject.toml
/uv.lock
/poetry.lock
/Pipfile
/Pipfile.lock
/requirements*.txt
/requirements/
/.python-version
/runtime.txt
"""
PRIVATE_KEY = re.compile(rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")
BUILD_DIR = Path(__file__).resolve().parent.parent / ".build" / "releases"


@dataclass(frozen=True)
class Release:
    id: str  # releases/<id> on the server: 12 hex digits of a content hash or a git commit
    archive: Path | None  # local folder: the archive to upload; git: None (the server fetches the commit)
    git_url: str = ""
    git_ref: str = ""
    git_commit: str = ""


def _spec(text: str) -> pathspec.GitIgnoreSpec:
    return pathspec.GitIgnoreSpec.from_lines(text.splitlines())


def _ignored(relative: str, rules: list[tuple[str, pathspec.GitIgnoreSpec]]) -> bool:
    """gitignore's rule across files: the last pattern that matches decides (a deeper .gitignore after a higher
    one, the .deployignore after all)."""
    verdict = False
    for prefix, spec in rules:
        if not relative.startswith(prefix):
            continue
        found = spec.check_file(relative[len(prefix) :])
        if found.include is not None:
            verdict = found.include
    return verdict


def _outside_the_project(directory: str) -> Callable[[str], bool]:
    """Whether a path of the source (a folder's ending in /) is left out with app.directory: neither in that folder,
    nor on the way to it, nor one of TOP_FILES."""
    if not directory:
        return lambda relative: False
    inside, top_files = f"{directory}/", _spec(TOP_FILES)
    return lambda relative: (
        not (relative.startswith(inside) or inside.startswith(relative) or top_files.match_file(relative))
    )


def _included(folder: Path, directory: str = "") -> list[Path]:
    """The files to ship, sorted: not ignored (DEFAULT_IGNORE, the .gitignore files, .deployignore), regular
    files (no symlinks), holding no private key; with app.directory, only that folder and TOP_FILES."""
    outside = _outside_the_project(directory)
    rules = [("", _spec(DEFAULT_IGNORE))]
    deploy_ignore = folder / ".deployignore"
    last = [("", _spec(deploy_ignore.read_text()))] if deploy_ignore.is_file() else []
    files = []
    for top, dirs, names in os.walk(folder):
        here = Path(top).relative_to(folder).as_posix()
        prefix = "" if here == "." else here + "/"
        if ".gitignore" in names and not (Path(top) / ".gitignore").is_symlink():
            rules.append((prefix, _spec((Path(top) / ".gitignore").read_text())))
        dirs[:] = sorted(
            d for d in dirs if not outside(f"{prefix}{d}/") and not _ignored(f"{prefix}{d}/", rules + last)
        )
        for name in names:
            path = Path(top) / name
            if (
                outside(prefix + name)
                or path.is_symlink()
                or not path.is_file()
                or _ignored(prefix + name, rules + last)
            ):
                continue
            files.append(path)
    return sorted(files, key=lambda path: path.relative_to(folder).as_posix())


def shipped(folder: Path, directory: str = "") -> list[str]:
    """What the archive of this folder holds (relative paths): for the tests and the curious."""
    return [
        path.relative_to(folder).as_posix() for path in _included(folder, directory) if not _holds_private_key(path)
    ]


def _holds_private_key(path: Path) -> bool:
    with path.open("rb") as stream:
        return bool(PRIVATE_KEY.search(stream.read(1 << 20)))


def archive_bytes(folder: Path, directory: str = "") -> bytes:
    """A .tar.gz of the folder with sorted entries, fixed owners, times and modes: reproducible. Modes give
    others nothing: on the server the app's group reads the code (cloud-init/scripts/deploy/fetch.sh.j2 and
    prepare.sh.j2). With app.directory the paths stay the source's (backend/manage.py): the deploy releases that
    folder."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in _included(folder, directory):
            data = path.read_bytes()
            if PRIVATE_KEY.search(data):
                continue
            info = tarfile.TarInfo(path.relative_to(folder).as_posix())
            info.size = len(data)
            info.mode = 0o750 if path.stat().st_mode & 0o111 else 0o640
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    compressed = io.BytesIO()
    with gzip.GzipFile(fileobj=compressed, mode="wb", mtime=0, compresslevel=6) as stream:
        stream.write(raw.getvalue())
    return compressed.getvalue()


def local_release(folder: Path, directory: str = "", build_dir: Path = BUILD_DIR) -> Release:
    data = archive_bytes(folder, directory)
    release_id = hashlib.sha256(data).hexdigest()[:12]
    build_dir.mkdir(parents=True, exist_ok=True)
    archive = build_dir / f"{release_id}.tar.gz"
    if not archive.exists():
        partial = archive.with_suffix(".partial")
        partial.write_bytes(data)
        partial.replace(archive)
    return Release(id=release_id, archive=archive)


def _ls_remote_environment(url: str) -> dict[str, str]:
    """git's environment for the preview's lookup: never a prompt (a preview must not wait for a password or a
    host-key question), the operator's own SSH configuration otherwise untouched."""
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0")
    if SSH_GIT_URL.match(url) and not (env.get("GIT_SSH_COMMAND") or env.get("GIT_SSH") or _configured_ssh()):
        env["GIT_SSH_COMMAND"] = "ssh -o BatchMode=yes"
    return env


def _configured_ssh() -> bool:
    """Whether the operator's git config names its own ssh command (core.sshCommand): then it is used as is."""
    try:
        found = subprocess.run(["git", "config", "--get", "core.sshCommand"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return found.returncode == 0 and bool(found.stdout.strip())


def git_release(url: str, ref: str) -> Release:
    """Resolve the ref to a commit now, so the preview says exactly what will be deployed."""
    if re.fullmatch(r"[0-9a-f]{40}", ref):
        return Release(id=ref[:12], archive=None, git_url=url, git_ref="", git_commit=ref)
    wanted = ref or "HEAD"
    try:
        listed = subprocess.run(
            ["git", "ls-remote", "--", url, wanted],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
            env=_ls_remote_environment(url),
        ).stdout
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, FileNotFoundError) as error:
        detail = getattr(error, "stderr", "") or str(error)
        hint = ""
        if SSH_GIT_URL.match(url):
            # The deploy key is the server's; the preview runs git here, with this machine's own SSH access.
            hint = (
                " — resolving app.ref at preview runs `git ls-remote` on this machine with your own SSH access "
                "(ssh-agent or ~/.ssh, the host in known_hosts): give this machine (or the CI runner) read access "
                "to the repository, or set app.ref to a full 40-hex commit, which needs no lookup"
            )
        raise ValueError(f"app.source: cannot read {url}: {detail.strip()}{hint}") from error
    candidates = {}
    for line in listed.splitlines():
        commit, name = line.split("\t", 1)
        candidates[name] = commit
    # Prefer the peeled commit of an annotated tag, then the exact ref, then branch or tag of that name.
    for name in (f"refs/tags/{wanted}^{{}}", wanted, f"refs/heads/{wanted}", f"refs/tags/{wanted}"):
        if name in candidates:
            commit = candidates[name]
            return Release(id=commit[:12], archive=None, git_url=url, git_ref=wanted, git_commit=commit)
    raise ValueError(f"app.ref: {wanted!r} is neither a branch nor a tag of {url}")
