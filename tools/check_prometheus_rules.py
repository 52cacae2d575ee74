"""`make lint`: the operator chart's PrometheusRule through promtool (check rules, then its unit tests).

    python tools/check_prometheus_rules.py

Renders the chart with the rule enabled, writes its groups as a Prometheus rule file and runs
`promtool check rules` on it and `promtool test rules` with tests/data/prometheus-rules-test.yaml.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from localkube.paths import REPO_ROOT
from localkube.toolchain import path_of

CHART = REPO_ROOT / "charts" / "temporal-mtls-operator"
RULE_TESTS = REPO_ROOT / "tests" / "data" / "prometheus-rules-test.yaml"


def rendered_rules() -> dict:
    out = subprocess.run([str(path_of("helm")), "template", "tmo", str(CHART), "--set",
                          "metrics.prometheusRule.enabled=true", "--show-only", "templates/prometheusrule.yaml"],
                         check=True, capture_output=True, text=True).stdout
    (rule,) = [d for d in yaml.safe_load_all(out) if d]
    return {"groups": rule["spec"]["groups"]}


def main() -> int:
    promtool = str(path_of("promtool"))
    with tempfile.TemporaryDirectory() as tmp:
        rules = Path(tmp) / "rules.yaml"  # the name the rule tests' rule_files give
        rules.write_text(yaml.safe_dump(rendered_rules(), sort_keys=False))
        shutil.copy(RULE_TESTS, Path(tmp) / RULE_TESTS.name)
        for args in (["check", "rules", str(rules)], ["test", "rules", str(Path(tmp) / RULE_TESTS.name)]):
            result = subprocess.run([promtool, *args], capture_output=True, text=True)
            print(f"promtool {args[0]} {args[1]}: {(result.stdout + result.stderr).strip()}")
            if result.returncode:
                return result.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
