"""Rotation decisions phase by phase (rotation.py), and the self-signed source's CA steps against an in-memory API:
a next CA is made once and adopted after a restart, promotion is idempotent at every step."""

from __future__ import annotations

import base64
import copy
import datetime as dt

import pytest

from temporal_mtls_operator import certs, rotation
from temporal_mtls_operator.models.cluster import MTLS
from temporal_mtls_operator.sources import ClusterIdentity, RotationRequest, SelfSignedSource, SourceError
from temporal_mtls_operator.sources.self_signed import secret_data

NOW = dt.datetime(2026, 11, 29, 12, 0, tzinfo=dt.timezone.utc)
IDLE = rotation.CAObservation(current_ca="OLD", next_ca=None, expires_soon=False)
DONE = rotation.ConsumerObservation(rollout_complete=True)


# -- leaves ------------------------------------------------------------------------------------------------------------

def test_a_rotate_value_is_handled_once():
    annotations = {rotation.ROTATE_ANNOTATION: "v1"}
    assert rotation.leaf_rotation_requested(annotations, {}) == "v1"
    handled = {"leafRotation": rotation.leaf_rotation_handled("v1", NOW)}
    assert handled["leafRotation"] == {"handled": "v1", "reissuedAt": "2026-11-29T12:00:00Z"}
    assert rotation.leaf_rotation_requested(annotations, handled) is None
    assert rotation.leaf_rotation_requested({rotation.ROTATE_ANNOTATION: "v2"}, handled) == "v2"
    assert rotation.leaf_rotation_requested({}, handled) is None


# -- starting a CA rotation ------------------------------------------------------------------------------------------

def test_nothing_starts_without_a_reason():
    assert rotation.start_trigger(None, None, IDLE) is None


def test_an_annotation_value_starts_one_rotation():
    assert rotation.start_trigger("v1", None, IDLE) == "annotation"
    state = rotation.started(None, "annotation", "v1", "OLD", "NEW", NOW)
    assert state["phase"] == rotation.TRUSTING_NEW_CA and state["requested"] == "v1"
    assert state["phaseTimes"] == {rotation.TRUSTING_NEW_CA: "2026-11-29T12:00:00Z"}
    assert rotation.start_trigger("v1", state, IDLE) is None  # running
    assert rotation.start_trigger("v1", {**state, "phase": rotation.COMPLETED}, IDLE) is None  # handled
    assert rotation.start_trigger("v2", {**state, "phase": rotation.COMPLETED}, IDLE) == "annotation"


def test_an_expiring_ca_starts_a_rotation_unless_a_fresh_ca_would_expire_as_soon():
    expiring = rotation.CAObservation(current_ca="OLD", next_ca=None, expires_soon=True)
    assert rotation.start_trigger(None, None, expiring) == "expiry"
    hopeless = rotation.CAObservation(current_ca="OLD", next_ca=None, expires_soon=True,
                                      auto_rotation_possible=False)
    assert rotation.start_trigger(None, None, hopeless) is None


def test_a_next_ca_without_a_recorded_rotation_is_adopted_not_replaced():
    lost = rotation.CAObservation(current_ca="OLD", next_ca="NEW", expires_soon=False)
    assert rotation.start_trigger(None, None, lost) == "resumed"
    assert rotation.start_trigger(None, {"phase": rotation.COMPLETED}, lost) == "resumed"


# -- phases ------------------------------------------------------------------------------------------------------------

@pytest.fixture
def trusting() -> dict:
    return rotation.started(None, "annotation", "v1", "OLD", "NEW", NOW)


def test_trusting_new_ca_waits_for_the_rollout_then_for_every_client_secret(trusting):
    held = rotation.advance(trusting, rotation.ConsumerObservation(rollout_complete=False), NOW)
    assert held["phase"] == rotation.TRUSTING_NEW_CA and "roll out" in held["message"]
    held = rotation.advance(trusting, rotation.ConsumerObservation(True, without_new_ca=("hello-temporal-client",)))
    assert held["phase"] == rotation.TRUSTING_NEW_CA
    assert held["message"] == "waiting for Secret hello-temporal-client to trust the new CA (ca.crt)"
    # Our server build rolls nothing: a pod that has not read the old + new bundle yet refuses a new-CA client.
    held = rotation.advance(trusting, rotation.ConsumerObservation(True, new_ca_accepted=False,
                                                                   without_new_ca=("hello-temporal-client",)))
    assert held["phase"] == rotation.TRUSTING_NEW_CA and held["message"] == rotation.AWAITING_NEW_CA_ACCEPTED
    assert rotation.awaiting_served_leaf({"caRotation": {"internode": held}})  # looked at every few seconds
    moved = rotation.advance(trusting, DONE, NOW + dt.timedelta(minutes=1))
    assert moved["phase"] == rotation.REISSUING_LEAVES and moved["message"] == ""
    assert moved["phaseTimes"][rotation.REISSUING_LEAVES] == "2026-11-29T12:01:00Z"
    assert rotation.signs_with_new_ca(moved) and not rotation.signs_with_new_ca(trusting)


