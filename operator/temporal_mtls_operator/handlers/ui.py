"""spec.ui removed from a TemporalCluster: delete exactly the UI objects the operator made for it.

Each goes only if it is the cluster's own (name, app.kubernetes.io labels of the UI, controller reference to this
cluster); a same-named object of anyone else stays. The UI client's Secret follows its client (garbage collection).
"""

from __future__ import annotations

import logging

from ..builders.common import labels
from ..builders.ui import ui_object_refs
from ..kube import Kube
from ..sources import ClusterIdentity

logger = logging.getLogger(__name__)


def remove_ui(kube: Kube, cluster: ClusterIdentity) -> None:
    for api_version, kind, name in ui_object_refs(cluster):
        if kube.delete_owned(api_version, kind, cluster.namespace, name, cluster.uid, labels(cluster, "ui")):
            logger.info("TemporalCluster %s/%s: spec.ui removed, deleted %s %s", cluster.namespace, cluster.name,
                        kind, name)
