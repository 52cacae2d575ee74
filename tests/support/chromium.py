"""Headless Chromium (Debian's `chromium` package) for UI tests: the page's DOM after its scripts ran, a screenshot.

``--virtual-time-budget`` lets the page's timers and fetches run to quiescence before the dump, so no
sleeping. One user-data dir per test keeps cookies between runs (sign in once, then open pages).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--metrics-recording-only", "--mute-audio",
         "--window-size=1400,1100", "--hide-scrollbars")


def binary() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        raise RuntimeError("chromium is not installed (make tools installs Debian's chromium package)")
    return found


def dump_dom(url: str, profile: Path, budget_ms: int = 15000, timeout: float = 90) -> str:
    done = subprocess.run([binary(), *FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}",
                           "--dump-dom", url], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"chromium exited {done.returncode}: {done.stderr[-1500:]}")
    return done.stdout


def screenshot(url: str, profile: Path, path: Path, budget_ms: int = 15000, timeout: float = 90) -> Path:
    done = subprocess.run([binary(), *FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}",
                           f"--screenshot={path}", url], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0 or not path.exists():
        raise RuntimeError(f"chromium exited {done.returncode}: {done.stderr[-1500:]}")
    return path
