"""A deleted resource leaves nothing behind in the operator's memory: metrics series, lock, sync schedule.

Event handlers, not on.delete: those would put a finalizer on every object just for this.
"""

from __future__ import annotations

import kopf

from .. import metrics
from ..api import CLUSTERS, CLIENTS, GROUP, VERSION
from . import client, cluster
from .cluster import sources
from .client import schedule_key
from .serial import forget


@kopf.on.event(GROUP, VERSION, CLUSTERS, when=lambda type, **_: type == "DELETED")
def cluster_gone(body, **_):
    meta = body["metadata"]
    metrics.forget("TemporalCluster", meta["namespace"], meta["name"])
    sources().key_vault.schedule.expedite(("TemporalCluster", meta["uid"]))
    cluster.UPKEEP.forget(meta["uid"])
    client.CLUSTERS_SEEN.pop((meta["namespace"], meta["name"]), None)
    forget(meta["uid"])


@kopf.on.event(GROUP, VERSION, CLIENTS, when=lambda type, **_: type == "DELETED")
def client_gone(body, **_):
    meta = body["metadata"]
    metrics.forget("TemporalClusterClient", meta["namespace"], meta["name"])
    sources().key_vault.schedule.expedite(schedule_key(body))
    client.UPKEEP.forget(meta["uid"])
    client.forget_grant(meta["uid"])
    forget(meta["uid"])
