"""The local control plane is a real one: schema validation, controllers, GC, SSA, RBAC."""

from __future__ import annotations

import json
import uuid

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from conftest import wait_for

pytestmark = pytest.mark.cluster


def _gadget_crd(plural: str) -> dict:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.localkube.test"},
        "spec": {
            "group": "localkube.test",
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": plural[:-1], "kind": plural.capitalize()[:-1]},
            "versions": [{
                "name": "v1", "served": True, "storage": True,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {"spec": {
                        "type": "object", "required": ["size"],
                        "properties": {
                            "size": {"type": "integer", "minimum": 1},
                            "color": {"type": "string", "enum": ["red", "blue"]},
                        },
                    }},
                }},
            }],
        },
    }


def test_crd_schema_rejects_invalid_objects_with_the_api_servers_own_error(kubectl, api_client, namespace):
    plural = f"gadgets{uuid.uuid4().hex[:6]}"
    crd = _gadget_crd(plural)
    kind = crd["spec"]["names"]["kind"]
    kubectl("apply", "-f", "-", input=yaml.safe_dump(crd))
    kubectl("wait", "--for=condition=Established", f"crd/{plural}.localkube.test", "--timeout=60s")
    try:
        def gadget(spec: dict) -> str:
            return yaml.safe_dump({"apiVersion": "localkube.test/v1", "kind": kind,
                                   "metadata": {"name": "g", "namespace": namespace}, "spec": spec})

        rejected = kubectl("apply", "-f", "-", input=gadget({"size": 0, "color": "green"}), check=False)
        assert rejected.returncode != 0
        assert "spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1" in rejected.stderr
        assert 'spec.color: Unsupported value: "green"' in rejected.stderr

        missing = kubectl("apply", "-f", "-", input=gadget({"color": "red"}), check=False)
        assert missing.returncode != 0
        assert "spec.size: Required value" in missing.stderr

        kubectl("apply", "-f", "-", input=gadget({"size": 3, "color": "blue"}))
        stored = json.loads(kubectl("get", plural, "g", "-n", namespace, "-o", "json").stdout)
        assert stored["spec"] == {"size": 3, "color": "blue"}
    finally:
        kubectl("delete", "crd", f"{plural}.localkube.test", "--wait=false")


def test_deployment_produces_a_replicaset_and_pods(api_client, namespace):
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    labels = {"app.kubernetes.io/name": "web"}
    apps.create_namespaced_deployment(namespace, client.V1Deployment(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1DeploymentSpec(
            replicas=2, selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[client.V1Container(name="web", image="example.invalid/web:1")]),
            ),
        ),
    ))
    deployment_uid = apps.read_namespaced_deployment("web", namespace).metadata.uid

    replica_sets = wait_for(lambda: apps.list_namespaced_replica_set(namespace).items, what="a ReplicaSet")
    assert [r.uid for r in replica_sets[0].metadata.owner_references] == [deployment_uid]

    pods = wait_for(lambda: (p := core.list_namespaced_pod(namespace).items) and len(p) == 2 and p,
                    what="two pods")
    assert {ref.uid for p in pods for ref in p.metadata.owner_references} == {replica_sets[0].metadata.uid}


def test_deleting_an_owner_garbage_collects_its_dependents(api_client, namespace):
    core = client.CoreV1Api(api_client)
    owner = core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner")))
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(
        name="dependent",
        owner_references=[client.V1OwnerReference(api_version="v1", kind="ConfigMap", name="owner",
                                                  uid=owner.metadata.uid)],
    )))
    core.delete_namespaced_config_map("owner", namespace)

    def dependent_gone() -> bool:
        try:
            core.read_namespaced_config_map("dependent", namespace)
            return False
        except ApiException as error:
            return error.status == 404

    wait_for(dependent_gone, 60, what="the garbage collector to delete the dependent")


def test_server_side_apply_reports_a_conflict_between_field_managers(kubectl, namespace):
    def config_map(value: str) -> str:
        return yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap",
                               "metadata": {"name": "shared", "namespace": namespace}, "data": {"owner": value}})

    kubectl("apply", "--server-side", "--field-manager=alice", "-f", "-", input=config_map("alice"))
    conflict = kubectl("apply", "--server-side", "--field-manager=bob", "-f", "-", input=config_map("bob"), check=False)
    assert conflict.returncode != 0
    assert "conflict" in conflict.stderr.lower() and '"alice"' in conflict.stderr and ".data.owner" in conflict.stderr

    kubectl("apply", "--server-side", "--field-manager=bob", "--force-conflicts", "-f", "-", input=config_map("bob"))
    stored = json.loads(kubectl("get", "configmap", "shared", "-n", namespace, "-o", "json", "--show-managed-fields").stdout)
    assert stored["data"] == {"owner": "bob"}
    assert [m["manager"] for m in stored["metadata"]["managedFields"]] == ["bob"]


def test_rbac_denies_a_service_account_what_it_was_not_granted(kubectl, namespace):
    service_account = f"system:serviceaccount:{namespace}:default"
    denied = kubectl("auth", "can-i", "list", "secrets", "-n", namespace, f"--as={service_account}", check=False)
    assert denied.stdout.strip() == "no"
    kubectl("create", "role", "secret-reader", "--verb=list", "--resource=secrets", "-n", namespace)
    kubectl("create", "rolebinding", "secret-reader", "--role=secret-reader",
            f"--serviceaccount={namespace}:default", "-n", namespace)
    allowed = wait_for(lambda: kubectl("auth", "can-i", "list", "secrets", "-n", namespace,
                                       f"--as={service_account}", check=False).stdout.strip() == "yes",
                       what="the role binding to take effect")
    assert allowed
