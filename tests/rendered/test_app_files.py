"""app.files on one server, as rendered: configure's reading of its stdin (scripts/configure/env.sh.j2 and
app-files.sh.j2, fed what server/appfiles.py frames) and link_app_files (scripts/lib/app-files.sh.j2), run by bash
with the server's /etc/<app> moved into a temporary folder and the owner made the test's own user."""

from __future__ import annotations

import getpass
import grp
import os
import subprocess
from pathlib import Path

from rendered.helpers import plan_for
from server.appfiles import configure_stdin
from server.files import configure_context
from server.host import render

ENV = "DJANGO_DB_PASSWORD='pw'\nDJANGO_SECRET_KEY='k'\n"
FILES = {"photofeed/configuration.py": "SECRET_KEY = 'from-the-file'\n\n", "conf/.env": "TOKEN=t", "empty": ""}


def configure_parts(base: Path) -> str:
    """The parts of configure that read stdin and write app.files, then link_app_files on `base`/release."""
    plan = plan_for("debian-13-t2.micro")
    context = configure_context(plan, health_host="h")
    parts = [render(f"scripts/configure/{name}.sh.j2", plan, **context) for name in ("helpers", "env")]
    script = "\n".join(
        [
            "set -euo pipefail",
            'log() { echo "log: $*"; }',
            'fail() { echo "configure: ERROR: $*" >&2; exit 1; }',
            *parts,
            render("scripts/lib/app-files.sh.j2", plan, **context),
            f"link_app_files {base}/release",
        ]
    )
    user, group = getpass.getuser(), grp.getgrgid(os.getgid()).gr_name
    return (
        script.replace("/etc/photofeed", f"{base}/etc")
        .replace("root photofeed", f"{user} {group}")
        .replace("-o root -g photofeed", f"-o {user} -g {group}")
    )


def configure(base: Path, stdin: str | bytes) -> subprocess.CompletedProcess[str]:
    data = stdin.encode() if isinstance(stdin, str) else stdin
    done = subprocess.run(["bash", "-c", configure_parts(base)], input=data, capture_output=True, timeout=60)
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(), done.stderr.decode())


def tree(folder: Path) -> dict[str, str]:
    """Each file (content) and link (-> target) under `folder`."""
    found = {}
    for path in sorted(folder.rglob("*")):
        name = str(path.relative_to(folder))
        if path.is_symlink():
            found[name] = "-> " + os.readlink(path)
        elif path.is_file():
            found[name] = path.read_text()
    return found


def a_release(base: Path) -> Path:
    release = base / "release"
    (release / "photofeed").mkdir(parents=True)
    (release / "photofeed" / "configuration.py").write_text("# the repository's own\n")
    return release


def test_files_are_written_linked_into_the_release_and_a_second_run_changes_nothing(tmp_path):
    release = a_release(tmp_path)
    done = configure(tmp_path, configure_stdin(ENV, FILES))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "etc" / "env").read_text() == ENV
    files = tmp_path / "etc" / "files"
    assert tree(files) == FILES
    assert {oct(path.stat().st_mode & 0o777) for path in files.rglob("*") if path.is_file()} == {"0o640"}
    assert oct(files.stat().st_mode & 0o777) == "0o750"
    assert tree(release) == {name: f"-> {files}/{name}" for name in FILES} | {}, tree(release)
    assert "app.files: photofeed/configuration.py replaces the repository's own file in release release" in done.stdout
    assert "from-the-file" not in done.stdout + done.stderr
    again = configure(tmp_path, configure_stdin(ENV, FILES))
    assert again.returncode == 0 and "replaces" not in again.stdout, again.stderr


def test_a_file_no_longer_in_config_goes_and_so_does_its_link(tmp_path):
    release = a_release(tmp_path)
    assert configure(tmp_path, configure_stdin(ENV, FILES)).returncode == 0
    kept = {"photofeed/configuration.py": "SECRET_KEY = 'two'\n"}
    done = configure(tmp_path, configure_stdin(ENV, kept))
    assert done.returncode == 0, done.stderr
    assert tree(tmp_path / "etc" / "files") == kept
    assert tree(release) == {"photofeed/configuration.py": f"-> {tmp_path}/etc/files/photofeed/configuration.py"}
    assert "app.files: conf/.env is no longer in config: removed" in done.stdout
    # No app.files at all: the folder is emptied.
    done = configure(tmp_path, configure_stdin(ENV, {}))
    assert done.returncode == 0 and tree(tmp_path / "etc" / "files") == {} and tree(release) == {}, done.stderr


def test_a_stdin_cut_short_changes_no_file(tmp_path):
    """Wherever a dropped connection cuts it (from the env file's last line on: a cut inside the env file is
    refused as malformed, as before), configure fails saying so, and neither the env file nor a file changes."""
    a_release(tmp_path)
    assert configure(tmp_path, configure_stdin(ENV, {"photofeed/configuration.py": "OLD = 1\n"})).returncode == 0
    whole = configure_stdin(ENV.replace("'k'", "'new'"), FILES).encode()
    for cut in range(len(ENV) - 1, len(whole)):
        done = configure(tmp_path, whole[:cut])
        assert done.returncode != 0 and "did not arrive whole on stdin" in done.stderr, (cut, done.stderr)
        assert (tmp_path / "etc" / "env").read_text() == ENV, cut
        assert tree(tmp_path / "etc" / "files") == {"photofeed/configuration.py": "OLD = 1\n"}, cut


def test_never_through_a_link_of_the_repository_out_of_the_release(tmp_path):
    release = a_release(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (release / "conf").symlink_to(outside)
    done = configure(tmp_path, configure_stdin(ENV, {"conf/.env": "TOKEN=t"}))
    assert done.returncode != 0 and "app.files: conf/.env is outside release release" in done.stderr, done.stderr
    assert list(outside.iterdir()) == []
