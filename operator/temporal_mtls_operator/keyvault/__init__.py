"""Azure Key Vault access shared by the certificate source and the keyvault-certs command."""

from .client import RequestCounter, VaultClients, VaultSettings, open_clients

__all__ = ["RequestCounter", "VaultClients", "VaultSettings", "open_clients"]