def test_reissuing_leaves_waits_until_every_certificate_is_from_the_new_ca(trusting):
    reissuing = {**trusting, "phase": rotation.REISSUING_LEAVES}
    held = rotation.advance(reissuing, rotation.ConsumerObservation(True, not_from_new_ca=("a", "b")))
    assert held["phase"] == rotation.REISSUING_LEAVES
    assert held["message"] == "waiting for Secrets a, b to carry a certificate issued by the new CA"
    # Every Secret is re-issued, but the pod still serves the old leaf (volume not refreshed, not reloaded yet).
    held = rotation.advance(reissuing, rotation.ConsumerObservation(True, serving_new_ca=False))
    assert held["phase"] == rotation.REISSUING_LEAVES
    assert held["message"] == "waiting for the server to present a certificate issued by the new CA"
    assert rotation.awaiting_served_leaf({"caRotation": {"frontend": held}})  # looked at every few seconds
    assert not rotation.awaiting_served_leaf({"caRotation": {"frontend": reissuing}})
    moved = rotation.advance(reissuing, DONE, NOW)
    assert moved["phase"] == rotation.REMOVING_OLD_CA and rotation.needs_promotion(moved)
    assert rotation.signs_with_new_ca(moved)  # a client reconciling before the promotion keeps the new CA


def test_removing_old_ca_waits_for_the_rollout_and_for_clients_to_drop_it(trusting):
    removing = {**trusting, "phase": rotation.REMOVING_OLD_CA}
    assert rotation.advance(removing, rotation.ConsumerObservation(False))["phase"] == rotation.REMOVING_OLD_CA
    held = rotation.advance(removing, rotation.ConsumerObservation(True, trusting_old_ca=("app",)))
    assert held["phase"] == rotation.REMOVING_OLD_CA and "drop the old CA" in held["message"]
    # Rolled out, but a pod still takes an old-CA client certificate (it mounted the bundle of old and new).
    held = rotation.advance(removing, rotation.ConsumerObservation(True, old_ca_refused=False))
    assert held["phase"] == rotation.REMOVING_OLD_CA and held["message"] == rotation.AWAITING_OLD_CA_REFUSED
    assert rotation.awaiting_served_leaf({"caRotation": {"internode": held}})  # looked at every few seconds
    done = rotation.advance(removing, DONE, NOW)
    assert done["phase"] == rotation.COMPLETED and rotation.COMPLETED in done["phaseTimes"]
    assert rotation.advance(done, rotation.ConsumerObservation(False)) == done  # finished stays finished


def test_the_condition_summarises_both_domains(trusting):
    assert rotation.summary({}) == (False, "Idle", "")
    assert rotation.summary({"frontend": {"phase": rotation.COMPLETED}}) == (False, "Idle", "")
    held = {**trusting, "message": "waiting for X"}
    assert rotation.summary({"frontend": held}) == (True, "Waiting", "frontend: TrustingNewCA, waiting for X")


def test_pending_rotations_for_the_event_handler():
    assert not rotation.rotation_pending({}, {})
    assert rotation.rotation_pending({rotation.ROTATE_CA_ANNOTATIONS["frontend"]: "x"}, {})
    running = {"caRotation": {"frontend": {"phase": rotation.REISSUING_LEAVES, "requested": "x"}}}
    assert not rotation.rotation_pending({rotation.ROTATE_CA_ANNOTATIONS["frontend"]: "x"}, running)
    assert not rotation.rotation_pending({rotation.ROTATE_CA_ANNOTATIONS["frontend"]: "y"}, running)  # waits


# -- the self-signed source's CA steps ---------------------------------------------------------------------------------

class MemoryKube:
    """Secrets in a dict; apply replaces the keys the operator applies, as server-side apply does for its fields."""

    def __init__(self) -> None:
        self.secrets: dict[str, dict] = {}

    def get(self, api_version, kind, namespace, name):
        return copy.deepcopy(self.secrets.get(name))

    def create(self, obj):
        if obj["metadata"]["name"] in self.secrets:
            return None
        self.secrets[obj["metadata"]["name"]] = copy.deepcopy(obj)
        return obj

    def apply(self, obj):
        self.secrets[obj["metadata"]["name"]] = copy.deepcopy(obj)
        return obj


