"""One reconcile at a time per object: change handlers, timers and watch events of one resource never overlap.

kopf runs synchronous handlers in a thread pool, and a timer of an object may fire while its change
handler still runs; two passes could each decide to renew and publish different certificates.
"""

from __future__ import annotations

import contextlib
import threading

_locks: dict[str, threading.Lock] = {}
_guard = threading.Lock()


@contextlib.contextmanager
def one_at_a_time(uid: str):
    with _guard:
        lock = _locks.setdefault(uid, threading.Lock())
    with lock:
        yield


def forget(uid: str) -> None:
    """The object is gone: drop its lock (the dict stays as large as what exists)."""
    with _guard:
        _locks.pop(uid, None)
