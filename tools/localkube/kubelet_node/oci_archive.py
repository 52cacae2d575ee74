"""Writes a one-layer OCI image archive (what `ctr images import` reads) from files on the host, without a builder."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ImageFile:
    path: str  # inside the image, no leading slash
    source: Path | None = None  # None: content instead
    content: bytes = b""
    mode: int = 0o644
    link_to: str = ""  # a symbolic link to this target instead of a file


@dataclass(frozen=True)
class ImageSpec:
    reference: str  # the full name the kubelet looks up, e.g. docker.io/temporalio/ui:2.55.0
    files: tuple[ImageFile, ...]
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",)
    user: str = ""
    working_dir: str = ""
    labels: dict[str, str] = field(default_factory=dict)


def _layer(files: tuple[ImageFile, ...]) -> bytes:
    """An uncompressed layer tar with parent directories, owned by root, fixed mtimes (same input, same digest)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        directories: set[str] = set()
        for item in files:
            parts = item.path.split("/")[:-1]
            for depth in range(1, len(parts) + 1):
                directory = "/".join(parts[:depth])
                if directory not in directories:
                    info = tarfile.TarInfo(directory)
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
                    tar.addfile(info)
                    directories.add(directory)
            info = tarfile.TarInfo(item.path)
            if item.link_to:
                info.type, info.linkname, info.mode, info.mtime = tarfile.SYMTYPE, item.link_to, 0o777, 0
                tar.addfile(info)
                continue
            data = item.source.read_bytes() if item.source else item.content
            info.size, info.mode, info.mtime = len(data), item.mode, 0
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _blob(tar: tarfile.TarFile, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo(f"blobs/sha256/{digest}")
    info.size, info.mtime = len(data), 0
    tar.addfile(info, io.BytesIO(data))
    return f"sha256:{digest}"


def write(spec: ImageSpec, archive: Path) -> None:
    layer = _layer(spec.files)
    config = {
        "architecture": "amd64", "os": "linux",
        "config": {k: v for k, v in {
            "Entrypoint": list(spec.entrypoint), "Cmd": list(spec.cmd), "Env": list(spec.env),
            "User": spec.user, "WorkingDir": spec.working_dir, "Labels": spec.labels}.items() if v},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(layer).hexdigest()}"]},
    }
    partial = archive.with_suffix(".partial")
    partial.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(partial, "w") as tar:
        layer_digest = _blob(tar, layer)
        config_bytes = json.dumps(config, sort_keys=True).encode()
        config_digest = _blob(tar, config_bytes)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest,
                       "size": len(config_bytes)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest,
                        "size": len(layer)}],
        }, sort_keys=True).encode()
        manifest_digest = _blob(tar, manifest)
        index = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest,
                           "size": len(manifest), "platform": {"architecture": "amd64", "os": "linux"},
                           "annotations": {"io.containerd.image.name": spec.reference,
                                           "org.opencontainers.image.ref.name": spec.reference}}],
        }).encode()
        for name, data in (("oci-layout", b'{"imageLayoutVersion": "1.0.0"}'), ("index.json", index)):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))
    partial.rename(archive)
