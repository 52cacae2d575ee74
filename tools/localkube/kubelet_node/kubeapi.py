"""The volume provisioner's API access: plain JSON over the official client's connection handling."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlencode

from kubernetes import config


class KubeError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


class Kube:
    def __init__(self, kubeconfig: Path) -> None:
        client = config.new_client_from_config(config_file=str(kubeconfig))
        self.host = client.configuration.host
        self.pool = client.rest_client.pool_manager  # carries the kubeconfig's TLS material
        self.auth = {s["key"]: s["value"] for s in client.configuration.auth_settings().values()
                     if s.get("in") == "header" and s.get("value")}

    def _call(self, method: str, path: str, body: dict | None, query: dict | None):
        url = f"{self.host}{path}" + (f"?{urlencode(query)}" if query else "")
        return self.pool.request(method, url, body=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json", "Accept": "application/json", **self.auth},
                                 timeout=30.0, retries=False)

    def request(self, method: str, path: str, body: dict | None = None, query: dict | None = None) -> dict | None:
        """One API call; a 404 (or 409 on create) returns None instead of raising."""
        response = self._call(method, path, body, query)
        if response.status == 404 or (response.status == 409 and method == "POST"):
            return None
        if response.status >= 400:
            raise KubeError(response.status, _message(response.data))
        return json.loads(response.data) if response.data else {}

    def get(self, path: str, **query) -> dict | None:
        return self.request("GET", path, query=query)

    def items(self, path: str, **query) -> list[dict]:
        return (self.get(path, **query) or {}).get("items", [])

    def create(self, path: str, body: dict) -> dict | None:
        return self.request("POST", path, body)

    def delete(self, path: str, body: dict | None = None) -> dict | None:
        return self.request("DELETE", path, body)


def _message(data: bytes) -> str:
    try:
        return json.loads(data).get("message", "")
    except ValueError:
        return data[:200].decode(errors="replace")
