"""spec.encryption of a TemporalClusterClient: where the app's payload data keys come from."""

from __future__ import annotations

from pydantic import Field, field_validator

from .cluster import Model, parse_duration


class PayloadKeyVault(Model):
    """Envelope encryption: data keys wrapped by an RSA key in Azure Key Vault; the apps store only the wrapped key."""
    vault_url: str = Field(pattern=r"^https://")
    key_name: str = Field(pattern=r"^[0-9a-zA-Z-]{1,127}$")
    api_version: str | None = None
    verify_challenge_resource: bool = True
    # Secret (key ca.crt) in the client's namespace verifying the vault's TLS; copied next to the keys.
    tls_ca_secret: str | None = Field(default=None, alias="tlsCASecret")
    client_id: str | None = None
    # How long an app keeps an unwrapped key before asking the vault again.
    cache_ttl: str = Field(default="5m", alias="cacheTTL")

    @field_validator("cache_ttl")
    @classmethod
    def valid_ttl(cls, value: str) -> str:
        parse_duration(value)
        return value


class Encryption(Model):
    secret_name: str | None = Field(default=None, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # <name>-payload-keys
    azure_key_vault: PayloadKeyVault | None = None  # None: random data keys in the Secret (no vault)
    compress: bool = False

    @property
    def source(self) -> str:
        return "azureKeyVault" if self.azure_key_vault else "secret"
