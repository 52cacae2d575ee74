"""The operator's own Secrets, watched: one deleted or edited by someone else is written back at once by a
reconcile of its owner (TemporalCluster or TemporalClusterClient), instead of at the next upkeep or resync.

Only Secrets labelled as the operator's are watched (a server-side label selector, main.py); the operator's
own writes carry the digest of their data, so they never trigger a reconcile (owned_secrets.py).
"""

from __future__ import annotations

import kopf

from .. import metrics
from ..api import API_VERSION, MANAGED_BY
from ..owned_secrets import Repair, owner_alive, repair_for
from . import client, cluster

RECONCILES = {"TemporalCluster": lambda body, patch: cluster.reconcile(body, patch, announce=False),
              "TemporalClusterClient": client.reconcile}


def _needs_repair(type, body, **_) -> bool:
    return repair_for(type, body) is not None


# The filter runs on the event loop: the operator's own writes (every Secret of 500 new clients) are dropped at once
# instead of queueing their bodies for the handler threads.
@kopf.on.event("", "v1", "secrets", labels={"app.kubernetes.io/managed-by": MANAGED_BY}, when=_needs_repair)
def owned_secret_changed(body, type, namespace, name, **_):
    repair = repair_for(type, body)  # not None: the when-filter asked the same
    owner = cluster.kube().get(API_VERSION, repair.kind, namespace, repair.name)
    if not owner_alive(repair, owner):
        return
    restore(repair, owner, name)


def restore(repair: Repair, owner: dict, secret_name: str) -> None:
    # A CA read cached a moment before the edit must not hide it from this reconcile.
    cluster.sources().secret_changed(owner["metadata"]["namespace"], secret_name)
    # Nothing repaired (and no Event could be posted) when the namespace is being deleted: its Secrets go first.
    if cluster.report_status(RECONCILES[repair.kind], repair.kind, owner,
                             f"its Secret {secret_name} was {repair.change}"):
        metrics.secret_repairs.labels(repair.kind, repair.change).inc()
        kopf.warn(owner, reason="SecretDrift",
                  message=f"Secret {secret_name} was {repair.change} outside the operator: writing it back")
