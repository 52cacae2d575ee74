"""A real Kubernetes node (kubelet, containerd, kube-proxy, CoreDNS) in its own network namespace, like a kind node.

Selected with LOCALKUBE_NODE=kubelet; the default node is still the agent in ../node/.
"""
