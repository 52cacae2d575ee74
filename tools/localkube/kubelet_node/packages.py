"""Debian packages the node runs: runc, the CNI plugins, iptables (kube-proxy), busybox (admin-tools' shell)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable

# What each package provides that the node uses -> the package.
NODE_PACKAGES = {
    "/usr/sbin/runc": "runc",
    "/usr/lib/cni/ptp": "containernetworking-plugins",
    "/usr/sbin/iptables": "iptables",
    "/usr/sbin/nft": "nftables",  # the node's own firewall rules (tests cut a pod off with them)
    "/usr/bin/nsenter": "util-linux",
    "/bin/busybox": "busybox-static",
}


def missing() -> list[str]:
    return sorted({package for path, package in NODE_PACKAGES.items() if not Path(path).exists()})


def ensure(log: Callable[[str], None] = print) -> bool:
    """apt-get install what is missing (as root on Debian); one line either way. True when all are there."""
    wanted = missing()
    if not wanted:
        return True
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        log(f"[tools] node packages: missing Debian packages {' '.join(wanted)} (apt-get install them)")
        return False
    log(f"[tools] node packages: apt-get install {' '.join(wanted)}")
    started = time.monotonic()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "--no-install-recommends", *wanted]):
        result = subprocess.run(argv, capture_output=True, text=True, env=env)
        if result.returncode != 0:
            log(f"[tools] node packages: {' '.join(argv)} failed: {(result.stderr or result.stdout).strip()[-300:]}")
            return False
    log(f"[tools] node packages: packages ready in {time.monotonic() - started:.0f} s")
    return not missing()
