"""A private bridge network for local guests, torn down completely afterwards.

Why: each guest (a systemd-nspawn container with its own network namespace) gets a veth on
this bridge and a static address in its subnet, so tests reach it at its own address, the
way a deployer reaches an EC2 instance. Guests reach the package mirrors through a
masquerade rule, as an instance in a public subnet would.

What is changed on the host, and undone on exit (also on exceptions):
  * a bridge interface (default ``lbr0``) with the gateway address,
  * ``net.ipv4.ip_forward`` (set to 1 while any localboot bridge is up; the value it had
    before the first one came up is restored when the last one goes),
  * an nft table of its own (``ip localboot_<bridge>``): teardown deletes the whole table
    and touches no other rule of the host.

A lock file per bridge name keeps two processes from sharing (and tearing down) the same
bridge; under that lock, a bridge or table of the same name is a leftover of a crashed run
and is removed first. The subnet must not overlap any route the host already has.

Several bridges may come and go at the same moment (test runs side by side, pytest-xdist's
workers each with a bridge of its own): what they share on the host — ip_forward, the routes
a new subnet is checked against, the guests' machine-name suffixes — is read and changed only
under one host-wide lock (:func:`host_lock`), so each sees the others' bridges as they are.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path

from ._util import FileLock, run

IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
STATE_DIR = Path("/run/localboot")
#: Held while a bridge comes up or goes (see the module's doc): a few ``ip`` and ``nft`` commands, so a short wait.
HOST_LOCK = STATE_DIR / "host.lock"
HOST_LOCK_WAIT_S = 120
#: ip_forward as it was before the first localboot bridge came up; removed when the last one goes.
ORIGINAL_IP_FORWARD = STATE_DIR / "ip_forward.original"


class BridgeNetwork:
    """A live bridge: its gateway address, subnet, and an allocator for guest addresses."""

    def __init__(self, name: str, interface: ipaddress.IPv4Interface) -> None:
        self.name = name
        self.interface = interface
        self._lock = threading.Lock()
        self._hosts = (h for h in interface.network.hosts() if h != interface.ip)

    @property
    def gateway(self) -> str:
        """The bridge's own address: the guests' default gateway."""
        return str(self.interface.ip)

    @property
    def network(self) -> ipaddress.IPv4Network:
        return self.interface.network

    @property
    def prefixlen(self) -> int:
        return self.interface.network.prefixlen

    @property
    def nft_table(self) -> str:
        return nft_table_name(self.name)

    def allocate(self) -> str:
        """A fresh guest address in the subnet (never the gateway, never reused)."""
        with self._lock:
            try:
                return str(next(self._hosts))
            except StopIteration:
                raise RuntimeError(f"no free address left in {self.network}") from None


def nft_table_name(bridge: str) -> str:
    """The name of the nft table (family ``ip``) that belongs to ``bridge``."""
    return "localboot_" + re.sub(r"[^A-Za-z0-9_]", "_", bridge)


def _validate_name(name: str) -> None:
    # Linux interface names are at most 15 bytes.
    if not re.fullmatch(r"[a-zA-Z][a-zA-Z0-9_-]{0,14}", name):
        raise ValueError(f"not a usable bridge name: {name!r}")


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def nft_table_exists(table: str) -> bool:
    proc = run(["nft", "list", "table", "ip", table], check=False, timeout=30)
    return proc.returncode == 0


def _check_subnet_free(network: ipaddress.IPv4Network, bridge: str) -> None:
    """Refuse a subnet that overlaps a route the host already uses (except our own bridge)."""
    routes = json.loads(run(["ip", "-j", "-4", "route", "show", "table", "all"]).stdout or b"[]")
    for route in routes:
        dst = route.get("dst", "")
        if dst in ("default", "") or route.get("dev") == bridge:
            continue
        if route.get("type") in ("local", "broadcast", "multicast"):
            continue
        try:
            other = ipaddress.ip_network(dst, strict=False)
        except ValueError:
            continue
        if isinstance(other, ipaddress.IPv4Network) and other.overlaps(network):
            raise RuntimeError(
                f"subnet {network} overlaps the host route {dst} on {route.get('dev')}; pick another cidr"
            )


def _nft_ruleset(table: str, network: ipaddress.IPv4Network) -> str:
    """Masquerade traffic leaving the subnet; nothing else."""
    return (
        f"table ip {table} {{\n"
        f"  chain postrouting {{\n"
        f"    type nat hook postrouting priority srcnat; policy accept;\n"
        f"    ip saddr {network} ip daddr != {network} masquerade\n"
        f"  }}\n"
        f"}}\n"
    )


#: Set as the bridge's interface alias, so that only bridges made here are ever deleted.
BRIDGE_ALIAS = "localboot"


def _is_our_bridge(name: str) -> bool:
    sysfs = Path("/sys/class/net", name)
    try:
        alias = (sysfs / "ifalias").read_text().strip()
    except OSError:
        return False
    return (sysfs / "bridge").is_dir() and alias == BRIDGE_ALIAS


def _remove_leftovers(name: str, table: str) -> None:
    """Delete the nft table and the bridge of that name (ours only: see BRIDGE_ALIAS)."""
    if nft_table_exists(table):
        run(["nft", "delete", "table", "ip", table])
    if link_exists(name):
        if not _is_our_bridge(name):
            raise RuntimeError(f"interface {name} exists and was not made by localboot")
        run(["ip", "link", "delete", name, "type", "bridge"])


@contextlib.contextmanager
def host_lock(timeout: float = HOST_LOCK_WAIT_S) -> Iterator[None]:
    """The host-wide lock under which bridges come up and go; a test that checks the host state they share takes
    it too, so that another process's bridge cannot change that state between two of its reads."""
    with FileLock(HOST_LOCK, timeout):
        yield


