"""diagnosis.py on pod status as a kubelet and the scheduler write it (shapes copied from real clusters)."""

from __future__ import annotations

import copy
import datetime

import pytest

from temporal_mtls_operator import diagnosis
from temporal_mtls_operator.api import MANAGED_BY
from temporal_mtls_operator.handlers import pods as pod_step
from temporal_mtls_operator.models.cluster import TemporalClusterSpec, name_problem
from temporal_mtls_operator.sources import ClusterIdentity
from temporal_mtls_operator.sources.self_signed import ca_common_name

IMAGE = "ghcr.io/temporal-mtls-operator/temporal-server:9.9.9"


def server_pod(**status) -> dict:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "demo-server-7d9c6b5f4-x2k8q", "namespace": "prod", "uid": "u1",
                     "labels": {"app.kubernetes.io/instance": "demo", "app.kubernetes.io/component": "server"}},
        "spec": {
            "initContainers": [{"name": "health-probe", "image": "ghcr.io/temporal-mtls-operator/operator:0.1.0"}],
            "containers": [{"name": "temporal", "image": IMAGE,
                            "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]}],
            "volumes": [{"name": "internode-tls", "secret": {"secretName": "demo-internode-tls"}}],
        },
        "status": {"phase": "Pending", "conditions": [
            {"type": "PodReadyToStartContainers", "status": "True", "lastProbeTime": None,
             "lastTransitionTime": "2026-12-02T02:40:11Z"},
            {"type": "Initialized", "status": "True", "lastProbeTime": None, "lastTransitionTime": "2026-12-02T02:40:13Z"},
            {"type": "Ready", "status": "False", "reason": "ContainersNotReady",
             "message": "containers with unready status: [temporal]", "lastTransitionTime": "2026-12-02T02:40:10Z"},
            {"type": "PodScheduled", "status": "True", "lastProbeTime": None,
             "lastTransitionTime": "2026-12-02T02:40:10Z"}],
            "hostIP": "10.0.0.4", "podIP": "10.244.0.17", "startTime": "2026-12-02T02:40:10Z",
            "initContainerStatuses": [{"name": "health-probe", "ready": True, "restartCount": 0, "started": False,
                                       "image": "ghcr.io/temporal-mtls-operator/operator:0.1.0", "imageID": "sha256:ab",
                                       "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                                                                "startedAt": "2026-12-02T02:40:12Z",
                                                                "finishedAt": "2026-12-02T02:40:12Z"}}}],
            **status},
    }


def waiting(reason: str, message: str, **extra) -> dict:
    return {"containerStatuses": [{"name": "temporal", "image": IMAGE, "imageID": "", "ready": False, "started": False,
                                   "restartCount": extra.pop("restarts", 0), "lastState": extra.pop("last", {}),
                                   "state": {"waiting": {"reason": reason, "message": message}}}]}


@pytest.mark.parametrize("reason,message", [
    ("ErrImagePull", f'rpc error: code = NotFound desc = failed to pull and unpack image "{IMAGE}": failed to '
                     f'resolve reference "{IMAGE}": {IMAGE}: not found'),
    ("ImagePullBackOff", f'Back-off pulling image "{IMAGE}"'),
])
def test_an_image_that_cannot_be_pulled_names_the_image_and_the_pod(reason, message):
    problem = diagnosis.pod_problem(server_pod(**waiting(reason, message)))
    assert problem.reason == "ImagePullFailed"
    assert f"image {IMAGE} of container temporal of pod demo-server-7d9c6b5f4-x2k8q" in problem.message
    assert reason in problem.message
    assert problem.subject == f"image {IMAGE}"  # both waiting reasons: one cause, one Event