CLUSTER = ClusterIdentity("demo", "apps", "uid-1")
SPEC = MTLS()


def ca_of(kube: MemoryKube, name: str) -> bytes | None:
    return secret_data(kube.secrets.get(name)).get("tls.crt")


def test_a_next_ca_is_made_once_trusted_beside_the_old_and_signs_only_when_asked():
    kube = MemoryKube()
    source = SelfSignedSource(kube)
    old = source.ca(CLUSTER, "frontend", SPEC)
    assert source.next_ca(CLUSTER, "frontend", SPEC) is None
    made = source.next_ca(CLUSTER, "frontend", SPEC, create=True)
    assert source.next_ca(CLUSTER, "frontend", SPEC, create=True) == made  # a restarted operator adopts it
    signer, bundle = source.trust(CLUSTER, "frontend", SPEC, RotationRequest())
    assert signer == old and bundle == old.cert_pem + made.cert_pem
    signer, _ = source.trust(CLUSTER, "frontend", SPEC, RotationRequest(new_ca_signs=frozenset({"frontend"})))
    assert signer == made
    assert source.trust(CLUSTER, "internode", SPEC, RotationRequest(new_ca_signs=frozenset({"frontend"})))[1] \
        == source.ca(CLUSTER, "internode", SPEC).cert_pem  # the other domain is untouched


def test_promotion_keeps_the_old_ca_as_previous_empties_next_and_repeats_harmlessly():
    kube = MemoryKube()
    source = SelfSignedSource(kube)
    old = source.ca(CLUSTER, "frontend", SPEC)
    made = source.next_ca(CLUSTER, "frontend", SPEC, create=True)
    source.promote_next_ca(CLUSTER, "frontend")
    assert ca_of(kube, "demo-frontend-ca") == made.cert_pem
    assert ca_of(kube, "demo-frontend-ca-previous") == old.cert_pem
    assert secret_data(kube.secrets["demo-frontend-ca-next"]) == {}
    assert source.next_ca(CLUSTER, "frontend", SPEC) is None
    source.promote_next_ca(CLUSTER, "frontend")  # a retried pass
    assert ca_of(kube, "demo-frontend-ca-previous") == old.cert_pem
    signer, bundle = source.trust(CLUSTER, "frontend", SPEC, RotationRequest(new_ca_signs=frozenset({"frontend"})))
    assert signer == made and bundle == made.cert_pem


def test_a_promotion_interrupted_after_the_ca_was_replaced_finishes_without_touching_previous():
    kube = MemoryKube()
    source = SelfSignedSource(kube)
    old = source.ca(CLUSTER, "internode", SPEC)
    made = source.next_ca(CLUSTER, "internode", SPEC, create=True)
    # As if killed after writing -ca-previous and -ca, before emptying -ca-next:
    kube.secrets["demo-internode-ca-previous"] = copy.deepcopy(kube.secrets["demo-internode-ca"])
    kube.secrets["demo-internode-ca"]["data"] = copy.deepcopy(kube.secrets["demo-internode-ca-next"]["data"])
    source.promote_next_ca(CLUSTER, "internode")
    assert ca_of(kube, "demo-internode-ca") == made.cert_pem
    assert ca_of(kube, "demo-internode-ca-previous") == old.cert_pem
    assert source.next_ca(CLUSTER, "internode", SPEC) is None


def test_a_later_rotation_reuses_the_emptied_next_secret():
    kube = MemoryKube()
    source = SelfSignedSource(kube)
    source.ca(CLUSTER, "frontend", SPEC)
    source.next_ca(CLUSTER, "frontend", SPEC, create=True)
    source.promote_next_ca(CLUSTER, "frontend")
    second = source.next_ca(CLUSTER, "frontend", SPEC, create=True)
    assert ca_of(kube, "demo-frontend-ca-next") == second.cert_pem != ca_of(kube, "demo-frontend-ca")


def test_a_rotate_request_reissues_leaves_from_the_same_ca():
    kube = MemoryKube()
    source = SelfSignedSource(kube)
    first = source.materials(CLUSTER, SPEC)
    for role, material in first.items():
        pem = {"tls.crt": material.cert_pem, "tls.key": material.key_pem}
        kube.secrets[f"demo-{role}-tls"] = {"data": {k: base64.b64encode(v).decode() for k, v in pem.items()}}
    assert source.materials(CLUSTER, SPEC) == first  # kept
    rotated = source.materials(CLUSTER, SPEC, RotationRequest(reissue_leaves=True))
    assert all(rotated[r].cert_pem != first[r].cert_pem and rotated[r].ca_pem == first[r].ca_pem for r in first)
    ca = certs.load_certificates(first["frontend"].ca_pem)[0]
    certs.load_certificates(rotated["frontend"].cert_pem)[0].verify_directly_issued_by(ca)


