"""Where certificates come from, behind one small interface (see base.py)."""

from __future__ import annotations

from ..kube import Kube
from ..models.cluster import MTLS
from .azure_key_vault import AzureKeyVaultSource
from .base import (NO_ROTATION, CertificateSource, ClientRequest, ClusterIdentity, RotationRequest, SourceError,
                   TLSMaterial)
from .secret import SecretSource
from .self_signed import SelfSignedSource


class Sources:
    """One instance of each source per operator (the Key Vault source keeps clients and schedules)."""

    def __init__(self, kube: Kube) -> None:
        self._by_kind: dict[str, CertificateSource] = {
            "selfSigned": SelfSignedSource(kube), "azureKeyVault": AzureKeyVaultSource(kube),
            "secret": SecretSource(kube)}

    def for_spec(self, mtls: MTLS) -> CertificateSource:
        return self._by_kind[mtls.source.kind]

    def secret_changed(self, namespace: str, name: str) -> None:
        """A Secret was edited or deleted outside the operator: no source answers from an earlier read of it."""
        for source in self._by_kind.values():
            source.forget_read(namespace, name)

    @property
    def key_vault(self) -> AzureKeyVaultSource:
        return self._by_kind["azureKeyVault"]  # type: ignore[return-value]


__all__ = ["NO_ROTATION", "AzureKeyVaultSource", "CertificateSource", "ClientRequest", "ClusterIdentity",
           "RotationRequest", "SecretSource", "SelfSignedSource", "SourceError", "Sources", "TLSMaterial"]
