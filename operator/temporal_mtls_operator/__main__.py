"""`python -m temporal_mtls_operator`: run the operator against the current kubeconfig (with leader election
when TMO_LEADER_ELECTION_LEASE is set, as the chart does)."""

from .main import run

run()
