"""Names and paths of one cluster's real node: everything it writes lives under ``<state dir>/node``."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

NODE_NAME = "localkube"  # tests and wait_ready look for nodes/localkube
NODE_IP = "10.250.0.2"  # only inside the node's own network namespace, so every cluster can use it
NODE_PREFIX = 24
POD_CIDR = "10.244.0.0/24"
CLUSTER_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"
DNS_IP = "10.96.0.10"
KUBELET_PORT = 10250
SANDBOX_IMAGE = "registry.k8s.io/pause:3.10"


def cluster_prefix(cluster_id: str) -> str:
    """The cluster's name in host-wide places (network namespace, cgroup): `ip netns exec <prefix>-node` enters it."""
    return "lk" + hashlib.sha256(cluster_id.encode()).hexdigest()[:6]


@dataclass(frozen=True)
class NodeLayout:
    state_dir: Path  # the cluster's state directory

    @property
    def prefix(self) -> str:
        return cluster_prefix(str(self.state_dir))

    @property
    def netns(self) -> str:
        return f"{self.prefix}-node"

    @property
    def cgroup(self) -> str:
        """Top-level cgroup (every v1 controller) holding the node's processes and, as cgroupRoot, its pods."""
        return self.prefix

    @property
    def root(self) -> Path:
        return self.state_dir / "node"

    @property
    def etc(self) -> Path:
        return self.root / "etc"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def containerd_socket(self) -> Path:
        """In the node's private /run/containerd: a socket path has at most 104 bytes, a state dir may be longer."""
        return Path("/run/containerd/containerd.sock")

    @property
    def containerd_root(self) -> Path:
        return self.root / "containerd" / "root"

    @property
    def kubelet_dir(self) -> Path:
        """The kubelet's data, bind-mounted at /var/lib/kubelet in the node's mount namespace (short socket paths)."""
        return self.root / "kubelet"

    def nsenter(self) -> list[str]:
        """Prefix that runs a command in the node's network namespace, host mounts and cgroups kept visible
        (not `ip netns exec`: it mounts a fresh /sys, which hides the cgroup hierarchies)."""
        return ["nsenter", f"--net=/run/netns/{self.netns}"]
