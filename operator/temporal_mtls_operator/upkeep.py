"""When a settled resource next needs a full reconcile, decided in memory (pure; the handlers' daemons ask it).

A full reconcile costs several API requests; at 500 clients a fixed 30 s timer alone made ~100 requests/s. So a
resource is reconciled again only when something calls for it: it is not Ready, its certificate enters the renewal
window, what it trusts changed (its cluster's frontend CA or CA rotation phase), or a slow resync (drift repair of
objects the operator may not watch, e.g. Secrets) is due. Everything else arrives through watches.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from dataclasses import dataclass
from typing import Callable, Hashable

RESYNC_SECONDS = 600.0  # at least this often (+-25 %) every resource is reconciled in full


def parse_time(text: str | None) -> float | None:
    """``2026-11-29T01:02:03Z`` (status timestamps) -> Unix time."""
    if not text:
        return None
    try:
        return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc).timestamp()
    except ValueError:
        return None


def is_ready(body: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (body.get("status") or {}).get("conditions") or [])


def frontend_trust(cluster_body: dict | None) -> tuple:
    """What a client certificate depends on in its cluster: identity, frontend CA, its rotation phase and
    renewBefore. A change of any of them re-issues or re-bundles the clients."""
    if not cluster_body:
        return ()
    status = cluster_body.get("status") or {}
    return (cluster_body["metadata"].get("uid"),
            ((status.get("certificates") or {}).get("frontend-ca") or {}).get("sha256Fingerprint"),
            ((status.get("caRotation") or {}).get("frontend") or {}).get("phase"),
            (((cluster_body.get("spec") or {}).get("mtls") or {}).get("renewBefore")))


@dataclass
class _Entry:
    resync_at: float
    token: Hashable


class Upkeep:
    def __init__(self, clock: Callable[[], float] = time.monotonic, rng: Callable[[], float] = random.random,
                 resync: float = RESYNC_SECONDS) -> None:
        self._clock, self._rng, self._resync = clock, rng, resync
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def reconciled(self, uid: str, token: Hashable = ()) -> None:
        """A full reconcile just succeeded against ``token`` (what the resource depends on)."""
        with self._lock:
            spread = self._resync * 0.25 * (2 * self._rng() - 1)  # resources created together resync apart
            self._entries[uid] = _Entry(self._clock() + self._resync + spread, token)

    def due(self, uid: str, *, ready: bool, token: Hashable = (), renew_at: float | None = None,
            now: float | None = None) -> bool:
        """Whether the resource needs a full reconcile now; ``renew_at`` is a Unix time (e.g. notAfter - renewBefore)."""
        with self._lock:
            entry = self._entries.get(uid)
            if entry is None or not ready or entry.token != token or self._clock() >= entry.resync_at:
                return True
        return renew_at is not None and (now if now is not None else time.time()) >= renew_at

    def forget(self, uid: str) -> None:
        with self._lock:
            self._entries.pop(uid, None)
