"""The operator chart: least-privilege RBAC (cluster-wide and per namespace) and the health probes."""

from __future__ import annotations

import json

import pytest
import yaml

from conftest import OPERATOR_NAMESPACE, REPO, operator_logs, wait_for

pytestmark = pytest.mark.cluster

CHART = str(REPO / "charts" / "temporal-mtls-operator")
OPERATOR_SA = f"system:serviceaccount:{OPERATOR_NAMESPACE}:tmo"
NAMESPACED_KINDS = {"secrets", "configmaps", "services", "persistentvolumeclaims", "deployments", "events",
                    "endpointslices", "temporalclusters", "temporalnamespaces", "temporalclusterclients"}

# (verb, resource, subresource): what the code does (kube.py, kopf) and what it must never be able to do.
ALLOWED = [
    ("get", "secrets", ""), ("create", "secrets", ""), ("patch", "secrets", ""),
    ("get", "configmaps", ""), ("create", "services", ""), ("patch", "persistentvolumeclaims", ""),
    ("get", "deployments.apps", ""), ("create", "deployments.apps", ""), ("patch", "deployments.apps", ""),
    ("list", "deployments.apps", ""), ("watch", "deployments.apps", ""),
    ("get", "temporalclusters.temporal-mtls.dev", ""),
    ("list", "temporalclusters.temporal-mtls.dev", ""), ("watch", "temporalclusterclients.temporal-mtls.dev", ""),
    ("patch", "temporalnamespaces.temporal-mtls.dev", ""),
    ("patch", "temporalclusters.temporal-mtls.dev", "status"),
    ("patch", "temporalclusterclients.temporal-mtls.dev", "status"),
    ("update", "temporalclusters.temporal-mtls.dev", "finalizers"),
    ("update", "temporalclusterclients.temporal-mtls.dev", "finalizers"),
    ("create", "events", ""), ("list", "endpointslices.discovery.k8s.io", ""),
    # The repair of its own Secrets (handlers/secrets.py) and the removal of the UI objects (handlers/ui.py).
    ("list", "secrets", ""), ("watch", "secrets", ""),
    ("delete", "deployments.apps", ""), ("delete", "services", ""),
    ("delete", "temporalclusterclients.temporal-mtls.dev", ""),
]
# Only the UI's objects are ever deleted (by name, label and owner reference).
DELETABLE = {"deployments.apps", "services", "temporalclusterclients.temporal-mtls.dev"}
DENIED = [
    ("delete", "secrets", ""), ("update", "secrets", ""), ("delete", "persistentvolumeclaims", ""),
    ("delete", "configmaps", ""), ("delete", "events", ""), ("deletecollection", "deployments.apps", ""),
    ("delete", "temporalnamespaces.temporal-mtls.dev", ""),
    ("delete", "temporalclusters.temporal-mtls.dev", ""), ("deletecollection", "secrets", ""),
    ("update", "temporalclusters.temporal-mtls.dev", ""), ("update", "temporalclusters.temporal-mtls.dev", "status"),
    ("update", "pods", ""), ("patch", "pods", ""), ("create", "pods", ""), ("get", "pods", ""),
    ("get", "nodes", ""), ("create", "clusterroles.rbac.authorization.k8s.io", ""),
    ("create", "rolebindings.rbac.authorization.k8s.io", ""),
    ("escalate", "clusterroles.rbac.authorization.k8s.io", ""), ("bind", "clusterroles.rbac.authorization.k8s.io", ""),
    ("impersonate", "serviceaccounts", ""), ("create", "serviceaccounts", "token"),
    ("patch", "customresourcedefinitions.apiextensions.k8s.io", ""),
]


def can_i(kubectl, account: str, namespace: str, verb: str, resource: str, subresource: str = "") -> bool:
    args = ["auth", "can-i", verb, resource, "-n", namespace, f"--as={account}"]
    result = kubectl(*args, *([f"--subresource={subresource}"] if subresource else []), check=False)
    assert result.stdout.strip() in ("yes", "no"), result.stderr  # anything else is an error, not an answer
    return result.stdout.strip() == "yes"


