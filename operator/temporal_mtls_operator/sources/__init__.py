"""Where certificates come from, behind one small interface (see base.py)."""

from .base import CertificateSource, ClusterIdentity, SourceError, TLSMaterial
from .self_signed import SelfSignedSource

__all__ = ["CertificateSource", "ClusterIdentity", "SelfSignedSource", "SourceError", "TLSMaterial"]
