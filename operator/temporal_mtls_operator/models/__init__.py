"""Typed models of the custom resources (pydantic v2, camelCase aliases, unknown fields rejected)."""

from .client import TemporalClusterClientSpec
from .cluster import TemporalClusterSpec, parse_duration
from .namespace import TemporalNamespaceSpec

__all__ = ["TemporalClusterClientSpec", "TemporalClusterSpec", "TemporalNamespaceSpec", "parse_duration"]
