"""Materialise a pod's volumes as host directories, refreshed atomically as the kubelet does.

Secret, ConfigMap, projected and downwardAPI volumes are written with the kubelet's scheme:
files live in a timestamped directory that a ``..data`` symlink points to, and each
top-level name is a symlink through ``..data``. An update swaps ``..data`` in one rename,
so a reader never sees half a Secret. A mounted volume takes a change only ``refresh_delay``
seconds after the node first sees it (a kubelet: its sync period plus cache TTL, 1-2 minutes).
"""

from __future__ import annotations

import base64
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class Sources(Protocol):
    refresh_delay: float  # seconds a mounted volume waits before taking a change of its source

    def secret(self, namespace: str, name: str) -> dict[str, bytes] | None: ...
    def config_map(self, namespace: str, name: str) -> dict[str, bytes] | None: ...
    def token(self, pod: dict, audience: str | None, expiration_seconds: int) -> str: ...
    def claim_path(self, namespace: str, claim: str) -> Path | None: ...


class VolumeNotReady(Exception):
    """A source is missing (Secret not found, claim not bound): the pod waits, as with a kubelet."""


@dataclass(frozen=True)
class Volume:
    name: str
    host_path: Path
    atomic: bool  # written by us (refreshable), as opposed to a directory we only point at


Files = dict[str, tuple[bytes, int]]


def field_value(pod: dict, field_path: str) -> str:
    """The downward API: a pod field by its fieldPath."""
    metadata, spec, status = pod["metadata"], pod["spec"], pod.get("status") or {}
    for prefix, mapping in (("metadata.labels", metadata.get("labels")),
                            ("metadata.annotations", metadata.get("annotations"))):
        if field_path == prefix:
            return "\n".join(f'{k}="{v}"' for k, v in sorted((mapping or {}).items()))
        if field_path.startswith(prefix + "['"):
            return (mapping or {}).get(field_path[len(prefix) + 2:-2], "")
    values = {
        "metadata.name": metadata["name"], "metadata.namespace": metadata["namespace"],
        "metadata.uid": metadata["uid"], "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": status.get("podIP", ""), "status.hostIP": status.get("hostIP", ""),
        "status.podIPs": ",".join(i["ip"] for i in status.get("podIPs") or []),
        "status.hostIPs": ",".join(i["ip"] for i in status.get("hostIPs") or []),
    }
    if field_path not in values:
        raise VolumeNotReady(f"unsupported fieldPath {field_path!r}")
    return values[field_path]


def resource_value(container: dict | None, resource: str) -> str:
    """resourceFieldRef: the container's limit (else request), else the node's capacity."""
    resources = (container or {}).get("resources") or {}
    kind, _, name = resource.partition(".")
    value = (resources.get(kind) or {}).get(name) or (resources.get("requests") or {}).get(name)
    return str(value or {"cpu": "2", "memory": str(24 * 1024 ** 3), "ephemeral-storage": str(50 * 1024 ** 3)}
               .get(name, "0"))


