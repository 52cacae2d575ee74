"""A containerd root with every node image already imported, kept in the tool cache and linked into each new node.

Importing the archives costs about 50 s per `up`; a node instead starts from a copy of the seed whose image content
and unpacked layers are hard links (containerd never writes to a committed layer or a blob, and a deleted image
only drops the node's own links), and whose databases are real copies. The seed is built once per set of archives
by a throwaway containerd, and only the newest set is kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable

from ..paths import cache_lock

# Written once, then only read: these subtrees of a containerd root are linked, everything else copied.
IMMUTABLE = ("io.containerd.content.v1.content/blobs", "io.containerd.snapshotter.v1.overlayfs/snapshots")
SOCKET = "/run/containerd/seed.sock"  # in the node's private /run/containerd


def seed_dir(cache: Path, archives: list[str], containerd: str) -> Path:
    """Where the seed for these archives (their names carry their content hash) and this containerd lives."""
    key = hashlib.sha256(json.dumps([Path(a).name for a in archives] + [containerd]).encode()).hexdigest()[:12]
    return cache / "node-seeds" / key


def _config(root: Path) -> str:
    return f"""version = 3
root = '{root}'
state = '/run/containerd/seed-state'
disabled_plugins = ['io.containerd.grpc.v1.cri', 'io.containerd.cri.v1.runtime', 'io.containerd.cri.v1.images',
                    'io.containerd.nri.v1.nri', 'io.containerd.tracing.processor.v1.otlp',
                    'io.containerd.internal.v1.tracing']
[grpc]
  address = '{SOCKET}'
[ttrpc]
  address = '{SOCKET}.ttrpc'
"""


def _build(seed: Path, binaries: dict[str, str], archives: list[str], log: Callable[[str], None]) -> None:
    partial = seed.with_name(seed.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    (partial / "containerd.toml").write_text(_config(partial / "root"))
    ctr = [binaries["ctr"], "--address", SOCKET]
    with open(partial / "containerd.log", "wb") as output:
        containerd = subprocess.Popen([binaries["containerd"], "--config", str(partial / "containerd.toml"),
                                       "--log-level", "warn"], stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while subprocess.run([*ctr, "version"], capture_output=True).returncode != 0:
            if containerd.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the seed's containerd did not serve; see {partial / 'containerd.log'}")
            time.sleep(0.2)
        for archive in archives:
            started = time.monotonic()
            subprocess.run([*ctr, "-n", "k8s.io", "images", "import", "--snapshotter", "overlayfs", archive],
                           check=True, capture_output=True)
            log(f"imported {Path(archive).name} in {time.monotonic() - started:.1f}s")
    finally:
        containerd.terminate()
        containerd.wait(30)
    for older in seed.parent.iterdir():  # one seed is enough: older archive sets are gone from the cache too
        if older.is_dir() and older != partial:
            shutil.rmtree(older, ignore_errors=True)
    partial.rename(seed)


def _link_copy(seed_root: Path, root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", "--link", str(seed_root), str(root)], check=True, capture_output=True)
    linked = {str(root / part) for part in IMMUTABLE}
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = [d for d in subdirectories if os.path.join(directory, d) not in linked]
        for name in files:  # the node's own databases and ids
            path = Path(directory, name)
            if path.is_file() and not path.is_symlink():
                shutil.copy2(path, path.with_name(name + ".copy"))
                path.with_name(name + ".copy").replace(path)


def install(root: Path, seed: Path, binaries: dict[str, str], archives: list[str],
            log: Callable[[str], None] = lambda line: print(line, flush=True)) -> None:
    """Give the node's containerd ``root`` every image of ``archives``, building the seed first if needed."""
    with cache_lock("node-seed"):
        if not seed.is_dir():
            _build(seed, binaries, archives, log)
        started = time.monotonic()
        _link_copy(seed / "root", root)
    log(f"images linked from {seed.name} in {time.monotonic() - started:.1f}s")
