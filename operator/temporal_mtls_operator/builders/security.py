"""The security context every container of the operator's server pods runs with (pure)."""

from __future__ import annotations

SERVER_USER = 1000


def hardened() -> dict:
    """Non-root, read-only root filesystem, no privilege escalation, no capabilities."""
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
            "runAsUser": SERVER_USER, "runAsGroup": SERVER_USER, "capabilities": {"drop": ["ALL"]}}
