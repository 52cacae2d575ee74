"""temporal-mtls-operator: runs Temporal on Kubernetes with mutual TLS done right."""

__version__ = "0.1.0"
