"""A CA near its end: leaves are not re-issued on every reconcile, and the CA is reported well ahead."""

from __future__ import annotations

import datetime as dt

from temporal_mtls_operator import certs
from temporal_mtls_operator.handlers.cluster import expiring_cas
from temporal_mtls_operator.models.cluster import MTLS
from temporal_mtls_operator.sources import SelfSignedSource, TLSMaterial

PROFILE = certs.LeafProfile("demo-frontend", ("demo-frontend",), server=True)
# A valid spec that reaches the CA's end: leaves of 1000h, renewed 720h ahead, a CA of 2000h.
MTLS_SPEC = MTLS(ca_duration="2000h", certificate_duration="1000h", renew_before="720h")


def existing(pair: certs.KeyPair) -> dict[str, bytes]:
    return {"tls.crt": pair.cert_pem, "tls.key": pair.key_pem}


def test_a_leaf_that_lasts_as_long_as_its_ca_is_kept_instead_of_reissued_forever():
    ca = certs.issue_ca("old CA", dt.timedelta(hours=500))  # the CA has 500h left: inside renewBefore
    capped = certs.issue_leaf(ca, PROFILE, MTLS_SPEC.leaf_lifetime)  # capped at the CA's notAfter
    assert capped.certificate.not_valid_after_utc == ca.certificate.not_valid_after_utc
    assert certs.needs_renewal(capped.certificate, MTLS_SPEC.renew_window)
    assert SelfSignedSource._reusable(existing(capped), ca, PROFILE, MTLS_SPEC)


def test_a_leaf_inside_its_renewal_window_is_renewed_while_the_ca_can_give_a_longer_one():
    ca = certs.issue_ca("young CA", MTLS_SPEC.ca_lifetime)
    short = certs.issue_leaf(ca, PROFILE, dt.timedelta(hours=100))
    assert not SelfSignedSource._reusable(existing(short), ca, PROFILE, MTLS_SPEC)
    fresh = certs.issue_leaf(ca, PROFILE, MTLS_SPEC.leaf_lifetime)
    assert SelfSignedSource._reusable(existing(fresh), ca, PROFILE, MTLS_SPEC)


def test_a_ca_within_twice_renew_before_is_reported_by_name_and_date():
    old = certs.issue_ca("old CA", dt.timedelta(hours=1000))
    young = certs.issue_ca("young CA", dt.timedelta(hours=5000))
    leaf = certs.issue_leaf(young, PROFILE, dt.timedelta(hours=10))
    materials = {"frontend": TLSMaterial(leaf.cert_pem, leaf.key_pem, young.cert_pem + old.cert_pem)}
    message = expiring_cas(materials, 2 * MTLS_SPEC.renew_window)
    assert message.startswith("CA CN=old CA,O=temporal-mtls-operator expires ")
    assert "young CA" not in message
    assert expiring_cas({"frontend": TLSMaterial(leaf.cert_pem, leaf.key_pem, young.cert_pem)},
                        2 * MTLS_SPEC.renew_window) == ""
