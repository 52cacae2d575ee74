"""Operator-managed CAs: one for internode trust, one for the frontend and its clients.

A CA lives in a Secret the operator creates once (create, never overwrite); every later
reconcile, restart or crash reads the same CA back. A CA Secret that cannot be read is
reported, never replaced. Only a staged CA rotation (rotation.py) changes it: its new CA is
created once in ``<name>-<domain>-ca-next``, trusted next to the old one, and promoted into
``<name>-<domain>-ca`` at the end, the old CA kept in ``<name>-<domain>-ca-previous``.
"""

from __future__ import annotations

import base64
import os
import threading
import time

from cryptography.exceptions import InvalidSignature

from .. import certs
from ..certs.inspect import CertificateError
from ..builders.secret_digest import stamped
from ..kube import Kube
from ..models.cluster import MTLS
from .base import (NO_ROTATION, ClientRequest, ClusterIdentity, RotationRequest, SourceError, TLSMaterial,
                   leaf_profiles)

TRUST_DOMAINS = ("internode", "frontend")


def secret_data(secret: dict | None) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in ((secret or {}).get("data") or {}).items()}


CA_READ_TTL = 2.0  # seconds a CA Secret read is reused: 500 clients created at once read their CA once, not 500 times


class SelfSignedSource:
    def __init__(self, kube: Kube, clock=time.monotonic) -> None:
        self.kube, self._clock = kube, clock
        self._ca_reads: dict[tuple[str, str], tuple[float, dict | None]] = {}
        self._ca_lock = threading.Lock()

    def _read_ca_secret(self, namespace: str, name: str) -> dict | None:
        """A CA Secret, read at most once per CA_READ_TTL (the operator's own writes drop the cached read)."""
        now = self._clock()
        with self._ca_lock:
            cached = self._ca_reads.get((namespace, name))
            if cached and now - cached[0] < CA_READ_TTL:
                return cached[1]
        secret = self.kube.get("v1", "Secret", namespace, name)
        with self._ca_lock:
            # Bounded: reads older than the TTL are useless, so they go (deleted clusters' included).
            self._ca_reads = {k: v for k, v in self._ca_reads.items() if now - v[0] < CA_READ_TTL}
            self._ca_reads[(namespace, name)] = (now, secret)
        return secret

    def forget_read(self, namespace: str, *names: str) -> None:
        """The next read of these CA Secrets goes to the API server (written by us, or changed by someone else)."""
        with self._ca_lock:
            for name in names:
                self._ca_reads.pop((namespace, name), None)

    def materials(self, cluster: ClusterIdentity, mtls: MTLS,
                  rotation: RotationRequest = NO_ROTATION) -> dict[str, TLSMaterial]:
        trust = {domain: self.trust(cluster, domain, mtls, rotation) for domain in TRUST_DOMAINS}
        return {role: self.leaf(*trust[domain], profile, mtls, cluster.namespace, cluster.tls_secret(role),
                                reissue=rotation.reissue_leaves)
                for role, (domain, profile) in leaf_profiles(cluster, mtls).items()}

    def client_material(self, cluster: ClusterIdentity, mtls: MTLS, request: ClientRequest,
                        rotation: RotationRequest = NO_ROTATION) -> TLSMaterial:
        signer, bundle = self.trust(cluster, "frontend", mtls, rotation)
        profile = certs.LeafProfile(request.common_name, client=True, uris=(cluster.client_identity(request.name),))
        return self.leaf(signer, bundle, profile, mtls, request.namespace, request.secret_name,
                         reissue=rotation.reissue_leaves)

    def trust(self, cluster: ClusterIdentity, domain: str, mtls: MTLS,
              rotation: RotationRequest) -> tuple[certs.KeyPair, bytes]:
        """(the CA that signs this domain's leaves, the bundle its peers trust): while a CA rotation's next CA
        exists both CAs are trusted, and it signs once the rotation asks for it."""
        current = self.ca(cluster, domain, mtls)
        upcoming = self.next_ca(cluster, domain, mtls)
        if upcoming is None or upcoming.cert_pem == current.cert_pem:
            return current, current.cert_pem
        signer = upcoming if domain in rotation.new_ca_signs else current
        return signer, current.cert_pem + upcoming.cert_pem

    def leaf(self, ca: certs.KeyPair, bundle: bytes, profile: certs.LeafProfile, mtls: MTLS, namespace: str,
             secret_name: str, reissue: bool = False) -> TLSMaterial:
        """The leaf already in ``secret_name`` if it still fits (and no rotation asks for a new one), else a
        freshly issued one."""
        existing = secret_data(self.kube.get("v1", "Secret", namespace, secret_name))
        if reissue or not self._reusable(existing, ca, profile, mtls):
            pair = certs.issue_leaf(ca, profile, mtls.leaf_lifetime, mtls.key_algorithm)
            existing = {"tls.crt": pair.cert_pem, "tls.key": pair.key_pem}
        return TLSMaterial(existing["tls.crt"], existing["tls.key"], bundle)

    def ca(self, cluster: ClusterIdentity, domain: str, mtls: MTLS) -> certs.KeyPair:
        name = cluster.ca_secret(domain)
        secret = self._read_ca_secret(cluster.namespace, name)
        if secret is None:
            pair = certs.issue_ca(ca_common_name(cluster.name, domain), mtls.ca_lifetime, mtls.key_algorithm)
            if self._create_ca_secret(cluster, domain, name, pair):
                _sleep_for_tests()
                return pair
            secret = self.kube.get("v1", "Secret", cluster.namespace, name)  # another reconcile won the race
        return _readable_ca(secret, name)

    def next_ca(self, cluster: ClusterIdentity, domain: str, mtls: MTLS, create: bool = False) -> certs.KeyPair | None:
        """A CA rotation's new CA (``<name>-<domain>-ca-next``): made once per rotation, so a restarted operator
        adopts it instead of making a second one. None when there is none (or only the emptied Secret of a finished
        rotation) and ``create`` is False."""
        name = cluster.ca_secret(domain, "next")
        secret = self._read_ca_secret(cluster.namespace, name)
        if not secret_data(secret):
            if not create:
                return None
            stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
            pair = certs.issue_ca(ca_common_name(cluster.name, domain, stamp), mtls.ca_lifetime, mtls.key_algorithm)
            # Applied, not created: the promotion empties it again by applying no keys (rotations of one cluster run
            # one reconcile at a time, so nothing races this).
            self.kube.apply(_ca_secret(cluster, domain, name, {"tls.crt": pair.cert_pem, "tls.key": pair.key_pem},
                                       "next"))
            self.forget_read(cluster.namespace, name)
            return pair
        return _readable_ca(secret, name)

    def previous_ca(self, cluster: ClusterIdentity, domain: str) -> certs.KeyPair | None:
        """The CA the last promotion replaced (``<name>-<domain>-ca-previous``), or None when there is none."""
        name = cluster.ca_secret(domain, "previous")
        secret = self.kube.get("v1", "Secret", cluster.namespace, name)
        return _readable_ca(secret, name) if secret_data(secret) else None

    def promote_next_ca(self, cluster: ClusterIdentity, domain: str) -> None:
        """The next CA becomes the CA; the one it replaces is kept in ``<name>-<domain>-ca-previous`` and the
        next-CA Secret is emptied (the operator deletes nothing; no second copy of the key stays behind).

        Idempotent at every step: once ``-ca`` holds the next CA, only the emptying is left to do."""
        current_name, next_name = cluster.ca_secret(domain), cluster.ca_secret(domain, "next")
        upcoming = secret_data(self.kube.get("v1", "Secret", cluster.namespace, next_name))
        if not upcoming:
            return  # promoted before a restart
        _readable_ca(self.kube.get("v1", "Secret", cluster.namespace, next_name), next_name)
        current = secret_data(self.kube.get("v1", "Secret", cluster.namespace, current_name))
        if current.get("tls.crt") != upcoming.get("tls.crt"):
            self.kube.apply(_ca_secret(cluster, domain, cluster.ca_secret(domain, "previous"), current, "previous"))
            self.kube.apply(_ca_secret(cluster, domain, current_name, upcoming))
        self.kube.apply(_ca_secret(cluster, domain, next_name, {}, "next"))
        self.forget_read(cluster.namespace, current_name, next_name)

    def _create_ca_secret(self, cluster: ClusterIdentity, domain: str, name: str, pair: certs.KeyPair) -> bool:
        """Create, never overwrite: False when it already exists."""
        created = self.kube.create(_ca_secret(cluster, domain, name, {"tls.crt": pair.cert_pem,
                                                                      "tls.key": pair.key_pem})) is not None
        self.forget_read(cluster.namespace, name)
        return created

    @staticmethod
    def _reusable(existing: dict[str, bytes], ca: certs.KeyPair, profile: certs.LeafProfile, mtls: MTLS) -> bool:
        """Keep a leaf that is ours, current, and says what the spec asks for."""
        try:
            leaf = certs.load_certificates(existing.get("tls.crt", b""))[0]
            key = certs.load_private_key(existing.get("tls.key", b""))
            leaf.verify_directly_issued_by(ca.certificate)
        except (CertificateError, InvalidSignature, ValueError, TypeError):
            return False
        info = certs.describe(leaf)
        # A leaf that already lasts as long as its CA cannot be bettered by a new one (leaves never outlive
        # their CA): keep it, or every reconcile would re-issue; the expiring CA is reported instead.
        renewable = leaf.not_valid_after_utc < ca.certificate.not_valid_after_utc
        return (certs.private_key_matches(leaf, key) and set(info.dns_names) == set(profile.dns_names)
                and set(info.uris) == set(profile.uris)
                and leaf.subject.rfc4514_string() == f"CN={profile.common_name},O={profile.organization}"
                and not (renewable and certs.needs_renewal(leaf, mtls.renew_window))
                and _algorithm(key) == mtls.key_algorithm)


