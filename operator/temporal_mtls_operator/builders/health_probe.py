"""The frontend's readiness probe: Temporal's own gRPC health check over mTLS, from inside the pod (pure).

A TCP probe marks a new frontend Ready once its port opens, before Temporal reports SERVING (clients then get
``Frontend is not healthy yet``), and a kubelet ``grpc`` probe cannot speak TLS. The server image holds only
``temporal-server``, so an init container copies the Temporal CLI out of admin-tools (the image of the schema
Job, same version) into an emptyDir, and the readiness probe runs ``temporal operator cluster health``:
``grpc.health.v1.Health/Check`` for ``temporal.api.workflowservice.v1.WorkflowService`` on the pod's own
frontend port as Temporal's system worker dials it: its certificate (a frontend-CA client certificate the pod
mounts anyway), its CA bundle (the frontend CA; old and new during a CA rotation, read at each call) and the
frontend certificate's DNS name.
"""

from __future__ import annotations

from ..models.cluster import TemporalClusterSpec
from ..render import SERVICES, TLS_DIRS
from ..sources.base import ClusterIdentity
from .security import hardened

VOLUME = "health-probe"
PROBE_DIR = "/health-probe"
BINARY = f"{PROBE_DIR}/temporal"
CALL_TIMEOUT_SECONDS = 3  # the CLI gives up first, so a slow call is a failure with a message, not a kill
PERIOD_SECONDS = 2  # one call costs ~46 ms of CPU: 2.3 % of a core per frontend pod
# admin-tools has the CLI on PATH.
COPY = 'cp "$(command -v temporal)" "$0"'


def volume() -> dict:
    return {"name": VOLUME, "emptyDir": {}}


def mount() -> dict:
    return {"name": VOLUME, "mountPath": PROBE_DIR, "readOnly": True}


def init_container(spec: TemporalClusterSpec) -> dict:
    """Copies the CLI of admin-tools (the schema Job's image, the server's version) into the probe volume."""
    return {"name": "health-probe", "image": spec.schema_image, "command": ["sh", "-c", COPY, BINARY],
            "volumeMounts": [{"name": VOLUME, "mountPath": PROBE_DIR}], "securityContext": hardened()}


def command(cluster: ClusterIdentity) -> list[str]:
    # The files and server name of Temporal's own system-worker client (global.tls.systemWorker) to the frontend.
    client = TLS_DIRS["system_worker"]
    return [BINARY, "operator", "cluster", "health", "--disable-config-file", "--disable-config-env",
            "--address", f"127.0.0.1:{SERVICES['frontend']['grpc']}",
            "--tls-cert-path", f"{client}/tls.crt", "--tls-key-path", f"{client}/tls.key",
            "--tls-ca-path", f"{client}/ca.crt", "--tls-server-name", cluster.frontend_server_name,
            "--command-timeout", f"{CALL_TIMEOUT_SECONDS}s"]


def readiness_probe(cluster: ClusterIdentity) -> dict:
    """Ready only while the frontend answers SERVING over mTLS."""
    return {"exec": {"command": command(cluster)}, "periodSeconds": PERIOD_SECONDS,
            "timeoutSeconds": CALL_TIMEOUT_SECONDS + 2, "failureThreshold": 3}
