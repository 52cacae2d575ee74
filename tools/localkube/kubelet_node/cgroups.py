"""The node's own top-level cgroup in every v1 controller: its processes and (as kubelet's cgroupRoot) its pods."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

CGROUP_FS = Path("/sys/fs/cgroup")
# runc 1.1 on a hybrid host also makes cgroups under the v2 "unified" mount: removed with the rest.
V1_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "systemd")
ALL_HIERARCHIES = (*V1_CONTROLLERS, "unified")


def _existing(name: str, hierarchies=ALL_HIERARCHIES) -> list[Path]:
    return [CGROUP_FS / h / name for h in hierarchies if (CGROUP_FS / h / name).is_dir()]


def create(name: str, child: str) -> list[Path]:
    """``/<name>/<child>`` in every v1 controller; returns the child cgroups (to put the node's launcher in)."""
    made = []
    for controller in V1_CONTROLLERS:
        if not (CGROUP_FS / controller).is_dir():
            continue
        for path in (CGROUP_FS / controller / name, CGROUP_FS / controller / name / child):
            path.mkdir(exist_ok=True)
            if controller == "cpuset":  # a v1 cpuset takes no task until its cpus and mems are set
                for knob in ("cpuset.cpus", "cpuset.mems"):
                    (path / knob).write_text((path.parent / knob).read_text())
        made.append(CGROUP_FS / controller / name / child)
    return made


def node_dirs(name: str, child: str) -> list[Path]:
    return [CGROUP_FS / c / name / child for c in V1_CONTROLLERS if (CGROUP_FS / c / name / child).is_dir()]


def join(cgroup_dirs: list[Path], pid: int) -> None:
    for path in cgroup_dirs:
        (path / "cgroup.procs").write_text(f"{pid}\n")


def pids(name: str) -> set[int]:
    """Every process in the node's cgroups (pods, shims, containerd, kubelet...)."""
    found: set[int] = set()
    for top in _existing(name):
        for procs in top.rglob("cgroup.procs"):
            try:
                found |= {int(p) for p in procs.read_text().split()}
            except OSError:
                continue
    return found


def container_pids(name: str, container_id: str) -> set[int]:
    """The processes of one container: kubelet's cgroupfs driver names its cgroup after the container ID
    (<cgroupRoot>/kubepods[/<qos>]/pod<uid>/<container id>)."""
    found: set[int] = set()
    for top in _existing(name, ("pids",)):
        for directory in top.rglob(container_id):
            try:
                found |= {int(p) for p in (directory / "cgroup.procs").read_text().split()}
            except OSError:
                continue
    return found


def kill_all(name: str, timeout: float = 10.0) -> list[int]:
    """SIGKILL every process left in the node's cgroups until none is; returns those killed."""
    killed: list[int] = []
    deadline = time.monotonic() + timeout
    while (left := pids(name)) and time.monotonic() < deadline:
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
        time.sleep(0.2)
    return sorted(set(killed))


def remove(name: str) -> list[Path]:
    """rmdir the node's cgroups, children first; returns those that could not be removed."""
    left = []
    for top in _existing(name):
        for path in sorted((p for p in [top, *top.rglob("*")] if p.is_dir()), key=lambda p: -len(p.parts)):
            for _ in range(20):  # a cgroup is busy for a moment after its last task died
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)
        if top.exists():
            left.append(top)
    return left