class PodVolumes:
    def __init__(self, pod: dict, pod_dir: Path, sources: Sources) -> None:
        self.pod = pod
        self.root = pod_dir / "volumes"
        self.sources = sources
        self._tokens: dict[str, tuple[bytes, float]] = {}  # kept here, not read back: a refresh may be pending
        self._changed_since: dict[str, float] = {}  # volume name -> when its source was first seen changed

    def sync(self) -> dict[str, Volume]:
        """Write (or refresh) every volume; raise VolumeNotReady if a source is missing."""
        volumes = {}
        for spec in self.pod["spec"].get("volumes") or []:
            volumes[spec["name"]] = self._sync_one(spec)
        return volumes

    def _sync_one(self, spec: dict) -> Volume:
        name = spec["name"]
        target = self.root / name
        namespace = self.pod["metadata"]["namespace"]
        if "emptyDir" in spec:
            target.mkdir(parents=True, exist_ok=True)
            target.chmod(0o777)  # as the kubelet makes it: any container user may write
            return Volume(name, target, atomic=False)
        if "hostPath" in spec:
            path = Path(spec["hostPath"]["path"])
            if spec["hostPath"].get("type") in ("DirectoryOrCreate", None, "") and not path.exists():
                path.mkdir(parents=True, exist_ok=True)
            return Volume(name, path, atomic=False)
        if "persistentVolumeClaim" in spec:
            claim = spec["persistentVolumeClaim"]["claimName"]
            path = self.sources.claim_path(namespace, claim)
            if path is None:
                raise VolumeNotReady(f'persistentvolumeclaim "{claim}" is not bound yet')
            return Volume(name, path, atomic=False)
        if "secret" in spec:
            files = self._keyed(spec["secret"], "secret", spec["secret"].get("secretName", ""))
            mode = spec["secret"].get("defaultMode", 0o644)
        elif "configMap" in spec:
            files = self._keyed(spec["configMap"], "configmap", spec["configMap"].get("name", ""))
            mode = spec["configMap"].get("defaultMode", 0o644)
        elif "downwardAPI" in spec:
            files = self._downward(spec["downwardAPI"].get("items") or [])
            mode = spec["downwardAPI"].get("defaultMode", 0o644)
        elif "projected" in spec:
            files, mode = self._projected(spec["projected"], name), spec["projected"].get("defaultMode", 0o644)
        else:
            raise VolumeNotReady(f"volume {name!r}: this volume type is not supported by the local node")
        files = {path: (data, mode if file_mode is None else file_mode) for path, (data, file_mode) in files.items()}
        if self._refresh_due(name, target, files):
            write_atomic(target, files, group=(self.pod["spec"].get("securityContext") or {}).get("fsGroup"))
        return Volume(name, target, atomic=True)

    def _refresh_due(self, name: str, target: Path, files: Files) -> bool:
        """First mounts are immediate; a change to a mounted volume waits ``refresh_delay`` from when it was seen."""
        delay = self.sources.refresh_delay
        data_link = target / "..data"
        if delay <= 0 or not data_link.is_symlink():
            return True
        if _read_tree(target / os.readlink(data_link)) == files:
            self._changed_since.pop(name, None)
            return False
        # Counted from the first change seen, not the latest: a Secret updated often still shows up.
        seen = self._changed_since.setdefault(name, time.monotonic())
        if time.monotonic() - seen < delay:
            return False
        del self._changed_since[name]
        return True

    def _keyed(self, source: dict, kind: str, name: str) -> dict[str, tuple[bytes, int | None]]:
        namespace = self.pod["metadata"]["namespace"]
        data = (self.sources.secret if kind == "secret" else self.sources.config_map)(namespace, name)
        if data is None:
            if source.get("optional"):
                return {}
            raise VolumeNotReady(f'{kind} "{name}" not found')
        items = source.get("items")
        if not items:
            return {key: (value, None) for key, value in data.items()}
        files = {}
        for item in items:
            if item["key"] not in data:
                if source.get("optional"):
                    continue
                raise VolumeNotReady(f'{kind} "{name}" has no key "{item["key"]}"')
            files[item["path"]] = (data[item["key"]], item.get("mode"))
        return files

    def _downward(self, items: list[dict]) -> dict[str, tuple[bytes, int | None]]:
        files = {}
        for item in items:
            if "fieldRef" in item:
                value = field_value(self.pod, item["fieldRef"]["fieldPath"])
            else:
                ref = item["resourceFieldRef"]
                container = next((c for c in self.pod["spec"]["containers"]
                                  if c["name"] == ref.get("containerName")), None)
                value = resource_value(container, ref["resource"])
            files[item["path"]] = (value.encode(), item.get("mode"))
        return files

    def _projected(self, projected: dict, volume_name: str) -> dict[str, tuple[bytes, int | None]]:
        files: dict[str, tuple[bytes, int | None]] = {}
        for source in projected.get("sources") or []:
            if "secret" in source:
                files.update(self._keyed(source["secret"], "secret", source["secret"].get("name", "")))
            elif "configMap" in source:
                files.update(self._keyed(source["configMap"], "configmap", source["configMap"].get("name", "")))
            elif "downwardAPI" in source:
                files.update(self._downward(source["downwardAPI"].get("items") or []))
            elif "serviceAccountToken" in source:
                token = source["serviceAccountToken"]
                files[token["path"]] = (self._token(volume_name, token), None)
        return files

    def _token(self, volume_name: str, token: dict) -> bytes:
        """Request a bound token; renew at 80% of its lifetime as the kubelet does."""
        expiration = int(token.get("expirationSeconds", 3607))
        key = f"{volume_name}/{token['path']}"
        value, renew_at = self._tokens.get(key, (b"", 0.0))
        if time.time() < renew_at:
            return value
        value = self.sources.token(self.pod, token.get("audience"), expiration).encode()
        self._tokens[key] = (value, time.time() + expiration * 0.8)
        return value


def write_atomic(target: Path, files: Files, group: int | None = None) -> bool:
    """Publish ``files`` under ``target`` via the ``..data`` swap; returns True if anything changed.

    With ``group`` (the pod's fsGroup) files belong to that group, so a non-root user reads 0440 keys.
    """
    target.mkdir(parents=True, exist_ok=True)
    data_link = target / "..data"
    if data_link.is_symlink() and _read_tree(target / os.readlink(data_link)) == files:
        return False
    stamp = target / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{time.monotonic_ns()}"
    for path, (content, mode) in files.items():
        file = stamp / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(content)
        file.chmod(mode)
        if group is not None:
            os.chown(file, -1, group)
    stamp.chmod(0o755)
    old = os.readlink(data_link) if data_link.is_symlink() else None
    tmp_link = target / "..data_tmp"
    tmp_link.unlink(missing_ok=True)
    tmp_link.symlink_to(stamp.name)
    tmp_link.rename(data_link)
    top_level = {path.split("/", 1)[0] for path in files}
    for name in top_level:
        link = target / name
        if not link.is_symlink():
            link.symlink_to(f"..data/{name}")
    for entry in target.iterdir():
        if not entry.name.startswith("..") and entry.name not in top_level:
            entry.unlink()
    if old:
        shutil.rmtree(target / old, ignore_errors=True)
    return True


def _read_tree(root: Path) -> Files:
    if not root.is_dir():
        return {}
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mode & 0o777)
            for p in root.rglob("*") if p.is_file()}


def decode_data(obj: dict) -> dict[str, bytes]:
    """A Secret's or ConfigMap's data (as returned by the API, JSON form) as bytes per key."""
    data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()} if obj["kind"] == "Secret" else {
        k: v.encode() for k, v in (obj.get("data") or {}).items()}
    if obj["kind"] == "Secret":
        data.update({k: v.encode() for k, v in (obj.get("stringData") or {}).items()})
    else:
        data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return data
