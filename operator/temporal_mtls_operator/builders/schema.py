"""The schema Job of a PostgreSQL TemporalCluster (pure: spec -> Job; Job status -> SchemaState).

temporal-sql-tool (same version as the server, from temporalio/admin-tools:<version>) creates both databases if missing,
sets up schema versioning and upgrades each schema to the version's latest: every step is idempotent, so
the same Job serves a fresh database, a re-run and a version bump. Its name carries the version and a
digest of the connection, so a bump or another database gets a new Job; finished Jobs expire (TTL), and a
failed one is then created again: retries with backoff without the operator deleting anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..models.cluster import TemporalClusterSpec
from ..render.config import POSTGRES_CA_DIR, POSTGRES_CA_FILE
from ..sources.base import ClusterIdentity
from .common import digest, meta
from .security import SERVER_USER

SCHEMAS = {"database": "postgresql/v12/temporal", "visibility_database": "postgresql/v12/visibility"}
FINISHED_TTL_SECONDS = 120  # a failed Job is retried this long after its last attempt
BACKOFF_LIMIT = 3  # pod retries inside one Job (the Job controller's backoff: 10 s, 20 s, 40 s)

# Runs in the admin-tools image of the server's version: the same tool and embedded schema files.
SCRIPT = """set -eu
for pair in "$DATABASE:$DATABASE_SCHEMA" "$VISIBILITY_DATABASE:$VISIBILITY_SCHEMA"; do
  db=${pair%%:*}; schema=${pair#*:}
  echo "database $db: create if missing, set up versioning, update to the latest $schema"
  temporal-sql-tool --db "$db" create-database --defaultdb postgres
  temporal-sql-tool --db "$db" setup-schema -v 0.0
  temporal-sql-tool --db "$db" update-schema --schema-name "$schema"
done
echo "schemas ready"
"""


@dataclass(frozen=True)
class SchemaState:
    ready: bool
    reason: str  # SchemaReady, SchemaJobRunning, SchemaJobFailing, SchemaJobFailed
    message: str


def job_name(cluster: ClusterIdentity, spec: TemporalClusterSpec) -> str:
    pg = spec.persistence.postgresql
    connection = digest(pg.host, str(pg.port), pg.database, pg.visibility_database, pg.user, spec.server_image,
                         spec.schema_image)[:8]
    return f"{cluster.name}-schema-{spec.version.replace('.', '-')}-{connection}"


def schema_job(cluster: ClusterIdentity, spec: TemporalClusterSpec) -> dict:
    pg = spec.persistence.postgresql
    env = [{"name": "SQL_PLUGIN", "value": "postgres12"}, {"name": "SQL_HOST", "value": pg.host},
           {"name": "SQL_PORT", "value": str(pg.port)}, {"name": "SQL_USER", "value": pg.user},
           {"name": "SQL_PASSWORD", "valueFrom": {"secretKeyRef": pg.password_secret_ref.model_dump()}},
           {"name": "DATABASE", "value": pg.database}, {"name": "DATABASE_SCHEMA", "value": SCHEMAS["database"]},
           {"name": "VISIBILITY_DATABASE", "value": pg.visibility_database},
           {"name": "VISIBILITY_SCHEMA", "value": SCHEMAS["visibility_database"]}]
    mounts, volumes = [{"name": "tmp", "mountPath": "/tmp"}], [{"name": "tmp", "emptyDir": {}}]
    if pg.tls.enabled:
        # Host verification stays on (the tool's default): sslmode verify-full.
        env += [{"name": "SQL_TLS", "value": "true"}, {"name": "SQL_TLS_CA_FILE", "value": POSTGRES_CA_FILE},
                {"name": "SQL_TLS_SERVER_NAME", "value": pg.host}]
        mounts.append({"name": "postgres-ca", "mountPath": POSTGRES_CA_DIR, "readOnly": True})
        volumes.append(postgres_ca_volume(spec))
    name = job_name(cluster, spec)
    pod_labels = {**meta(cluster, name, "schema")["labels"]}
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": meta(cluster, name, "schema"),
        "spec": {
            "backoffLimit": BACKOFF_LIMIT, "activeDeadlineSeconds": 600,
            "ttlSecondsAfterFinished": FINISHED_TTL_SECONDS,
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "restartPolicy": "Never", "automountServiceAccountToken": False, "enableServiceLinks": False,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": SERVER_USER, "runAsGroup": SERVER_USER,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "schema", "image": spec.schema_image, "command": ["sh", "-c", SCRIPT], "env": env,
                        "terminationMessagePolicy": "FallbackToLogsOnError",  # a crash says why in status
                        "volumeMounts": mounts,
                        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}},
                    }],
                    "volumes": volumes,
                },
            },
        },
    }


def postgres_ca_volume(spec: TemporalClusterSpec) -> dict:
    ref = spec.persistence.postgresql.tls.ca_secret_ref
    return {"name": "postgres-ca", "secret": {"secretName": ref.name, "items": [{"key": ref.key, "path": "ca.crt"}],
                                              "defaultMode": 0o444}}


def schema_state(job: dict | None, name: str) -> SchemaState:
    """What the Job says: done, still trying, failing (attempts so far) or failed for good (until it expires)."""
    if not job:
        return SchemaState(False, "SchemaJobRunning", f"schema Job {name} created")
    status = job.get("status") or {}
    conditions = {c["type"]: c for c in status.get("conditions") or [] if c.get("status") == "True"}
    if "Complete" in conditions or status.get("succeeded"):
        return SchemaState(True, "SchemaReady", f"schema Job {name} succeeded")
    logs = f"kubectl logs job/{name} -n {job['metadata'].get('namespace', '')}"
    if "Failed" in conditions:
        why = conditions["Failed"].get("reason") or "Failed"
        return SchemaState(False, "SchemaJobFailed",
                           f"schema Job {name} failed ({why}, {status.get('failed', 0)} attempts): is the database "
                           f"reachable and the password right? ({logs}); retried {FINISHED_TTL_SECONDS}s after its "
                           "last attempt; no server pod starts before the schema is ready")
    if status.get("failed"):
        return SchemaState(False, "SchemaJobFailing",
                           f"schema Job {name}: {status['failed']} failed attempt(s), retrying with backoff ({logs}); "
                           "no server pod starts before the schema is ready")
    return SchemaState(False, "SchemaJobRunning", f"schema Job {name} is running")
