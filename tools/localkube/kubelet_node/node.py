"""One real node of a local cluster: its namespace, cgroups, certificates and configs, and its processes."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .. import pki, processes
from ..paths import cache_dir
from ..toolchain import path_of
from . import cgroups, configs, image_seed, images, network
from .layout import NODE_IP, NODE_NAME, NodeLayout

PUBLISHER = "node-publisher"  # host ports -> the node's namespace (the apiserver, kind's extraPortMappings)
PROVISIONER = "volume-provisioner"  # PersistentVolumes for claims of the default StorageClass, as kind's
NODE = "kubelet-node"  # the launcher of containerd, kubelet and kube-proxy inside the node's namespaces
# What containerd, the kubelet and the CNI plugins keep of one run (volumes/ is PersistentVolume data: it stays).
RUNTIME_DIRS = ("kubelet", "containerd", "runc", "cni-ipam", "overlays", "pod-logs", "pids")


def _load_ca(pki_dir: Path, stem: str) -> pki.KeyPair:
    return pki.KeyPair(x509.load_pem_x509_certificate((pki_dir / f"{stem}.crt").read_bytes()),
                       serialization.load_pem_private_key((pki_dir / f"{stem}.key").read_bytes(), None))


class RealNode:
    def __init__(self, state_dir: Path) -> None:
        self.layout = NodeLayout(state_dir)

    # -- before the control plane starts ---------------------------------------------------------------

    def prepare(self) -> None:
        """The namespace the whole cluster runs in (like kind's node container), and the node's cgroup root."""
        self._remove_runtime_state()  # a node starts from nothing, as a new kind node does
        self.layout.etc.mkdir(parents=True, exist_ok=True)
        self.layout.pki.mkdir(parents=True, exist_ok=True)
        network.create(self.layout)
        cgroups.create(self.layout.cgroup, "node")

    def in_namespace(self, argv: list[str]) -> list[str]:
        return [*self.layout.nsenter(), *argv]

    def start_publisher(self, forwards: dict[tuple[str, int], tuple[str, int]]) -> None:
        processes.start(PUBLISHER, [
            sys.executable, "-m", "localkube.kubelet_node.publisher", f"--state-dir={self.layout.state_dir}",
            f"--netns={self.layout.netns}",
            *(f"--forward={h}:{hp}={n}:{np}" for (h, hp), (n, np) in sorted(forwards.items()))],
            self.layout.state_dir)

    @staticmethod
    def apiserver_args(pki_dir: Path) -> list[str]:
        """What a real node needs of the apiserver: reach the kubelet, Node authorization, a real endpoint."""
        return [
            "--bind-address=0.0.0.0", f"--advertise-address={NODE_IP}",  # inside the node's namespace only
            "--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
            f"--kubelet-client-certificate={pki_dir / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki_dir / 'apiserver-kubelet-client.key'}",
            f"--kubelet-certificate-authority={pki_dir / 'serving-ca.crt'}",
        ]

    # -- once the apiserver serves ----------------------------------------------------------------------

    def write_node_files(self, pki_dir: Path, apiserver_port: int, write_kubeconfig, sync_frequency: str) -> None:
        serving_ca, client_ca = _load_ca(pki_dir, "serving-ca"), _load_ca(pki_dir, "client-ca")
        node_pki = self.layout.pki
        pki.issue(serving_ca, NODE_NAME, server=True, ip_addresses=(NODE_IP,),
                  dns_names=(NODE_NAME,)).write(node_pki, "kubelet-serving")
        server = f"https://127.0.0.1:{apiserver_port}"
        for stem, common_name, groups in (("kubelet", f"system:node:{NODE_NAME}", ("system:nodes",)),
                                          ("kube-proxy", "system:kube-proxy", ())):
            cert, key = pki.issue(client_ca, common_name, organizations=groups, client=True).write(node_pki, stem)
            write_kubeconfig(self.layout.etc / f"{stem}.kubeconfig", "localkube", server,
                             pki_dir / "serving-ca.crt", cert, key)
        files = {
            "containerd.toml": configs.containerd_toml(self.layout),
            "cni/10-localkube.conflist": configs.cni_conflist(self.layout),
            "kubelet.yaml": configs.kubelet_yaml(self.layout, pki_dir / "client-ca.crt", sync_frequency),
            "kube-proxy.yaml": configs.kube_proxy_yaml(self.layout),
            "resolv.conf": configs.resolv_conf(),
        }
        for name, text in files.items():
            (self.layout.etc / name).parent.mkdir(parents=True, exist_ok=True)
            (self.layout.etc / name).write_text(text)

    @staticmethod
    def write_apiserver_kubelet_client(pki_dir: Path) -> None:
        pki.issue(_load_ca(pki_dir, "client-ca"), "kube-apiserver-kubelet-client", organizations=("system:masters",),
                  client=True).write(pki_dir, "apiserver-kubelet-client")

    def start(self) -> None:
        processes.start(PROVISIONER, [sys.executable, "-m", "localkube.kubelet_node.provisioner",
                                      f"--state-dir={self.layout.state_dir}"], self.layout.state_dir)
        binaries = {b: str(path_of(b)) for b in ("containerd", "ctr", "kubelet", "kube-proxy")}
        path_of("containerd-shim-runc-v2")
        archives = [str(a) for a in images.all_archives()]
        processes.start(NODE, [
            *self.layout.nsenter(), "unshare", "--mount", "--propagation", "private", "--fork",
            sys.executable, "-m", "localkube.kubelet_node.inside", f"--state-dir={self.layout.state_dir}",
            f"--binaries={json.dumps(binaries)}", f"--images={json.dumps(archives)}",
            f"--image-seed={image_seed.seed_dir(cache_dir(), archives, binaries['containerd'])}"], self.layout.state_dir)

    def container_pids(self, container_id: str) -> set[int]:
        """The host PIDs of one container (containerd's ID, without the containerd:// of a pod status)."""
        return cgroups.container_pids(self.layout.cgroup, container_id)

    def pod_pids(self) -> set[int]:
        """Every process of every pod (the kubelet puts them under <cgroupRoot>/kubepods)."""
        return cgroups.pids(f"{self.layout.cgroup}/kubepods")

    # -- down -------------------------------------------------------------------------------------------

    def kill_processes(self) -> int:
        """Pods and shims outlive kubelet and containerd (as a kind node's do until its container goes): SIGKILL
        all that is left in the node's cgroups and namespace, before the apiserver stops (their watches would keep
        it from stopping). Returns how many there were."""
        killed = set(cgroups.kill_all(self.layout.cgroup))
        for pid in network.pids_inside(self.layout):
            if not _is_control_plane(pid, self.layout.state_dir):
                try:
                    os.kill(pid, 9)
                    killed.add(pid)
                except ProcessLookupError:
                    pass
        return len(killed)

    def remove(self) -> None:
        """After every process is gone: the cgroups, then the namespace (with its iptables rules and veths)."""
        cgroups.remove(self.layout.cgroup)
        network.delete(self.layout)
        self._remove_runtime_state()  # gigabytes of image content the next up would throw away anyway

    def _remove_runtime_state(self) -> None:
        for directory in RUNTIME_DIRS:
            _rmtree(self.layout.root / directory)

    def leftovers(self) -> list[str]:
        """What down should have removed (empty when clean): processes, cgroups, the namespace, mounts."""
        found = [f"process {p}" for p in sorted(cgroups.pids(self.layout.cgroup))]
        found += [str(p) for p in cgroups._existing(self.layout.cgroup)]
        if network.exists(self.layout):
            found.append(f"netns {self.layout.netns}")
        state = str(self.layout.state_dir)
        found += [f"mount {line.split()[1]}" for line in Path("/proc/self/mounts").read_text().splitlines()
                  if state in line.split()[1] or self.layout.netns in line.split()[1]]
        return found


def _is_control_plane(pid: int, state_dir: Path) -> bool:
    """etcd and the control plane also run in the node's namespace; processes.stop stops those in order."""
    return pid in processes.running(state_dir).values()


def _rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