def localboot_bridges() -> list[str]:
    """The bridges localboot made that exist now (any run's, crashed ones' included)."""
    return sorted(link.name for link in Path("/sys/class/net").iterdir() if _is_our_bridge(link.name))


def ip_forward_to_restore() -> str:
    """The ip_forward value the last bridge to go puts back: the one saved when the first came up (a crashed
    run leaves it behind, and it is still the host's own), or, with no bridge up, the current one. Read it under
    :func:`host_lock`.

    Bridges made before the host-wide value existed saved theirs per bridge (``net-NAME.ip_forward``): the
    same value, used when it is the only one saved.
    """
    for saved in (ORIGINAL_IP_FORWARD, *sorted(STATE_DIR.glob("net-*.ip_forward"))):
        with contextlib.suppress(OSError):
            value = saved.read_text().strip()
            if value in ("0", "1"):
                return value
    return IP_FORWARD.read_text().strip()


def _forwarding_on() -> None:
    """A bridge comes up (under host_lock): keep the host's own value once, then forward."""
    if not ORIGINAL_IP_FORWARD.is_file():
        ORIGINAL_IP_FORWARD.write_text(ip_forward_to_restore() + "\n")
    IP_FORWARD.write_text("1\n")


def _forwarding_off_if_last() -> None:
    """A bridge went (under host_lock): the last one puts the host's own value back. A bridge of another run, a
    crashed one's included, keeps forwarding on: its guests may still need it."""
    if localboot_bridges() or not ORIGINAL_IP_FORWARD.is_file():
        return
    IP_FORWARD.write_text(ip_forward_to_restore() + "\n")
    ORIGINAL_IP_FORWARD.unlink()


def _check_suffix_free(name: str) -> None:
    """Guests off lbr0 are named ``GUEST-<the bridge's last 3 characters>`` (localboot.guest: nspawn names the
    host-side veth after the machine): two bridges ending alike would give two guests one interface name."""
    for other in localboot_bridges():
        if other != name and other[-3:] == name[-3:]:
            raise RuntimeError(f"bridge {name} ends like the live bridge {other}: guests' names would collide")


def _bring_up(name: str, interface: ipaddress.IPv4Interface, table: str) -> None:
    """Under host_lock: the bridge, its address, forwarding and masquerade; undone whole if a step fails."""
    _remove_leftovers(name, table)
    _check_subnet_free(interface.network, name)
    _check_suffix_free(name)
    try:
        _forwarding_on()
        # An address of its own, set: a bridge left to choose takes the lowest of its ports' and changes it as
        # guests come and go, and every guest's gateway entry then points at an address nobody answers until its
        # ARP entry expires (tens of seconds of lost packets: a load balancer's 502s, a database connect timing out).
        run(["ip", "link", "add", name, "address", bridge_mac(name), "type", "bridge"])
        run(["ip", "link", "set", name, "alias", BRIDGE_ALIAS])
        run(["ip", "addr", "add", str(interface), "dev", name])
        run(["ip", "link", "set", name, "up"])
        run(["nft", "-f", "-"], input=_nft_ruleset(table, interface.network).encode())
    except BaseException:
        _tear_down(name, table)
        raise


def _tear_down(name: str, table: str) -> None:
    """Under host_lock: this bridge and its table gone, then ip_forward put back if no bridge is left."""
    try:
        _remove_leftovers(name, table)
    finally:
        _forwarding_off_if_last()


def bridge_mac(name: str) -> str:
    """The bridge's own MAC address: locally administered, unicast, the same for a name on every run."""
    digest = hashlib.sha256(f"localboot bridge {name}".encode()).digest()
    return ":".join(f"{byte:02x}" for byte in (0x02, *digest[:5]))


@contextlib.contextmanager
def bridge_network(name: str = "lbr0", cidr: str = "10.77.0.1/24", lock_wait: float = 5) -> Iterator[BridgeNetwork]:
    """Create the bridge ``name`` with gateway address ``cidr``, forwarding and masquerade;
    yield a :class:`BridgeNetwork`; undo everything on exit."""
    _validate_name(name)
    interface = ipaddress.IPv4Interface(cidr)
    table = nft_table_name(name)
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with FileLock(STATE_DIR / f"net-{name}.lock", timeout=lock_wait):
        with host_lock():
            _bring_up(name, interface, table)
        try:
            yield BridgeNetwork(name, interface)
        finally:
            with host_lock():
                _tear_down(name, table)
