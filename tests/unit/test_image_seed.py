"""The cached containerd root a node starts from: which parts each node shares (hard links) and which it owns."""

from __future__ import annotations

from pathlib import Path

import pytest

from localkube import toolchain
from localkube.kubelet_node import image_seed, images


def _containerd_root(root: Path) -> None:
    for relative, data in {
        "io.containerd.content.v1.content/blobs/sha256/ab12": b"layer",
        "io.containerd.snapshotter.v1.overlayfs/snapshots/1/fs/usr/bin/tool": b"binary",
        "io.containerd.snapshotter.v1.overlayfs/metadata.db": b"snapshots db",
        "io.containerd.metadata.v1.bolt/meta.db": b"metadata db",
    }.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(data)


def test_a_node_links_the_image_content_and_owns_its_databases(tmp_path):
    seed, root = tmp_path / "seed" / "root", tmp_path / "node" / "containerd" / "root"
    _containerd_root(seed)
    (root / "stale").mkdir(parents=True)  # what a previous node left is gone
    image_seed._link_copy(seed, root)
    for shared in ("io.containerd.content.v1.content/blobs/sha256/ab12",
                   "io.containerd.snapshotter.v1.overlayfs/snapshots/1/fs/usr/bin/tool"):
        assert (root / shared).stat().st_ino == (seed / shared).stat().st_ino
    for owned in ("io.containerd.snapshotter.v1.overlayfs/metadata.db", "io.containerd.metadata.v1.bolt/meta.db"):
        assert (root / owned).stat().st_ino != (seed / owned).stat().st_ino
        assert (root / owned).read_bytes() == (seed / owned).read_bytes()
    assert not (root / "stale").exists()
    (root / "io.containerd.metadata.v1.bolt/meta.db").write_bytes(b"the node's own")
    assert (seed / "io.containerd.metadata.v1.bolt/meta.db").read_bytes() == b"metadata db"


def test_the_seed_follows_the_archives_and_containerd(tmp_path):
    archives = ["/cache/images/node/a-111.tar", "/cache/images/node/b-222.tar"]
    seed = image_seed.seed_dir(tmp_path, archives, "/tools/containerd-2.4.2/bin/containerd")
    assert seed.parent == tmp_path / "node-seeds"
    assert seed == image_seed.seed_dir(tmp_path, ["/elsewhere/a-111.tar", "/elsewhere/b-222.tar"],
                                       "/tools/containerd-2.4.2/bin/containerd")  # names carry the content hash
    assert seed != image_seed.seed_dir(tmp_path, [archives[0], "/cache/images/node/b-333.tar"],
                                       "/tools/containerd-2.4.2/bin/containerd")
    assert seed != image_seed.seed_dir(tmp_path, archives, "/tools/containerd-2.4.3/bin/containerd")


def test_the_postgres_image_is_the_same_from_any_clone():
    # its entrypoint is the repository's script: by content, so two checkouts share one archive (and one seed)
    try:
        spec = images.postgres_image()
    except toolchain.ToolError as error:  # PostgreSQL is apt-installed by make tools
        pytest.skip(str(error))
    entrypoint = next(f for f in spec.files if f.path == "usr/local/bin/docker-entrypoint.sh")
    assert entrypoint.source is None and entrypoint.content.startswith(b"#!")
