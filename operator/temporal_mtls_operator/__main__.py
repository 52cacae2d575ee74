"""`python -m temporal_mtls_operator`: run the operator (one replica) against the current kubeconfig."""

from .main import run

run()
