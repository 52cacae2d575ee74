"""When each resource next talks to its vault: an interval with jitter, and backoff after failures."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from typing import Callable, Hashable

JITTER = 0.1  # +-10 %: many resources created together do not sync in lockstep
FIRST_BACKOFF = 5.0


@dataclass
class _Entry:
    next_at: float
    failures: int = 0
    error: Exception | None = None  # the last failure, reported until a sync succeeds


class SyncSchedule:
    def __init__(self, clock: Callable[[], float] = time.monotonic, rng: Callable[[], float] = random.random) -> None:
        self._clock, self._rng = clock, rng
        self._entries: dict[Hashable, _Entry] = {}
        self._lock = threading.Lock()

    def due(self, key: Hashable) -> bool:
        with self._lock:
            entry = self._entries.get(key)
            return entry is None or self._clock() >= entry.next_at

    def synced(self, key: Hashable, interval: float) -> None:
        with self._lock:
            spread = interval * JITTER * (2 * self._rng() - 1)
            self._entries[key] = _Entry(self._clock() + interval + spread)

    def failed(self, key: Hashable, interval: float, retry_after: float | None = None,
               error: Exception | None = None) -> float:
        """Back off exponentially (capped at the interval), never sooner than the vault's Retry-After."""
        with self._lock:
            failures = self._entries[key].failures + 1 if key in self._entries else 1
            delay = max(retry_after or 0.0, min(FIRST_BACKOFF * 2 ** (failures - 1), interval))
            self._entries[key] = _Entry(self._clock() + delay, failures, error)
            return delay

    def last_error(self, key: Hashable) -> Exception | None:
        """Why the last sync failed, while no later one succeeded (so status does not flap between syncs)."""
        with self._lock:
            entry = self._entries.get(key)
            return entry.error if entry else None

    def expedite(self, key: Hashable) -> None:
        """The spec changed: sync at the next reconcile."""
        with self._lock:
            self._entries.pop(key, None)
