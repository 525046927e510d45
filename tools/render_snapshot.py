"""Everything the program renders, for 35 configs of both profiles, as files: diff two snapshots to prove that a
restructuring changed nothing (`python -m tools.render_snapshot OUT` in each checkout, then `diff -r BEFORE AFTER`).

Each config runs through `__main__.py` under Pulumi's mocks (harness/mockrun.py, as the tests run it) and gives a
folder: `resources.json` (every resource's type, name, parent, inputs, secret inputs, dependencies and options, in
registration order) and `outputs.json`, and under `files/` every long text among the inputs on its own — the remote
steps' scripts and stdin, the user-data documents (decoded, ungzipped) and each file of their `write_files`, the
app servers' env file, and each member of a tar archive uploaded to a bucket (the server files, the release).
Nothing is random: a fixed SSH key, the mocks' deterministic passwords, the foreign apps written to fixed folders;
the checkout's own folder is written as <project>, so a worktree compares with another.
"""

from __future__ import annotations

import base64
import binascii
import functools
import gzip
import io
import json
import shutil
import sys
import tarfile
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

ROOT = Path(__file__).resolve().parent.parent
APPS = Path("/tmp/djangoship-render-snapshot-apps")  # the foreign apps' folders: the same path in every snapshot
COMMIT = "0123456789abcdef0123456789abcdef01234567"  # a full commit: a git source resolved without the network
PRIVATE_KEY = "<the fixed ssh private key>"
LONG = 160  # an input text this long, or with a line break, is also written as a file of its own


@functools.cache
def fixed_key() -> tuple[str, str]:
    """One ed25519 key for the run. OpenSSH's format holds a random check number, so its text differs from run to
    run: `snapshot` writes it as PRIVATE_KEY."""
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, public.decode()


def stack_file(name: str) -> dict[str, Any]:
    document = yaml.safe_load((ROOT / name).read_text())
    return {k.removeprefix("djangoship:"): v for k, v in document["config"].items() if k.startswith("djangoship:")}


def configs() -> dict[str, dict[str, Any]]:
    """tests/rendered/helpers.py's configs and programs (imported: they follow the tests), those of test_program,
    test_workers, test_private_repos, test_scaled and test_scaled_workers, the foreign apps' and the stack files'."""
    sys.path.insert(0, str(ROOT / "tests"))
    from foreign_apps import build, workers_for_app_servers
    from rendered.helpers import CONFIGS, PROGRAMS

    shutil.rmtree(APPS, ignore_errors=True)
    apps = {key: build(key, APPS / key) for key in ("classic", "oss", "ldapsite", "uvshop", "workers", "monorepo")}
    private, public = fixed_key()
    workers_app = {
        "asgiModule": "photofeed.asgi",
        "processes": {"worker": "celery -A photofeed worker -l info", "alerts": "manage.py send_alerts --loop"},
        "schedules": {"sessions": {"schedule": "daily", "command": "manage.py clearsessions"}},
    }
    prod = stack_file("Pulumi.prod.yaml")
    prod["app"] = prod["app"] | {"ref": COMMIT}  # its tag, resolved to a commit here without the network
    found = dict(CONFIGS)
    found |= {f"program-{name}": config for name, config in PROGRAMS.items() if config not in CONFIGS.values()}
    found |= {
        "https-narrow-ssh": {
            "domain": "shop.example.com",
            "tlsEmail": "ops@example.com",
            "ingressPorts": [22, 80],
            "sshAllowedCidrs": ["198.51.100.0/24", "203.0.113.7/32"],
        },
        "git-ssh-pinned-host": {
            "app": {
                "source": "ssh://git@git.example.com/acme/shop.git",
                "ref": COMMIT,
                "gitHostKey": "git.example.com " + public,
            }
        },
        "backups-30-days-not-retained": {
            "backupBucket": "photofeed-backups-example",
            "backupRetentionDays": 30,
            "retainDataVolume": False,
            "backupSchedule": "Mon *-*-* 04:00:00",
        },
        "ami-pinned-own-key": {"amiId": "ami-0abcdef1234567890", "sshPublicKey": public, "sshPrivateKey": private},
        "redis-nano": {"instanceType": "t2.nano", "redis": True, "app": {"env": {"API_TOKEN": "tok"}}},
        "workers-asgi-redis": {"redis": True, "app": workers_app},
        "stack-dev": stack_file("Pulumi.dev.yaml"),
        "stack-prod": prod,
    }
    for key, app in apps.items():
        found[f"foreign-{key}"] = {
            "app": {"source": str(app.folder), "name": "foreign", **app.config},
            "keepReleases": 3,
            "image": "debian-13",
            "redis": key == "workers",
        }
    servers = workers_for_app_servers(APPS / "workers-app-servers")
    scaled = {
        "default": {},
        "domain": {"domain": "shop.example.com"},
        "redis-small": {"redis": True, "cacheNodeType": "cache.t4g.small"},
        "multi-az-3": {"dbMultiAz": True, "appDesiredCapacity": 3, "dbInstanceClass": "db.t4g.small"},
        "git-https": {"app": {"source": "https://github.com/example/photofeed.git", "ref": COMMIT}},
        "git-ssh": {"app": {"source": "ssh://git@git.example.com/acme/shop.git", "ref": COMMIT}},
        "workers-asgi-redis": {"redis": True, "app": workers_app},
        # The workers project as app servers take it: its configuration.py in the code (the profile has no app.files).
        "foreign-workers": found["foreign-workers"]
        | {
            "appMinSize": 2,
            "appDesiredCapacity": 2,
            "app": {"source": str(servers.folder), "name": "shop", **servers.config},
        },
        "foreign-monorepo": {
            "app": {"source": str(apps["monorepo"].folder), "name": "shop", **apps["monorepo"].config}
        },
        "foreign-uvshop-debian-12": {
            "image": "debian-12",
            "app": {"source": str(apps["uvshop"].folder), "name": "shop", **apps["uvshop"].config, "python": ""},
        },
    }
    found |= {f"scaled-{name}": {"profile": "scaled"} | config for name, config in scaled.items()}
    return found


