"""Certificate rotation decisions (pure): on-demand leaf re-issue, and the staged CA rotation of a trust domain.

A CA rotation of one trust domain (internode, frontend) moves forward only, one phase per observed fact, in the
order of trust-manager and Linkerd's trust-anchor rotation:

  TrustingNewCA    the next CA exists (``<name>-<domain>-ca-next``) and every bundle trusts old + new; holds until
                   the server took that bundle (stock image: rolled out with it; our server build, which reloads
                   bundles: every server pod accepts a certificate the new CA issued) and every client Secret
                   carries the new CA
  ReissuingLeaves  leaves are issued from the new CA; holds until every leaf and client certificate of the domain is,
                   and the server is seen presenting a leaf from the new CA (its pod re-mounted and reloaded it)
  RemovingOldCA    the new CA is promoted into ``<name>-<domain>-ca`` (the old one kept as ``-ca-previous``) and
                   bundles trust it alone; holds until the server rolled out again where it rolls (no pod of it
                   still terminating), no client Secret trusts the old CA, and every server pod refuses a
                   certificate the old CA issued (a pod sees a Secret change only when its volume is refreshed; our
                   build then also closes the connections the old CA authenticated)
  Completed

Progress lives in ``status.caRotation.<domain>``; each step is idempotent, so a restarted operator resumes the same
rotation (a ``-ca-next`` Secret is adopted, never replaced by a second new CA).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from .api import GROUP

TRUST_DOMAINS = ("internode", "frontend")

# cert-manager's `renew`: any new value re-issues the resource's leaves once.
ROTATE_ANNOTATION = f"{GROUP}/rotate"
# Any new value starts a staged CA rotation of that trust domain (selfSigned source).
ROTATE_CA_ANNOTATIONS = {domain: f"{GROUP}/rotate-ca-{domain}" for domain in TRUST_DOMAINS}

TRUSTING_NEW_CA = "TrustingNewCA"
REISSUING_LEAVES = "ReissuingLeaves"
REMOVING_OLD_CA = "RemovingOldCA"
COMPLETED = "Completed"
IN_PROGRESS = (TRUSTING_NEW_CA, REISSUING_LEAVES, REMOVING_OLD_CA)
AWAITING_SERVED_LEAF = "waiting for the server to present a certificate issued by the new CA"
AWAITING_OLD_CA_REFUSED = "waiting for every server pod to refuse a certificate issued by the old CA"
AWAITING_NEW_CA_ACCEPTED = "waiting for every server pod to accept a certificate issued by the new CA"


def now_text(now: dt.datetime | None = None) -> str:
    return (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- leaves ----------------------------------------------------------------------------------------------------------

def leaf_rotation_requested(annotations: dict | None, status: dict | None) -> str | None:
    """The rotate annotation's value when it was not handled yet (``status.leafRotation.handled``), else None."""
    value = (annotations or {}).get(ROTATE_ANNOTATION)
    handled = ((status or {}).get("leafRotation") or {}).get("handled")
    return value if value and value != handled else None


def leaf_rotation_handled(value: str, now: dt.datetime | None = None) -> dict:
    return {"handled": value, "reissuedAt": now_text(now)}


def rotation_pending(annotations: dict | None, status: dict | None) -> bool:
    """A rotate annotation with a value not handled yet (a CA one only while its domain is not rotating already)."""
    states = (status or {}).get("caRotation") or {}
    return bool(leaf_rotation_requested(annotations, status)) or any(
        (annotations or {}).get(key) and (annotations or {}).get(key) != (states.get(domain) or {}).get("requested")
        and (states.get(domain) or {}).get("phase") not in IN_PROGRESS
        for domain, key in ROTATE_CA_ANNOTATIONS.items())


# -- CAs -----------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CAObservation:
    """What the operator sees of one trust domain before deciding: the CA Secrets and the CA's remaining life."""
    current_ca: str  # SHA-256 fingerprint of <name>-<domain>-ca
    next_ca: str | None  # of <name>-<domain>-ca-next, when it exists
    expires_soon: bool  # the current CA ends within 2x renewBefore
    auto_rotation_possible: bool = True  # caDuration > 2x renewBefore: a fresh CA would not be expiring at once


@dataclass(frozen=True)
class ConsumerObservation:
    """What the operator sees of the CA's consumers after applying this pass's objects."""
    rollout_complete: bool  # the server Deployment runs its current pod template, available
    # Names of what still holds the phase (Secrets; empty when nothing does):
    without_new_ca: tuple[str, ...] = ()  # client Secrets whose ca.crt lacks the new CA
    not_from_new_ca: tuple[str, ...] = ()  # leaf and client Secrets whose certificate the new CA did not issue
    trusting_old_ca: tuple[str, ...] = ()  # client Secrets whose ca.crt still has the old CA
    new_ca_accepted: bool = True  # every server pod takes a client certificate of the new CA (reloading, in (a))
    serving_new_ca: bool = True  # the server's TLS handshake presents a leaf the new CA issued (looked at in (b))
    old_ca_refused: bool = True  # every server pod refuses a client certificate of the old CA (looked at in (c))


