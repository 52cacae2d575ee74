"""Containers from real images: runc, the image's layers from local image storage, the pod's network.

When a pod's image is in the local image storage of podman/buildah (containers-storage, e.g. after
``make images``) and runc is installed, the node runs the container the way a kubelet's runtime does:

- the root filesystem is an overlay of the image's layers (read straight from containers-storage,
  never written) with a fresh writable layer per container start, made in a private mount
  namespace, so it disappears with the container: no mount is ever left on the host;
- the process is the image's ENTRYPOINT/CMD under Kubernetes' command/args rules, with the
  image's Env, User and WorkingDir, overridden by the pod (env, runAsUser/runAsGroup, fsGroup and
  supplementalGroups as additional groups, readOnlyRootFilesystem, capabilities,
  allowPrivilegeEscalation);
- it joins the pod's existing network namespace (so probes, Services and the pod IP work as for
  process containers), and gets its own mount, UTS and IPC namespaces. It shares the node's PID
  namespace, like the process containers: a Python program that has no SIGTERM handler stops on
  SIGTERM here, where as PID 1 under a kubelet it would wait out the grace period;
- volumes, /etc/hosts and /etc/resolv.conf are bind mounts of what pods.py prepared.

``LOCALKUBE_RUN_IMAGES=0`` turns this off (every image goes through images.yaml again). The
supervision (logs, restarts, probes, grace period) is containers.py's, unchanged: the supervised
process is ``runc run``, which forwards signals to the container; whatever is left after it exits
is removed with ``runc delete --force``.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .containers import ConfigError, Plan

_CLONE_NEWNS = 0x00020000
# Docker's (and containerd's) default capability set.
DEFAULT_CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
                        "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE")
MASKED_PATHS = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
                "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware"]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
_CONTAINERS_CONF = '[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"\n'


def enabled() -> bool:
    return os.environ.get("LOCALKUBE_RUN_IMAGES", "1") != "0" and bool(shutil.which("runc")) \
        and bool(shutil.which("podman"))


@dataclass(frozen=True)
class Image:
    """An image in local storage: its config and its layers (topmost first)."""
    ref: str
    id: str
    entrypoint: list[str]
    cmd: list[str]
    env: list[str]
    user: str
    working_dir: str
    layers: list[str]


class LocalImages:
    """Looks images up in containers-storage (``podman image inspect``; never pulls)."""

    TTL = 5.0  # a rebuilt image is picked up within seconds

    def __init__(self) -> None:
        self._cache: dict[str, tuple[float, Image | None]] = {}
        self._lock = threading.Lock()

    def lookup(self, ref: str) -> Image | None:
        if not ref or not enabled():
            return None
        with self._lock:  # one inspect per image even when 20 pods start at once
            cached = self._cache.get(ref)
            if cached and time.monotonic() - cached[0] < self.TTL:
                return cached[1]
            image = _inspect(ref)
            self._cache[ref] = (time.monotonic(), image)
            return image


def _inspect(ref: str) -> Image | None:
    env = {**os.environ}
    conf = Path(os.environ.get("TMPDIR", "/tmp")) / "localkube-containers.conf"
    if "CONTAINERS_CONF" not in env:
        if not conf.exists():
            conf.write_text(_CONTAINERS_CONF)
        env["CONTAINERS_CONF"] = str(conf)
    result = subprocess.run(["podman", "image", "inspect", ref], capture_output=True, text=True, env=env, timeout=60)
    if result.returncode != 0:
        return None
    records = json.loads(result.stdout or "[]")
    if not records:
        return None
    record = records[0]
    driver = record.get("GraphDriver") or {}
    if driver.get("Name") != "overlay":
        return None  # only the overlay driver's layer directories can be stacked here
    data = driver.get("Data") or {}
    layers = [data["UpperDir"]] + [d for d in (data.get("LowerDir") or "").split(":") if d]
    config = record.get("Config") or {}
    return Image(ref=ref, id=record["Id"], entrypoint=config.get("Entrypoint") or [], cmd=config.get("Cmd") or [],
                 env=config.get("Env") or [], user=config.get("User") or "", working_dir=config.get("WorkingDir") or "",
                 layers=layers)


IMAGES = LocalImages()


# -- the plan (in the node) ------------------------------------------------------------------------

def _image_file(image: Image, path: str) -> Path | None:
    """A file of the image, read from its layers (the topmost that has it)."""
    for layer in image.layers:
        candidate = Path(layer) / path.lstrip("/")
        if candidate.exists() or candidate.is_symlink():
            return candidate if candidate.is_file() else None
    return None


def _lookup(image: Image, file: str, name: str) -> tuple[int, int] | None:
    """(id, primary gid) of a user (``/etc/passwd``) or group (``/etc/group``, gid twice) by name or number."""
    path = _image_file(image, file)
    if path is None:
        return None
    for line in path.read_text(errors="replace").splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and (fields[0] == name or fields[2] == name):
            ident = int(fields[2])
            return ident, int(fields[3]) if file == "/etc/passwd" and len(fields) > 3 else ident
    return None


def _image_user(image: Image) -> tuple[int | None, int | None, str]:
    """(uid, gid, note) from the image's USER: numbers, or names resolved in the image's files."""
    user, _, group = image.user.partition(":")
    if not user:
        return 0, 0, ""
    uid = gid = None
    if user.isdigit():
        uid = int(user)
        entry = _lookup(image, "/etc/passwd", user)
        gid = entry[1] if entry else 0
    else:
        entry = _lookup(image, "/etc/passwd", user)
        if entry:
            uid, gid = entry
    if group:
        entry = _lookup(image, "/etc/group", group) if not group.isdigit() else (int(group), int(group))
        gid = entry[0] if entry else gid
    return uid, gid, user


def plan(worker, container: dict, image: Image, runc_root: Path) -> Plan:
    """The container of ``worker`` (a PodWorker) from ``image``, as a Plan that launch.py hands to runc."""
    from .pods import expand

    command, args = container.get("command"), container.get("args")
    if command:
        argv = [*command, *(args or [])]
    else:
        argv = [*image.entrypoint, *(args if args is not None else image.cmd)]
    if not argv:
        raise ConfigError(f"image {image.ref!r}: no command specified (the image has no ENTRYPOINT or CMD)")
    pod_env = worker._environment(container)
    explicit = {var["name"] for var in container.get("env") or []}
    env = dict(item.split("=", 1) for item in image.env if "=" in item)
    for key, value in pod_env.items():
        if key in ("PATH", "HOME") and key not in explicit:
            continue  # the node's own PATH/HOME for process containers: the image's apply here
        env[key] = value
    argv = [expand(a, env) for a in argv]

    security = {**(worker.pod["spec"].get("securityContext") or {}), **(container.get("securityContext") or {})}
    pod_security = worker.pod["spec"].get("securityContext") or {}
    image_uid, image_gid, image_user = _image_user(image)
    uid = security.get("runAsUser", image_uid)
    if uid is None:
        raise ConfigError(f"image {image.ref!r} has user {image_user!r}, not found in its /etc/passwd")
    if "runAsGroup" in security:
        gid = security["runAsGroup"]
    elif "runAsUser" in security:
        entry = _lookup(image, "/etc/passwd", str(uid))
        gid = entry[1] if entry else 0
    else:
        gid = image_gid or 0
    if security.get("runAsNonRoot") and uid == 0:
        raise ConfigError("container has runAsNonRoot and image will run as root "
                          f"(pod: {worker.pod['metadata']['name']}, container: {container['name']})")
    if "HOME" not in env:
        entry = _home(image, uid)
        env["HOME"] = entry or "/"
    groups = [g for g in [pod_security.get("fsGroup"), *(pod_security.get("supplementalGroups") or [])]
              if g is not None]

    capabilities = (security.get("capabilities") or {})
    drop = {c.upper().removeprefix("CAP_") for c in capabilities.get("drop") or []}
    caps = [] if "ALL" in drop else [c for c in DEFAULT_CAPABILITIES if c not in drop]
    caps += [c.upper().removeprefix("CAP_") for c in capabilities.get("add") or [] if c.upper() != "ALL"]
    if security.get("privileged"):
        raise ConfigError("privileged containers are not supported by the local node")

    meta = worker.pod["metadata"]
    container_id = f"{meta['uid'].replace('-', '')[:12]}-{container['name']}-{time.time_ns() % 10 ** 12}"
    oci = {
        "id": container_id, "image": image.ref, "image_id": image.id, "layers": image.layers,
        "runc_root": str(runc_root), "netns": worker.netns,
        "capabilities": sorted(set(caps)), "no_new_privileges": security.get("allowPrivilegeEscalation") is False,
        "cgroup": f"/localkube/{container_id}",
    }
    return Plan(argv=argv, env=env, working_dir=container.get("workingDir") or image.working_dir or "/",
                mounts=worker._mounts(container),
                hostname=worker.pod["spec"].get("hostname") or meta["name"],
                run_as_user=uid, run_as_group=gid, supplemental_groups=groups,
                read_only_root=bool(security.get("readOnlyRootFilesystem")),
                expose_under_root=[], runtime_paths=[], oci=oci)


def _home(image: Image, uid: int) -> str | None:
    path = _image_file(image, "/etc/passwd")
    if path is None:
        return None
    for line in path.read_text(errors="replace").splitlines():
        fields = line.split(":")
        if len(fields) >= 6 and fields[2] == str(uid):
            return fields[5]
    return None


def runtime_config(plan: dict, rootfs: str) -> dict:
    """The OCI runtime spec (config.json) of a plan."""
    oci = plan["oci"]
    caps = [f"CAP_{c}" for c in oci["capabilities"]]
    root_user = plan["run_as_user"] == 0
    mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
    ]
    for mount in sorted(plan["mounts"], key=lambda m: len(Path(m["target"]).parts)):
        mounts.append({"destination": mount["target"], "type": "bind", "source": mount["source"],
                       "options": ["rbind", "rprivate", "ro" if mount.get("read_only") else "rw"]})
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": plan["run_as_user"], "gid": plan["run_as_group"],
                     "additionalGids": plan.get("supplemental_groups") or []},
            "args": plan["argv"],
            "env": [f"{k}={v}" for k, v in plan["env"].items()],
            "cwd": plan["working_dir"] or "/",
            "capabilities": {"bounding": caps, "effective": caps if root_user else [],
                             "permitted": caps if root_user else [], "inheritable": [], "ambient": []},
            "noNewPrivileges": oci["no_new_privileges"],
        },
        "root": {"path": rootfs, "readonly": bool(plan.get("read_only_root"))},
        "hostname": plan["hostname"],
        "mounts": mounts,
        "linux": {
            "namespaces": [{"type": "network", "path": f"/run/netns/{oci['netns']}"}, {"type": "mount"},
                           {"type": "uts"}, {"type": "ipc"}],
            "cgroupsPath": oci["cgroup"],
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
        },
    }


# -- in the launcher (inside ``ip netns exec``) ----------------------------------------------------

def _mount(*args: str) -> None:
    result = subprocess.run(["mount", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"localkube launch: mount {' '.join(args)}: {result.stderr.strip()}")


def launch(plan: dict) -> None:
    """Overlay the image's layers in a private mount namespace, write config.json, exec ``runc run``.

    ``ip netns exec`` gave us a mount namespace whose /sys is the pod's (without /sys/fs/cgroup,
    which runc needs): go back to the node's mount namespace and make a private one from it.
    """
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    fd = os.open(f"/proc/{os.getppid()}/ns/mnt", os.O_RDONLY)
    try:
        if libc.setns(fd, _CLONE_NEWNS) != 0 or libc.unshare(_CLONE_NEWNS) != 0:
            raise SystemExit(f"localkube launch: mount namespace: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(fd)
    _mount("--make-rslave", "/")  # host mounts still show up; ours never reach the host
    oci = plan["oci"]
    bundle = Path(plan["scratch"])
    shutil.rmtree(bundle, ignore_errors=True)
    for name in ("upper", "work", "rootfs"):
        (bundle / name).mkdir(parents=True)
    _mount("-t", "overlay", "overlay", "-o", f"lowerdir={':'.join(oci['layers'])},upperdir={bundle / 'upper'},"
           f"workdir={bundle / 'work'}", str(bundle / "rootfs"))
    (bundle / "config.json").write_text(json.dumps(runtime_config(plan, str(bundle / "rootfs"))))
    runc = shutil.which("runc") or "runc"
    os.execv(runc, [runc, "--root", oci["runc_root"], "run", "--bundle", str(bundle), "--no-new-keyring", oci["id"]])


# -- after the container (in the node) -------------------------------------------------------------

def delete(oci: dict) -> None:
    """Remove the runc container (killing anything left of it) once ``runc run`` has exited."""
    subprocess.run(["runc", "--root", oci["runc_root"], "delete", "--force", oci["id"]], capture_output=True)


def exec_prefix(oci: dict) -> list[str]:
    """An exec probe's command runs inside the container, like `kubectl exec` would. runc by its host path: the
    probe runs with the container's environment, whose PATH (an image's own) need not reach it."""
    return [shutil.which("runc") or "runc", "--root", oci["runc_root"], "exec", oci["id"]]


def delete_all(runc_root: Path) -> list[str]:
    """Every container of a node (make down after a crashed node); returns their ids."""
    if not runc_root.is_dir() or not shutil.which("runc"):
        return []
    result = subprocess.run(["runc", "--root", str(runc_root), "list", "--quiet"], capture_output=True, text=True)
    ids = result.stdout.split()
    for container_id in ids:
        subprocess.run(["runc", "--root", str(runc_root), "delete", "--force", container_id], capture_output=True)
    for parent in [*Path("/sys/fs/cgroup").glob("*/localkube"), Path("/sys/fs/cgroup/localkube")]:
        try:
            parent.rmdir()  # the parent of every node's container cgroups, once the last one is gone
        except OSError:
            pass
    return ids


if __name__ == "__main__":  # python -m localkube.node.oci RUNC_ROOT: remove what a node left behind
    print("\n".join(delete_all(Path(sys.argv[1]))))
