"""spec.ui of a TemporalCluster: the Temporal Web UI, a client of the frontend with its own certificate."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .cluster import Model

DEFAULT_UI_VERSION = "2.55.0"


class UI(Model):
    version: str = DEFAULT_UI_VERSION
    image: str | None = None  # default temporalio/ui:<version>
    replicas: int = Field(default=1, ge=0)
    service_type: Literal["ClusterIP", "NodePort"] = "ClusterIP"
    node_port: int | None = Field(default=None, ge=30000, le=32767)
    # The codec server as the user's browser reaches it (the UI page calls it from the browser, not the UI pod).
    codec_endpoint: str | None = Field(default=None, pattern=r"^https?://")
    # The browser's codec requests carry cookies/credentials (e.g. a proxy in front of the codec server).
    codec_include_credentials: bool = False
    # The UI's certificate from the cluster's Key Vault (required when the cluster's source is azureKeyVault).
    key_vault_certificate: str | None = Field(default=None, pattern=r"^[0-9a-zA-Z-]{1,127}$")
    # Where users open the UI (CORS/CSRF origin of the UI server), e.g. http://localhost:8080.
    public_url: str | None = Field(default=None, pattern=r"^https?://")

    @model_validator(mode="after")
    def node_port_needs_node_port_type(self) -> "UI":
        if self.node_port is not None and self.service_type != "NodePort":
            raise ValueError("ui.nodePort needs ui.serviceType NodePort")
        return self

    @property
    def ui_image(self) -> str:
        return self.image or f"temporalio/ui:{self.version}"
