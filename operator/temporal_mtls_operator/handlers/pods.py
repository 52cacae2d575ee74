"""Steps of a TemporalCluster's reconcile that say why its pods cannot run (diagnosis.py does the reading).

``missing_reference``: a Secret the spec names (persistence.postgresql.passwordSecretRef, tls.caSecretRef) that does
not exist or lacks its key, checked before the schema Job or a server pod is made to wait on it.
``pod_problem``: the cluster's pods (server, schema Job, UI: its labels), the first reason one of them does not run;
its Deployments that cannot create pods and a schema Job that cannot create its pod (quota, admission).
"""

from __future__ import annotations

import datetime as dt

from .. import diagnosis
from ..api import MANAGED_BY
from ..kube import Kube
from ..models.cluster import TemporalClusterSpec
from ..sources import ClusterIdentity


def secret_references(spec: TemporalClusterSpec) -> list[tuple[str, str, str]]:
    """(Secret name, key, the spec field naming it) of every Secret the cluster's pods read and the user brings."""
    pg = spec.persistence.postgresql
    if not pg:
        return []
    refs = [(pg.password_secret_ref.name, pg.password_secret_ref.key, "persistence.postgresql.passwordSecretRef")]
    if pg.tls.enabled and pg.tls.ca_secret_ref:
        refs.append((pg.tls.ca_secret_ref.name, pg.tls.ca_secret_ref.key, "persistence.postgresql.tls.caSecretRef"))
    return refs


def missing_reference(kube: Kube, cluster: ClusterIdentity, spec: TemporalClusterSpec) -> diagnosis.Problem | None:
    for name, key, field in secret_references(spec):
        secret = kube.get("v1", "Secret", cluster.namespace, name)
        if secret is not None and key in {**(secret.get("data") or {}), **(secret.get("stringData") or {})}:
            continue
        what = f"Secret {name} does not exist" if secret is None else f"Secret {name} has no key {key}"
        return diagnosis.Problem("SecretNotFound", f"{what} in namespace {cluster.namespace} ({field}): the schema "
                                                   "Job and the server pods need it; nothing is started before it is "
                                                   "there", "", f"Secret {name}")
    return None


def selector(cluster: ClusterIdentity) -> str:
    return f"app.kubernetes.io/instance={cluster.name},app.kubernetes.io/managed-by={MANAGED_BY}"


def current(pod: dict, schema_job: str | None) -> bool:
    """A schema Job's pod counts only while its Job is the spec's (one of an earlier spec, e.g. with an image that
    does not exist, lingers until its deadline: it says nothing about the cluster now)."""
    labels = (pod.get("metadata") or {}).get("labels") or {}
    if labels.get("app.kubernetes.io/component") != "schema":
        return True
    return (labels.get("batch.kubernetes.io/job-name") or labels.get("job-name")) == schema_job


def pod_problem(kube: Kube, cluster: ClusterIdentity, schema_job: str | None = None) -> diagnosis.Problem | None:
    """The most telling reason any of the cluster's pods (server, the current schema Job, UI) does not run, or
    None."""
    problems = []
    pods = kube.list("v1", "Pod", cluster.namespace, selector(cluster))
    for pod in pods:
        if not current(pod, schema_job):
            continue
        events = []
        if diagnosis.waiting_to_mount(pod):  # only Events say a volume's Secret is missing
            events = kube.list("v1", "Event", cluster.namespace,
                               fields=f"involvedObject.kind=Pod,involvedObject.name={pod['metadata']['name']}")
        problem = diagnosis.pod_problem(pod, events, dt.datetime.now(dt.timezone.utc))
        if problem:
            problems.append(problem)
    for deployment in kube.list("apps/v1", "Deployment", cluster.namespace, selector(cluster)):
        problem = diagnosis.deployment_problem(deployment)
        if problem:
            problems.append(problem)
    if schema_job and not any(current(p, schema_job) and _component(p) == "schema" for p in pods):
        job = kube.get("batch/v1", "Job", cluster.namespace, schema_job)
        if job and not (job.get("status") or {}).get("active"):  # no pod of it: does the Job controller say why?
            events = kube.list("v1", "Event", cluster.namespace,
                               fields=f"involvedObject.kind=Job,involvedObject.name={schema_job}")
            problem = diagnosis.job_problem(job, events)
            if problem:
                problems.append(problem)
    return diagnosis.first(problems)


def _component(pod: dict) -> str:
    return ((pod.get("metadata") or {}).get("labels") or {}).get("app.kubernetes.io/component", "")
