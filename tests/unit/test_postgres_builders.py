"""PostgreSQL topology builders: schema Job, per-service Deployments, the password only as a secretKeyRef."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from temporal_mtls_operator.builders.cluster import cluster_objects
from temporal_mtls_operator.builders.schema import job_name, schema_job, schema_state
from temporal_mtls_operator.models import TemporalClusterSpec

from .test_builders import CLUSTER, materials

POSTGRES = {"host": "postgres", "user": "temporal", "passwordSecretRef": {"name": "pg", "key": "password"}}


def spec(**extra) -> TemporalClusterSpec:
    return TemporalClusterSpec.model_validate({"persistence": {"postgresql": POSTGRES},
                                               "services": {"frontend": {"replicas": 2}, "history": {"replicas": 2}},
                                               **extra})


def test_each_service_is_its_own_deployment_and_the_frontend_rolls_without_losing_a_pod():
    objects = cluster_objects(CLUSTER, spec(), materials(spec()))
    deployments = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    assert {n: d["spec"]["replicas"] for n, d in deployments.items()} == {
        "demo-frontend": 2, "demo-history": 2, "demo-matching": 1, "demo-worker": 1}
    for name, deployment in deployments.items():
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        service = name.removeprefix("demo-")
        # The frontend pods also run the internal frontend (system workers' endpoint with authorization on).
        twin = ["--service", "internal-frontend"] if service == "frontend" else []
        assert container["command"][container["command"].index("start") + 1:] == ["--service", service, *twin]
        assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
        password = next(e for e in container["env"] if e["name"] == "TEMPORAL_POSTGRES_PASSWORD")
        assert password["valueFrom"] == {"secretKeyRef": {"name": "pg", "key": "password"}}
    frontend = next(o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == "demo-frontend")
    assert frontend["spec"]["selector"]["app.kubernetes.io/component"] == "frontend"
    assert {o["metadata"]["name"] for o in objects if o["kind"] == "PodDisruptionBudget"} == set(deployments)
    assert not [o for o in objects if o["kind"] == "PersistentVolumeClaim"]  # no SQLite claim
    # Deployments come last: the handler holds them back until the schema Job succeeded.
    assert all(o["kind"] == "Deployment" for o in objects[-4:])


def test_the_config_takes_the_password_from_env_at_start_never_as_a_value():
    config = next(o for o in cluster_objects(CLUSTER, spec(), materials(spec())) if o["kind"] == "ConfigMap")
    text = config["data"]["config-history.yaml"]
    assert text.startswith("# enable-template")
    assert 'password: {{ env "TEMPORAL_POSTGRES_PASSWORD" | quote }}' in text
    stores = yaml.safe_load(text.replace('{{ env "TEMPORAL_POSTGRES_PASSWORD" | quote }}', "x")
                            .replace('{{ env "POD_IP" }}', "ip"))["persistence"]["datastores"]
    assert {k: (v["sql"]["pluginName"], v["sql"]["databaseName"]) for k, v in stores.items()} == {
        "default": ("postgres12", "temporal"), "visibility": ("postgres12", "temporal_visibility")}


def test_tls_to_postgres_verifies_the_host_with_the_given_ca():
    tls = {"tls": {"enabled": True, "caSecretRef": {"name": "pg-ca", "key": "ca.crt"}}}
    s = TemporalClusterSpec.model_validate({"persistence": {"postgresql": {**POSTGRES, **tls}}})
    job = schema_job(CLUSTER, s)
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["SQL_TLS"] == "true" and env["SQL_TLS_SERVER_NAME"] == "postgres"
    assert "SQL_TLS_DISABLE_HOST_VERIFICATION" not in env
    config = next(o for o in cluster_objects(CLUSTER, s, materials(s)) if o["kind"] == "ConfigMap")
    assert "enableHostVerification: true" in config["data"]["config-frontend.yaml"]
    with pytest.raises(ValidationError, match="caSecretRef is required"):
        TemporalClusterSpec.model_validate({"persistence": {"postgresql": {**POSTGRES, "tls": {"enabled": True}}}})


def test_a_version_bump_or_another_database_gets_a_new_schema_job():
    base = job_name(CLUSTER, spec())
    assert base.startswith("demo-schema-1-31-4-")
    assert job_name(CLUSTER, spec(version="1.31.5")).startswith("demo-schema-1-31-5-")
    other = TemporalClusterSpec.model_validate({"persistence": {"postgresql": {**POSTGRES, "database": "t2"}}})
    assert job_name(CLUSTER, other) != base
    job = schema_job(CLUSTER, spec())
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert job["spec"]["ttlSecondsAfterFinished"] > 0  # a failed Job expires and is created again: the retry


def test_schema_state_follows_the_job():
    name = "demo-schema-1-31-4-x"
    job = {"metadata": {"name": name, "namespace": "apps"}}
    assert schema_state({**job, "status": {"active": 1}}, name).reason == "SchemaJobRunning"
    failing = schema_state({**job, "status": {"active": 1, "failed": 2}}, name)
    assert (failing.ready, failing.reason) == (False, "SchemaJobFailing") and "2 failed attempt(s)" in failing.message
    failed = schema_state({**job, "status": {"failed": 4, "conditions": [
        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}}, name)
    assert failed.reason == "SchemaJobFailed" and "BackoffLimitExceeded" in failed.message
    assert schema_state({**job, "status": {"succeeded": 1}}, name).ready


def test_sqlite_rejects_more_than_one_replica():
    with pytest.raises(ValidationError, match="services.history.replicas > 1 needs persistence.postgresql"):
        TemporalClusterSpec.model_validate({"services": {"history": {"replicas": 2}}})


class FakeKube:
    def __init__(self, job: dict | None) -> None:
        self.job, self.applied = job, []

    def get(self, api_version, kind, namespace, name):
        assert (api_version, kind) == ("batch/v1", "Job")
        return self.job

    def apply(self, obj):
        self.applied.append(obj)
        return obj


def test_the_gate_creates_the_job_once_and_trusts_a_recorded_success():
    from temporal_mtls_operator.handlers.schema import schema_gate
    s = spec()
    kube = FakeKube(None)
    assert schema_gate(kube, CLUSTER, s, {}).reason == "SchemaJobRunning"
    assert [o["kind"] for o in kube.applied] == ["Job"]
    failing = FakeKube({"metadata": {"name": job_name(CLUSTER, s)}, "status": {"failed": 1, "active": 1}})
    assert schema_gate(failing, CLUSTER, s, {}).reason == "SchemaJobFailing" and failing.applied == []
    # The Job expired after its success: status.persistence remembers it, nothing runs again.
    recorded = {"persistence": {"schemaJob": job_name(CLUSTER, s), "schemaReady": True}}
    assert schema_gate(FakeKube(None), CLUSTER, s, recorded).ready
    # A bump: the recorded Job is the old version's, so the new one runs first.
    bumped = TemporalClusterSpec.model_validate({**s.model_dump(by_alias=True), "version": "1.31.5"})
    assert not schema_gate(FakeKube(None), CLUSTER, bumped, recorded).ready


def test_the_schema_job_runs_temporal_sql_tool_from_admin_tools_of_the_same_version():
    job = schema_job(CLUSTER, spec())
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "temporalio/admin-tools:1.31.4"
    assert "temporal-sql-tool" in container["command"][-1]
    own = TemporalClusterSpec.model_validate({"persistence": {"postgresql": {**POSTGRES, "schemaImage": "my/tools:1"}}})
    assert schema_job(CLUSTER, own)["spec"]["template"]["spec"]["containers"][0]["image"] == "my/tools:1"


def test_each_service_mounts_and_names_only_the_tls_it_loads():
    objects = cluster_objects(CLUSTER, spec(), materials(spec()))
    config = next(o for o in objects if o["kind"] == "ConfigMap")["data"]
    expected = {"frontend": {"internode", "frontend", "systemWorker"}, "history": {"internode", "systemWorker"},
                "matching": {"internode"}, "worker": {"internode", "systemWorker"}}
    for service, sections in expected.items():
        pod = next(o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == f"demo-{service}"
                   )["spec"]["template"]["spec"]
        assert f"/etc/temporal/config/config-{service}.yaml" in pod["containers"][0]["command"]
        text = config[f"config-{service}.yaml"]
        rendered = yaml.safe_load(text.replace('{{ env "TEMPORAL_POSTGRES_PASSWORD" | quote }}', "x")
                                  .replace('{{ env "POD_IP" }}', "ip"))
        tls = rendered["global"]["tls"]
        assert set(tls) - {"refreshInterval", "expirationChecks"} == sections
        # Every file the config names is in a mounted Secret (Temporal fails its start on a missing one).
        mounted = {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        named = {str(f).rsplit("/", 1)[0] for section in sections for f in _files(tls[section])}
        assert named <= mounted, (service, named - mounted)
        secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
        assert ("demo-frontend-tls" in secrets) == (service == "frontend")


def _files(section) -> list[str]:
    if isinstance(section, dict):
        return [f for k, v in section.items() for f in ([v] if k.endswith("File") else
                                                        v if k.endswith("Files") else _files(v))]
    return []


def test_a_stopping_frontend_pod_keeps_serving_while_the_service_drops_it_only_when_scaled():
    def dynamic(s: TemporalClusterSpec) -> dict:
        objects = cluster_objects(CLUSTER, s, materials(s))
        return yaml.safe_load(next(o for o in objects if o["kind"] == "ConfigMap")["data"]["dynamic.yaml"])

    assert dynamic(spec())["frontend.shutdownFailHealthCheckDuration"] == [{"value": "5s"}]
    assert "frontend.shutdownFailHealthCheckDuration" not in dynamic(TemporalClusterSpec())  # Recreate: no wait


def test_a_new_cluster_starts_one_history_pod_alone_until_it_is_available():
    from temporal_mtls_operator.builders.services import first_start
    deployments = [o for o in cluster_objects(CLUSTER, spec(), materials(spec())) if o["kind"] == "Deployment"]
    # Nothing observed: only history, at one replica (its first start writes the cluster metadata row).
    alone = first_start(CLUSTER, deployments, {})
    assert [(d["metadata"]["name"], d["spec"]["replicas"]) for d in alone] == [("demo-history", 1)]
    assert alone[0]["spec"]["template"] == next(d for d in deployments if d["metadata"]["name"] == "demo-history")[
        "spec"]["template"]
    starting = {"demo-history": {"status": {"replicas": 1}}}
    assert [d["metadata"]["name"] for d in first_start(CLUSTER, deployments, starting)] == ["demo-history"]
    # Its pod is available: all four at their replicas.
    assert first_start(CLUSTER, deployments, {"demo-history": {"status": {"availableReplicas": 1}}}) == deployments
    # A running cluster (another Deployment exists, e.g. during a version bump): never staged again.
    assert first_start(CLUSTER, deployments, {"demo-matching": {"status": {}}}) == deployments
