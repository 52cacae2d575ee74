"""A local-path provisioner, as kind ships: each claim gets a directory on the host.

The real PV controller (in kube-controller-manager) binds claims to the PersistentVolumes
made here, and marks them Released when their claim goes; we then delete data and volume.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from .kubeapi import Kube

PROVISIONER = "localkube.dev/local-path"
STORAGE_CLASS = "standard"  # kind's default class name, so manifests work on both
log = logging.getLogger("localkube.kubelet_node.storage")


class LocalPathProvisioner:
    def __init__(self, kube: Kube, root: Path) -> None:
        self.kube, self.root = kube, root

    def ensure_storage_class(self) -> None:
        self.kube.create("/apis/storage.k8s.io/v1/storageclasses", {
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": STORAGE_CLASS,
                         "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": PROVISIONER, "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate",
        })

    def sync(self) -> None:
        for claim in self.kube.items("/api/v1/persistentvolumeclaims"):
            spec, meta = claim["spec"], claim["metadata"]
            if spec.get("volumeName") or spec.get("storageClassName", STORAGE_CLASS) != STORAGE_CLASS:
                continue
            if meta.get("deletionTimestamp"):
                continue
            self._provision(claim)
        for volume in self.kube.items("/api/v1/persistentvolumes"):
            provisioned_here = volume["metadata"].get("annotations", {}).get("pv.kubernetes.io/provisioned-by") == PROVISIONER
            if provisioned_here and volume.get("status", {}).get("phase") == "Released":
                shutil.rmtree(Path(volume["spec"]["hostPath"]["path"]), ignore_errors=True)
                self.kube.delete(f"/api/v1/persistentvolumes/{volume['metadata']['name']}")

    def _provision(self, claim: dict) -> None:
        meta, spec = claim["metadata"], claim["spec"]
        name = f"pvc-{meta['uid']}"
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o777)  # non-root pods write here too, as with kind's local-path
        created = self.kube.create("/api/v1/persistentvolumes", {
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": name, "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER}},
            "spec": {
                "capacity": {"storage": spec.get("resources", {}).get("requests", {}).get("storage", "1Gi")},
                "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Delete", "storageClassName": STORAGE_CLASS,
                "hostPath": {"path": str(path), "type": "Directory"},
                "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": meta["namespace"],
                             "name": meta["name"], "uid": meta["uid"]},
                "volumeMode": spec.get("volumeMode", "Filesystem"),
            },
        })
        if created:
            log.info("provisioned %s for claim %s/%s", name, meta["namespace"], meta["name"])

    def claim_path(self, namespace: str, claim_name: str) -> Path | None:
        claim = self.kube.get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{claim_name}")
        if not claim or claim.get("status", {}).get("phase") != "Bound":
            return None
        volume = self.kube.get(f"/api/v1/persistentvolumes/{claim['spec']['volumeName']}")
        host_path = (volume or {}).get("spec", {}).get("hostPath", {}).get("path")
        return Path(host_path) if host_path else None
