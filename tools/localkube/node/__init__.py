"""The local node: runs the cluster's pods as real processes, without a container runtime."""
