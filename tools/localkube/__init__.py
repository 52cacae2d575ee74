"""Development and test infrastructure: pinned tool builds and a local Kubernetes cluster.

Never imported by the operator.
"""