def schema_pod(message: str) -> dict:
    pod = server_pod(**waiting("CreateContainerConfigError", message))
    pod["metadata"]["name"] = "demo-schema-1-31-4-0a1b2c3d-7kq2p"
    pod["spec"] = {"containers": [{"name": "temporal", "image": "temporalio/admin-tools:1.31.4", "env": [
        {"name": "SQL_USER", "value": "temporal"},
        {"name": "SQL_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "pg-password", "key": "password"}}}]}]}
    return pod


def test_a_missing_secret_names_it_and_the_env_variable_that_needs_it():
    problem = diagnosis.pod_problem(schema_pod('secret "pg-password" not found'))
    assert problem.reason == "SecretNotFound"
    assert problem.message == ("Secret pg-password does not exist in namespace prod: env SQL_PASSWORD of container "
                               "temporal of pod demo-schema-1-31-4-0a1b2c3d-7kq2p needs it")
    assert problem.subject == "Secret pg-password"


def test_a_missing_key_names_the_key():
    problem = diagnosis.pod_problem(schema_pod("couldn't find key password in Secret prod/pg-password"))
    assert (problem.reason, problem.message.split(":")[0]) == ("SecretNotFound",
                                                               "Secret pg-password has no key password in namespace prod")


def test_a_missing_configmap_is_named_as_a_configmap():
    problem = diagnosis.pod_problem(schema_pod('configmap "demo-config" not found'))
    assert problem.reason == "SecretNotFound" and problem.message.startswith("ConfigMap demo-config does not exist")


def test_another_config_error_keeps_the_kubelets_message():
    problem = diagnosis.pod_problem(schema_pod("container has runAsNonRoot and image will run as root"))
    assert problem.reason == "ContainerConfigError" and "runAsNonRoot" in problem.message


def test_a_crash_loop_says_the_last_exit_and_the_tail_of_its_termination_message():
    long_message = "x" * 1000 + " Unable to start server. Error: sql schema version compatibility check failed"
    status = waiting("CrashLoopBackOff", "back-off 40s restarting failed container=temporal "
                                         "pod=demo-server-7d9c6b5f4-x2k8q_prod(u1)", restarts=4,
                     last={"terminated": {"exitCode": 1, "reason": "Error", "message": long_message,
                                          "startedAt": "2026-12-02T02:41:00Z", "finishedAt": "2026-12-02T02:41:02Z",
                                          "containerID": "containerd://4f"}})
    problem = diagnosis.pod_problem(server_pod(**status))
    assert problem.reason == "CrashLoopBackOff"
    assert "container temporal of pod demo-server-7d9c6b5f4-x2k8q keeps exiting" in problem.message
    assert "last exit: Error, exit code 1: ..." in problem.message
    assert problem.message.endswith("sql schema version compatibility check failed")
    assert len(problem.message) < 450
    status["containerStatuses"][0]["restartCount"] = 5  # the next restart: the same cause, the same message
    assert diagnosis.pod_problem(server_pod(**status)) == problem


def test_an_init_container_crash_loop_is_found_first():
    status = waiting("PodInitializing", "")
    status["initContainerStatuses"] = [{"name": "health-probe", "ready": False, "restartCount": 3,
                                        "image": "ghcr.io/temporal-mtls-operator/operator:0.1.0",
                                        "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
                                        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}}}]
    problem = diagnosis.pod_problem(server_pod(**status))
    assert problem.reason == "CrashLoopBackOff"
    assert problem.message.startswith("init container health-probe of pod demo-server-7d9c6b5f4-x2k8q")
    assert "OOMKilled, exit code 137" in problem.message


def test_an_unschedulable_pod_carries_the_schedulers_message():
    pod = server_pod()
    del pod["status"]["initContainerStatuses"]
    pod["status"]["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                    "lastTransitionTime": "2026-12-02T02:40:10Z",
                                    "message": "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes "
                                               "are available: 1 No preemption victims found for incoming pod."}]
    problem = diagnosis.pod_problem(pod)
    assert problem.reason == "Unschedulable"
    assert problem.message.startswith("pod demo-server-7d9c6b5f4-x2k8q cannot be scheduled: 0/1 nodes are available: "
                                      "1 Insufficient cpu.")


def test_a_volume_whose_secret_is_missing_is_found_in_the_pods_events():
    pod = server_pod(**waiting("ContainerCreating", ""))
    del pod["status"]["initContainerStatuses"]
    pod["spec"]["volumes"].append({"name": "postgres-ca", "secret": {"secretName": "pg-ca"}})
    assert diagnosis.waiting_to_mount(pod)
    events = [{"reason": "Scheduled", "message": "Successfully assigned", "lastTimestamp": "2026-12-02T02:40:10Z"},
              {"reason": "FailedMount", "type": "Warning", "lastTimestamp": "2026-12-02T02:40:42Z",
               "message": 'MountVolume.SetUp failed for volume "postgres-ca" : secret "pg-ca" not found'}]
    problem = diagnosis.pod_problem(pod, events)
    assert problem.reason == "SecretNotFound"
    assert problem.message == ("Secret pg-ca does not exist in namespace prod: volume postgres-ca of pod "
                               "demo-server-7d9c6b5f4-x2k8q needs it")


@pytest.mark.parametrize("status", [
    {"phase": "Running", "containerStatuses": [{"name": "temporal", "image": IMAGE, "ready": True, "restartCount": 0,
                                                "state": {"running": {"startedAt": "2026-12-02T02:40:14Z"}}}]},
    {"phase": "Pending", **waiting("ContainerCreating", "")},
    {"phase": "Failed", **waiting("CrashLoopBackOff", "")},  # a finished Job pod: the Job's state says it
])
def test_a_pod_that_runs_or_is_starting_or_finished_has_no_problem(status):
    pod = server_pod()
    pod["status"].update(status)
    assert diagnosis.pod_problem(pod) is None


def test_a_terminating_pod_is_not_diagnosed():
    pod = server_pod(**waiting("ImagePullBackOff", "Back-off"))
    pod["metadata"]["deletionTimestamp"] = "2026-12-02T02:45:00Z"
    assert diagnosis.pod_problem(pod) is None


def test_the_first_problem_is_the_most_telling_one_and_stable():
    crash = diagnosis.Problem("CrashLoopBackOff", "m", "b-pod", "container x")
    secret = diagnosis.Problem("SecretNotFound", "m", "c-pod", "Secret s")
    assert diagnosis.first([crash, secret]) == secret == diagnosis.first([secret, crash])
    assert diagnosis.first([]) is None


class FakeKube:
    def __init__(self, objects: dict, pods: list[dict] = (), events: list[dict] = ()) -> None:
        self.objects, self.pods, self.events, self.calls = objects, list(pods), list(events), []

    def get(self, api_version, kind, namespace, name):
        return copy.deepcopy(self.objects.get((kind, name)))

    def list(self, api_version, kind, namespace, selector="", fields=""):
        self.calls.append((kind, selector, fields))
        return {"Pod": self.pods, "Event": self.events}.get(kind, self.objects.get(("list", kind), []))


POSTGRES = {"persistence": {"postgresql": {"host": "pg", "user": "temporal",
                                           "passwordSecretRef": {"name": "pg-password", "key": "password"},
                                           "tls": {"enabled": True, "caSecretRef": {"name": "pg-ca", "key": "ca.crt"}}}}}
CLUSTER = ClusterIdentity("demo", "prod", "uid-1")


def test_the_secrets_a_postgresql_cluster_names_are_checked_before_any_pod_needs_them():
    spec = TemporalClusterSpec.model_validate(POSTGRES)
    problem = pod_step.missing_reference(FakeKube({}), CLUSTER, spec)
    assert problem.reason == "SecretNotFound"
    assert problem.message.startswith("Secret pg-password does not exist in namespace prod "
                                      "(persistence.postgresql.passwordSecretRef): the schema Job and the server pods")
    kube = FakeKube({("Secret", "pg-password"): {"data": {"password": "c2VjcmV0"}}, ("Secret", "pg-ca"): {"data": {}}})
    problem = pod_step.missing_reference(kube, CLUSTER, spec)
    assert problem.message.startswith("Secret pg-ca has no key ca.crt in namespace prod "
                                      "(persistence.postgresql.tls.caSecretRef)")
    kube.objects[("Secret", "pg-ca")] = {"data": {"ca.crt": "LS0t"}}
    assert pod_step.missing_reference(kube, CLUSTER, spec) is None
    assert pod_step.missing_reference(FakeKube({}), CLUSTER, TemporalClusterSpec()) is None  # SQLite: none


def test_the_pod_step_reads_the_clusters_pods_by_its_labels_and_events_only_of_pods_still_mounting():
    pending = server_pod(**waiting("ContainerCreating", ""))
    del pending["status"]["initContainerStatuses"]
    pending["spec"]["volumes"].append({"name": "postgres-ca", "secret": {"secretName": "pg-ca"}})
    events = [{"reason": "FailedMount", "message": 'MountVolume.SetUp failed for volume "postgres-ca" : '
                                                   'secret "pg-ca" not found'}]
    kube = FakeKube({}, [pending], events)
    assert pod_step.pod_problem(kube, CLUSTER).reason == "SecretNotFound"
    assert kube.calls == [("Pod", f"app.kubernetes.io/instance=demo,app.kubernetes.io/managed-by={MANAGED_BY}", ""),
                          ("Event", "", "involvedObject.kind=Pod,involvedObject.name=demo-server-7d9c6b5f4-x2k8q"),
                          ("Deployment", f"app.kubernetes.io/instance=demo,app.kubernetes.io/managed-by={MANAGED_BY}",
                           "")]
    kube = FakeKube({}, [server_pod(**waiting("ImagePullBackOff", "Back-off"))])
    assert pod_step.pod_problem(kube, CLUSTER).reason == "ImagePullFailed"
    assert [c[0] for c in kube.calls] == ["Pod", "Deployment"]


def test_names_too_long_for_what_the_operator_derives_are_refused_saying_the_limit():
    sqlite, postgres = TemporalClusterSpec(), TemporalClusterSpec.model_validate(POSTGRES)
    assert name_problem("a" * 50, sqlite) is None
    assert "at most 50" in name_problem("a" * 51, sqlite) and "CN <name>-system-worker" in name_problem("a" * 57, sqlite)
    assert name_problem("a" * 40, postgres) is None  # with the default version 1.31.4: the schema Job's 63
    assert "schema Job" in name_problem("a" * 41, postgres)
    assert "matching-headless" in name_problem("a" * 46, postgres)


def test_a_cas_common_name_fits_64_bytes_whatever_the_clusters_name():
    assert ca_common_name("demo", "internode") == "demo internode CA"
    long = ca_common_name("a" * 50, "internode", "20261202024100")
    assert len(long.encode()) == 64 and long.endswith("~ internode CA 20261202024100")


def test_an_unusable_azure_credential_is_a_source_error_not_an_internal_error(monkeypatch, tmp_path):
    from temporal_mtls_operator.models.cluster import AzureKeyVault
    from temporal_mtls_operator.sources import SourceError
    from temporal_mtls_operator.sources.azure_key_vault import AzureKeyVaultSource
    not_a_certificate = tmp_path / "client.pem"
    not_a_certificate.write_text("not a certificate")
    monkeypatch.setenv("AZURE_TENANT_ID", "tenant")
    monkeypatch.setenv("AZURE_CLIENT_ID", "client")
    monkeypatch.setenv("AZURE_CLIENT_CERTIFICATE_PATH", str(not_a_certificate))
    vault = AzureKeyVault.model_validate({"vaultUrl": "https://vault.example", "certificates": {
        "internode": "a", "frontend": "b", "systemWorker": "c", "operatorClient": "d"},
        "caCertificates": {"internode": ["ca"], "frontend": ["ca"]}})
    with pytest.raises(SourceError) as raised:
        AzureKeyVaultSource(FakeKube({}))._clients_for(vault, "prod")
    assert raised.value.reason == "CredentialUnavailable"
    assert "ValueError" in str(raised.value) and "AZURE_" in str(raised.value)


def test_only_the_current_schema_jobs_pods_count():
    old = schema_pod('secret "pg-password" not found')
    old["metadata"]["labels"] = {"app.kubernetes.io/component": "schema",
                                 "batch.kubernetes.io/job-name": "demo-schema-1-31-4-00000000", "job-name": "x"}
    assert pod_step.pod_problem(FakeKube({}, [old]), CLUSTER, "demo-schema-1-31-4-11111111") is None
    assert pod_step.pod_problem(FakeKube({}, [old]), CLUSTER, "demo-schema-1-31-4-00000000").reason == "SecretNotFound"
    assert pod_step.current(server_pod(), None)


def test_a_cluster_name_too_long_is_invalid_spec_saying_the_limit_and_nothing_is_touched(monkeypatch):
    import kopf
    from temporal_mtls_operator.handlers import cluster as handler
    warned = []
    monkeypatch.setattr(kopf, "warn", lambda body, reason, message: warned.append((reason, message)))
    monkeypatch.setattr(handler, "kube", lambda: pytest.fail("no API request for an invalid spec"))
    body = {"metadata": {"name": "a" * 57, "namespace": "prod", "uid": "u", "generation": 3}, "spec": {}}
    patch = kopf.Patch()
    handler._reconcile(body, patch, True)
    ready = patch.status["conditions"][0]
    assert (ready["type"], ready["status"], ready["reason"]) == ("Ready", "False", "InvalidSpec")
    assert "metadata.name is 57 characters; at most 50" in ready["message"]
    assert warned and warned[0][0] == "InvalidSpec"


def test_a_cause_is_announced_once_whatever_the_passes_and_again_when_it_changes(monkeypatch):
    import kopf
    from temporal_mtls_operator.handlers import cluster as handler
    warned = []
    monkeypatch.setattr(kopf, "warn", lambda body, reason, message: warned.append(reason))
    monkeypatch.setattr(handler, "_announced", {})
    body = {"metadata": {"name": "demo", "namespace": "prod", "uid": "u1"}, "status": {}}
    pull = diagnosis.Problem("ImagePullFailed", "image x (ErrImagePull)", "p1", "image x")
    for message in ("image x (ErrImagePull)", "image x (ImagePullBackOff)"):
        handler.Pass(body, kopf.Patch(), True).announce_problem(diagnosis.Problem(pull.reason, message, "p1", "image x"))
    assert warned == ["ImagePullFailed"]
    handler.Pass(body, kopf.Patch(), False).announce_problem(diagnosis.Problem("ImagePullFailed", "m", "p2", "image y"))
    assert warned == ["ImagePullFailed"] * 2
    # A restarted operator (nothing in memory) that finds the cause already in status says nothing more.
    handler._announced.clear()
    body["status"] = {"conditions": [{"type": "Degraded", "status": "True", "reason": "ImagePullFailed"}]}
    handler.Pass(body, kopf.Patch(), True).announce_problem(pull)
    assert warned == ["ImagePullFailed"] * 2


def test_a_deployment_whose_pods_cannot_be_created_says_the_replicasets_words():
    deployment = {"metadata": {"name": "demo-server"}, "status": {"conditions": [
        {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable"},
        {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
         "message": 'pods "demo-server-6c8f9d7b5-" is forbidden: exceeded quota: pods, requested: pods=1, used: '
                    'pods=0, limited: pods=0'},
        {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}]}}
    problem = diagnosis.deployment_problem(deployment)
    assert problem.reason == "FailedCreate"
    assert problem.message.startswith("Deployment demo-server cannot create its pods (FailedCreate: pods "
                                      '"demo-server-6c8f9d7b5-" is forbidden: exceeded quota')
    deployment["status"]["conditions"].pop(1)
    assert diagnosis.deployment_problem(deployment) is None


JOB = "demo-schema-1-31-4-0a1b2c3d"
QUOTA_EVENT = {"reason": "FailedCreate", "type": "Warning", "lastTimestamp": "2026-12-02T02:41:00Z",
               "involvedObject": {"kind": "Job", "name": JOB},
               "message": f'Error creating: pods "{JOB}-x7f2k" is forbidden: exceeded quota: pods, requested: pods=1, '
                          "used: pods=0, limited: pods=0"}


def test_a_schema_job_that_cannot_create_its_pod_is_named_with_the_job_controllers_words():
    job = {"metadata": {"name": JOB, "uid": "j1"}, "status": {"startTime": "2026-12-02T02:40:59Z"}}
    problem = diagnosis.job_problem(job, [QUOTA_EVENT])
    assert problem.reason == "SchemaJobCannotStart"
    assert problem.message.startswith(f"schema Job {JOB} cannot create its pod: Error creating: pods")
    assert diagnosis.job_problem(job, []) is None
    assert diagnosis.job_problem({**job, "status": {"active": 1}}, [QUOTA_EVENT]) is None


def test_the_pod_step_asks_the_jobs_events_only_when_the_current_job_has_no_pod():
    kube = FakeKube({("Job", JOB): {"metadata": {"name": JOB}, "status": {}}}, [], [QUOTA_EVENT])
    assert pod_step.pod_problem(kube, CLUSTER, JOB).reason == "SchemaJobCannotStart"
    assert kube.calls[-1] == ("Event", "", f"involvedObject.kind=Job,involvedObject.name={JOB}")


def test_a_pod_unschedulable_or_waiting_for_a_volume_for_a_moment_is_not_a_problem_yet():
    import datetime as dt
    pod = server_pod()
    del pod["status"]["initContainerStatuses"]
    pod["metadata"]["creationTimestamp"] = "2026-12-02T02:40:00Z"
    pod["status"]["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                    "lastTransitionTime": "2026-12-02T02:40:00Z",
                                    "message": "0/1 nodes are available: pod has unbound immediate "
                                               "PersistentVolumeClaims. not found"}]
    soon, later = (dt.datetime(2026, 12, 2, 2, 40, s, tzinfo=dt.timezone.utc) for s in (10, 31))
    assert diagnosis.pod_problem(pod, now=soon) is None
    assert diagnosis.pod_problem(pod, now=later).reason == "Unschedulable"
    mounting = server_pod(**waiting("ContainerCreating", ""))
    mounting["metadata"]["creationTimestamp"] = "2026-12-02T02:40:00Z"
    del mounting["status"]["initContainerStatuses"]
    events = [{"reason": "FailedMount", "message": 'MountVolume.SetUp failed for volume "internode-tls" : secret '
                                                   '"demo-internode-tls" not found'}]
    assert diagnosis.pod_problem(mounting, events, now=soon) is None
    assert diagnosis.pod_problem(mounting, events, now=later).reason == "SecretNotFound"


def test_a_volume_item_whose_key_is_missing_names_the_secret_and_the_key():
    message = 'MountVolume.SetUp failed for volume "postgres-ca" : references non-existent secret key: ca.crt'
    pod = server_pod(**waiting("ContainerCreating", ""))
    del pod["status"]["initContainerStatuses"]
    pod["spec"]["volumes"].append({"name": "postgres-ca", "secret": {"secretName": "pg-ca",
                                                                     "items": [{"key": "ca.crt", "path": "ca.crt"}]}})
    problem = diagnosis.pod_problem(pod, [{"reason": "FailedMount", "message": message}])
    assert problem.reason == "SecretNotFound"
    assert problem.message == ("Secret pg-ca has no key ca.crt in namespace prod: volume postgres-ca of pod "
                               "demo-server-7d9c6b5f4-x2k8q needs it")


def running_pod(ready: bool, started_at: str) -> dict:
    pod = server_pod()
    pod["status"] = {"phase": "Running", "conditions": [
        {"type": "Ready", "status": str(ready), "lastTransitionTime": "2026-12-02T10:01:30Z"}],
        "containerStatuses": [{"name": "temporal", "ready": ready, "started": True, "image": IMAGE,
                               "state": {"running": {"startedAt": started_at}}}]}
    return pod


def test_a_running_container_that_is_not_ready_names_the_pod_and_since_when():
    now = datetime.datetime(2026, 12, 2, 10, 2, tzinfo=datetime.timezone.utc)
    problem = diagnosis.pod_problem(running_pod(False, "2026-12-02T10:00:00Z"), now=now)
    assert problem == diagnosis.Problem(
        "PodNotReady", "container temporal of pod demo-server-7d9c6b5f4-x2k8q runs but is not Ready since "
        "2026-12-02T10:01:30Z: its readiness probe fails (is the pod cut off from the node, or has the process "
        "stopped answering?)", "demo-server-7d9c6b5f4-x2k8q", "container temporal of pod demo-server-7d9c6b5f4-x2k8q")


def test_a_container_still_warming_up_or_ready_is_no_problem():
    now = datetime.datetime(2026, 12, 2, 10, 0, 30, tzinfo=datetime.timezone.utc)
    assert diagnosis.pod_problem(running_pod(False, "2026-12-02T10:00:00Z"), now=now) is None  # 30 s: a rollout's
    assert diagnosis.pod_problem(running_pod(True, "2026-12-02T09:00:00Z"), now=now) is None
