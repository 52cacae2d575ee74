"""Start long-running processes detached, find them again by pid file, and stop them for sure."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path


def start(name: str, argv: list[str], state_dir: Path, env: dict[str, str] | None = None) -> int:
    """Start ``argv`` in its own session, logging to ``logs/<name>.log``; record its pid."""
    (state_dir / "logs").mkdir(parents=True, exist_ok=True)
    (state_dir / "pids").mkdir(parents=True, exist_ok=True)
    with open(state_dir / "logs" / f"{name}.log", "ab") as log:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True, env={**os.environ, **(env or {})})
    (state_dir / "pids" / f"{name}.pid").write_text(f"{process.pid}\n")
    # What restart runs again (no secret travels in argv or env here: key material lives in files)
    (state_dir / "pids" / f"{name}.argv.json").write_text(json.dumps({"argv": argv, "env": env or {}}))
    return process.pid


def restart(name: str, state_dir: Path) -> int:
    """Start ``name`` again as it was last started (after a stop: a fault test's component coming back)."""
    recorded = json.loads((state_dir / "pids" / f"{name}.argv.json").read_text())
    return start(name, recorded["argv"], state_dir, recorded["env"])


def running(state_dir: Path) -> dict[str, int]:
    """Recorded processes that are still alive and still ours (guards against pid reuse)."""
    alive = {}
    for pid_file in sorted((state_dir / "pids").glob("*.pid")):
        pid = int(pid_file.read_text())
        if _is_ours(pid, state_dir):
            alive[pid_file.stem] = pid
    return alive


def alive(state_dir: Path, name: str) -> bool:
    """The process we started under ``name`` still runs (no ownership check: we just started it)."""
    pid_file = state_dir / "pids" / f"{name}.pid"
    if not pid_file.exists():
        return False
    try:
        stat = Path(f"/proc/{int(pid_file.read_text())}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def stop(state_dir: Path, order: list[str], grace_seconds: dict[str, float] | None = None,
         others: bool = True) -> list[str]:
    """SIGTERM each process (in ``order``, then any others unless ``others`` is False), SIGKILL after its grace
    period (15 s).

    Returns the names that had to be killed.
    """
    alive = running(state_dir)
    names = [n for n in order if n in alive] + ([n for n in alive if n not in order] if others else [])
    killed = []
    for name in names:
        pid = alive[name]
        _signal_group(pid, signal.SIGTERM)
        if not _wait_gone(pid, state_dir, (grace_seconds or {}).get(name, 15.0)):
            _signal_group(pid, signal.SIGKILL)
            _wait_gone(pid, state_dir, 5.0)
            killed.append(name)
        (state_dir / "pids" / f"{name}.pid").unlink(missing_ok=True)
    return killed


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)  # the whole session, so helper children go too
    except ProcessLookupError:
        pass


def _wait_gone(pid: int, state_dir: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _is_ours(pid, state_dir):
            _reap(pid)  # a child of ours that just died is a zombie until reaped
            return True
        time.sleep(0.1)
    return False


def _reap(pid: int, timeout: float = 1.0) -> None:
    """Collect a child of ours that is exiting (a zombie until collected); for any other process, nothing."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not our child, or already collected
            return
        if done or time.monotonic() > deadline:
            return
        time.sleep(0.01)


def _is_ours(pid: int, state_dir: Path) -> bool:
    """Alive (not a zombie) and started with an argument inside ``state_dir``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return False
    if stat.rsplit(")", 1)[1].split()[0] == "Z":
        return False
    return str(state_dir) in cmdline
