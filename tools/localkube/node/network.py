"""Pod networking without a container runtime: one private "node" network namespace per cluster.

The node namespace holds a bridge (the pods' gateway) and the Service virtual IPs; each pod
gets its own namespace with a veth on that bridge. Nothing is added to the host's own
namespace, and nothing is routed out of the node namespace.
"""

from __future__ import annotations

import ctypes
import hashlib
import ipaddress
import json
import os
import subprocess
import threading
from pathlib import Path

POD_CIDR = ipaddress.ip_network("10.244.0.0/24")
GATEWAY = str(POD_CIDR.network_address + 1)
BRIDGE = "lkbr0"
_CLONE_NEWNET = 0x40000000


class NetworkError(RuntimeError):
    pass


def _ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    cmd = ["ip", *(("-n", netns) if netns else ()), *args]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise NetworkError(f"{' '.join(cmd)}: {result.stderr.strip()}")
    return result


def namespace_exists(name: str) -> bool:
    return Path(f"/run/netns/{name}").exists()


def enter(namespace: str) -> None:
    """Move the calling thread (only) into a network namespace."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    fd = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
    try:
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            raise NetworkError(f"setns({namespace}): {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(fd)


class NodeNetwork:
    """The node namespace of one cluster, and the pod namespaces attached to it."""

    def __init__(self, cluster_id: str, state_dir: Path) -> None:
        self.prefix = "lk" + hashlib.sha256(cluster_id.encode()).hexdigest()[:6]
        self.node_ns = f"{self.prefix}-node"
        self._ipam_path = state_dir / "ipam.json"
        self._lock = threading.Lock()
        self._allocated: dict[str, str] = (json.loads(self._ipam_path.read_text())
                                           if self._ipam_path.exists() else {})

    def setup(self) -> None:
        if namespace_exists(self.node_ns):
            return
        _ip("netns", "add", self.node_ns)
        _ip("link", "set", "lo", "up", netns=self.node_ns)
        _ip("link", "add", BRIDGE, "type", "bridge", netns=self.node_ns)
        _ip("addr", "add", f"{GATEWAY}/{POD_CIDR.prefixlen}", "dev", BRIDGE, netns=self.node_ns)
        _ip("link", "set", BRIDGE, "up", netns=self.node_ns)

    def teardown(self) -> None:
        for namespace in self.pod_namespaces():
            _ip("netns", "del", namespace, check=False)
        _ip("netns", "del", self.node_ns, check=False)
        self._ipam_path.unlink(missing_ok=True)

    def pod_namespaces(self) -> list[str]:
        result = _ip("netns", "list", check=False)
        names = [line.split()[0] for line in result.stdout.splitlines() if line.strip()]
        return [n for n in names if n.startswith(self.prefix + "-p")]

    def pod_namespace(self, pod_uid: str) -> str:
        return f"{self.prefix}-p{pod_uid.replace('-', '')[:12]}"

    def add_virtual_ip(self, address: str) -> None:
        """Service IPs live on the node namespace's loopback, so pods reach them via the gateway."""
        _ip("addr", "replace", f"{address}/32", "dev", "lo", netns=self.node_ns)

    def remove_virtual_ip(self, address: str) -> None:
        _ip("addr", "del", f"{address}/32", "dev", "lo", netns=self.node_ns, check=False)

    def attach_pod(self, pod_uid: str) -> str:
        """Create the pod's namespace and veth; return its IP (stable for the pod's lifetime)."""
        namespace = self.pod_namespace(pod_uid)
        address = self._allocate(pod_uid)
        if namespace_exists(namespace):
            return address
        short = pod_uid.replace("-", "")[:8]
        node_side, pod_side = f"lkh{short}", f"lkp{short}"
        _ip("netns", "add", namespace)
        try:
            _ip("link", "add", node_side, "type", "veth", "peer", "name", pod_side)
            _ip("link", "set", node_side, "netns", self.node_ns)
            _ip("link", "set", pod_side, "netns", namespace)
            _ip("link", "set", node_side, "master", BRIDGE, netns=self.node_ns)
            _ip("link", "set", node_side, "up", netns=self.node_ns)
            _ip("link", "set", pod_side, "name", "eth0", netns=namespace)
            _ip("addr", "add", f"{address}/{POD_CIDR.prefixlen}", "dev", "eth0", netns=namespace)
            _ip("link", "set", "eth0", "up", netns=namespace)
            _ip("link", "set", "lo", "up", netns=namespace)
            _ip("route", "add", "default", "via", GATEWAY, netns=namespace)
        except NetworkError:
            _ip("netns", "del", namespace, check=False)
            _ip("link", "del", pod_side, check=False)
            raise
        return address

    def detach_pod(self, pod_uid: str) -> None:
        _ip("netns", "del", self.pod_namespace(pod_uid), check=False)  # the veth pair goes with it
        with self._lock:
            if self._allocated.pop(pod_uid, None):
                self._save()

    def _allocate(self, pod_uid: str) -> str:
        with self._lock:
            if pod_uid in self._allocated:
                return self._allocated[pod_uid]
            used = set(self._allocated.values()) | {GATEWAY}
            for host in POD_CIDR.hosts():
                if str(host) not in used:
                    self._allocated[pod_uid] = str(host)
                    self._save()
                    return str(host)
        raise NetworkError(f"pod network {POD_CIDR} is full")

    def _save(self) -> None:
        self._ipam_path.write_text(json.dumps(self._allocated))


def pids_in(namespace: str) -> list[int]:
    result = _ip("netns", "pids", namespace, check=False)
    return [int(p) for p in result.stdout.split()]
