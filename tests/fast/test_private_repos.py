"""Private repositories (issue 16, item 2): no credential in `app.source`, a deploy key instead.

Under mocks: a URL with credentials fails at preview naming `app.source` (never showing the URL); an ssh:// or
git@host: source gets a deploy key whose public half is a plain output and whose private half reaches the server
only as a secret (the deploy step's stdin, or a SecureString parameter for the scaled profile) — never a command's
text, user-data or a launch template. For real: the rendered deploy script's own fetch lines run against a git
server on loopback that speaks SSH (paramiko, serving the real `git-upload-pack`), with real OpenSSH `ssh` and
`git` as the client: the deploy key is taken from stdin into a root-only file, the fetch succeeds with it, a key
the repository does not know is refused with a message that says what to do, the host key is trusted on first use
and a changed one refused, and a pinned `app.gitHostKey` admits that key only.
"""

from __future__ import annotations

import dataclasses
import shlex
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import paramiko
import pytest
from policy_helpers import pack

from config.settings import ConfigError, load_settings
from harness.mockrun import ProgramRun, fixed_test_key, run_program
from harness.serverfiles import app_server_files
from server import release as release_module
from server.host import plan_host, remote_script
from tests.conftest import skip_or_fail

COMMIT = "0123456789abcdef0123456789abcdef01234567"
SSH_SOURCE = "ssh://git@git.example.com/acme/shop.git"
TOKEN = "ghp_TOKEN0123456789abcdefSECRET"


# --- no credentials in the URL ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        f"https://deploy:{TOKEN}@github.com/acme/shop.git",
        f"https://{TOKEN}@github.com/acme/shop.git",
        f"http://oauth2:{TOKEN}@gitlab.example.com/acme/shop.git",
        f"git://deploy:{TOKEN}@git.example.com/acme/shop.git",
        f"ssh://git:{TOKEN}@git.example.com/acme/shop.git",
        f"https://git.example.com/acme/shop.git?private_token={TOKEN}",
        # Issue 29, item 13: a scheme in upper case is a URL too, never a local folder named in the error.
        f"HTTPS://deploy:{TOKEN}@github.com/acme/shop.git",
        f"Https://{TOKEN}@github.com/acme/shop.git",
        f"SSH://git:{TOKEN}@github.com/acme/shop.git",
        f"deploy:{TOKEN}@github.com:acme/shop.git",
    ],
)
def test_a_url_with_credentials_is_refused_at_preview_without_showing_it(source):
    run = run_program({"app": {"source": source, "ref": COMMIT}}, expect_error=True)
    message = str(run.error)
    assert "app.source (value not shown) is invalid: a git URL without credentials" in message
    assert "deployKey" in message
    assert TOKEN not in message and "github.com" not in message
    assert run.resources == {}


@pytest.mark.parametrize(
    "source", [SSH_SOURCE, "git@github.com:acme/shop.git", "https://github.com/acme/shop.git", "ssh://git@[::1]:2222/r"]
)
def test_urls_without_credentials_are_accepted(source):
    assert load_settings({"app": {"source": source}}, project="p", stack="s").app.source == source


@pytest.mark.parametrize("source", ["HTTPS://github.com/acme/shop.git", "Git://github.com/acme/shop.git"])
def test_a_url_git_cannot_fetch_is_refused_without_showing_it(source):
    """git reads schemes in lower case only (`HTTPS://` is "'remote-HTTPS' is not a git command"): refused at
    preview, the value not shown, rather than taken for a local folder and named in the error."""
    with pytest.raises(ConfigError) as error:
        load_settings({"app": {"source": source}}, project="p", stack="s")
    assert "app.source (value not shown) is invalid: a git URL as git reads it" in str(error.value)
    assert "github.com" not in str(error.value)


def test_git_host_key_is_only_for_ssh_sources():
    line = "github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    with pytest.raises(ConfigError, match="app.gitHostKey .* only meaningful with an ssh://"):
        load_settings({"app": {"source": "https://github.com/a/b.git", "gitHostKey": line}}, project="p", stack="s")
    with pytest.raises(ConfigError, match="app.gitHostKey = 'nonsense' is invalid: a known_hosts line"):
        load_settings({"app": {"source": SSH_SOURCE, "gitHostKey": "nonsense"}}, project="p", stack="s")


# --- the deploy key under mocks -----------------------------------------------------------------------------------


def _run(profile: str, source: str = SSH_SOURCE) -> ProgramRun:
    return run_program({"profile": profile, "app": {"source": source, "ref": COMMIT}})


def _key_line() -> str:
    """A line from inside the private key the mocks generate (for the deploy key and the login key alike)."""
    return fixed_test_key()[0].split("-----")[2].strip().splitlines()[0]


