"""The documentation: generated pages equal what the code produces now, the site builds strictly (links, anchors,
plots), and the README is short, opens with the two fresh-machine commands and links only to what exists."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "docs"))
sys.path.insert(0, str(ROOT / "bench"))

import gen_reference  # noqa: E402
import plot  # noqa: E402


def test_generated_pages_match_the_code():
    stale = [str(path.relative_to(ROOT)) for path, content in gen_reference.render_all().items()
             if not path.exists() or path.read_text() != content]
    assert not stale, f"run `make docs-reference` and commit: {stale}"


def test_every_reason_in_the_code_is_explained_and_nothing_else():
    found = gen_reference.reasons_in_code()
    assert gen_reference.check_reasons(found, gen_reference._explanations()) == []
    # spot checks of the extraction: a Condition literal, a SourceError, a validation rule behind a variable, a
    # schema step, an Event, a reason returned in a tuple, a carrier's default
    for reason in ("InvalidSpec", "VaultThrottled", "MissingClientAuth", "CAExpired", "SchemaJobFailing",
                   "SecretDrift", "Waiting", "SourceFailed"):
        assert reason in found, reason


def test_a_new_reason_in_the_code_fails_the_generator(tmp_path):
    package = tmp_path / "temporal_mtls_operator"
    package.mkdir()
    (package / "status.py").write_text(textwrap.dedent("""
        from dataclasses import dataclass
        @dataclass(frozen=True)
        class Condition:
            type: str
            ok: bool
            reason: str
    """))
    (package / "handler.py").write_text('def f(ok):\n    return Condition("Ready", ok, "Fine" if ok else "BrandNew")\n')
    found = gen_reference.reasons_in_code(package)
    assert set(found) == {"Fine", "BrandNew"}
    problems = gen_reference.check_reasons(found, {"Fine": {"condition": "x", "meaning": "m", "action": "a"}})
    assert problems == ["reason BrandNew is set in handler.py but has no entry in tools/docs/reasons.yaml"]


def test_reference_pages_cover_every_crd_field_metric_and_target():
    crds = (ROOT / "docs" / "reference" / "crds.md").read_text()
    for field in ("spec.mtls.source.azureKeyVault.syncInterval", "spec.permissions.namespaces[].role",
                  "spec.clientCertificateFilters[].commonName", "spec.authorization.systemClients[].role"):
        assert f"`{field}`" in crds, field
    metrics = (ROOT / "docs" / "reference" / "metrics.md").read_text()
    sys.path.insert(0, str(ROOT / "operator"))
    from temporal_mtls_operator import metrics as registry
    for collector in registry.REGISTRY._collector_to_names:  # noqa: SLF001
        assert collector._name in metrics  # noqa: SLF001
    for alert in ("TemporalMTLSCertificateExpiringSoon", "TemporalMTLSKeyVaultThrottled"):
        assert alert in metrics and f"### {alert}" in (ROOT / "docs" / "operations" / "alerts.md").read_text()
    targets = (ROOT / "docs" / "reference" / "make-targets.md").read_text()
    for target in re.findall(r"^([a-z-]+):.*?## ", (ROOT / "Makefile").read_text(), re.M):
        assert f"`make {target}`" in targets, target


def test_mkdocs_builds_strictly(tmp_path):
    """Broken links or anchors, a page missing from nav, or a benchmark JSON without its plot fail the build."""
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir",
                          str(tmp_path / "site")], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert run.returncode == 0, run.stdout + run.stderr
    assert (tmp_path / "site" / "reference" / "crds" / "index.html").exists()
    assert 'class="mermaid"' in (tmp_path / "site" / "concepts" / "rotation" / "index.html").read_text()
    benchmarks = (tmp_path / "site" / "benchmarks" / "index.html").read_text()
    for name in plot.PLOTTERS:
        if (ROOT / "bench" / "results" / f"{name}.json").exists():
            assert (tmp_path / "site" / f"{name}.png").exists() and f"{name}.png" in benchmarks
        else:
            assert f"bench/results/{name}.json" in benchmarks  # the "not measured yet" note


def test_readme_is_short_opens_with_the_fresh_machine_commands_and_its_links_resolve():
    readme = (ROOT / "README.md").read_text()
    lines = readme.splitlines()
    assert len(lines) <= 200
    block = lines[lines.index("```sh") + 1:lines.index("```sh") + 3]
    assert [line.split()[:2] for line in block] == [["make", "demo"], ["make", "test"]]
    assert lines.index("```sh") <= 3, "the two commands come first"
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo: .*## ", makefile, re.M) and re.search(r"^test: .*## ", makefile, re.M)
    for target in set(re.findall(r"(?:^|`)make ([a-z][a-z-]+)", readme, re.M)):
        assert re.search(rf"^{target}:", makefile, re.M), f"README names make {target}, which does not exist"
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme)
    local = [link for link in links if not re.match(r"[a-z]+://", link)]
    assert local, "the README links into docs/"
    missing = [link for link in local if not (ROOT / link).exists()]
    assert not missing, missing
    assert not re.search(r"\b20\d\d-\d\d-\d\d\b", readme), "behaviour, not dated runs"


def test_plots_draw_every_benchmark_json(tmp_path):
    measured = {"date": "2026-12-01T00:00:00Z", "machine": "2 x test cpu", "load_average_1m": 1.0, "commit": "abc"}
    (tmp_path / "cluster_ready.json").write_text(json.dumps({
        "runs": [{"operator_seconds": 1.0, "server_seconds": 4.0, "total_seconds": 5.0}],
        "postgresql": {"runs": [{"operator_seconds": 9.0, "server_seconds": 6.0, "total_seconds": 15.0}]},
        "operator_rss_mib": 90.0, "measured": measured}))
    (tmp_path / "scale.json").write_text(json.dumps({
        "clients_resources": 500, "clients_half_ready_seconds": 5.0, "clients_all_ready_seconds": 8.0,
        "clients_operator_rss_before_mib": 90, "clients_operator_rss_after_mib": 130,
        "clients_series": [[1.0, 0, 90], [4.0, 300, 120], [8.0, 500, 130]], "clients_create_seconds": 1.0,
        "clusters_resources": 20, "clusters_half_ready_seconds": 10.0, "clusters_all_ready_seconds": 20.0,
        "measured": measured}))
    rotation = {"rate_per_second": 5, "volume_refresh_delay_seconds": 0, "measured": measured,
                "phase_times": {"frontend": {"phaseTimes": {"TrustingNewCA": "2026-12-01T00:00:00Z",
                                                            "ReissuingLeaves": "2026-12-01T00:00:20Z",
                                                            "RemovingOldCA": "2026-12-01T00:00:40Z",
                                                            "Completed": "2026-12-01T00:01:00Z"}}}}
    for name in plot.ROTATIONS:
        rotation.update({f"{name}_starts": 100, f"{name}_failed": 0, f"{name}_p50_seconds": 0.1,
                         f"{name}_p99_seconds": 1.0, f"{name}_max_seconds": 2.0, f"{name}_duration_seconds": 40,
                         f"{name}_server_restarts": 0})
    # bench/rotation.py's per-start series, drawn over time (a failed start in red)
    rotation.update({"starts": [[1.0, 0.1, True], [30.0, 2.5, True], [31.0, 3.0, False]],
                     "windows": [["frontend_leaf", 0.0, 40.0]], "started_at": 1764547200.0})
    (tmp_path / "rotation.json").write_text(json.dumps(rotation))
    (tmp_path / "rotation-stock.json").write_text(json.dumps({**rotation, "server": "stock"}))
    written = plot.plot_all(tmp_path)
    assert set(written) == {"rotation", "rotation-stock", "cluster_ready", "scale"}
    assert all(path.read_bytes().startswith(b"\x89PNG") for path in written.values())


@pytest.mark.parametrize("data, expected", [({}, "machine not recorded"),
                                            ({"measured": {"date": "D", "machine": "M"}}, "D; M")])
def test_measured_text(tmp_path, data, expected):
    path = tmp_path / "x.json"
    path.write_text("{}")
    assert expected in plot.measured_text(data, path)
