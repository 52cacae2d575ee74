"""The operator's own Temporal client: mTLS with its client certificate, namespace operations."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from google.protobuf.duration_pb2 import Duration
from temporalio.api.namespace.v1 import NamespaceConfig, UpdateNamespaceInfo
from temporalio.api.operatorservice.v1 import DeleteNamespaceRequest
from temporalio.api.workflowservice.v1 import (
    DescribeNamespaceRequest,
    RegisterNamespaceRequest,
    UpdateNamespaceRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode, TLSConfig


@dataclass(frozen=True)
class Endpoint:
    address: str
    server_name: str
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes

    @classmethod
    def from_secret(cls, address: str, server_name: str, secret: dict) -> "Endpoint":
        data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
        return cls(address, server_name, data["ca.crt"], data["tls.crt"], data["tls.key"])


async def connect(endpoint: Endpoint) -> Client:
    return await Client.connect(endpoint.address, tls=TLSConfig(
        server_root_ca_cert=endpoint.ca_pem, client_cert=endpoint.cert_pem,
        client_private_key=endpoint.key_pem, domain=endpoint.server_name))


_clients: dict[tuple[str, str], tuple[Endpoint, Client]] = {}


async def client_for(endpoint: Endpoint) -> Client:
    """One connection per frontend, reused; replaced (the old one dropped) when its certificates change."""
    key = (endpoint.address, endpoint.server_name)
    cached = _clients.get(key)
    if cached and cached[0] == endpoint:
        return cached[1]
    client = await connect(endpoint)
    _clients[key] = (endpoint, client)
    return client


async def ensure_namespace(client: Client, name: str, description: str, owner_email: str,
                           retention_seconds: int) -> dict:
    """Register the namespace, or bring description and retention up to date; return what Temporal says."""
    retention = Duration(seconds=retention_seconds)
    service = client.workflow_service
    try:
        await service.register_namespace(RegisterNamespaceRequest(
            namespace=name, description=description, owner_email=owner_email,
            workflow_execution_retention_period=retention))
    except RPCError as error:
        if error.status != RPCStatusCode.ALREADY_EXISTS:
            raise
        current = await service.describe_namespace(DescribeNamespaceRequest(namespace=name))
        if (current.namespace_info.description != description or current.namespace_info.owner_email != owner_email
                or current.config.workflow_execution_retention_ttl.seconds != retention_seconds):
            await service.update_namespace(UpdateNamespaceRequest(
                namespace=name, update_info=UpdateNamespaceInfo(description=description, owner_email=owner_email),
                config=NamespaceConfig(workflow_execution_retention_ttl=retention)))
    described = await service.describe_namespace(DescribeNamespaceRequest(namespace=name))
    return {"id": described.namespace_info.id, "state": described.namespace_info.state,
            "retentionSeconds": described.config.workflow_execution_retention_ttl.seconds}


async def delete_namespace(client: Client, name: str) -> None:
    try:
        await client.operator_service.delete_namespace(DeleteNamespaceRequest(namespace=name))
    except RPCError as error:
        if error.status != RPCStatusCode.NOT_FOUND:
            raise