# -- a reconcile's side: the record is read fresh and written at once ------------------------------------------------

class ClusterKube(MemoryKube):
    """MemoryKube plus one TemporalCluster whose status patches land at once (merge patch of caRotation)."""

    def __init__(self, annotations: dict) -> None:
        super().__init__()
        self.cluster = {"metadata": {"name": "demo", "namespace": "apps", "annotations": annotations}, "status": {}}
        self.patches = []

    def get(self, api_version, kind, namespace, name):
        return copy.deepcopy(self.cluster) if kind == "TemporalCluster" else super().get(api_version, kind,
                                                                                         namespace, name)

    def list(self, api_version, kind, namespace, selector=""):
        return []

    def patch_status(self, api_version, kind, namespace, name, status):
        self.patches.append(copy.deepcopy(status))
        self.cluster["status"].update(copy.deepcopy(status))


def test_a_started_rotation_is_on_record_before_anything_trusts_its_ca_and_a_stale_view_cannot_restart_it():
    from temporal_mtls_operator.handlers.rotation import CARotations
    from temporal_mtls_operator.models.cluster import TemporalClusterSpec

    kube = ClusterKube({rotation.ROTATE_CA_ANNOTATIONS["frontend"]: "v1"})
    source = SelfSignedSource(kube)
    spec = TemporalClusterSpec(authorization={"enabled": False})  # the stock image: the rollout is what is seen
    assert CARotations(kube, source, CLUSTER, spec).prepare() == frozenset()
    recorded = kube.cluster["status"]["caRotation"]["frontend"]
    assert recorded["phase"] == rotation.TRUSTING_NEW_CA and recorded["trigger"] == "annotation"
    made = ca_of(kube, "demo-frontend-ca-next")
    # Another pass (say a rollout event) runs next: it reads the record, so no second rotation and no second CA.
    again = CARotations(kube, source, CLUSTER, spec)
    again.prepare()
    assert ca_of(kube, "demo-frontend-ca-next") == made and len(kube.patches) == 1
    materials = source.materials(CLUSTER, spec.mtls)
    states = again.advance(materials, rollout_complete=True)
    assert states["frontend"]["phase"] == rotation.REISSUING_LEAVES  # no client Secrets, the rollout is done
    assert kube.cluster["status"]["caRotation"]["frontend"]["phase"] == rotation.REISSUING_LEAVES


def test_on_our_server_build_trusting_the_new_ca_holds_until_every_server_pod_accepts_it():
    from temporal_mtls_operator.handlers.rotation import CARotations
    from temporal_mtls_operator.models.cluster import TemporalClusterSpec

    kube = ClusterKube({rotation.ROTATE_CA_ANNOTATIONS["internode"]: "v1"})
    source = SelfSignedSource(kube)
    spec = TemporalClusterSpec()  # reloads its bundles: no rollout says the pods took the new one
    CARotations(kube, source, CLUSTER, spec).prepare()
    states = CARotations(kube, source, CLUSTER, spec)
    states.prepare()
    held = states.advance(source.materials(CLUSTER, spec.mtls), rollout_complete=True)
    # No server pod listed (ClusterKube has no EndpointSlices): none could be asked, so the phase holds.
    assert held["internode"]["phase"] == rotation.TRUSTING_NEW_CA
    assert held["internode"]["message"] == rotation.AWAITING_NEW_CA_ACCEPTED


def test_a_ca_edited_outside_the_operator_is_read_again_not_answered_from_the_last_read():
    kube, now = MemoryKube(), [0.0]
    source = SelfSignedSource(kube, clock=lambda: now[0])
    source.ca(CLUSTER, "internode", SPEC)  # creates it
    source.ca(CLUSTER, "internode", SPEC)  # reads it
    kube.secrets["demo-internode-ca"]["data"]["tls.crt"] = "YnJva2Vu"  # edited by hand within the read's TTL
    source.ca(CLUSTER, "internode", SPEC)  # still the earlier read
    source.forget_read("apps", "demo-internode-ca")
    with pytest.raises(SourceError) as raised:
        source.ca(CLUSTER, "internode", SPEC)
    assert raised.value.reason == "CAUnreadable"
