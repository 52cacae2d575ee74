"""The local cluster's node: kubelet, containerd, kube-proxy and CoreDNS in the cluster's own network namespace, like a
kind node."""
