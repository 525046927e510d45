"""Boots a real Debian guest (the default release, 13) with localboot and checks what a deployer relies on:
cloud-init runs the user-data and reports its outcome, SSH as ``admin`` with the key pair
from the metadata, passwordless sudo, reboots, a host folder standing in for a data volume,
and a teardown that leaves nothing behind on the host.

Needs root, systemd-nspawn, debootstrap, nft, ip and overlayfs (see localboot.check_host);
skipped when they are missing, except under CI=true where that is a failure. The first run
builds the cached root file system (~1.5 min).

Network: the guests live on a private bridge (10.97.0.0/24); the tests only connect to the
guests' own addresses there, in loops bounded in count and time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paramiko
import pytest

from localboot import (
    DEFAULT_RELEASE,
    BridgeNetwork,
    Guest,
    GuestError,
    boot_guest,
    bridge_network,
    check_host,
    ensure_rootfs,
    generate_ed25519_keypair,
    nft_table_name,
)
from localboot._util import mounts_under, run
from localboot.guest import RUN_ROOT
from localboot.network import (
    ORIGINAL_IP_FORWARD,
    bridge_mac,
    host_lock,
    ip_forward_to_restore,
    link_exists,
    localboot_bridges,
    nft_table_exists,
)

pytestmark = pytest.mark.localboot

# A bridge of its own, not the tests' (conftest.network, lbr0 unless LOCALBOOT_BRIDGE says otherwise), which
# lives for the whole run: these tests create and remove theirs.
BRIDGE = "lbrlab"
CIDR = "10.97.0.1/24"
# Another run on this machine may be in this module, holding lbrlab (~2 min): wait for it rather than fail.
LOCK_WAIT_S = 900
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
MARKER = "/etc/localboot-test/marker"
RUNCMD_FLAG = "/var/lib/localboot-test-runcmd"

USER_DATA = b"""#cloud-config
write_files:
  - path: /etc/localboot-test/marker
    permissions: '0644'
    content: |
      written by cloud-init
packages:
  - jq
runcmd:
  - [touch, /var/lib/localboot-test-runcmd]
"""

FAILING_USER_DATA = b"""#cloud-config
runcmd:
  - [sh, -c, 'echo about to fail; exit 3']
