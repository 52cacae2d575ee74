"""What rolls the server pods: checksums of what Temporal reads only at start, stamped on the pod template.

The config always. CA bundles only on the stock image: Temporal's TLS builds a client's root pool once, while our
server build (server/tlsreload) reads the bundles again for new handshakes, so a CA rotation restarts nothing.
Leaves only without refreshInterval (Temporal re-reads them at that interval).
"""

from __future__ import annotations

from ..api import CONFIG_CHECKSUM, LEAF_CHECKSUM, TRUST_CHECKSUM
from ..models.cluster import TemporalClusterSpec, parse_duration
from ..sources.base import TLSMaterial
from .common import digest

RELOADING_TLS_ENV = "TEMPORAL_MTLS_RELOADING_TLS"  # read by server/: CA bundles reload for new handshakes
# The server-side Secrets whose bundles and leaves a pod mounts (role -> the config's TLS directory key).
MOUNTED_ROLES = {"internode": "internode", "frontend": "frontend", "system-worker": "system_worker"}


def pod_annotations(spec: TemporalClusterSpec, materials: dict[str, TLSMaterial], config: dict) -> dict[str, str]:
    annotations = {CONFIG_CHECKSUM: digest(*(config["data"][k] for k in sorted(config["data"])))}
    if not spec.reloads_ca_bundles:
        annotations[TRUST_CHECKSUM] = digest(*(materials[r].ca_pem for r in sorted(MOUNTED_ROLES)))
    if parse_duration(spec.mtls.refresh_interval).total_seconds() == 0:
        annotations[LEAF_CHECKSUM] = digest(*(materials[r].cert_pem for r in sorted(MOUNTED_ROLES)))
    return annotations


def env(spec: TemporalClusterSpec) -> list[dict]:
    return [{"name": RELOADING_TLS_ENV, "value": "true"}] if spec.reloads_ca_bundles else []
