"""Refuse to let tests touch any cluster but a local test cluster started by this tooling."""

from __future__ import annotations

import base64
import ipaddress
from pathlib import Path
from urllib.parse import urlparse

import yaml


class NotALocalTestCluster(RuntimeError):
    pass


def assert_local_test_cluster(kubeconfig: Path, serving_ca: Path) -> str:
    """Return the current context's name if it is ours; raise otherwise.

    Ours means: the context is named ``localkube-*``, its server is on loopback, and it trusts
    exactly the serving CA that this tooling generated for the cluster.
    """
    config = yaml.safe_load(kubeconfig.read_text()) or {}
    context_name = config.get("current-context", "")
    if not context_name.startswith("localkube-"):
        raise NotALocalTestCluster(f"kubeconfig context {context_name!r} is not a localkube test cluster")
    context = _named(config, "contexts", context_name)["context"]
    cluster = _named(config, "clusters", context["cluster"])["cluster"]
    host = urlparse(cluster.get("server", "")).hostname or ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise NotALocalTestCluster(f"context {context_name!r} points at {host!r}, not at loopback")
    trusted = base64.b64decode(cluster.get("certificate-authority-data", ""))
    if trusted != serving_ca.read_bytes():
        raise NotALocalTestCluster(f"context {context_name!r} does not trust this test cluster's CA")
    return context_name


def _named(config: dict, section: str, name: str) -> dict:
    for entry in config.get(section) or []:
        if entry.get("name") == name:
            return entry
    raise NotALocalTestCluster(f"kubeconfig has no {section[:-1]} named {name!r}")
