"""The operator's payload-key decisions (pure) and the keys Secret it writes."""

from __future__ import annotations

import base64
import json

import pytest

from temporal_mtls_operator import payload_keys
from temporal_mtls_operator.builders.encryption import payload_keys_secret
from temporal_mtls_operator.models.encryption import Encryption

SECRET = Encryption()
VAULT = Encryption.model_validate({"azureKeyVault": {"vaultUrl": "https://v.vault.azure.net", "keyName": "kek",
                                                     "apiVersion": "7.6", "cacheTTL": "1m"}})


def test_a_first_round_makes_one_random_32_byte_key_and_names_it_active():
    keys = payload_keys.next_keys({}, SECRET, rotate=False)
    assert keys.created and keys.key_ids == [keys.active]
    assert len(keys.data[f"{keys.active}.key"]) == 32
    assert keys.data["active"] == keys.active.encode()
    assert json.loads(keys.data["codec.json"]) == {"source": "secret", "compress": False}


def test_later_rounds_keep_the_keys_and_a_rotation_adds_one():
    first = payload_keys.next_keys({}, SECRET, rotate=False)
    again = payload_keys.next_keys(first.data, SECRET, rotate=False)
    assert not again.created and again.data == first.data
    rotated = payload_keys.next_keys(first.data, SECRET, rotate=True)
    assert rotated.created and rotated.active != first.active
    assert rotated.data[f"{first.active}.key"] == first.data[f"{first.active}.key"]  # old payloads stay readable
    assert set(rotated.key_ids) == {first.active, rotated.active}


def test_the_vault_path_stores_only_what_wrap_returns():
    seen = []

    def wrap(material):
        seen.append(material)
        return b'{"kid": "https://v/keys/kek/1", "alg": "RSA-OAEP-256", "value": "AA=="}'

    keys = payload_keys.next_keys({}, VAULT, rotate=False, wrap=wrap, vault_ca=b"PEM")
    assert len(seen) == 1 and len(seen[0]) == 32
    assert not [v for v in keys.data.values() if seen[0] in v]  # the data key itself is nowhere in the Secret
    assert keys.data[f"{keys.active}.wrapped"].startswith(b'{"kid"') and keys.data["vault-ca.crt"] == b"PEM"
    assert json.loads(keys.data["codec.json"])["vault"] == {"apiVersion": "7.6", "verifyChallengeResource": True,
                                                            "clientId": None, "caBundle": "vault-ca.crt",
                                                            "cacheTTLSeconds": 60}


def test_a_failing_vault_raises_before_anything_is_written():
    def wrap(_):
        raise ConnectionError("vault down")

    with pytest.raises(ConnectionError):
        payload_keys.next_keys({}, VAULT, rotate=False, wrap=wrap)


def test_switching_to_the_vault_adds_a_wrapped_key_and_keeps_the_plain_one():
    first = payload_keys.next_keys({}, SECRET, rotate=False)
    switched = payload_keys.next_keys(first.data, VAULT, rotate=False, wrap=lambda m: b"{}")
    assert switched.created and f"{first.active}.key" in switched.data and switched.active != first.active


def test_the_secret_is_owned_labelled_and_opaque():
    keys = payload_keys.next_keys({}, SECRET, rotate=False)
    owner = {"apiVersion": "temporal-mtls.dev/v1alpha1", "kind": "TemporalClusterClient", "name": "hello", "uid": "u"}
    secret = payload_keys_secret("hello-payload-keys", "ns", owner, "demo", keys.data)
    assert secret["type"] == "Opaque" and secret["metadata"]["ownerReferences"] == [owner]
    assert secret["metadata"]["labels"]["app.kubernetes.io/component"] == "payload-keys"
    assert {k: base64.b64decode(v) for k, v in secret["data"].items()} == keys.data
