"""Where the local tooling keeps its tool cache and cluster state."""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

REPO_ROOT = Path(__file__).resolve().parents[2]


def cache_dir() -> Path:
    """The one tool cache, shared by every checkout (so CI and clean clones reuse builds)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "temporal-mtls-operator"
    return Path(os.environ.get("TMO_CACHE_DIR", default))


def state_root() -> Path:
    """Parent of every local cluster's state directory (git-ignored)."""
    return Path(os.environ.get("LOCALKUBE_STATE_ROOT", REPO_ROOT / ".localkube"))


@contextmanager
def cache_lock(name: str) -> Iterator[None]:
    """Held while one process writes a shared part of the tool cache (parallel test workers start clusters at once)."""
    path = cache_dir() / "locks" / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