def _plain_inputs_holding(run: ProgramRun, text: str) -> list[str]:
    """Every resource input that holds `text` without being marked secret (the key resource itself aside)."""
    return [
        f"{resource.name}.{name}"
        for resource in run.resources.values()
        if resource.type != "tls:index/privateKey:PrivateKey"
        for name, value in resource.inputs.items()
        if text in str(value) and name not in resource.secret_inputs
    ]


def test_single_server_gets_the_deploy_key_on_stdin_only():
    run = _run("single")
    public = run.outputs["deployKey"]
    assert public.startswith("ssh-ed25519 ") and public.endswith(" djangoship-dev-shop")
    assert "deployKey" not in run.secret_outputs  # the public half is for the repository's settings page
    deploy = run.named("shop-deploy")
    assert "stdin" in deploy.secret_inputs and deploy.sent.rest == fixed_test_key()[0]
    script = deploy.sent.script
    assert "GIT_SSH_COMMAND=" in script and "-i /etc/shop/deploy-key" in script and "BatchMode=yes" in script
    assert "StrictHostKeyChecking=accept-new" in script and "IdentityAgent=none" in script
    assert _plain_inputs_holding(run, _key_line()) == []
    instance = run.one("aws:ec2/instance:Instance")
    user_data = "\n".join(pack.user_data_layers(instance.inputs.get("userData") or instance.inputs["userDataBase64"]))
    assert "PRIVATE KEY" not in user_data and "deploy-key" not in user_data


def test_a_public_https_source_has_no_deploy_key():
    run = _run("single", "https://github.com/acme/shop.git")
    assert "deployKey" not in run.outputs
    assert not [r for r in run.resources.values() if r.type == "djangoship:index:DeployKey"]
    assert not run.named("shop-deploy").sent.rest
    assert "GIT_SSH_COMMAND" not in run.named("shop-deploy").sent.script


def test_scaled_servers_read_the_deploy_key_from_a_securestring_never_user_data():
    run = _run("scaled")
    assert run.outputs["deployKey"].startswith("ssh-ed25519 ")
    (parameter,) = [r for r in run.of_type("aws:ssm/parameter:Parameter") if r.inputs["name"].endswith("/deploy-key")]
    assert parameter.inputs["type"] == "SecureString" and "value" in parameter.secret_inputs
    assert parameter.inputs["value"] == fixed_test_key()[0]
    assert _plain_inputs_holding(run, _key_line()) == []
    (template,) = run.of_type(pack.LAUNCH_TEMPLATE)
    user_data = "\n".join(pack.user_data_layers(template.inputs["userData"]))
    assert "PRIVATE KEY" not in user_data
    # The boot fetches exactly this parameter's version into the root-only file before the deploy.
    assert "get-parameter /djangoship/dev/shop/deploy-key:1 > /etc/shop/deploy-key.tmp" in user_data
    policies = [r.inputs["policy"] for r in run.of_type("aws:iam/rolePolicy:RolePolicy")]
    assert any("parameter/djangoship/dev/shop/deploy-key" in str(policy) for policy in policies)


# --- the preview's lookup -----------------------------------------------------------------------------------------


def test_preview_lookup_over_ssh_says_what_it_needs_and_never_prompts():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ValueError) as caught:
        release_module.git_release(f"ssh://git@127.0.0.1:{port}/acme/shop.git", "main")
    message = str(caught.value)
    assert message.startswith(f"app.source: cannot read ssh://git@127.0.0.1:{port}/acme/shop.git")
    assert "runs `git ls-remote` on this machine with your own SSH access" in message
    assert "a full 40-hex commit" in message


def test_a_full_commit_needs_no_lookup():
    found = release_module.git_release(SSH_SOURCE, COMMIT)
    assert (found.git_commit, found.git_ref, found.archive) == (COMMIT, "", None)


# --- a real fetch over SSH with the deploy key ----------------------------------------------------------------------


class GitOverSsh(paramiko.ServerInterface):
    """A git host on loopback: SSH (paramiko's server side) in front of the real `git-upload-pack`, admitting one
    public key — what GitHub does for a repository with one deploy key."""

    def __init__(self, repositories: Path, allowed_key: str):
        self.repositories = repositories
        self.allowed_key = allowed_key.split()[1]  # the base64 blob of "ssh-ed25519 AAAA… comment"

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        return paramiko.AUTH_SUCCESSFUL if key.get_base64() == self.allowed_key else paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        words = shlex.split(command.decode())
        if len(words) != 2 or words[0] != "git-upload-pack":
            return False  # read-only, like a deploy key without write access
        path = (self.repositories / words[1].lstrip("/")).resolve()
        if self.repositories not in path.parents:
            return False
        threading.Thread(target=_serve, args=(channel, ["git-upload-pack", str(path)]), daemon=True).start()
        return True


