"""What a local folder's archive leaves out (issue 16, item 7): secret-looking files by default, whatever the app's
.gitignore files and .deployignore say to leave out, and any file holding a private key; and what it gives others
(nothing: the app's group reads the code on the server)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from config.settings import load_settings
from server.host import plan_host, remote_script
from server.release import archive_bytes, shipped

KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"


def _app(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in {"manage.py": "", **files}.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


SECRETS = {
    ".env": "SECRET_KEY=x",
    ".env.production": "SECRET_KEY=x",
    "config/.env.local": "SECRET_KEY=x",
    ".envrc": "export TOKEN=x",
    ".aws/credentials": "[default]",
    ".ssh/config": "Host *",
    ".netrc": "machine x password y",
    ".pgpass": "*:*:*:*:pw",
    ".git-credentials": "https://u:t@github.com",
    ".pypirc": "[pypi]",
    ".npmrc": "//registry.npmjs.org/:_authToken=x",
    "deploy/id_ed25519": KEY,
    "certs/server.key": "x",
    "certs/server.pem": "x",
    "certs/client.p12": "x",
    "infra/terraform.tfstate": "{}",
    ".git/config": "[remote]",
    "notes/not-named-like-a-key.txt": KEY,  # found by what it holds
    # Issue 29, item 12: secrets by name, and database dumps.
    "prod.env": "SECRET_KEY=x",
    "deploy/production.env": "SECRET_KEY=x",
    "infra/prod.tfvars": 'db_password = "x"',
    "infra/prod.auto.tfvars.json": '{"db_password": "x"}',
    "aws/credentials": "[default]\naws_secret_access_key = x",
    "config/credentials.json": "{}",
    "config/client_secret_123.apps.googleusercontent.com.json": "{}",
    "config/secrets.json": '{"SECRET_KEY": "x"}',
    "config/secrets.yaml": "SECRET_KEY: x",
    "backups/latest.dump": "PGDMP",
    "dump.rdb": "REDIS0011",
}
KEPT = {
    ".env.example": "SECRET_KEY=",
    "shop/settings.py": "",
    "shop/keys.py": "",  # a module named like keys is code
    "templates/base.html": "",
    "deploy/id_ed25519.pub": "ssh-ed25519 AAAA",
    "credentials/__init__.py": "",  # an app named credentials is code
    "credentials/views.py": "",
    "db/schema.sql": "CREATE TABLE t ();",  # SQL files are code; a data dump named .sql goes in .deployignore
    "shop/secrets_manager.py": "",
}


def test_secret_looking_files_are_never_shipped(tmp_path):
    folder = _app(tmp_path, SECRETS | KEPT)
    assert sorted(shipped(folder)) == sorted(["manage.py", *KEPT])


def test_the_gitignore_files_are_honoured_each_in_its_folder(tmp_path):
    folder = _app(
        tmp_path,
        {
            ".gitignore": "/build/\n*.log\n",
            "build/bundle.js": "",
            "logs/app.log": "",
            "frontend/.gitignore": "dist/\n!keep.log\n",
            "frontend/dist/app.js": "",
            "frontend/keep.log": "",
            "frontend/src/app.ts": "",
            "shop/build/x.py": "",  # /build/ is the top folder's only
        },
    )
    assert sorted(shipped(folder)) == [
        ".gitignore",
        "frontend/.gitignore",
        "frontend/keep.log",
        "frontend/src/app.ts",
        "manage.py",
        "shop/build/x.py",
    ]


def test_deployignore_is_read_last_and_can_ship_what_gitignore_leaves_out(tmp_path):
    folder = _app(
        tmp_path,
        {
            ".gitignore": "static/dist/\n",
            ".deployignore": "docs/\n!static/dist/\n!certs/rds-ca.pem\n",
            "static/dist/app.js": "",
            "docs/index.md": "",
            "certs/rds-ca.pem": "-----BEGIN CERTIFICATE-----\n",
            "certs/other.pem": "-----BEGIN CERTIFICATE-----\n",
            "certs/leaked.pem": KEY,  # re-included by name, still refused for what it holds
        },
    )
    deploy_ignore = (folder / ".deployignore").read_text().replace("!certs/rds-ca.pem", "!certs/*.pem")
    (folder / ".deployignore").write_text(deploy_ignore)
    assert sorted(shipped(folder)) == [
        ".deployignore",
        ".gitignore",
        "certs/other.pem",
        "certs/rds-ca.pem",
        "manage.py",
        "static/dist/app.js",
    ]
    with tarfile.open(fileobj=io.BytesIO(archive_bytes(folder))) as tar:
        assert sorted(tar.getnames()) == sorted(shipped(folder))


def test_deployignore_ships_a_file_left_out_by_its_name(tmp_path):
    """A project whose code reads a file named like a secret or a dump ships it by saying so."""
    folder = _app(
        tmp_path,
        {".deployignore": "!fixtures/demo.dump\n", "fixtures/demo.dump": "PGDMP", "config/secrets.json": "{}"},
    )
    assert sorted(shipped(folder)) == [".deployignore", "fixtures/demo.dump", "manage.py"]


def test_the_archive_gives_others_nothing(tmp_path):
    folder = _app(tmp_path, {"shop/settings.py": "", "bin/run": "#!/bin/sh\n"})
    (folder / "bin/run").chmod(0o755)
    with tarfile.open(fileobj=io.BytesIO(archive_bytes(folder))) as tar:
        modes = {member.name: member.mode for member in tar.getmembers()}
    assert modes == {"bin/run": 0o750, "manage.py": 0o640, "shop/settings.py": 0o640}


def test_the_server_leaves_the_code_to_root_and_the_apps_group():
    settings = load_settings({}, project="p", stack="s")
    script = remote_script(
        "deploy",
        plan_host(settings),
        release_id="r1",
        archive_id="r1",
        source_kind="archive",
        git_url="",
        git_ref="",
        git_commit="",
    )
    assert 'chown -R root:photofeed "$build"' in script
    # …and before that, while its dependencies are installed, to the build user's group, never to others.
    assert 'chown -R "root:$builder" "$build"' in script and "builder=photofeed-build" in script
    assert script.count('chmod -R u+rwX,g+rX,g-w,o-rwx "$build"') == 2
    assert 'chmod -R u+rwX,g+rX,g-w,o-rwx "$build"' in script and "go+rX" not in script