def _ca_secret(cluster: ClusterIdentity, domain: str, name: str, data: dict[str, bytes], stage: str = "") -> dict:
    # A next-CA Secret is emptied after its promotion, which the kubernetes.io/tls type would refuse.
    return stamped({"apiVersion": "v1", "kind": "Secret", "type": "Opaque" if stage == "next" else "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": cluster.namespace,
                         "labels": {"app.kubernetes.io/managed-by": "temporal-mtls-operator",
                                    "app.kubernetes.io/instance": cluster.name,
                                    "app.kubernetes.io/component": f"{domain}-ca" + (f"-{stage}" if stage else "")},
                         "ownerReferences": [cluster.owner_reference()]},
            "data": {key: base64.b64encode(data[key]).decode() for key in ("tls.crt", "tls.key") if key in data}})


def _readable_ca(secret: dict | None, name: str) -> certs.KeyPair:
    data = secret_data(secret)
    try:
        certificate = certs.load_certificates(data.get("tls.crt", b""))[0]
        key = certs.load_private_key(data.get("tls.key", b""))
    except CertificateError as error:
        raise SourceError(f"CA Secret {name} is unreadable ({error}); it is left untouched: "
                          "repair or delete it to let the operator create a new CA", "CAUnreadable") from None
    if not certs.private_key_matches(certificate, key):
        raise SourceError(f"CA Secret {name}: tls.key does not belong to tls.crt; it is left untouched",
                          "CAUnreadable")
    return certs.KeyPair(data["tls.crt"], data["tls.key"])


def _algorithm(key) -> certs.KeyAlgorithm | None:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return {"secp256r1": certs.KeyAlgorithm.ECDSA_P256, "secp384r1": certs.KeyAlgorithm.ECDSA_P384}.get(key.curve.name)
    if isinstance(key, rsa.RSAPrivateKey):
        return {2048: certs.KeyAlgorithm.RSA_2048, 4096: certs.KeyAlgorithm.RSA_4096}.get(key.key_size)
    return None


def _sleep_for_tests() -> None:
    # Test-only, unset in deployments: two CAs are made milliseconds apart, too close to kill the operator in between.
    seconds = float(os.environ.get("TMO_TEST_SLEEP_AFTER_CREATING_CA") or 0)
    if seconds:
        time.sleep(seconds)


def ca_common_name(cluster: str, domain: str, stamp: str = "") -> str:
    """``<cluster> <domain> CA [<stamp>]``, the cluster's name shortened (with "~") so the CN fits its 64 bytes."""
    suffix = f" {domain} CA" + (f" {stamp}" if stamp else "")
    room = 64 - len(suffix.encode())
    return (cluster if len(cluster.encode()) <= room else cluster[:room - 1] + "~") + suffix
