"""Network namespaces for sandbox pods: one bridge per sandbox, one veth per pod.

Layout for sandbox index `i` (0..63):
    pod CIDR     10.244.(4i).0/22, bridge `dsb<i>` holds the first address;
    runner pods  the lower /23 (addresses handed out by the pod runner);
    kwok pods    the upper /23 (kwok's own allocator; nothing listens there).

Nothing is routed off the bridge: no NAT, no forwarding rules, and each pod's
default route points at an address nobody holds (`Network.void`). Pods reach each other and
the host's bridge address only.
"""

from __future__ import annotations

import fcntl
import ipaddress
import logging
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

LOCK_FILE = Path("/run/lock/dask-operator-sandbox.lock")
OWNER_DIR = Path("/run/dask-operator-sandbox")
MAX_SANDBOXES = 64
NETNS_ETC = Path("/etc/netns")


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def _owner_alive(pidfile: Path) -> bool:
    try:
        os.kill(int(pidfile.read_text()), 0)
    except (OSError, ValueError):
        return False
    return True


def _link_exists(name: str) -> bool:
    return ip("link", "show", name, check=False).returncode == 0


@dataclass(frozen=True)
class Network:
    index: int

    @classmethod
    def from_cidr(cls, cidr: str) -> "Network":
        """The network whose pod CIDR is `cidr` (as `SandboxInfo.pod_cidr` records it)."""
        return cls(ipaddress.IPv4Network(cidr).network_address.packed[2] // 4)

    @property
    def bridge(self) -> str:
        return f"dsb{self.index}"

    @property
    def cidr(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"10.244.{4 * self.index}.0/22")

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        return self.cidr.network_address + 1

    @property
    def void(self) -> ipaddress.IPv4Address:
        """A pod-CIDR address never assigned: the pods' dead-end default route."""
        return self.runner_range.broadcast_address - 1

    @property
    def runner_range(self) -> ipaddress.IPv4Network:
        return list(self.cidr.subnets(new_prefix=23))[0]

    @property
    def kwok_range(self) -> ipaddress.IPv4Network:
        return list(self.cidr.subnets(new_prefix=23))[1]

    def netns_name(self, pod_uid: str) -> str:
        return f"dsb{self.index}-{pod_uid[:13]}"

    def veth_name(self, slot: int) -> str:
        return f"dsb{self.index}v{slot}"  # at most 15 characters


def create_network() -> Network:
    """Claim a free sandbox index and bring up its bridge."""
    LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    with LOCK_FILE.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for index in range(MAX_SANDBOXES):
            net = Network(index)
            owner = OWNER_DIR / f"{net.bridge}.pid"
            if _link_exists(net.bridge):
                if _owner_alive(owner):
                    continue
                log.info("reclaiming %s from a sandbox that died", net.bridge)
                delete_network(net)
            ip("link", "add", net.bridge, "type", "bridge")
            ip("addr", "add", f"{net.gateway}/{net.cidr.prefixlen}", "dev", net.bridge)
            ip("link", "set", net.bridge, "up")
            OWNER_DIR.mkdir(parents=True, exist_ok=True)
            owner.write_text(str(os.getpid()))
            log.info("bridge %s up on %s", net.bridge, net.cidr)
            return net
    raise RuntimeError(f"all {MAX_SANDBOXES} sandbox networks are in use")


def delete_network(net: Network) -> None:
    """Kill what still runs in the sandbox's namespaces, then remove them and the bridge."""
    namespaces = list_namespaces(net)
    for ns in namespaces:
        for pid in ip("netns", "pids", ns, check=False).stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
    for ns in namespaces:
        delete_pod_namespace(ns)
    ip("link", "del", net.bridge, check=False)
    (OWNER_DIR / f"{net.bridge}.pid").unlink(missing_ok=True)


def list_namespaces(net: Network) -> list[str]:
    out = ip("netns", "list", check=False).stdout
    prefix = f"dsb{net.index}-"
    return [line.split()[0] for line in out.splitlines() if line.startswith(prefix)]


def pod_pids(net: Network, pod_uid: str) -> list[int]:
    """The processes running in a pod's network namespace."""
    out = ip("netns", "pids", net.netns_name(pod_uid), check=False).stdout
    return [int(p) for p in out.split()]


def create_pod_namespace(net: Network, name: str, veth: str, address: str) -> None:
    """A namespace with lo and eth0 at `address`, its peer plugged into the bridge."""
    delete_pod_namespace(name)
    # Forget any neighbour entry a former holder of the address left on the host.
    ip("neigh", "flush", "to", address, "dev", net.bridge, check=False)
    ip("netns", "add", name)
    peer = f"{veth}p"
    ip("link", "add", veth, "type", "veth", "peer", "name", peer)
    ip("link", "set", peer, "netns", name)
    ip("link", "set", veth, "master", net.bridge)
    ip("link", "set", veth, "up")
    inside = ("netns", "exec", name, "ip")
    ip(*inside, "link", "set", "lo", "up")
    ip(*inside, "link", "set", peer, "name", "eth0")
    ip(*inside, "addr", "add", f"{address}/{net.cidr.prefixlen}", "dev", "eth0")
    ip(*inside, "link", "set", "eth0", "up")
    # A default route via an address nobody holds: programs that find their
    # own address by routing towards a public IP (Dask does, towards 8.8.8.8)
    # get eth0's address, and anything sent that way dies unanswered at ARP.
    ip(*inside, "route", "add", "default", "via", str(net.void), "dev", "eth0")
    (NETNS_ETC / name).mkdir(parents=True, exist_ok=True)
    (NETNS_ETC / name / "resolv.conf").write_text(RESOLV_CONF)


def set_link(veth: str, up: bool) -> None:
    """Plug a pod's veth into the bridge again, or unplug it (nothing passes, nothing is reset)."""
    ip("link", "set", veth, "up" if up else "down")


def delete_pod_namespace(name: str) -> None:
    # Deleting the namespace destroys eth0 and with it the veth peer on the host.
    ip("netns", "del", name, check=False)
    etc = NETNS_ETC / name
    if etc.exists():
        for f in etc.iterdir():
            f.unlink()
        etc.rmdir()


def write_hosts(name: str, pod_name: str, address: str, entries: dict[str, list[str]]) -> None:
    """Write `/etc/netns/<name>/hosts`, which `ip netns exec` mounts over /etc/hosts.

    Written in place, because the bind mount made by `ip netns exec` pins the
    inode (a rename would leave running processes reading the old file), and
    never empty: the new content overwrites the old from the start, then the
    file is cut to its length, so a lookup at that moment still finds every
    current name (the runner rewrites the file whenever any endpoint changes).
    """
    lines = ["127.0.0.1\tlocalhost", f"{address}\t{pod_name}"]
    for host, addrs in sorted(entries.items()):
        for a in addrs:
            lines.append(f"{a}\t{host}")
    data = ("\n".join(lines) + "\n").encode()
    fd = os.open(NETNS_ETC / name / "hosts", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


# Names not in a pod's hosts file fail at once inside the pod: the pod's own
# loopback has no DNS server, and the machine's resolver is never asked.
RESOLV_CONF = "nameserver 127.0.0.1\noptions attempts:1 timeout:1\n"
