"""Names of this operator's API: group, versions, kinds, and the labels and annotations it owns."""

GROUP = "temporal-mtls.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

CLUSTERS = "temporalclusters"
NAMESPACES = "temporalnamespaces"
CLIENTS = "temporalclusterclients"

FIELD_MANAGER = "temporal-mtls-operator"
MANAGED_BY = "temporal-mtls-operator"

# Pod-template annotations whose change rolls the Temporal Deployment.
CONFIG_CHECKSUM = f"{GROUP}/config-checksum"
TRUST_CHECKSUM = f"{GROUP}/trust-checksum"
LEAF_CHECKSUM = f"{GROUP}/leaf-checksum"

# On each server Deployment: the Temporal version its pod template runs (an upgrade rolls one service at a time).
VERSION_LABEL = "app.kubernetes.io/version"
