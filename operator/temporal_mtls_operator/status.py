"""Kubernetes-style status conditions (pure): transitions keep their time, all carry observedGeneration."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class Condition:
    type: str
    ok: bool
    reason: str
    message: str = ""


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_conditions(previous: list[dict] | None, conditions: list[Condition], generation: int) -> list[dict]:
    """New condition list; lastTransitionTime changes only when a condition's status flips."""
    before = {c["type"]: c for c in previous or []}
    merged = []
    for condition in conditions:
        status = "True" if condition.ok else "False"
        old = before.get(condition.type)
        changed = not old or old.get("status") != status
        merged.append({"type": condition.type, "status": status, "reason": condition.reason,
                       "message": condition.message, "observedGeneration": generation,
                       "lastTransitionTime": _now() if changed else old["lastTransitionTime"]})
    return merged
