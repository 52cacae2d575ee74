"""TemporalClusterClient: issue (and renew) an app's client certificate into a Secret."""

from __future__ import annotations

import kopf
from pydantic import ValidationError

from .. import certs
from ..api import API_VERSION, CLIENTS, GROUP, VERSION
from ..builders.client import client_secret, profile_toml
from ..models import TemporalClusterClientSpec, TemporalClusterSpec
from ..render import SERVICES
from ..sources import ClusterIdentity, SelfSignedSource, SourceError
from ..status import Condition, merge_conditions
from .cluster import kube, validation_message


def reconcile(body: dict, patch: kopf.Patch) -> None:
    meta = body["metadata"]
    generation = meta.get("generation", 0)

    def set_status(condition: Condition, **fields) -> None:
        patch.status["observedGeneration"] = generation
        patch.status["conditions"] = merge_conditions((body.get("status") or {}).get("conditions"), [condition],
                                                      generation)
        for key, value in fields.items():
            patch.status[key] = value

    try:
        spec = TemporalClusterClientSpec.model_validate(body.get("spec") or {})
    except ValidationError as error:
        set_status(Condition("Ready", False, "InvalidSpec", validation_message(error)))
        kopf.warn(body, reason="InvalidSpec", message=validation_message(error))
        return
    cluster_body = kube().get(API_VERSION, "TemporalCluster", meta["namespace"], spec.cluster_ref.name)
    if cluster_body is None:
        set_status(Condition("Ready", False, "ClusterNotFound",
                             f"TemporalCluster {spec.cluster_ref.name!r} does not exist in {meta['namespace']}"))
        return
    try:
        cluster_spec = TemporalClusterSpec.model_validate(cluster_body.get("spec") or {})
    except ValidationError:
        set_status(Condition("Ready", False, "ClusterInvalid", f"TemporalCluster {spec.cluster_ref.name!r} is invalid"))
        return
    cluster = ClusterIdentity(cluster_body["metadata"]["name"], meta["namespace"], cluster_body["metadata"]["uid"])
    secret_name = spec.secret_name or f"{meta['name']}-temporal-client"
    source = SelfSignedSource(kube())
    try:
        ca = source.ca(cluster, "frontend", cluster_spec.mtls)
        material = source.leaf(ca, certs.LeafProfile(spec.common_name or meta["name"], client=True),
                               cluster_spec.mtls, meta["namespace"], secret_name)
    except SourceError as error:
        set_status(Condition("Ready", False, "CertificatesUnavailable", str(error)))
        raise kopf.TemporaryError(str(error), delay=30)
    address = f"{cluster.frontend_server_name}:{SERVICES['frontend']['grpc']}"
    owner = {"apiVersion": API_VERSION, "kind": "TemporalClusterClient", "name": meta["name"], "uid": meta["uid"],
             "controller": True, "blockOwnerDeletion": True}
    kube().apply(client_secret(secret_name, meta["namespace"], owner, cluster.name, material,
                               profile_toml(address, cluster.frontend_server_name, spec.temporal_namespace,
                                            spec.mount_path)))
    info = certs.describe(certs.load_certificates(material.cert_pem)[0])
    set_status(Condition("Ready", True, "Issued", f"client certificate in Secret {secret_name}"),
               secretName=secret_name, address=address, serverName=cluster.frontend_server_name,
               notAfter=info.not_after, certificate=info.as_status())


@kopf.on.resume(GROUP, VERSION, CLIENTS)
@kopf.on.create(GROUP, VERSION, CLIENTS)
@kopf.on.update(GROUP, VERSION, CLIENTS, field="spec")
def client_changed(body, patch, **_):
    reconcile(body, patch)


@kopf.timer(GROUP, VERSION, CLIENTS, interval=30, initial_delay=10)
def client_renewal(body, patch, **_):
    """Renews inside the cluster's renewBefore window; a new frontend CA re-issues too."""
    reconcile(body, patch)
