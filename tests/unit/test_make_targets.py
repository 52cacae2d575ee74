"""Cheap checks of every make target the README and the getting-started page name: each exists, is listed by
`make help`, and what its recipe runs exists (`make -n`, nothing executed). Targets whose full run is covered
elsewhere: demo and temporal-cluster-mtls/start-worker/keyvault-certs/down by tests/cluster/test_sample_flow.py and
the cluster tests, test by itself, docs by tests/unit/test_docs.py. docs-serve, down and help run for real here."""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", ROOT / "docs" / "getting-started.md"]
NAMED = sorted({match for page in PAGES
                for match in re.findall(r"(?:^|`|\s)make ([a-z][a-z-]+(?: [A-Z_]+=\S+)*)", page.read_text(), re.M)})
TARGETS = sorted({n.split()[0] for n in NAMED})


def make(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def test_the_pages_name_the_sample_targets():
    assert {"demo", "test", "keyvault-certs", "temporal-cluster-mtls", "start-worker", "down", "docs",
            "docs-serve"} <= set(TARGETS)


def test_make_help_lists_every_named_target():
    listed = {line.split()[0] for line in make("help").stdout.splitlines() if line.strip()}
    assert set(TARGETS) <= listed, set(TARGETS) - listed


@pytest.mark.parametrize("named", NAMED)
def test_every_named_target_dry_runs_and_runs_only_what_exists(named):
    shown = make("-n", *named.split())
    assert shown.returncode == 0, shown.stderr
    recipe = shown.stdout
    for module in re.findall(r"/python3? -m ([\w.]+)", recipe):
        if module not in ("venv", "pip", "pytest", "mkdocs"):
            assert importlib.util.find_spec(module) is not None, f"make {named} runs python -m {module}"
    for script in re.findall(r"/python3? ((?:bench|tools)/[\w/]+\.py)", recipe):
        assert (ROOT / script).exists(), f"make {named} runs {script}"
    for path in re.findall(r"\b((?:charts|crds|examples)/[\w./-]+)", recipe):
        assert (ROOT / path.rstrip("/")).exists() or "*" in path, f"make {named} names {path}"


def test_keyvault_certs_passes_the_sample_arguments():
    assert "keyvault-certs --client hello --rotate" in make("-n", "keyvault-certs", "KEYVAULT_ARGS=--rotate").stdout
    real = make("-n", "keyvault-certs", "VAULT_URL=https://my-vault.vault.azure.net").stdout
    assert "-m temporal_mtls_operator.keyvault --vault-url https://my-vault.vault.azure.net --client hello" in real
    from temporal_mtls_operator.keyvault.__main__ import parser
    args = parser().parse_args(["--vault-url", "https://my-vault.vault.azure.net", "--client", "hello", "--rotate"])
    assert args.client == ["hello"] and args.rotate


def test_make_down_with_nothing_running_stops_nothing_and_succeeds(tmp_path):
    """The flow's last step, on an empty private state root (never the checkout's .localkube/)."""
    down = make("down", env={"LOCALKUBE_STATE_ROOT": str(tmp_path)})
    assert down.returncode == 0, down.stderr


def test_make_docs_serve_serves_the_site():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(["make", "--no-print-directory", "docs-serve", f"DOCS_ADDR=127.0.0.1:{port}"], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, page = time.monotonic() + 120, ""
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/reference/conditions/", timeout=5) as answer:
                    page = answer.read().decode()
                    break
            except OSError:
                time.sleep(0.5)
        assert "SchemaJobFailing" in page, server.stdout.read().decode() if server.poll() is not None else "timeout"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)


def test_the_readme_names_no_target_the_makefile_lacks():
    makefile = (ROOT / "Makefile").read_text()
    missing = [t for t in TARGETS if not re.search(rf"^{re.escape(t)}:", makefile, re.M)]
    assert not missing, missing
    assert sys.executable  # the same interpreter runs the make recipes' python (the project's virtualenv)
