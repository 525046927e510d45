"""Where a release's static files come from: collected by the deploy, or shipped already collected by the repository.

Some projects build their assets with node and commit the output of `collectstatic` — their STATIC_ROOT inside the
repository, with the manifest of Django's ManifestStaticFilesStorage or WhiteNoise's storage (`staticfiles.json`) —
because their host cannot run node; the sources are gitignored. On the server collectstatic finds none of those
sources, and run beside the shipped files it would not keep them: a manifest storage starts its manifest afresh on
every run, with only what it found (the admin's files), and every page that names another raises "Missing
staticfiles manifest entry". So such a release's files are taken as the repository ships them: copied as they are
into the release's static folder (which nginx serves and the storage reads its manifest from), not collected again.
What it ships is what its developers ran and tested, byte for byte, under the same hashed names.

`DJANGOSHIP_KEEP=static` leaves STATIC_ROOT and STATIC_URL to the app's settings: collectstatic then writes where
they say (a folder outside the code, a storage such as S3), never into the release, which is read-only on the server;
a STATIC_ROOT inside the release must already hold the collected files, served as they are.

Installed beside the settings overlay as `djangoship_static.py` (server/host.py) and used by the deploy's check
(python/prepare-release.py.j2) as the app's user, with the app's Python: the standard library only, no Django (the
check gives it the settings' values), so that these rules are tested alone.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StaticPlan:
    says: str  # one line for the deploy's log: where the release's static files come from
    shipped: Path | None = None  # the release's own collected files, copied as they are into `served`
    served: Path | None = None
    collect: bool = True  # collectstatic runs (after the copy, if any)
    refusal: str = ""  # the release cannot have its static files: the deploy fails with this

    def prepare(self) -> int:
        """Copies the shipped files into the served folder; how many."""
        if self.shipped is None or self.served is None:
            return 0
        return copy_tree(self.shipped, self.served)


def _resolved(path: str | os.PathLike[str] | None) -> Path | None:
    return Path(path).resolve() if path else None


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _source_folders(sources: Sequence[object]) -> list[Path]:
    """STATICFILES_DIRS' folders: each entry a path or a (prefix, path) pair."""
    folders = []
    for entry in sources:
        path = entry[1] if isinstance(entry, (tuple, list)) else entry
        folders.append(Path(str(path)).resolve())
    return folders


def _files(folder: Path) -> list[Path]:
    """The regular files under folder (symbolic links aside: `collectstatic --link` output points at sources)."""
    found: list[Path] = []
    for top, dirs, names in os.walk(folder):
        dirs.sort()
        found.extend(Path(top) / name for name in sorted(names) if (Path(top) / name).is_file())
    return [path for path in found if not path.is_symlink()]


def copy_tree(source: Path, target: Path) -> int:
    """source's regular files into target, as they are, readable by all (nginx serves them): folders 0755, files
    0644, whatever the release's own modes (its code is readable by the app's group only)."""
    count = 0
    for path in _files(source):
        destination = target / path.relative_to(source)
        destination.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        shutil.copyfile(path, destination)
        os.chmod(destination, 0o644)
        count += 1
    for top, dirs, _ in os.walk(target):
        for name in dirs:
            os.chmod(Path(top) / name, 0o755)
    return count


def plan_static(
    release: str | os.PathLike[str],
    served: str | os.PathLike[str],
    static_root: str | os.PathLike[str] | None,
    app_static_root: str | os.PathLike[str] | None,
    sources: Sequence[object],
    manifest_name: str | None,
    kept: bool,
) -> StaticPlan:
    """Where the static files of the release in `release` come from.

    served: the release's static folder (nginx serves it under /static/); static_root: STATIC_ROOT as the release
    runs (the overlay's = served, or the app's own with DJANGOSHIP_KEEP=static); app_static_root: the app's own
    STATIC_ROOT; sources: STATICFILES_DIRS; manifest_name: the static storage's manifest file, if it keeps one."""
    release_dir, served_dir = Path(release).resolve(), Path(served)
    own = _resolved(app_static_root)
    inside = own is not None and _within(own, release_dir)
    # A folder of sources (STATIC_ROOT equal to a STATICFILES_DIRS entry, or holding one) is not collected output.
    sources_in_it = own is not None and any(_within(folder, own) for folder in _source_folders(sources))
    files = _files(own) if own is not None and inside and not sources_in_it and own.is_dir() else []
    where = own.relative_to(release_dir).as_posix() + "/" if own is not None and inside else str(own)
    manifest = bool(manifest_name) and own is not None and (own / str(manifest_name)).is_file()
    if kept:
        if not inside:
            return StaticPlan(
                says="static: collectstatic with the app's own settings (DJANGOSHIP_KEEP=static): STATIC_ROOT "
                f"{own or 'not set'}",
            )
        if files:
            return StaticPlan(
                says=f"static: STATIC_ROOT {where} is the app's (DJANGOSHIP_KEEP=static) and the release ships "
                f"{len(files)} files there: served as they are, not collected again (the release is read-only on "
                "the server)",
                shipped=own,
                served=served_dir,
                collect=False,
            )
        return StaticPlan(
            says=f"static: STATIC_ROOT {where} is the app's (DJANGOSHIP_KEEP=static), inside the release",
            collect=False,
            refusal=f"DJANGOSHIP_KEEP=static keeps the app's STATIC_ROOT ({where} in the release), but the release is "
            "read-only on the server and the repository ships no files there. Commit the output of collectstatic "
            "there, point STATIC_ROOT outside the code, or leave static to the deployer (remove static from "
            "app.env.DJANGOSHIP_KEEP)",
        )
    if files and manifest:
        return StaticPlan(
            says=f"static: the release ships its collected files ({where}: {len(files)} files, manifest "
            f"{manifest_name}): served as they are, not collected again (collectstatic would write a manifest of "
            "only the files it finds)",
            shipped=own,
            served=served_dir,
            collect=False,
        )
    return StaticPlan(says=f"static: collectstatic into {static_root} (the release's static folder, served by nginx)")
