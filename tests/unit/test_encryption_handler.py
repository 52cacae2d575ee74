"""spec.encryption failures become an EncryptionReady condition and leave the keys Secret alone.

The API server is an in-memory stand-in here (the cluster tests run the real one); the Key Vault call is
the real Azure SDK against a port where nothing listens."""

from __future__ import annotations

import base64

from azure.core.credentials import AccessToken

from temporal_mtls_operator.handlers.encryption import reconcile_keys
from temporal_mtls_operator.kube import OwnershipConflict
from temporal_mtls_operator.models.encryption import Encryption

OWNER = {"apiVersion": "temporal-mtls.dev/v1alpha1", "kind": "TemporalClusterClient", "name": "hello", "uid": "u1"}


class Store:
    def __init__(self, objects: dict | None = None, conflict: bool = False) -> None:
        self.objects, self.conflict, self.applied = dict(objects or {}), conflict, []

    def get(self, api_version, kind, namespace, name):
        return self.objects.get(name)

    def apply(self, obj):
        if self.conflict:
            raise OwnershipConflict(f"Secret {obj['metadata']['name']} belongs to someone else")
        self.applied.append(obj)
        self.objects[obj["metadata"]["name"]] = obj
        return obj


class AnyToken:
    def get_token(self, *scopes, **kwargs):
        return AccessToken("t", 2_000_000_000)


def body(status: dict | None = None, annotations: dict | None = None) -> dict:
    return {"metadata": {"name": "hello", "namespace": "apps", "uid": "u1", "annotations": annotations or {}},
            "status": status or {}}


def test_keys_are_made_once_and_reported():
    store = Store()
    condition, status = reconcile_keys(store, body(), Encryption(), OWNER, "demo")
    assert (condition.type, condition.ok, condition.reason) == ("EncryptionReady", True, "KeysReady")
    assert status["secretName"] == "hello-payload-keys" and status["keyIds"] == [status["activeKeyId"]]
    secret = store.objects["hello-payload-keys"]
    _, same = reconcile_keys(store, body({"encryption": status}), Encryption(), OWNER, "demo")
    assert same["activeKeyId"] == status["activeKeyId"]
    assert store.objects["hello-payload-keys"]["data"] == secret["data"]
    material = base64.b64decode(secret["data"][f"{status['activeKeyId']}.key"])
    assert material.hex() not in condition.message + str(status)


def test_an_unreachable_vault_is_a_condition_and_writes_nothing():
    vault = Encryption.model_validate({"azureKeyVault": {"vaultUrl": "https://127.0.0.1:1", "keyName": "kek",
                                                         "verifyChallengeResource": False}})
    store = Store()
    previous = {"secretName": "hello-payload-keys", "activeKeyId": "old"}
    condition, status = reconcile_keys(store, body({"encryption": previous}), vault, OWNER, "demo",
                                       credential=AnyToken())
    assert (condition.ok, condition.reason) == (False, "KeyVaultUnavailable")
    assert condition.message.startswith("cannot wrap a new data key with Key Vault key kek: ServiceRequestError")
    assert store.applied == [] and status == previous


def test_a_missing_vault_ca_secret_and_a_foreign_secret_are_conditions():
    vault = Encryption.model_validate({"azureKeyVault": {"vaultUrl": "https://v", "keyName": "kek",
                                                         "tlsCASecret": "vault-ca"}})
    condition, _ = reconcile_keys(Store(), body(), vault, OWNER, "demo", credential=AnyToken())
    assert (condition.ok, condition.reason) == (False, "VaultTLSConfigInvalid")
    condition, _ = reconcile_keys(Store(conflict=True), body(), Encryption(), OWNER, "demo")
    assert (condition.ok, condition.reason) == (False, "SecretConflict")


def test_the_rotation_annotation_adds_a_key_once():
    store = Store()
    _, first = reconcile_keys(store, body(), Encryption(), OWNER, "demo")
    rotate = {"temporal-mtls.dev/rotate-payload-key": "r1"}
    _, second = reconcile_keys(store, body({"encryption": first}, rotate), Encryption(), OWNER, "demo")
    assert second["activeKeyId"] != first["activeKeyId"] and second["rotation"] == {"handled": "r1"}
    _, third = reconcile_keys(store, body({"encryption": second}, rotate), Encryption(), OWNER, "demo")
    assert third["activeKeyId"] == second["activeKeyId"] and len(third["keyIds"]) == 2
