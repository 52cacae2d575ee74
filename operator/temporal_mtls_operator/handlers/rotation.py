"""A reconcile's side of the staged CA rotations (selfSigned source): observe, ask rotation.py, act.

Before the certificates are computed: start a rotation that is due (its next CA made, or adopted after a
restart) and promote the next CA of a rotation that reached RemovingOldCA. After the objects are applied: observe
the server rollout and every Secret of the domain, and let rotation.py move each rotation on (or say why not).

``status.caRotation`` is the rotation's record, so it is read fresh and written at once, inside the reconcile's
lock: never through kopf's patch, which lands after the lock is released and could let a pass holding an older view
of the object (a rollout event, a timer) start or step back a rotation.

Also what both resources share for their rotate annotation: its event handler (on_rotate_annotation) and its
record, read and written the same way (pending_leaf_rotation, record_leaf_rotation).
"""

from __future__ import annotations

import datetime as dt

import kopf
from cryptography.exceptions import InvalidSignature

from .. import certs, rotation
from ..api import API_VERSION, GROUP, VERSION
from ..certs.inspect import CertificateError
from ..kube import Kube
from ..models.cluster import TemporalClusterSpec
from ..render import SERVICES
from ..render.config import INTERNAL_FRONTEND_PORTS
from ..served import accepts_client_certificate, presented_certificate
from ..sources import ClusterIdentity, SelfSignedSource, TLSMaterial
from ..sources.base import leaf_profiles
from ..sources.self_signed import secret_data

PROBE_LIFETIME = dt.timedelta(minutes=5)  # the client certificate a phase's probe offers (never stored)


def on_rotate_annotation(plural: str, pending, reconcile) -> None:
    """A rotate annotation with a new value on ``plural`` is acted on now, not at the next timer tick.

    An event handler: kopf leaves annotations under its own prefix (temporal-mtls.dev/) out of on.update diffs."""
    @kopf.on.event(GROUP, VERSION, plural, id=f"{plural}-rotation-requested", when=pending)
    def rotation_requested(body, patch, type, **_):
        if type == "DELETED":
            return
        try:
            reconcile(body, patch)
        except kopf.TemporaryError:
            pass  # the status says why; the timer retries


def pending_leaf_rotation(kube: Kube, kind: str, body: dict) -> str | None:
    """The rotate annotation's value this pass acts on, or None; the caller holds the object's reconcile lock.

    A pass queued behind the one that re-issued may hold a body older than the status that one wrote: decided on
    the object as it is now, one annotation value re-issues the leaves once."""
    meta = body["metadata"]
    if not rotation.leaf_rotation_requested(meta.get("annotations"), body.get("status")):
        return None
    fresh = kube.get(API_VERSION, kind, meta["namespace"], meta["name"]) or {}
    return rotation.leaf_rotation_requested((fresh.get("metadata") or {}).get("annotations"), fresh.get("status"))


def record_leaf_rotation(kube: Kube, kind: str, meta: dict, value: str) -> dict:
    """``status.leafRotation`` written at once, once the new leaves are applied (kopf's patch lands after the lock)."""
    handled = rotation.leaf_rotation_handled(value)
    kube.patch_status(API_VERSION, kind, meta["namespace"], meta["name"], {"leafRotation": handled})
    return handled


def fingerprint(pem: bytes) -> str:
    return certs.sha256_fingerprint(certs.load_certificates(pem)[0])


