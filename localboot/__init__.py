"""localboot: boot real Debian guests locally (systemd-nspawn) as stand-ins for cloud servers.

Pure infrastructure: a cached cloud-image-like root file system (:mod:`.rootfs`), a private
bridge network (:mod:`.network`), guests seeded through cloud-init's NoCloud data source and
reached over SSH or nsenter (:mod:`.guest`: its lifecycle; :mod:`.seed`, :mod:`.processes`,
:mod:`.ssh`: the seed, the nspawn boot loop, SSH and SFTP), SSH key pairs (:mod:`.keys`) and a host check
(:mod:`.requirements`). It knows nothing about the application it is used to test.

Typical use (as root)::

    from localboot import boot_guest, bridge_network, ensure_rootfs, generate_ed25519_keypair

    private, public = generate_ed25519_keypair()
    rootfs = ensure_rootfs("trixie")
    with bridge_network() as net, boot_guest(
        net, "web", b"#cloud-config\\npackages: [jq]\\n", {"public-keys": [public]},
        rootfs=rootfs, ssh_key=private,
    ) as guest:
        guest.wait_for_ssh()
        print(guest.run("cloud-init status --wait"))
"""

from ._util import CommandError, GuestError
from .guest import Guest, boot_guest, cleanup_stale_runs
from .keys import generate_ed25519_keypair
from .network import BridgeNetwork, bridge_network, nft_table_name
from .requirements import check_host
from .rootfs import DEFAULT_RELEASE, Mirrors, ensure_rootfs, host_mirrors, recipe_key
from .seed import host_nameserver
from .ssh import SSHResult, load_private_key

__all__ = [
    "DEFAULT_RELEASE",
    "BridgeNetwork",
    "CommandError",
    "Guest",
    "GuestError",
    "Mirrors",
    "SSHResult",
    "boot_guest",
    "bridge_network",
    "check_host",
    "cleanup_stale_runs",
    "ensure_rootfs",
    "generate_ed25519_keypair",
    "host_mirrors",
    "host_nameserver",
    "load_private_key",
    "nft_table_name",
    "recipe_key",
]