def _serve(channel: paramiko.Channel, argv: list[str]) -> None:
    process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert process.stdin is not None and process.stdout is not None

    def client_to_git() -> None:
        while data := channel.recv(65536):
            process.stdin.write(data)  # type: ignore[union-attr]
            process.stdin.flush()  # type: ignore[union-attr]
        process.stdin.close()  # type: ignore[union-attr]

    threading.Thread(target=client_to_git, daemon=True).start()
    while data := process.stdout.read1(65536):
        channel.sendall(data)
    channel.send_exit_status(process.wait())
    channel.close()


class GitHost:
    """Accepts SSH connections on 127.0.0.1 until closed; the host key can be swapped (a "changed" host)."""

    def __init__(self, repositories: Path, allowed_key: str, host_key: paramiko.PKey):
        self.server = GitOverSsh(repositories, allowed_key)
        self.host_key = host_key
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.transports: list[paramiko.Transport] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            transport = paramiko.Transport(connection)
            transport.add_server_key(self.host_key)
            self.transports.append(transport)
            try:
                transport.start_server(server=self.server)
            except (EOFError, paramiko.SSHException):
                continue  # the client refused this host's key and hung up: that is a test's point

    def close(self) -> None:
        self.listener.close()
        for transport in self.transports:
            transport.close()


def _host_key(folder: Path, name: str) -> tuple[paramiko.PKey, str]:
    path = folder / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    public = (folder / f"{name}.pub").read_text().split()
    return paramiko.Ed25519Key(filename=str(path)), f"{public[0]} {public[1]}"


