"""The local cluster's real node: a second cluster runs beside the session's on its own ports, namespace and cgroups,
its node runs a pod, and `down` leaves nothing behind (no process, mount, netns, cgroup, iptables rule or sysctl)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.request
import uuid
from pathlib import Path

import pytest

from localkube.control_plane import COMPONENTS, ControlPlane, free_port
from localkube.guard import assert_local_test_cluster
from localkube.kubelet_node import cgroups
from localkube.kubelet_node.images import admin_tools_image
from localkube.kubelet_node.node import RealNode
from localkube.paths import state_root
from localkube.toolchain import path_of

from conftest import wait_for

pytestmark = pytest.mark.cluster

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


def _followed_log_lines(kubectl: list[str], pod: str, count: int) -> list[str]:
    """The first lines `kubectl logs -f` streams from the kubelet (the pod keeps writing)."""
    follow = subprocess.Popen([*kubectl, "logs", "-f", pod], stdout=subprocess.PIPE, text=True)
    try:
        return [follow.stdout.readline().strip() for _ in range(count)]
    finally:
        follow.kill()
        follow.wait()


def _port_forwarded_get(kubectl: list[str], namespace: str, target: str, port: int, path: str) -> str:
    """GET through `kubectl port-forward` (apiserver -> kubelet -> the pod's network namespace) on a free port."""
    forward = subprocess.Popen([*kubectl, "port-forward", "-n", namespace, target, f":{port}"],
                               stdout=subprocess.PIPE, text=True)
    try:
        announced = forward.stdout.readline()  # Forwarding from 127.0.0.1:PORT -> 8080
        local = re.search(r"127\.0\.0\.1:(\d+)", announced)
        assert local, announced
        with urllib.request.urlopen(f"http://127.0.0.1:{local[1]}{path}", timeout=10) as response:
            return response.read().decode().strip()
    finally:
        forward.kill()
        forward.wait()


def test_a_second_cluster_runs_a_pod_beside_the_first_and_down_leaves_nothing_behind(local_cluster, kubectl):
    host_dirs_before = {d for d in HARD_CODED_HOST_DIRS if os.path.exists(d)}
    chains_before = _host_kube_chains()
    sysctls_before = _host_sysctls()
    cluster = ControlPlane(state_root() / f"pytest-realnode-{uuid.uuid4().hex[:6]}",
                           {30800: ("127.0.0.1", free_port())})
    node = RealNode(cluster.state_dir)
    second = [str(path_of("kubectl")), f"--kubeconfig={cluster.kubeconfig}"]
    try:
        cluster.up(timeout=180)
        ports = [json.loads((c.state_dir / "ports.json").read_text()) for c in (local_cluster, cluster)]
        assert not set(ports[0].values()) & set(ports[1].values())
        assert assert_local_test_cluster(cluster.kubeconfig, cluster.pki_dir / "serving-ca.crt") == cluster.context
        assert set(cluster.running()) == set(COMPONENTS)
        assert cluster.netns != local_cluster.netns
        wide = subprocess.run([*second, "get", "node", "-o", "wide"], capture_output=True, text=True,
                              check=True).stdout
        assert re.search(r"\blocalkube\s+Ready\b.*containerd://2\.4\.", wide), wide
        subprocess.run([*second, "run", "sleeper", f"--image={admin_tools_image().reference}", "--command", "--",
                        "sh", "-c", "echo started; while true; do echo tick; sleep 1; done"],
                       check=True, capture_output=True)
        wait_for(lambda: subprocess.run([*second, "get", "pod", "sleeper", "-o", "jsonpath={.status.phase}"],
                                        capture_output=True, text=True).stdout == "Running", 90,
                 what="the pod to run")
        exec_out = subprocess.run([*second, "exec", "sleeper", "--", "cat", "/etc/resolv.conf"],
                                  capture_output=True, text=True, check=True).stdout
        assert "nameserver 10.96.0.10" in exec_out  # the kubelet's clusterDNS: CoreDNS's Service
        assert _followed_log_lines(second, "sleeper", 3) == ["started", "tick", "tick"]  # kubectl logs -f
        assert _port_forwarded_get(second, "kube-system", "deploy/coredns", 8080, "/health") == "OK"
        container = subprocess.run([*second, "get", "pod", "sleeper", "-o",
                                    "jsonpath={.status.containerStatuses[0].containerID}"],
                                   capture_output=True, text=True, check=True).stdout
        pod_pids = cluster.container_processes(container)
        assert pod_pids and set(pod_pids) <= set(cluster.pod_processes())
        assert not set(pod_pids) & set(local_cluster.pod_processes())  # each node sees only its own pods
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
    assert kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"  # the first cluster is untouched
    shutil.rmtree(cluster.state_dir)