def allowed_rules(kubectl, account: str, namespace: str) -> dict[str, set[str]]:
    """Resource -> verbs from `kubectl auth can-i --list` (non-resource URLs left out)."""
    rules: dict[str, set[str]] = {}
    listing = kubectl("auth", "can-i", "--list", "--no-headers", "-n", namespace, f"--as={account}").stdout
    for line in listing.splitlines():
        resource = line.split()[0]
        if not resource.startswith("["):
            rules.setdefault(resource, set()).update(line[line.rindex("[") + 1:line.rindex("]")].split())
    return rules


def render(helm, *values: str) -> list[dict]:
    out = helm("template", "tmo", CHART, "-n", OPERATOR_NAMESPACE, *values).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_service_account_can_do_exactly_what_the_operator_does(kubectl, operator, namespace):
    for verb, resource, sub in ALLOWED:
        assert can_i(kubectl, OPERATOR_SA, namespace, verb, resource, sub), f"cannot {verb} {resource}/{sub}"
    for verb, resource, sub in DENIED:
        assert not can_i(kubectl, OPERATOR_SA, namespace, verb, resource, sub), f"can {verb} {resource}/{sub}"
    # No rule grants deletion beyond the UI's kinds, update of a whole object, wildcards, or RBAC/identity powers.
    for resource, verbs in allowed_rules(kubectl, OPERATOR_SA, namespace).items():
        risky = verbs & {"*", "deletecollection", "escalate", "bind", "impersonate"}
        risky |= set() if resource in DELETABLE else verbs & {"delete"}
        assert not risky and ("update" not in verbs or resource.endswith("/finalizers")), f"{resource}: {verbs}"


def test_only_the_operator_namespace_lease_is_writable(kubectl, operator, namespace):
    lease = "leases.coordination.k8s.io/tmo-leader"
    for verb in ("get", "update"):
        assert can_i(kubectl, OPERATOR_SA, OPERATOR_NAMESPACE, verb, lease)
        assert not can_i(kubectl, OPERATOR_SA, namespace, verb, lease)
    assert not can_i(kubectl, OPERATOR_SA, OPERATOR_NAMESPACE, "update", "leases.coordination.k8s.io/other")
    assert not can_i(kubectl, OPERATOR_SA, OPERATOR_NAMESPACE, "delete", lease)
    assert not can_i(kubectl, OPERATOR_SA, namespace, "create", "leases.coordination.k8s.io")