def start_trigger(requested: str | None, state: dict | None, observed: CAObservation) -> str | None:
    """Why a rotation starts now (``annotation``, ``expiry``, ``resumed``), or None: never while one runs."""
    state = state or {}
    if state.get("phase") in IN_PROGRESS:
        return None
    if observed.next_ca and observed.next_ca != observed.current_ca:
        return "resumed"  # a next CA without a recorded rotation: its status was lost; adopt the CA
    if requested and requested != state.get("requested"):
        return "annotation"
    if observed.expires_soon and observed.auto_rotation_possible:
        return "expiry"
    return None


def started(state: dict | None, trigger: str, requested: str | None, old_ca: str, new_ca: str,
            now: dt.datetime | None = None) -> dict:
    """The state of a rotation that just created (or adopted) its next CA."""
    stamp = now_text(now)
    return {"phase": TRUSTING_NEW_CA, "trigger": trigger,
            # an annotation value is handled once, even when the rotation ran for another reason
            "requested": requested if requested is not None else (state or {}).get("requested"),
            "oldCA": old_ca, "newCA": new_ca, "startedAt": stamp, "phaseTimes": {TRUSTING_NEW_CA: stamp},
            "message": ""}


def signs_with_new_ca(state: dict | None) -> bool:
    """Leaves come from the next CA from ReissuingLeaves on (once promoted, it is the current CA anyway)."""
    return (state or {}).get("phase") in (REISSUING_LEAVES, REMOVING_OLD_CA)


def needs_promotion(state: dict | None) -> bool:
    return (state or {}).get("phase") == REMOVING_OLD_CA


def advance(state: dict, observed: ConsumerObservation, now: dt.datetime | None = None) -> dict:
    """The next state of a running rotation: one phase further when its condition holds, else the same phase with
    ``message`` saying what it waits for. Idle and completed states come back unchanged."""
    phase = state.get("phase")
    if phase not in IN_PROGRESS:
        return state
    waiting = _waiting_for(phase, observed)
    if waiting:
        return {**state, "message": waiting}
    following = IN_PROGRESS[IN_PROGRESS.index(phase) + 1] if phase != REMOVING_OLD_CA else COMPLETED
    return {**state, "phase": following, "message": "",
            "phaseTimes": {**(state.get("phaseTimes") or {}), following: now_text(now)}}


def _waiting_for(phase: str, observed: ConsumerObservation) -> str:
    def secrets(names: tuple[str, ...], what: str) -> str:
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        return f"waiting for Secret{'s' if len(names) > 1 else ''} {shown} to {what}"

    if phase == TRUSTING_NEW_CA:
        if not observed.rollout_complete:
            return "waiting for the server to roll out with old and new CA trusted"
        if not observed.new_ca_accepted:
            return AWAITING_NEW_CA_ACCEPTED
        if observed.without_new_ca:
            return secrets(observed.without_new_ca, "trust the new CA (ca.crt)")
    elif phase == REISSUING_LEAVES:
        if observed.not_from_new_ca:
            return secrets(observed.not_from_new_ca, "carry a certificate issued by the new CA")
        if not observed.serving_new_ca:
            return AWAITING_SERVED_LEAF
    elif phase == REMOVING_OLD_CA:
        if not observed.rollout_complete:
            return "waiting for the server to roll out trusting the new CA only"
        if observed.trusting_old_ca:
            return secrets(observed.trusting_old_ca, "drop the old CA from ca.crt")
        if not observed.old_ca_refused:
            return AWAITING_OLD_CA_REFUSED
    return ""


def awaiting_served_leaf(status: dict | None) -> bool:
    """A rotation only waits on what the server pods do (take a bundle, reload a leaf, refuse the old CA): nothing
    but time and a look will move it on."""
    return any((s or {}).get("message") in (AWAITING_NEW_CA_ACCEPTED, AWAITING_SERVED_LEAF, AWAITING_OLD_CA_REFUSED)
               for s in ((status or {}).get("caRotation") or {}).values())


def summary(states: dict[str, dict]) -> tuple[bool, str, str]:
    """The CARotation condition: (in progress, reason, message) over both trust domains."""
    running = {d: s for d, s in states.items() if (s or {}).get("phase") in IN_PROGRESS}
    if not running:
        return False, "Idle", ""
    waiting = any(s.get("message") for s in running.values())
    message = "; ".join(f"{d}: {s['phase']}" + (f", {s['message']}" if s.get("message") else "")
                        for d, s in sorted(running.items()))
    return True, "Waiting" if waiting else "Progressing", message
