"""The configuration files of containerd, CNI, kubelet and kube-proxy, all pointing inside ``<state dir>/node``.

Every choice that differs from a default answers an obstacle of this kind of machine (shared/notes/real-node.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from .layout import (CLUSTER_CIDR, DNS_IP, KUBELET_PORT, NODE_IP, NODE_NAME, POD_CIDR, SANDBOX_IMAGE, NodeLayout)

RUNC = "/usr/sbin/runc"  # Debian's runc
CNI_BIN_DIR = "/usr/lib/cni"  # Debian's containernetworking-plugins

# kubelet with protectKernelDefaults insists on these; the node's mount namespace shows it private copies.
KERNEL_DEFAULTS = {
    "vm/overcommit_memory": "1", "vm/panic_on_oom": "0", "kernel/panic": "10", "kernel/panic_on_oops": "1",
    "kernel/keys/root_maxkeys": "1000000", "kernel/keys/root_maxbytes": "25000000",
}


def containerd_toml(layout: NodeLayout) -> str:
    c = layout.root / "containerd"
    return f"""version = 3
root = '{layout.containerd_root}'
state = '{c / "state"}'
disabled_plugins = ['io.containerd.tracing.processor.v1.otlp', 'io.containerd.internal.v1.tracing']
[grpc]
  address = '{layout.containerd_socket}'
[ttrpc]
  address = '{layout.containerd_socket}.ttrpc'
[debug]
  address = ''
[metrics]
  address = ''
[plugins]
  # NRI would listen on the hard-coded /var/run/nri/nri.sock
  [plugins.'io.containerd.nri.v1.nri']
    disable = true
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = '{SANDBOX_IMAGE}'
  [plugins.'io.containerd.cri.v1.runtime']
    disable_apparmor = true
    # no CAP_SYS_RESOURCE in this VM's bounding set: runc cannot lower oom_score_adj
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    tolerate_missing_hugetlb_controller = true
    disable_hugetlb_controller = true
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = '{RUNC}'
          Root = '{layout.root / "runc"}'
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ['{CNI_BIN_DIR}']
      conf_dir = '{layout.etc / "cni"}'
      max_conf_num = 1
  [plugins.'io.containerd.grpc.v1.cri']
    disable_tcp_service = true
    stream_server_address = '127.0.0.1'
    stream_server_port = '0'
"""


def cni_conflist(layout: NodeLayout) -> str:
    # ptp needs no bridge module nor br_netfilter; portmap serves hostPort.
    gateway = POD_CIDR.rsplit(".", 1)[0] + ".1"
    return json.dumps({
        "cniVersion": "1.0.0", "name": "localkube-pods",
        "plugins": [
            {"type": "ptp", "ipMasq": False, "mtu": 1500,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_CIDR, "gateway": gateway}]],
                      "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(layout.root / "cni-ipam")}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }, indent=2)


def kubelet_yaml(layout: NodeLayout, client_ca: Path, sync_frequency: str) -> str:
    pki = layout.pki
    return yaml.safe_dump({
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "failCgroupV1": False, "cgroupDriver": "cgroupfs", "cgroupRoot": f"/{layout.cgroup}",
        "cgroupsPerQOS": True, "enforceNodeAllocatable": ["pods"],
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        "imageServiceEndpoint": f"unix://{layout.containerd_socket}",
        "protectKernelDefaults": True,  # never write host sysctls; the values are shown to it privately
        "failSwapOn": False,
        "oomScoreAdj": 0,  # no CAP_SYS_RESOURCE: the default -999 cannot be applied
        "address": NODE_IP, "port": KUBELET_PORT, "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1", "healthzPort": 10248,
        "tlsCertFile": str(pki / "kubelet-serving.crt"), "tlsPrivateKeyFile": str(pki / "kubelet-serving.key"),
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(client_ca)}},
        "authorization": {"mode": "Webhook"},
        "clusterDNS": [DNS_IP], "clusterDomain": "cluster.local",
        "resolvConf": str(layout.etc / "resolv.conf"),
        "podLogsDir": str(layout.root / "pod-logs"),
        "syncFrequency": sync_frequency,  # how soon a changed Secret or ConfigMap reaches mounted volumes
        "serializeImagePulls": False,
        "evictionHard": {"memory.available": "200Mi", "nodefs.available": "2%", "imagefs.available": "2%"},
        "imageGCHighThresholdPercent": 99, "imageGCLowThresholdPercent": 98,
        "maxPods": 60,
    }, sort_keys=False)


def kube_proxy_yaml(layout: NodeLayout) -> str:
    return yaml.safe_dump({
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(layout.etc / "kube-proxy.kubeconfig")},
        "hostnameOverride": NODE_NAME, "bindAddress": NODE_IP, "mode": "iptables",
        "nodePortAddresses": ["primary"],  # else it sets route_localnet=1
        "clusterCIDR": CLUSTER_CIDR,
        "metricsBindAddress": "127.0.0.1:10249", "healthzBindAddress": "127.0.0.1:10256",
        # 0: leave the kernel's global conntrack table settings alone
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
    }, sort_keys=False)


def resolv_conf() -> str:
    # Nothing upstream exists here: pods with dnsPolicy Default (CoreDNS itself) see only the cluster's DNS.
    return f"nameserver {DNS_IP}\n"