def test_operator_pod_declares_probes_is_ready_and_serves_healthz(kubectl, operator, node_exec):
    pod = json.loads(kubectl("get", "pods", "-n", operator, "-l", "app.kubernetes.io/instance=tmo",
                             "-o", "json").stdout)["items"][0]
    container = pod["spec"]["containers"][0]
    assert {"name": "health", "containerPort": 8080, "protocol": "TCP"} in container["ports"]
    assert {"name": "metrics", "containerPort": 8081, "protocol": "TCP"} in container["ports"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health", "scheme": "HTTP"}, probe
    # Ready comes only from the readiness probe, so /healthz answered the node.
    wait_for(lambda: any(c["type"] == "Ready" and c["status"] == "True" for c in json.loads(
        kubectl("get", "pod", pod["metadata"]["name"], "-n", operator, "-o", "json").stdout)["status"]["conditions"]),
        60, interval=1, what="the operator pod to be Ready")
    response = node_exec("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
                         f"http://{pod['status']['podIP']}:8080/healthz", timeout=30)
    assert response.stdout == "200", response.stderr


def test_chart_with_watch_namespaces_renders_roles_and_no_cluster_wide_namespaced_access(helm):
    assert "0 chart(s) failed" in helm("lint", "--strict", CHART, "--set", "watchNamespaces={team-a,team-b}").stdout
    assert helm("lint", "--strict", CHART, "--set", "watchNamespaces={Not_A_Namespace}", check=False).returncode != 0

    docs = render(helm, "--set", "watchNamespaces={team-a,team-b}")
    roles = {d["metadata"]["namespace"]: d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == "tmo"}
    bindings = {d["metadata"]["namespace"]: d for d in docs
                if d["kind"] == "RoleBinding" and d["metadata"]["name"] == "tmo"}
    assert set(roles) == set(bindings) == {"team-a", "team-b"}
    for ns, binding in bindings.items():
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "tmo"}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "tmo", "namespace": OPERATOR_NAMESPACE}]
        assert NAMESPACED_KINDS <= {r for rule in roles[ns]["rules"] for r in rule["resources"]}
    (cluster_role,) = [d for d in docs if d["kind"] == "ClusterRole"]
    cluster_wide = {r.split("/")[0] for rule in cluster_role["rules"] for r in rule["resources"]}
    assert cluster_wide == {"customresourcedefinitions", "namespaces"}
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["TMO_WATCH_NAMESPACES"] == "team-a,team-b"

    # The default (cluster-wide) has no namespace list and one Role: leader election's Lease, in its own namespace.
    docs = render(helm)
    (lease_role,) = [d for d in docs if d["kind"] == "Role"]
    assert lease_role["metadata"] == {**lease_role["metadata"], "name": "tmo-leader-election",
                                      "namespace": OPERATOR_NAMESPACE}
    assert {r for rule in lease_role["rules"] for r in rule["resources"]} == {"leases"}
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "RoleBinding"] == ["tmo-leader-election"]
    (cluster_role,) = [d for d in docs if d["kind"] == "ClusterRole"]
    assert NAMESPACED_KINDS <= {r for rule in cluster_role["rules"] for r in rule["resources"]}
    assert "namespaces" not in {r for rule in cluster_role["rules"] for r in rule["resources"]}


def test_operator_watching_one_namespace_can_act_only_there(helm, kubectl, namespace, request):
    """A second release in its own namespace, serving only ``namespace``: Roles there, nothing elsewhere."""
    release, home = "tmo-scoped", f"{namespace}-op"
    account = f"system:serviceaccount:{home}:{release}"
    request.addfinalizer(lambda: (helm("uninstall", release, "-n", home, "--wait", check=False),
                                  kubectl("delete", "namespace", home, "--wait=false", check=False)))
    helm("install", release, CHART, "-n", home, "--create-namespace", "--set", f"watchNamespaces={{{namespace}}}",
         "--wait", "--timeout=120s")
    for verb, resource, sub in ALLOWED:
        assert can_i(kubectl, account, namespace, verb, resource, sub), f"cannot {verb} {resource}/{sub}"
        assert not can_i(kubectl, account, "default", verb, resource, sub), f"can {verb} {resource}/{sub} elsewhere"

    # It serves its namespace: it handles a client there (the session's cluster-wide operator may win the create
    # handler, as both share kopf's progress annotations, but this one's daemon reconciles a client it never saw
    # reconciled, within 30 s).
    kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump({
        "apiVersion": "temporal-mtls.dev/v1alpha1", "kind": "TemporalClusterClient", "metadata": {"name": "lonely"},
        "spec": {"clusterRef": {"name": "missing"}}}))

    def logs() -> str:
        return operator_logs(kubectl, home, release)

    wait_for(lambda: "Handler 'client_changed' succeeded" in logs()
             or f"TemporalClusterClient {namespace}/lonely: reconcile due (upkeep)" in logs(),
             60, interval=1,
             what=lambda: "the scoped operator to handle the client; its log: " + logs()[-2000:])
    assert not [line for line in logs().splitlines() if "Forbidden" in line or "Not enough permissions" in line]