def texts(value: Any, where: str) -> dict[str, bytes]:
    """The long texts inside an input, by a path made of its keys; base64 decoded, gzip opened, tar unpacked,
    a cloud-config's write_files one by one."""
    found: dict[str, bytes] = {}
    if isinstance(value, dict):
        for key in sorted(value):
            found |= texts(value[key], f"{where}/{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found |= texts(item, f"{where}/{index}")
    elif isinstance(value, str) and (len(value) >= LONG or "\n" in value):
        found |= data(value.encode(), where)
        if "\n" not in value:
            try:
                decoded = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                decoded = b""
            if decoded:
                found |= data(decoded, f"{where}.decoded")
    return found


def data(raw: bytes, where: str) -> dict[str, bytes]:
    found = {where: raw}
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
        found[f"{where}.gunzipped"] = raw
        try:
            with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
                for member in tar.getmembers():
                    extracted = tar.extractfile(member)
                    header = f"{member.mode:o} {member.uid}:{member.gid} {member.mtime}\n".encode()
                    found[f"{where}.tar/{member.name}"] = header + (extracted.read() if extracted else b"")
        except tarfile.ReadError:
            pass
    if raw.startswith(b"#cloud-config"):
        for entry in yaml.safe_load(raw).get("write_files", []):
            content = entry.get("content", "")
            header = f"{entry.get('permissions', '')} {entry.get('owner', '')} {entry.get('encoding', '')}\n"
            found[f"{where}.write_files{entry['path']}"] = (header + content).encode()
    return found


def snapshot(out: Path) -> tuple[int, int]:
    from harness.mockrun import MockState, run_program

    shutil.rmtree(out, ignore_errors=True)
    all_configs = configs()
    files = 0
    # (text in a file, in resources.json) → what is written instead
    stand_ins = {
        fixed_key()[0]: PRIVATE_KEY,
        json.dumps(fixed_key()[0])[1:-1]: PRIVATE_KEY,
        str(ROOT): "<project>",
    }
    for name, config in all_configs.items():
        secret = ("sshPrivateKey",) if "sshPrivateKey" in config else ()
        run = run_program(config, state=MockState(generated_key=fixed_key()), secret_keys=secret)
        folder = out / name
        folder.mkdir(parents=True)
        resources = [
            {
                "type": r.type,
                "name": r.name,
                "urn": r.urn,
                "parent": r.parent,
                "inputs": r.inputs,
                "secret_inputs": sorted(r.secret_inputs),
                "dependencies": sorted(r.dependencies),
                "ignore_changes": r.ignore_changes,
                "replacement_trigger": r.replacement_trigger,
                "protect": r.protect,
                "retain_on_delete": r.retain_on_delete,
                "custom_timeouts": r.custom_timeouts,
            }
            for r in sorted(run.resources.values(), key=lambda r: r.urn)
        ]
        outputs = {"outputs": run.outputs, "secret": sorted(run.secret_outputs), "invokes": run.invokes}
        for file, value in (("resources.json", resources), ("outputs.json", outputs)):
            text = json.dumps(value, indent=1, sort_keys=True, default=str)
            for text_found, stand_in in stand_ins.items():
                text = text.replace(text_found, stand_in)
            (folder / file).write_text(text)
        files += 2
        for resource in run.resources.values():
            for where, raw in texts(resource.inputs, resource.name).items():
                path = folder / "files" / where.replace("..", "__")
                path.parent.mkdir(parents=True, exist_ok=True)
                for text_found, stand_in in stand_ins.items():
                    raw = raw.replace(text_found.encode(), stand_in.encode())
                path.write_bytes(raw)
                files += 1
    return len(all_configs), files


if __name__ == "__main__":
    count, written = snapshot(Path(sys.argv[1]))
    print(f"{count} configs, {written} files in {sys.argv[1]}")
