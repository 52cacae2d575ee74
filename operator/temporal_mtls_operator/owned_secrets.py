"""Which watch events of the operator's Secrets call for a repair, and of which owner (pure).

A repair is due when a Secret the operator wrote is deleted, or its data is no longer what the operator wrote
(builders/secret_digest.py). The owner is the TemporalCluster or TemporalClusterClient named by the Secret's
controller reference; a Secret without one from us (a user's Secret with our labels) is never repaired.
"""

from __future__ import annotations

from dataclasses import dataclass

from .api import API_VERSION
from .builders.secret_digest import changed_by_others

OWNER_KINDS = ("TemporalCluster", "TemporalClusterClient")


@dataclass(frozen=True)
class Repair:
    kind: str  # TemporalCluster or TemporalClusterClient
    name: str
    uid: str
    change: str  # "deleted" or "edited"


def owner_of(secret: dict) -> dict | None:
    return next((ref for ref in (secret.get("metadata") or {}).get("ownerReferences") or []
                 if ref.get("controller") and ref.get("apiVersion") == API_VERSION and ref.get("kind") in OWNER_KINDS),
                None)


def repair_for(event_type: str | None, secret: dict) -> Repair | None:
    """``event_type`` as kopf gives it. None is a listing: kopf lists again each time its watch reconnects (every
    minute), and an edit made between two watches arrives only that way, so a listing counts like a modification."""
    owner = owner_of(secret)
    if owner is None or event_type not in (None, "ADDED", "MODIFIED", "DELETED"):
        return None
    if event_type == "DELETED":
        return Repair(owner["kind"], owner["name"], owner["uid"], "deleted")
    if (secret.get("metadata") or {}).get("deletionTimestamp") or not changed_by_others(secret):
        return None  # going away with its owner, or exactly what the operator wrote (its own write)
    return Repair(owner["kind"], owner["name"], owner["uid"], "edited")


def owner_alive(repair: Repair, owner: dict | None) -> bool:
    """The owner still exists as the same object and is not being deleted (garbage collection deletes a deleted
    owner's Secrets: nothing to repair then)."""
    meta = (owner or {}).get("metadata") or {}
    return meta.get("uid") == repair.uid and not meta.get("deletionTimestamp")
