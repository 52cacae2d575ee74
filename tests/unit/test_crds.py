"""The CRD schemas parse as intended: flow-style YAML with an unquoted comma silently adds stray keys."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

CRDS = sorted((Path(__file__).resolve().parents[2] / "crds").glob("*.yaml"))
SCHEMA_KEYWORDS = {"type", "description", "properties", "required", "items", "default", "pattern", "enum",
                   "minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems", "format",
                   "x-kubernetes-validations", "x-kubernetes-preserve-unknown-fields", "x-kubernetes-list-type",
                   "x-kubernetes-list-map-keys"}


def schemas(node: dict, path: str):
    yield path, node
    for name, child in (node.get("properties") or {}).items():
        yield from schemas(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from schemas(node["items"], f"{path}[]")


@pytest.mark.parametrize("crd", CRDS, ids=lambda p: p.name)
def test_every_schema_node_uses_known_keywords_and_plain_field_names(crd):
    for version in yaml.safe_load(crd.read_text())["spec"]["versions"]:
        for path, node in schemas(version["schema"]["openAPIV3Schema"], version["name"]):
            assert set(node) <= SCHEMA_KEYWORDS, f"{crd.name} {path}: unexpected keys {set(node) - SCHEMA_KEYWORDS}"
            assert re.fullmatch(r"[a-z][A-Za-z0-9]*(\[\])?", path.rsplit(".", 1)[-1]), f"{crd.name} {path}"