class CARotations:
    """Both trust domains' CA rotations for one reconcile of one TemporalCluster."""

    def __init__(self, kube: Kube, source: SelfSignedSource, cluster: ClusterIdentity,
                 spec: TemporalClusterSpec) -> None:
        self.kube, self.source, self.cluster, self.spec = kube, source, cluster, spec
        self.annotations: dict = {}
        self.states: dict[str, dict] = {}

    def _read(self) -> None:
        body = self.kube.get(API_VERSION, "TemporalCluster", self.cluster.namespace, self.cluster.name) or {}
        self.annotations = body.get("metadata", {}).get("annotations") or {}
        self.states = {d: dict(s) for d, s in ((body.get("status") or {}).get("caRotation") or {}).items()}

    def _write(self, before: dict[str, dict]) -> None:
        if self.states != before:
            self.kube.patch_status(API_VERSION, "TemporalCluster", self.cluster.namespace, self.cluster.name,
                                   {"caRotation": self.states})

    def prepare(self) -> frozenset[str]:
        """Start due rotations and promote finished ones; the trust domains whose leaves the next CA signs."""
        self._read()
        before = {d: dict(s) for d, s in self.states.items()}
        mtls = self.spec.mtls
        for domain in rotation.TRUST_DOMAINS:
            current = self.source.ca(self.cluster, domain, mtls)
            upcoming = self.source.next_ca(self.cluster, domain, mtls)
            remaining = current.certificate.not_valid_after_utc - dt.datetime.now(dt.timezone.utc)
            observed = rotation.CAObservation(
                current_ca=fingerprint(current.cert_pem), next_ca=upcoming and fingerprint(upcoming.cert_pem),
                expires_soon=remaining <= 2 * mtls.renew_window,
                auto_rotation_possible=mtls.ca_lifetime > 2 * mtls.renew_window)
            requested = self.annotations.get(rotation.ROTATE_CA_ANNOTATIONS[domain])
            trigger = rotation.start_trigger(requested, self.states.get(domain), observed)
            if trigger:
                upcoming = upcoming or self.source.next_ca(self.cluster, domain, mtls, create=True)
                self.states[domain] = rotation.started(self.states.get(domain), trigger, requested,
                                                       observed.current_ca, fingerprint(upcoming.cert_pem))
            elif rotation.needs_promotion(self.states.get(domain)):
                self.source.promote_next_ca(self.cluster, domain)
        self._write(before)  # a started rotation is on record before anything trusts its CA
        signing = {d for d, s in self.states.items() if rotation.signs_with_new_ca(s)}
        if "frontend" in signing and self._clients_first():
            signing.discard("frontend")
        return frozenset(signing)

    def _clients_first(self) -> bool:
        """Phase (b) of the frontend CA: the apps get their new-CA certificates before the server presents a new-CA
        leaf (their volumes refresh and they reload first); True while the server must wait for them."""
        if self.states["frontend"].get("phase") != rotation.REISSUING_LEAVES:
            return False
        new_ca = self.source.next_ca(self.cluster, "frontend", self.spec.mtls)
        if new_ca is None:
            return False
        server = secret_data(self.kube.get("v1", "Secret", self.cluster.namespace, self.cluster.tls_secret("frontend")))
        if _issued_by(server, new_ca.certificate):
            return False  # already re-issued: never back to the old CA
        return any(not _issued_by(d, new_ca.certificate) for d in self._client_secrets().values())

    def advance(self, materials: dict[str, TLSMaterial], rollout_complete: bool) -> dict[str, dict]:
        """Observe the consumers of each running rotation after this pass's apply, and move it on."""
        before = {d: dict(s) for d, s in self.states.items()}
        running = {d: s for d, s in self.states.items() if s.get("phase") in rotation.IN_PROGRESS}
        clients = self._client_secrets() if "frontend" in running else {}
        domains = {role: domain for role, (domain, _) in leaf_profiles(self.cluster, self.spec.mtls).items()}
        # status.replicas leaves terminating pods out: a rollout is over for a rotation once its old pods are gone.
        rollout_complete = rollout_complete and not (running and self._server_pods_terminating())
        for domain, state in running.items():
            new_ca = (self.source.next_ca(self.cluster, domain, self.spec.mtls)
                      or self.source.ca(self.cluster, domain, self.spec.mtls)).certificate
            # Every Secret this domain's CA signs: the cluster's leaves (as just applied), for the frontend the apps'.
            secrets = {self.cluster.tls_secret(role): {"tls.crt": m.cert_pem, "ca.crt": m.ca_pem}
                       for role, m in materials.items() if domains[role] == domain}
            if domain == "frontend":
                secrets.update(clients)
            not_from_new_ca = tuple(n for n, d in secrets.items() if not _issued_by(d, new_ca))
            observed = rotation.ConsumerObservation(
                rollout_complete=rollout_complete,
                without_new_ca=tuple(n for n, d in secrets.items() if not _trusts(d, certs.sha256_fingerprint(new_ca))),
                not_from_new_ca=not_from_new_ca,
                trusting_old_ca=tuple(n for n, d in secrets.items() if _trusts(d, state.get("oldCA", ""))),
                # Our build reloads bundles (no rollout to wait for): (a) holds until every pod takes the new CA.
                new_ca_accepted=(state.get("phase") != rotation.TRUSTING_NEW_CA or not self.spec.reloads_ca_bundles
                                 or not rollout_complete or self._accept_new_ca(domain)),
                # Looked at only when nothing else holds phase (b): the old CA goes once the pod serves the new one.
                serving_new_ca=(state.get("phase") != rotation.REISSUING_LEAVES or bool(not_from_new_ca)
                                or self._serves_leaf_of(domain, new_ca)),
                # Looked at last in (c): a pod that mounted its Secret before the new bundle reached it trusts both.
                old_ca_refused=(state.get("phase") != rotation.REMOVING_OLD_CA or not rollout_complete
                                or self._refuse_old_ca(domain, state.get("oldCA", ""))))
            self.states[domain] = rotation.advance(state, observed)
        self._write(before)
        return self.states

    def _endpoints(self, service: str) -> list[dict]:
        slices = self.kube.list("discovery.k8s.io/v1", "EndpointSlice", self.cluster.namespace,
                                selector=f"kubernetes.io/service-name={service}")
        return [e for s in slices for e in s.get("endpoints") or []]

    def _server_services(self) -> list[str]:
        """The Services whose EndpointSlices list every server pod (terminating and unready ones included)."""
        if not self.spec.persistence.postgresql:
            return [self.cluster.frontend_service]
        return [self.cluster.frontend_service,
                *(f"{self.cluster.name}-{s}-headless" for s in SERVICES if s != "frontend")]

    def _server_pods_terminating(self) -> bool:
        return any((e.get("conditions") or {}).get("terminating") for service in self._server_services()
                   for e in self._endpoints(service))

    def _serves_leaf_of(self, domain: str, ca) -> bool:
        """Every ready server pod of the domain presents a leaf ``ca`` issued, on each port it serves the domain on."""
        presented = [presented_certificate(host, port, server_name)
                     for host, port, server_name in self._server_endpoints(domain, ready_only=True)]
        return bool(presented) and all(p is not None and _directly_issued(p, ca) for p in presented)

    def _refuse_old_ca(self, domain: str, old_ca: str) -> bool:
        """Every pod serving the domain (terminating and unready ones included) refuses a client certificate the old
        CA (``-ca-previous``) issued. A pod that cannot be asked holds the phase."""
        old = self.source.previous_ca(self.cluster, domain)
        if old is None or fingerprint(old.cert_pem) != old_ca:
            return True  # no old CA left to ask with (lost, or promoted by hand): the rollout is all there is to see
        answers = self._client_certificate_answers(domain, old)
        return answers is None or (bool(answers) and all(answer is False for answer in answers))

    def _accept_new_ca(self, domain: str) -> bool:
        """Every pod serving the domain accepts a client certificate the next CA issued: on our server build, which
        reloads bundles instead of rolling, the sign that each pod took the old + new bundle (for its client side
        too: server and client pools are read from the same ca.crt)."""
        upcoming = self.source.next_ca(self.cluster, domain, self.spec.mtls)
        if upcoming is None:
            return True  # nothing to ask with; the Secrets are all there is to see
        answers = self._client_certificate_answers(domain, upcoming)
        return answers is None or (bool(answers) and all(answer is True for answer in answers))

    def _client_certificate_answers(self, domain: str, ca: certs.KeyPair) -> list[bool | None] | None:
        """What each server pod of the domain says to a short-lived client certificate ``ca`` issued (never stored):
        the internode gRPC ports of history, matching and worker and the internal frontend's (SQLite: the one server
        pod), the frontend port; None when the domain's server side asks for no client certificate."""
        if domain == "frontend" and not self.spec.mtls.frontend.require_client_auth:
            return None  # the frontend takes connections without a client certificate: nothing to ask
        probe = certs.issue_leaf(ca, certs.LeafProfile(f"{self.cluster.name} CA probe", client=True), PROBE_LIFETIME)
        return [accepts_client_certificate(host, port, server_name, probe.cert_pem, probe.key_pem)
                for host, port, server_name in self._server_endpoints(domain)]

    def _server_endpoints(self, domain: str, ready_only: bool = False) -> list[tuple[str, int, str]]:
        """(pod address, port, TLS server name) of every server pod serving the domain, from EndpointSlices: the
        frontend port; for internode the gRPC ports of history, matching and worker and the internal frontend's
        (SQLite: the one server pod's history port)."""
        if domain == "frontend":
            targets = [(self.cluster.frontend_service, SERVICES["frontend"]["grpc"], self.cluster.frontend_server_name)]
        elif self.spec.persistence.postgresql:
            targets = [(f"{self.cluster.name}-{s}-headless", SERVICES[s]["grpc"], self.cluster.internode_server_name)
                       for s in SERVICES if s != "frontend"]
            if self.spec.authorization.enabled:  # the frontend pods' internode server
                targets.append((self.cluster.frontend_service, INTERNAL_FRONTEND_PORTS["grpc"],
                                self.cluster.internode_server_name))
        else:
            targets = [(self.cluster.frontend_service, SERVICES["history"]["grpc"], self.cluster.internode_server_name)]
        return [(host, port, server_name) for service, port, server_name in targets for e in self._endpoints(service)
                if not ready_only or (e.get("conditions") or {}).get("ready", True) is not False
                for host in e.get("addresses") or []]

    def _client_secrets(self) -> dict[str, dict[str, bytes]]:
        """Secret name -> data of every TemporalClusterClient of this cluster (an absent Secret as no data)."""
        found = {}
        for client in self.kube.list(API_VERSION, "TemporalClusterClient", self.cluster.namespace):
            spec = client.get("spec") or {}
            if (spec.get("clusterRef") or {}).get("name") != self.cluster.name:
                continue
            name = spec.get("secretName") or f"{client['metadata']['name']}-temporal-client"
            found[name] = secret_data(self.kube.get("v1", "Secret", self.cluster.namespace, name))
        return found


def _trusts(data: dict[str, bytes], ca_fingerprint: str) -> bool:
    try:
        return ca_fingerprint in {certs.sha256_fingerprint(c) for c in certs.load_certificates(data.get("ca.crt", b""))}
    except CertificateError:
        return False


def _directly_issued(certificate, ca) -> bool:
    try:
        certificate.verify_directly_issued_by(ca)
        return True
    except (InvalidSignature, ValueError, TypeError):
        return False


def _issued_by(data: dict[str, bytes], ca) -> bool:
    try:
        certs.load_certificates(data.get("tls.crt", b""))[0].verify_directly_issued_by(ca)
        return True
    except (CertificateError, InvalidSignature, ValueError, TypeError):
        return False