"""


def _require_host() -> None:
    problems = check_host()
    if not problems:
        return
    reason = "localboot cannot boot guests here: " + "; ".join(problems)
    if os.environ.get("CI") == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@dataclass
class Lab:
    stack: contextlib.ExitStack
    network: BridgeNetwork
    guest: Guest
    private_key: str
    data_dir: Path
    ip_forward_before: str
    ssh_up_s: float
    nspawn_pid: int
    init_pid: int


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    _require_host()
    rootfs = ensure_rootfs(DEFAULT_RELEASE)
    private_key, public_key = generate_ed25519_keypair("localboot-test")
    data_dir = tmp_path_factory.mktemp("data-volume")
    (data_dir / "from-host.txt").write_text("the host wrote this\n")
    # The host's own value, which the last localboot bridge to go puts back: saved when the first came up (another
    # run's or worker's bridge may be up; a crashed run leaves it saved), else the current one.
    with host_lock():
        ip_forward_before = ip_forward_to_restore()

    stack = contextlib.ExitStack()
    try:
        network = stack.enter_context(bridge_network(BRIDGE, CIDR, lock_wait=LOCK_WAIT_S))
        guest = stack.enter_context(
            boot_guest(
                network,
                "lbtest",
                USER_DATA,
                {"public-keys": [public_key]},
                rootfs=rootfs,
                ssh_key=private_key,
                binds=[(data_dir, "/srv/data")],
            )
        )
        ssh_up = guest.wait_for_ssh(timeout=120)
        print(f"\n[localboot] guest {guest.ip}: SSH up {ssh_up:.1f}s after start")
        nspawn_pid = guest.nspawn_pid
        assert nspawn_pid is not None
        lab = Lab(
            stack,
            network,
            guest,
            private_key,
            data_dir,
            ip_forward_before,
            ssh_up,
            nspawn_pid,
            guest.init_pid,
        )
    except BaseException:
        stack.close()
        raise
    with stack:
        yield lab


def test_ssh_as_admin_with_the_metadata_key(lab: Lab) -> None:
    client = lab.guest.ssh("admin", lab.private_key)
    try:
        _, stdout, _ = client.exec_command("id -un", timeout=30)
        assert stdout.read().strip() == b"admin"
    finally:
        client.close()
    other_key, _ = generate_ed25519_keypair("not-authorized")
    with pytest.raises(paramiko.AuthenticationException):
        lab.guest.ssh("admin", other_key).close()


def test_passwordless_sudo(lab: Lab) -> None:
    code, out, err = lab.guest.run("sudo -n true && sudo -n id -u", timeout=30)
    assert (code, out, err) == (0, b"0\n", b"")


def test_cloud_init_finishes_the_user_data(lab: Lab) -> None:
    code, out, err = lab.guest.run("cloud-init status --wait --long", timeout=600)
    done_s = time.monotonic() - (lab.guest.boot_started_at or 0)
    print(f"\n[localboot] cloud-init done {done_s:.1f}s after start")
    assert code == 0, out.decode() + err.decode()
    assert b"status: done" in out
    assert lab.guest.run(f"cat {MARKER}").stdout == b"written by cloud-init\n"
    assert lab.guest.run(f"test -f {RUNCMD_FLAG}").exit_code == 0
    code, out, _ = lab.guest.run("jq -n '1+1'")
    assert (code, out) == (0, b"2\n")


def test_stdin_reaches_the_command_exactly(lab: Lab) -> None:
    payload = bytes(range(256)) * 1024
    code, out, _ = lab.guest.run("sha256sum", stdin=payload, timeout=60)
    assert code == 0
    assert out.split()[0].decode() == hashlib.sha256(payload).hexdigest()


def test_guest_address_is_on_the_bridge(lab: Lab) -> None:
    guest = lab.guest
    assert guest.ip in {str(h) for h in lab.network.network.hosts()}
    addrs = json.loads(guest.exec(["ip", "-j", "-4", "addr", "show", "dev", "host0"], check=True).stdout)
    assert {(a["local"], a["prefixlen"]) for a in addrs[0]["addr_info"]} == {(guest.ip, 24)}
    assert f"vb-{guest.machine_name}" in os.listdir(f"/sys/class/net/{BRIDGE}/brif")


def test_exec_enters_the_guest(lab: Lab) -> None:
    guest = lab.guest
    assert guest.exec(["cat", "/proc/1/comm"], check=True).stdout == b"systemd\n"
    assert guest.exec(["hostname"], check=True).stdout == b"lbtest\n"
    assert guest.exec(["cat"], input=b"exact \x00 bytes", check=True).stdout == b"exact \x00 bytes"
    assert guest.exec(["sh", "-c", "exit 7"]).returncode == 7


def test_put_uploads_a_directory(lab: Lab, tmp_path: Path) -> None:
    src = tmp_path / "app"
    (src / "sub").mkdir(parents=True)
    (src / "run.sh").write_text("#!/bin/sh\necho ok\n")
    (src / "run.sh").chmod(0o755)
    (src / "sub" / "data.txt").write_text("data\n")
    lab.guest.put(src, "/home/admin/app")
    code, out, err = lab.guest.run("/home/admin/app/run.sh && cat /home/admin/app/sub/data.txt")
    assert (code, out) == (0, b"ok\ndata\n"), err


def test_bind_mounted_folder_is_shared_with_the_host(lab: Lab) -> None:
    guest = lab.guest
    assert guest.run("sudo -n cat /srv/data/from-host.txt").stdout == b"the host wrote this\n"
    code, _, err = guest.run("echo guest wrote this | sudo -n tee /srv/data/from-guest.txt >/dev/null")
    assert code == 0, err
    assert (lab.data_dir / "from-guest.txt").read_text() == "guest wrote this\n"


def test_reboot_keeps_state_and_ssh_comes_back(lab: Lab) -> None:
    guest = lab.guest
    boots, old_init = guest.boot_count, guest.init_pid
    seconds = guest.reboot_and_wait(timeout=120)
    print(f"\n[localboot] reboot: SSH back after {seconds:.1f}s")
    assert guest.boot_count == boots + 1
    assert guest.init_pid != old_init
    assert guest.run(f"cat {MARKER}").stdout == b"written by cloud-init\n"
    assert guest.run("sudo -n cat /srv/data/from-guest.txt").stdout == b"guest wrote this\n"
    code, out, _ = guest.run("cloud-init status --wait", timeout=300)
    assert code == 0, out
    lab.nspawn_pid, lab.init_pid = guest.nspawn_pid or 0, guest.init_pid


def test_failing_runcmd_makes_cloud_init_status_fail(lab: Lab) -> None:
    private_key, public_key = generate_ed25519_keypair()
    with boot_guest(
        lab.network, "lbfail", FAILING_USER_DATA, {"public-keys": [public_key]}, ssh_key=private_key
    ) as guest:
        guest.wait_for_ssh(timeout=120)
        code, out, err = guest.run("cloud-init status --wait --long", timeout=300)
        rundir = guest.rundir
    assert code != 0, out
    assert b"status: error" in out
    assert b"scripts-user" in out + err
    assert not rundir.exists()


def test_failed_start_cleans_up(lab: Lab, tmp_path: Path) -> None:
    def own() -> set[Path]:  # other runs on this machine may add and remove theirs meanwhile
        return {path for path in RUN_ROOT.iterdir() if path.name.startswith("lbbad-")}

    before = own()
    with (
        pytest.raises(GuestError, match="not a root file system"),
        boot_guest(lab.network, "lbbad", b"#cloud-config\n", rootfs=tmp_path),
    ):
        pass
    assert own() == before


def _processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line contains ``text`` (e.g. a guest's run directory)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if text.encode() in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
    return pids


def assert_ip_forward_put_back(before: str) -> None:
    """ip_forward is the host's own again once no localboot bridge is up; while another is (another run's, another
    xdist worker's), forwarding stays on and the host's own value stays saved for the last one to put back. Under
    the host lock, so that no bridge comes or goes between the reads."""
    with host_lock():
        others = localboot_bridges()
        assert BRIDGE not in others
        if others:
            assert (IP_FORWARD.read_text().strip(), ORIGINAL_IP_FORWARD.read_text().strip()) == ("1", before), others
        else:
            assert IP_FORWARD.read_text().strip() == before
            assert not ORIGINAL_IP_FORWARD.exists()


def test_teardown_leaves_nothing_behind(lab: Lab) -> None:
    rundir = lab.guest.rundir
    lab.stack.close()
    assert lab.guest.nspawn_pid is None
    for pid in (lab.nspawn_pid, lab.init_pid):
        assert not Path(f"/proc/{pid}").exists(), f"process {pid} still there"
    assert _processes_mentioning(str(rundir)) == []
    # Its own: another module's guest (conftest.default_site lives for the whole run) or another run on this
    # machine may have guests up.
    assert mounts_under(rundir) == []
    assert not rundir.exists()
    assert not link_exists(BRIDGE)
    assert not link_exists(f"vb-{lab.guest.machine_name}")
    assert not nft_table_exists(nft_table_name(BRIDGE))
    assert_ip_forward_put_back(lab.ip_forward_before)


def test_bridge_network_cleans_up_after_an_exception(lab: Lab) -> None:
    with host_lock():
        before = ip_forward_to_restore()
    with pytest.raises(RuntimeError, match="boom"), bridge_network(BRIDGE, CIDR, lock_wait=LOCK_WAIT_S) as network:
        assert link_exists(BRIDGE) and nft_table_exists(network.nft_table)
        assert IP_FORWARD.read_text().strip() == "1"
        assert ORIGINAL_IP_FORWARD.read_text().strip() == before
        raise RuntimeError("boom")
    assert not link_exists(BRIDGE)
    assert not nft_table_exists(nft_table_name(BRIDGE))
    assert_ip_forward_put_back(before)


def test_runs_on_separate_bridges_give_the_same_guest_distinct_machines(tmp_path: Path) -> None:
    import ipaddress

    def machine(bridge: str) -> str:
        network = BridgeNetwork(bridge, ipaddress.IPv4Interface("10.99.0.1/24"))
        guest = Guest(network, "benchmem", b"#cloud-config\n", run_root=tmp_path, log_dir=tmp_path)
        argv = guest.nspawn_argv()
        name = argv[argv.index("-M") + 1]
        assert len("vb-" + name) <= 15, name  # the host-side veth's name
        return name

    assert machine("lbr0") == "benchmem"
    assert machine("lbr1") != machine("lbr2") != "benchmem"


def test_the_bridge_keeps_its_address_as_guests_come_and_go() -> None:
    """Every guest's gateway is the bridge's MAC address: it must not move when a guest's port is added with a lower
    one (a bridge left to choose takes its ports' lowest), or the running guests lose the host for tens of seconds."""
    _require_host()
    with bridge_network("lbrmac", "10.96.0.1/24") as network:
        address = Path("/sys/class/net/lbrmac/address")
        before = address.read_text().strip()
        assert before == bridge_mac(network.name)
        try:
            run(["ip", "link", "add", "lbrmac-p", "address", "02:00:00:00:00:01", "type", "veth", "peer", "lbrmac-q"])
            run(["ip", "link", "set", "lbrmac-p", "master", "lbrmac"])
            assert address.read_text().strip() == before
        finally:
            run(["ip", "link", "delete", "lbrmac-p"], check=False)
        assert address.read_text().strip() == before
