"""Runs inside the node's namespaces and starts containerd, then kubelet and kube-proxy (like a kind node's init).

    nsenter --net=/run/netns/<prefix>-node unshare --mount --propagation private --fork \
        python -m localkube.kubelet_node.inside --state-dir=DIR --apiserver-port=PORT

Every mount below exists in this private mount namespace only and goes when its last process exits.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import cgroups, image_seed
from .configs import KERNEL_DEFAULTS
from .layout import NODE_IP, NODE_NAME, NodeLayout

# Paths kubelet, containerd and the CNI plugins use whatever their configuration says (device-plugin socket,
# CNI cache, container log links, containerd's runtime dir, util-linux's utab).
HARD_CODED_DIRS = ("/var/lib/kubelet", "/var/lib/cni", "/var/log/containers", "/run/containerd")
KUBELET_ROOT = Path("/var/lib/kubelet")  # its --root-dir: the kubelet's sockets there fit a socket path's 104 bytes


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


def make_private_dirs(layout: NodeLayout) -> None:
    """Give the hard-coded paths a private, empty home without creating anything on the host: a missing one gets
    an overlay over its nearest existing parent (upper layer in the state dir), then a tmpfs; /var/lib/kubelet the
    kubelet's directory in the state dir (pod volumes live there)."""
    overlays: dict[Path, Path] = {}
    for wanted in map(Path, HARD_CODED_DIRS):
        if not wanted.exists():
            parent = wanted.parent
            while not parent.exists():
                parent = parent.parent
            if parent not in overlays:
                layer = layout.root / "overlays" / str(len(overlays))
                (layer / "upper").mkdir(parents=True, exist_ok=True)
                (layer / "work").mkdir(parents=True, exist_ok=True)
                _mount("-t", "overlay", "overlay", "-o",
                       f"lowerdir={parent},upperdir={layer / 'upper'},workdir={layer / 'work'}", str(parent))
                overlays[parent] = layer
            wanted.mkdir(parents=True, exist_ok=True)
        if wanted == KUBELET_ROOT:
            layout.kubelet_dir.mkdir(parents=True, exist_ok=True)
            _mount("--bind", str(layout.kubelet_dir), str(wanted))
        else:
            _mount("-t", "tmpfs", "-o", "mode=755,size=64m", "tmpfs", str(wanted))


def show_kernel_defaults(layout: NodeLayout) -> None:
    """kubelet's protectKernelDefaults reads these; bind-mounted copies keep it from writing the host's values."""
    directory = layout.root / "kernel-defaults"
    directory.mkdir(parents=True, exist_ok=True)
    for key, value in KERNEL_DEFAULTS.items():
        copy = directory / key.replace("/", "_")
        copy.write_text(value + "\n")
        _mount("--bind", str(copy), f"/proc/sys/{key}")


class Children:
    """The node's daemons, logged to <state dir>/logs, stopped in reverse order."""

    def __init__(self, layout: NodeLayout) -> None:
        self.layout = layout
        self.started: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str]) -> subprocess.Popen:
        logs = self.layout.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / f"{name}.log", "ab") as log:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        (self.layout.root / "pids").mkdir(parents=True, exist_ok=True)
        (self.layout.root / "pids" / f"{name}.pid").write_text(f"{process.pid}\n")
        self.started.append((name, process))
        print(f"started {name} (pid {process.pid})", flush=True)
        return process

    def stop(self) -> None:
        for name, process in reversed(self.started):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            print(f"stopped {name}", flush=True)

    def exited(self) -> str | None:
        return next((name for name, p in self.started if p.poll() is not None), None)


def _wait_for_socket(ctr: list[str], containerd: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if containerd.poll() is not None:
            raise SystemExit("containerd exited; see its log")
        if subprocess.run([*ctr, "version"], capture_output=True).returncode == 0:
            return
        time.sleep(0.2)
    raise SystemExit("containerd did not serve its socket in time")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--binaries", required=True, help="JSON: name -> path (containerd, ctr, kubelet, kube-proxy)")
    parser.add_argument("--images", default="[]", help="JSON list of OCI archives containerd has before kubelet starts")
    parser.add_argument("--image-seed", type=Path, help="the cached containerd root with those images (built if missing)")
    args = parser.parse_args(argv)
    layout = NodeLayout(args.state_dir)
    binaries = json.loads(args.binaries)
    # First: all this starts (containerd, shims, kubelet, kube-proxy) then lives in the node's cgroup, so down
    # finds every one of them; pods go under kubepods beside it (kubelet's cgroupRoot).
    cgroups.join(cgroups.node_dirs(layout.cgroup, "node"), os.getpid())
    make_private_dirs(layout)
    show_kernel_defaults(layout)
    children = Children(layout)
    stopping = False

    def on_term(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    # PATH: containerd finds containerd-shim-runc-v2 beside itself; runc and the CNI plugins are Debian's.
    os.environ["PATH"] = f"{Path(binaries['containerd']).parent}:/usr/sbin:/usr/bin:/sbin:/bin"
    if args.image_seed:
        image_seed.install(layout.containerd_root, args.image_seed, binaries, json.loads(args.images))
    containerd = children.start("containerd", [binaries["containerd"], "--config", str(layout.etc / "containerd.toml"),
                                               "--log-level", "warn"])
    ctr = [binaries["ctr"], "--address", str(layout.containerd_socket)]
    try:
        _wait_for_socket(ctr, containerd)
        children.start("kubelet", [binaries["kubelet"], f"--config={layout.etc / 'kubelet.yaml'}",
                                   f"--kubeconfig={layout.etc / 'kubelet.kubeconfig'}",
                                   f"--hostname-override={NODE_NAME}", f"--node-ip={NODE_IP}",
                                   f"--root-dir={KUBELET_ROOT}", "--v=1"])
        children.start("kube-proxy", [binaries["kube-proxy"], f"--config={layout.etc / 'kube-proxy.yaml'}", "--v=1"])
        print("node started", flush=True)
        while not stopping:
            gone = children.exited()
            if gone:
                print(f"{gone} exited; stopping the node", flush=True)
                break
            time.sleep(0.5)
    finally:
        children.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
