"""Typed specs: defaults, durations, semantic checks with clear messages."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import ValidationError

from temporal_mtls_operator.handlers.cluster import validation_message
from temporal_mtls_operator.models import TemporalClusterSpec, TemporalNamespaceSpec, parse_duration


def test_empty_spec_means_sqlite_and_self_signed_mtls():
    spec = TemporalClusterSpec.model_validate({})
    assert spec.persistence.kind == "sqlite" and spec.mtls.source.kind == "selfSigned"
    assert spec.mtls.frontend.require_client_auth is True
    assert spec.authorization.enabled is True
    assert spec.server_image == "ghcr.io/temporal-mtls-operator/temporal-server:1.31.4"


def test_authorization_off_runs_the_stock_server_and_a_stock_image_refuses_authorization():
    assert TemporalClusterSpec.model_validate({"authorization": {"enabled": False}}).server_image \
        == "temporalio/server:1.31.4"
    with pytest.raises(ValidationError) as error:
        TemporalClusterSpec.model_validate({"image": "docker.io/temporalio/server:1.31.4"})
    assert "authorization.enabled needs the operator's server build" in validation_message(error.value)


@pytest.mark.parametrize("text, expected", [("2160h", dt.timedelta(hours=2160)), ("1m30s", dt.timedelta(seconds=90)),
                                            ("0s", dt.timedelta(0))])
def test_durations(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("mtls, message", [
    ({"renewBefore": "48h", "certificateDuration": "24h"}, "must be shorter than mtls.certificateDuration"),
    ({"certificateDuration": "90000h"}, "must not exceed mtls.caDuration"),
    ({"refreshInterval": "often"}, "invalid duration 'often'"),
    ({"sourceOfTruth": {}}, "spec.mtls.sourceOfTruth: Extra inputs are not permitted"),
])
def test_semantic_errors_are_explained(mtls, message):
    with pytest.raises(ValidationError) as error:
        TemporalClusterSpec.model_validate({"mtls": mtls})
    assert message in validation_message(error.value)


def test_namespace_retention_must_be_a_day_or_more():
    with pytest.raises(ValidationError, match="shorter than Temporal's minimum"):
        TemporalNamespaceSpec.model_validate({"clusterRef": {"name": "c"}, "retention": "1h"})
    assert TemporalNamespaceSpec.model_validate({"clusterRef": {"name": "c"}}).deletion_policy.value == "Retain"


KEY_VAULT = {"vaultUrl": "https://v.vault.azure.net",
             "certificates": {"internode": "i", "frontend": "f", "systemWorker": "s", "operatorClient": "o"},
             "caCertificates": {"internode": ["ca"], "frontend": ["ca", "next-ca"]}, "tlsCASecret": "vault-ca"}


def test_key_vault_source_names_each_role_and_trust_bundle():
    spec = TemporalClusterSpec.model_validate({"mtls": {"source": {"azureKeyVault": KEY_VAULT}}})
    vault = spec.mtls.source.azure_key_vault
    assert spec.mtls.source.kind == "azureKeyVault"
    assert vault.certificates.by_role() == {"internode": "i", "frontend": "f", "system-worker": "s",
                                            "operator-client": "o"}
    assert vault.ca_certificates.frontend == ("ca", "next-ca") and vault.tls_ca_secret == "vault-ca"
    assert vault.interval == dt.timedelta(minutes=5) and vault.verify_challenge_resource is True


@pytest.mark.parametrize("source, message", [
    ({"azureKeyVault": KEY_VAULT, "selfSigned": {}}, "set exactly one of selfSigned, azureKeyVault, secret"),
    ({"azureKeyVault": {**KEY_VAULT, "syncInterval": "1s"}}, "syncInterval must be at least 5s"),
    ({"azureKeyVault": {**KEY_VAULT, "vaultUrl": "http://v"}}, "spec.mtls.source.azureKeyVault.vaultUrl"),
    ({"azureKeyVault": {**KEY_VAULT, "caCertificates": {"internode": [], "frontend": ["ca"]}}},
     "spec.mtls.source.azureKeyVault.caCertificates.internode"),
    ({"secret": {"internode": "a", "frontend": "b"}}, "spec.mtls.source.secret.systemWorker: Field required"),
])
def test_source_errors_are_explained(source, message):
    with pytest.raises(ValidationError) as error:
        TemporalClusterSpec.model_validate({"mtls": {"source": source}})
    assert message in validation_message(error.value)
