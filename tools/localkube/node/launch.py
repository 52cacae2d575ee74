"""Inside a pod's namespaces: set up the container's view of the filesystem, then exec it.

Started as ``ip netns exec <pod-ns> python -m localkube.node.launch <plan.json>``; ``ip netns
exec`` already gave us a mount namespace of our own, so every mount below is visible to this
container's processes only. Then the plan's program replaces this process (same pid).
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path

_CLONE_NEWUTS = 0x04000000


_MS_BIND = 4096
_MS_REC = 16384
_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def _bind(fd: int, target: str, recursive: bool = False) -> None:
    """Bind what ``fd`` holds onto ``target``: mount(2) on /proc/self/fd/N reaches the object even
    when its path is hidden (mount(8) would canonicalise the path and find the hiding mount)."""
    flags = _MS_BIND | (_MS_REC if recursive else 0)
    if _libc.mount(f"/proc/self/fd/{fd}".encode(), target.encode(), None, flags, None) != 0:
        raise SystemExit(f"localkube launch: bind mount onto {target}: {os.strerror(ctypes.get_errno())}")


def _mount(*args: str) -> None:
    result = subprocess.run(["mount", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"localkube launch: mount {' '.join(args)}: {result.stderr.strip()}")


def _make_room(target: Path, scratch: Path, is_dir: bool, overlays: list[Path]) -> None:
    """Make ``target`` exist without touching the host: overlay its nearest existing ancestor.

    Inside an overlay made earlier, new paths land in its private upper layer directly
    (overlays do not stack deeper than two).
    """
    if target.exists():
        return
    ancestor = target.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not any(ancestor == o or o in ancestor.parents for o in overlays):
        layer = scratch / f"overlay-{len(overlays)}"
        (layer / "upper").mkdir(parents=True)
        (layer / "work").mkdir()
        _mount("-t", "overlay", "overlay", "-o",
               f"lowerdir={ancestor},upperdir={layer / 'upper'},workdir={layer / 'work'}", str(ancestor))
        overlays.append(ancestor)
    if is_dir:
        target.mkdir(parents=True, exist_ok=True)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch()


def _expose_under_private_root(paths: list[str]) -> None:
    """/root is mode 700 on the host: give non-root containers a /root that holds only ``paths``.

    Held open before the tmpfs hides them, and bound back with their submounts (a checkout under /root
    carries the pod's scratch tmpfs and volumes)."""
    held = [(os.open(p, os.O_PATH), p) for p in sorted(set(paths), key=len)
            if Path(p).exists() and Path("/root") in Path(p).parents]
    _mount("-t", "tmpfs", "-o", "mode=755,size=1m", "tmpfs", "/root")
    for fd, path in held:
        Path(path).mkdir(parents=True, exist_ok=True)
        _bind(fd, path, recursive=True)
        os.close(fd)


def _keep_runtime_visible(paths: list[str], targets: list[Path], fds: list[int]) -> None:
    """The program runs from the host (venv, project, tools): if a volume covers it (an emptyDir
    on /tmp over a checkout in /tmp), put it back at the same path inside that volume."""
    for path, fd in zip(paths, fds):
        if any(t in Path(path).parents for t in targets):
            try:
                Path(path).mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise SystemExit(f"localkube launch: {path} is hidden by a volume mount ({error.strerror})")
            _bind(fd, path)


def _set_hostname(name: str) -> None:
    if _libc.unshare(_CLONE_NEWUTS) == 0:
        encoded = name.encode()
        _libc.sethostname(encoded, len(encoded))


def main(plan_path: str) -> None:
    plan = json.loads(Path(plan_path).read_text())
    if plan.get("oci"):  # a real image: runc runs it (oci.py)
        from .oci import launch
        launch(plan)
    # Hold every source open first: a later mount (an emptyDir on /tmp, say) may hide its path.
    sources = [os.open(m["source"], os.O_PATH) for m in plan["mounts"]]
    runtime = [os.open(p, os.O_PATH) for p in plan.get("runtime_paths") or []]
    scratch = Path(plan["scratch"])
    scratch.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", "mode=700,size=4m", "tmpfs", str(scratch))  # overlay layers stay private
    _set_hostname(plan["hostname"])
    run_as_user = plan.get("run_as_user")
    if run_as_user not in (None, 0) and plan.get("expose_under_root"):
        _expose_under_private_root(plan["expose_under_root"])
    # Make room for every target first: an overlay made later would hide earlier bind mounts
    # (e.g. /etc/temporal/client's overlay on /etc would hide /etc/hosts).
    overlays: list[Path] = []
    mounts = sorted(zip(plan["mounts"], sources), key=lambda pair: len(Path(pair[0]["target"]).parts))
    for mount, _ in mounts:
        _make_room(Path(mount["target"]), scratch, is_dir=Path(mount["source"]).is_dir(), overlays=overlays)
    for mount, fd in mounts:
        _bind(fd, mount["target"])
        if mount.get("read_only"):
            _mount("-o", "remount,bind,ro", mount["target"])
    _keep_runtime_visible(plan.get("runtime_paths") or [], [Path(m["target"]) for m, _ in mounts], runtime)
    for fd in [*sources, *runtime]:
        os.close(fd)
    if plan.get("read_only_root"):
        _mount("-o", "remount,bind,ro", "/")
    os.chdir(plan.get("working_dir") or "/")
    if plan.get("run_as_group") is not None:
        os.setgroups(plan.get("supplemental_groups") or [])  # fsGroup reads the 0440 Secret files
        os.setgid(plan["run_as_group"])
    if run_as_user is not None:
        os.setuid(run_as_user)
    argv, env = plan["argv"], plan["env"]
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as error:
        print(f"localkube launch: cannot run {argv[0]!r}: {error.strerror}", file=sys.stderr)
        raise SystemExit(127)


if __name__ == "__main__":
    main(sys.argv[1])
