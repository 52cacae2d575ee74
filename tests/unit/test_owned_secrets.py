"""Repair of the operator's own Secrets (pure part): the data digest and which watch events call for a repair."""

from __future__ import annotations

import base64

from temporal_mtls_operator.builders.client import client_secret
from temporal_mtls_operator.builders.encryption import payload_keys_secret
from temporal_mtls_operator.builders.secret_digest import DATA_DIGEST, changed_by_others, data_digest
from temporal_mtls_operator.builders.ui import ui_object_refs
from temporal_mtls_operator.owned_secrets import Repair, owner_alive, repair_for
from temporal_mtls_operator.sources import ClusterIdentity, TLSMaterial

OWNER = {"apiVersion": "temporal-mtls.dev/v1alpha1", "kind": "TemporalClusterClient", "name": "app", "uid": "u-1",
         "controller": True, "blockOwnerDeletion": True}
MATERIAL = TLSMaterial(b"CERT", b"KEY", b"CA")


def written() -> dict:
    return client_secret("app-temporal-client", "ns", OWNER, "demo", MATERIAL, "profile")


def edited(secret: dict, key: str, value: bytes | None) -> dict:
    data = dict(secret["data"])
    if value is None:
        data.pop(key)
    else:
        data[key] = base64.b64encode(value).decode()
    return {**secret, "data": data}


def test_what_the_operator_writes_matches_its_digest_and_any_edit_does_not():
    secret = written()
    assert secret["metadata"]["annotations"][DATA_DIGEST] == data_digest(secret["data"])
    assert not changed_by_others(secret)
    assert changed_by_others(edited(secret, "tls.crt", b"OTHER"))
    assert changed_by_others(edited(secret, "ca.crt", None))  # a removed key
    assert changed_by_others(edited(secret, "extra", b"x"))  # an added key
    unstamped = {**secret, "metadata": {**secret["metadata"], "annotations": {}}}
    assert changed_by_others(unstamped)  # written before digests existed: reconciled once, then stamped
    keys = payload_keys_secret("app-payload-keys", "ns", OWNER, "demo", {"active": b"k1", "k1.key": b"0" * 32})
    assert not changed_by_others(keys)


def test_digest_does_not_depend_on_key_order_and_holds_no_data():
    secret = written()
    assert data_digest(dict(reversed(list(secret["data"].items())))) == data_digest(secret["data"])
    assert all(value not in data_digest(secret["data"]) for value in secret["data"].values())


def test_only_deletions_and_foreign_edits_of_our_secrets_are_repaired():
    secret = written()
    assert repair_for(None, secret) is None  # a listing of what the operator wrote
    assert repair_for(None, edited(secret, "tls.crt", b"X")) == Repair("TemporalClusterClient", "app", "u-1",
                                                                       "edited")  # edited between two watches
    assert repair_for("ADDED", secret) is None and repair_for("MODIFIED", secret) is None  # our own writes
    assert repair_for("DELETED", secret) == Repair("TemporalClusterClient", "app", "u-1", "deleted")
    assert repair_for("MODIFIED", edited(secret, "tls.crt", b"X")) == Repair("TemporalClusterClient", "app", "u-1",
                                                                             "edited")
    going = {**edited(secret, "tls.crt", b"X"), "metadata": {**secret["metadata"], "deletionTimestamp": "now"}}
    assert repair_for("MODIFIED", going) is None


def test_a_secret_without_our_controller_reference_is_never_repaired():
    secret = edited(written(), "tls.crt", b"X")
    for refs in ([], [{**OWNER, "controller": False}], [{**OWNER, "apiVersion": "example.com/v1"}],
                 [{**OWNER, "kind": "Deployment"}]):
        theirs = {**secret, "metadata": {**secret["metadata"], "ownerReferences": refs}}
        assert repair_for("DELETED", theirs) is None and repair_for("MODIFIED", theirs) is None


def test_the_owner_must_be_the_same_live_object():
    repair = Repair("TemporalClusterClient", "app", "u-1", "deleted")
    assert owner_alive(repair, {"metadata": {"uid": "u-1"}})
    assert not owner_alive(repair, None)  # deleted: garbage collection took its Secrets
    assert not owner_alive(repair, {"metadata": {"uid": "u-2"}})  # re-created under the same name
    assert not owner_alive(repair, {"metadata": {"uid": "u-1", "deletionTimestamp": "now"}})


def test_ui_objects_to_delete_are_exactly_the_ones_ui_objects_makes():
    from temporal_mtls_operator.builders.ui import ui_objects
    from temporal_mtls_operator.models import TemporalClusterSpec
    cluster = ClusterIdentity("demo", "ns", "uid-1")
    made = ui_objects(cluster, TemporalClusterSpec.model_validate({"ui": {}}))
    assert sorted(ui_object_refs(cluster)) == sorted((o["apiVersion"], o["kind"], o["metadata"]["name"]) for o in made)
    assert ui_object_refs(cluster)[0][1] == "Deployment"  # the pod goes first, its certificate last
