"""The node's network namespace: loopback and the node IP, nothing in the host's namespace."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .layout import NODE_IP, NODE_PREFIX, SERVICE_CIDR, NodeLayout


class NodeNetworkError(RuntimeError):
    pass


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise NodeNetworkError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def exists(layout: NodeLayout) -> bool:
    return Path(f"/run/netns/{layout.netns}").exists()


def create(layout: NodeLayout) -> None:
    if exists(layout):
        return
    ns = layout.netns
    _ip("netns", "add", ns)
    _ip("-n", ns, "link", "set", "lo", "up")
    # This kernel has no dummy device: a veth pair with both ends inside carries the node IP.
    _ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p")
    _ip("-n", ns, "link", "set", "eth0p", "up")
    _ip("-n", ns, "addr", "add", f"{NODE_IP}/{NODE_PREFIX}", "dev", "eth0")
    _ip("-n", ns, "link", "set", "eth0", "up")
    # No default route (nothing leaves the namespace), but a connect to a ClusterIP needs a route before
    # kube-proxy's OUTPUT rules can rewrite it to a pod.
    _ip("-n", ns, "route", "add", SERVICE_CIDR, "dev", "eth0")
    # ip_forward is per network namespace: pods route through the node here, the host's value is untouched.
    subprocess.run([*layout.nsenter(), "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"], check=True)


def pids_inside(layout: NodeLayout) -> list[int]:
    if not exists(layout):
        return []
    return [int(p) for p in _ip("netns", "pids", layout.netns, check=False).stdout.split()]


def delete(layout: NodeLayout) -> None:
    """The namespace and with it the node IP, pod veths and every iptables rule kube-proxy wrote."""
    if exists(layout):
        _ip("netns", "del", layout.netns, check=False)
