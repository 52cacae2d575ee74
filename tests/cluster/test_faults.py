"""Control-plane faults, as a user sees them: the API server down for 30 s in the middle of a CA rotation (Temporal
keeps serving; the rotation resumes with the same new CA; nothing restarts), and etcd restarted while clusters are
being created and changed (every cluster Ready after, and the operator's watches act on the next change).

The components are stopped for real (SIGTERM, as systemd would) and started again with the arguments they had;
the shared test cluster is whole again when each test ends."""

from __future__ import annotations

import time

import pytest

from cluster.test_operator_ha import ca_rotation, get, new_cluster, two_ready_operators
from cluster.test_rotation import restart_count, secret, server_pod
from conftest import condition, wait_for
from temporal_mtls_operator import certs

pytestmark = pytest.mark.cluster

OUTAGE_SECONDS = 30  # how long the API server stays down: longer than the operator's Lease (the chart's 12 s)


def secret_crt(kubectl, namespace: str, name: str) -> bytes:
    return secret(kubectl, namespace, name)["tls.crt"]


def namespaces_answer(access) -> bool:
    """The Temporal frontend answers an mTLS client (the Temporal CLI, with the operator's certificate)."""
    return access.cli("operator", "namespace", "describe", "--namespace", "temporal-system").returncode == 0


@pytest.fixture
def whole_again(local_cluster):
    """Whatever a test stopped is started again, even when it fails half-way."""
    stopped: list[str] = []
    yield stopped
    for component in stopped:
        local_cluster.start_component(component)


def test_a_ca_rotation_resumes_with_the_same_new_ca_after_the_api_server_was_down(
        kubectl, operator, namespace, temporal_cluster, local_cluster, whole_again):
    access = temporal_cluster(name="demo")
    server = server_pod(kubectl, namespace)
    old_ca = secret_crt(kubectl, namespace, "demo-internode-ca")
    kubectl("annotate", "temporalcluster", "demo", "-n", namespace, "temporal-mtls.dev/rotate-ca-internode=outage")
    state = wait_for(lambda: (s := ca_rotation(kubectl, namespace, "demo", "internode")).get("newCA") and s, 60,
                     interval=0.1, what="the rotation to make its new CA")
    new_ca = secret_crt(kubectl, namespace, "demo-internode-ca-next")
    assert state["newCA"] == certs.sha256_fingerprint(certs.load_certificates(new_ca)[0])

    whole_again.append("kube-apiserver")
    local_cluster.stop_component("kube-apiserver")
    down_at = time.monotonic()
    assert kubectl("get", "namespace", namespace, check=False).returncode != 0  # really down
    # What a user sees meanwhile: Temporal serves (its pods and certificates need no API server to run).
    answered = namespaces_answer(access)
    time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_at)))  # the fault's length, not a wait
    local_cluster.start_component("kube-apiserver")
    whole_again.remove("kube-apiserver")
    print(f"\nAPI server down {time.monotonic() - down_at:.1f} s (Temporal answered meanwhile: {answered})")
    assert answered

    # The leader lost its Lease while the API server was away; an operator takes the rotation up where it was.
    done = wait_for(lambda: (s := ca_rotation(kubectl, namespace, "demo", "internode")).get("phase") == "Completed"
                    and s, 420, interval=1, what=lambda: f"the rotation to complete: "
                                                         f"{ca_rotation(kubectl, namespace, 'demo', 'internode')}")
    assert done["newCA"] == state["newCA"] and done["startedAt"] == state["startedAt"], done
    assert secret_crt(kubectl, namespace, "demo-internode-ca") == new_ca  # the very CA made before the outage
    assert secret_crt(kubectl, namespace, "demo-internode-ca-previous") == old_ca
    certs.load_certificates(secret_crt(kubectl, namespace, "demo-internode-tls"))[0].verify_directly_issued_by(
        certs.load_certificates(new_ca)[0])
    wait_for(lambda: condition(get(kubectl, namespace, "demo"), "Ready").get("status") == "True", 120, interval=1,
             what="Ready after the outage")
    now = server_pod(kubectl, namespace)
    assert (now["metadata"]["uid"], restart_count(now)) == (server["metadata"]["uid"], restart_count(server))
    assert wait_for(lambda: namespaces_answer(access), 60, interval=1, what="Temporal after the rotation")
    two_ready_operators(kubectl)  # a leader and a standby again


def test_after_etcd_restarts_every_cluster_becomes_ready_and_the_next_change_is_acted_on(
        kubectl, operator, namespace, temporal_cluster, local_cluster, whole_again):
    temporal_cluster(name="demo")
    new_cluster(kubectl, namespace, "before")  # being reconciled when etcd goes
    whole_again.append("etcd")
    local_cluster.stop_component("etcd")
    local_cluster.start_component("etcd")  # waits until the API server serves again
    whole_again.remove("etcd")
    new_cluster(kubectl, namespace, "after")
    for name in ("demo", "before", "after"):
        wait_for(lambda: condition(get(kubectl, namespace, name), "Ready").get("status") == "True", 300, interval=1,
                 what=lambda: f"TemporalCluster {name} Ready after the etcd restart: "
                              f"{condition(get(kubectl, namespace, name), 'Ready')}")
    # The watches came back (not only the timers): a rotate annotation re-issues the leaves at once.
    leaf = secret_crt(kubectl, namespace, "demo-frontend-tls")
    kubectl("annotate", "temporalcluster", "demo", "-n", namespace, "temporal-mtls.dev/rotate=after-etcd")
    wait_for(lambda: ((get(kubectl, namespace, "demo").get("status") or {}).get("leafRotation") or {})
             .get("handled") == "after-etcd", 30, interval=0.5, what="the rotate annotation to be handled")
    assert secret_crt(kubectl, namespace, "demo-frontend-tls") != leaf
    two_ready_operators(kubectl)