@pytest.fixture
def private_repo(tmp_path):
    """A repository with one commit, served over SSH to the stack's deploy key only."""
    source = tmp_path / "work"
    source.mkdir()
    (source / "manage.py").write_text("print('shop')\n")
    git = ["git", "-C", str(source), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q", str(source)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    repositories = tmp_path / "srv"
    repositories.mkdir()
    subprocess.run(["git", "clone", "-q", "--bare", str(source), str(repositories / "shop.git")], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    private, public = fixed_test_key()  # what the mocks' pulumi-tls returns for the deploy key
    host_key, host_line = _host_key(tmp_path, "host")
    host = GitHost(repositories, public, host_key)
    yield {"tmp": tmp_path, "host": host, "commit": commit, "private": private, "host_line": host_line}
    host.close()


def _fetch_lines(tmp: Path, port: int, commit: str, host_key_line: str = "") -> tuple[str, Path]:
    """The deploy script as rendered for this source, cut to what runs for a git source over SSH: saving the key
    from stdin, then the fetch and its check. Only the paths move into the test's folder."""
    source = f"ssh://git@127.0.0.1:{port}/shop.git"
    pinned = f"[127.0.0.1]:{port} {host_key_line}" if host_key_line else ""
    settings = load_settings({"app": {"source": source, "ref": commit, "gitHostKey": pinned}}, project="p", stack="s")
    etc = tmp / "etc"
    plan = plan_host(settings)
    paths = dataclasses.replace(
        plan.paths,
        config_dir=str(etc),
        deploy_key_file=str(etc / "deploy-key"),
        git_known_hosts=str(etc / "git-known-hosts"),
    )
    plan = dataclasses.replace(plan, paths=paths)
    script = remote_script(
        "deploy",
        plan,
        release_id="r1",
        archive_id="r1",
        source_kind="git",
        git_url=source,
        git_ref="",
        git_commit=commit,
    )
    lines = script.splitlines()
    save = lines.index(next(line for line in lines if line.startswith("(umask 077 && cat >")))
    start = lines.index(next(line for line in lines if 'git -C "$build" init' in line))
    end = lines.index(next(line for line in lines if 'git -C "$build" checkout' in line))
    body = "\n".join(
        [
            "set -euo pipefail",
            'fail() { echo "ERROR: $*" >&2; exit 1; }',
            f"build={tmp}/build",
            'rm -rf "$build"; mkdir -p "$build"',
            *lines[save - 1 : save + 1],
            *lines[start : end + 1],
            'echo "fetched $fetched"',
        ]
    )
    return body, etc


def _deploy_fetch(repo: dict, key: str, host_key_line: str = "") -> subprocess.CompletedProcess[str]:
    body, _ = _fetch_lines(repo["tmp"], repo["host"].port, repo["commit"], host_key_line)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(repo["tmp"])}  # no agent, no ~/.ssh of the machine's
    return subprocess.run(["bash", "-c", body], input=key, capture_output=True, text=True, timeout=60, env=env)


def test_the_deploy_fetches_a_private_repository_with_the_deploy_key(private_repo):
    done = _deploy_fetch(private_repo, private_repo["private"])
    assert done.returncode == 0, done.stderr
    assert f"fetched {private_repo['commit']}" in done.stdout
    etc = private_repo["tmp"] / "etc"
    assert (etc / "deploy-key").stat().st_mode & 0o777 == 0o600  # root-only, from stdin
    assert (etc / "deploy-key").read_text() == private_repo["private"]
    # Trust on first use: the host's key is now remembered for this server's later fetches.
    known = (etc / "git-known-hosts").read_text()
    assert known.strip().endswith(private_repo["host_line"]) and len(known.splitlines()) == 1
    assert (private_repo["tmp"] / "build" / "manage.py").is_file()


def test_a_key_the_repository_does_not_know_is_refused_saying_what_to_do(private_repo):
    other = private_repo["tmp"] / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    done = _deploy_fetch(private_repo, other.read_text())
    assert done.returncode != 0
    assert "Permission denied (publickey)" in done.stderr
    assert "Add the stack output deployKey to the repository as a read-only deploy key" in done.stderr
    fingerprint = subprocess.run(["ssh-keygen", "-l", "-f", f"{other}.pub"], capture_output=True, text=True).stdout
    assert fingerprint.split()[1] in done.stderr  # the key the server holds, so the operator can compare


def test_a_changed_host_key_is_refused_after_the_first_fetch(private_repo):
    assert _deploy_fetch(private_repo, private_repo["private"]).returncode == 0
    private_repo["host"].host_key, _ = _host_key(private_repo["tmp"], "impostor")
    done = _deploy_fetch(private_repo, private_repo["private"])
    assert done.returncode != 0
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in done.stderr and "a changed host key is refused" in done.stderr


def test_a_pinned_host_key_admits_that_host_only(private_repo):
    done = _deploy_fetch(private_repo, private_repo["private"], host_key_line=private_repo["host_line"])
    assert done.returncode == 0, done.stderr
    _, impostor_line = _host_key(private_repo["tmp"], "impostor")
    done = _deploy_fetch(private_repo, private_repo["private"], host_key_line=impostor_line)
    assert done.returncode != 0 and "Host key verification failed" in done.stderr


# --- the scripts that carry it pass shellcheck ----------------------------------------------------------------------


def _shellcheck(script: str, tmp_path: Path) -> None:
    shellcheck = shutil.which("shellcheck")
    if not shellcheck:
        skip_or_fail("shellcheck is not installed")
    path = tmp_path / "script"
    path.write_text(script)
    result = subprocess.run(
        [shellcheck, "--norc", "-s", "bash", "-f", "gcc", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr


@pytest.mark.parametrize("pinned", [False, True])
def test_the_single_servers_deploy_script_passes_shellcheck(pinned, tmp_path):
    line = "github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    run = run_program({"app": {"source": SSH_SOURCE, "ref": COMMIT, "gitHostKey": line if pinned else ""}})
    script = run.named("shop-deploy").sent.script
    assert ("StrictHostKeyChecking=yes" in script) is pinned and (line in script) is pinned
    _shellcheck(script, tmp_path)


def test_the_app_servers_boot_and_deploy_scripts_pass_shellcheck(tmp_path):
    run = _run("scaled")
    files = app_server_files(run)
    for name in ("/usr/local/sbin/shop-boot", "/usr/local/sbin/shop-deploy"):
        _shellcheck(files[name], tmp_path)
    assert "GIT_SSH_COMMAND=" in files["/usr/local/sbin/shop-deploy"]
    assert "cat > /etc/shop/deploy-key.new" not in files["/usr/local/sbin/shop-deploy"]  # from SSM, not stdin


def test_the_preview_resolves_a_private_ref_with_the_operators_own_ssh(private_repo, monkeypatch):
    """`git ls-remote` at preview uses this machine's SSH as configured (here GIT_SSH_COMMAND with a key that the
    repository admits, as an operator's ~/.ssh would), not the deploy key, and resolves the branch to its commit."""
    key = private_repo["tmp"] / "operator-key"
    key.write_text(private_repo["private"])
    key.chmod(0o600)
    known = private_repo["tmp"] / "operator-known-hosts"
    ssh = f"ssh -i {key} -o IdentitiesOnly=yes -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile={known}"
    monkeypatch.setenv("GIT_SSH_COMMAND", ssh)
    branch = subprocess.run(
        ["git", "-C", str(private_repo["tmp"] / "work"), "branch", "--show-current"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    url = f"ssh://git@127.0.0.1:{private_repo['host'].port}/shop.git"
    found = release_module.git_release(url, branch)
    assert (found.git_commit, found.git_ref, found.git_url) == (private_repo["commit"], branch, url)
