"""Schema gate of a PostgreSQL TemporalCluster: the server Deployments wait for the current schema Job."""

from __future__ import annotations

from ..builders.schema import SchemaState, job_name, schema_job, schema_state
from ..kube import Kube
from ..models.cluster import TemporalClusterSpec
from ..sources import ClusterIdentity


def schema_gate(kube: Kube, cluster: ClusterIdentity, spec: TemporalClusterSpec, status: dict) -> SchemaState:
    """Ready once this version's Job succeeded (kept in status.persistence: the finished Job expires)."""
    name = job_name(cluster, spec)
    recorded = (status or {}).get("persistence") or {}
    if recorded.get("schemaJob") == name and recorded.get("schemaReady"):
        return SchemaState(True, "SchemaReady", f"schema Job {name} succeeded")
    job = kube.get("batch/v1", "Job", cluster.namespace, name)
    if job is None:
        kube.apply(schema_job(cluster, spec))  # a Job's template is immutable: only ever created, never changed
    return schema_state(job, name)
