"""The real node (LOCALKUBE_NODE=kubelet): a node of our own cluster runs a pod, and `down` leaves nothing behind.

Starts its own cluster, so it runs beside the session's; skipped unless the real node is selected (only then does
`make tools` build kubelet, containerd and CoreDNS).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from localkube.control_plane import ControlPlane, free_port
from localkube.kubelet_node import cgroups
from localkube.kubelet_node.images import admin_tools_image
from localkube.kubelet_node.node import RealNode
from localkube.paths import state_root
from localkube.toolchain import path_of, real_node_selected

from conftest import wait_for

pytestmark = [pytest.mark.cluster,
              pytest.mark.skipif(not real_node_selected(), reason="the real node is not selected (LOCALKUBE_NODE)")]

# What kubelet (protectKernelDefaults) and kube-proxy would set host-wide if let: the node must leave them alone.
HOST_SYSCTLS = ("vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops", "net/ipv4/ip_forward",
                "net/ipv4/conf/all/route_localnet", "net/netfilter/nf_conntrack_max")
HARD_CODED_HOST_DIRS = ("/var/lib/kubelet", "/var/lib/cni", "/var/log/containers", "/run/containerd")


def _host_kube_chains() -> set[str]:
    """The host namespace's iptables chains kube-proxy would make (it must make none there)."""
    saved = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    return set(re.findall(r"^:(KUBE-\S+)", saved, re.M))


def _host_sysctls() -> dict[str, str]:
    return {k: Path(f"/proc/sys/{k}").read_text().strip() for k in HOST_SYSCTLS if Path(f"/proc/sys/{k}").exists()}


def _processes_naming(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and text in (entry / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_a_real_node_runs_a_pod_and_down_leaves_no_process_mount_netns_cgroup_or_rule_and_no_sysctl_changed():
    host_dirs_before = {d for d in HARD_CODED_HOST_DIRS if os.path.exists(d)}
    chains_before = _host_kube_chains()
    sysctls_before = _host_sysctls()
    cluster = ControlPlane(state_root() / f"pytest-realnode-{uuid.uuid4().hex[:6]}",
                           {30800: ("127.0.0.1", free_port())})
    node = RealNode(cluster.state_dir)
    kubectl = [str(path_of("kubectl")), f"--kubeconfig={cluster.kubeconfig}"]
    try:
        cluster.up(timeout=180)
        wide = subprocess.run([*kubectl, "get", "node", "-o", "wide"], capture_output=True, text=True,
                              check=True).stdout
        assert re.search(r"\blocalkube\s+Ready\b.*containerd://2\.4\.", wide), wide
        subprocess.run([*kubectl, "run", "sleeper", f"--image={admin_tools_image().reference}", "--command", "--",
                        "sleep", "3600"], check=True, capture_output=True)
        wait_for(lambda: subprocess.run([*kubectl, "get", "pod", "sleeper", "-o", "jsonpath={.status.phase}"],
                                        capture_output=True, text=True).stdout == "Running", 90,
                 what="the pod to run")
        exec_out = subprocess.run([*kubectl, "exec", "sleeper", "--", "cat", "/etc/resolv.conf"],
                                  capture_output=True, text=True, check=True).stdout
        assert "nameserver 10.96.0.10" in exec_out  # the kubelet's clusterDNS: CoreDNS's Service
        pids = cgroups.pids(node.layout.cgroup) | set(cluster.running().values())
        assert len(pids) > 6  # containerd, kubelet, kube-proxy, shims, pause, the pod... and the control plane
        assert _host_kube_chains() == chains_before, "kube-proxy wrote rules in the host's namespace"
        assert _host_sysctls() == sysctls_before
    finally:
        killed = cluster.down()
    assert killed == [], f"ignored SIGTERM: {killed}"
    assert cluster.running() == {}
    assert not [p for p in pids if os.path.exists(f"/proc/{p}") and
                Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]
    assert _processes_naming(str(cluster.state_dir)) == []
    assert node.leftovers() == []  # processes in its cgroups, the cgroups, the netns, mounts naming it
    assert not any(str(cluster.state_dir) in line for line in Path("/proc/1/mounts").read_text().splitlines())
    assert _host_kube_chains() == chains_before
    assert {d for d in HARD_CODED_HOST_DIRS if os.path.exists(d)} == host_dirs_before
    shutil.rmtree(cluster.state_dir)
