"""The operator's one API module against the real API server: what is success, what is an error."""

from __future__ import annotations

import pytest

from temporal_mtls_operator.kube import Kube, KubeError, OwnershipConflict

pytestmark = pytest.mark.cluster


def secret(namespace: str, name: str, owner: dict | None = None) -> dict:
    meta = {"name": name, "namespace": namespace, **({"ownerReferences": [owner]} if owner else {})}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "stringData": {"k": "v"}}


def test_reads_of_missing_objects_are_none_but_writes_to_them_are_errors(api_client, namespace):
    kube = Kube(api_client)
    assert kube.get("v1", "Secret", namespace, "absent") is None
    with pytest.raises(KubeError) as missing:
        kube.patch_status("v1", "Secret", namespace, "absent", {"phase": "x"})
    assert missing.value.status == 404


def test_create_returns_none_only_when_the_object_already_exists(api_client, namespace):
    kube = Kube(api_client)
    assert kube.create(secret(namespace, "once")) is not None
    assert kube.create(secret(namespace, "once")) is None  # AlreadyExists: the first one wins
    with pytest.raises(KubeError) as invalid:
        kube.create(secret(namespace, "Not_A_Name"))
    assert invalid.value.status == 422


def test_apply_refuses_an_object_it_does_not_own_and_leaves_it_alone(api_client, namespace):
    kube = Kube(api_client)
    foreign = kube.create(secret(namespace, "foreign"))
    owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": "mine", "uid": "11111111-2222-3333-4444-555555555555",
             "controller": True}
    with pytest.raises(OwnershipConflict, match="Secret foreign already exists and belongs to no controller"):
        kube.apply(secret(namespace, "foreign", owner))
    assert kube.get("v1", "Secret", namespace, "foreign")["metadata"]["resourceVersion"] == \
        foreign["metadata"]["resourceVersion"]


def test_an_unreachable_api_server_is_a_kube_error(api_client):
    from kubernetes import client
    configuration = client.Configuration()
    configuration.host = "https://127.0.0.1:1"
    with pytest.raises(KubeError) as down:
        Kube(client.ApiClient(configuration)).get("v1", "Secret", "default", "x")
    assert down.value.status == 0 and str(down.value).startswith("API server answered 0: NewConnectionError")
