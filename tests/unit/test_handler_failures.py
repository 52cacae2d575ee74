"""No exception leaves a reconcile without a condition that says what and why."""

from __future__ import annotations

import kopf
import pytest

from temporal_mtls_operator.handlers.cluster import NamespaceTerminating, failures_as_conditions, report_status
from temporal_mtls_operator.kube import KubeError

BODY = {"metadata": {"name": "demo", "namespace": "apps", "generation": 3}, "status": {}}


@pytest.mark.parametrize("error, reason", [(KeyError("tls.crt"), "InternalError"),
                                           (KubeError(503, "etcd is down"), "APIError")])
def test_an_unexpected_failure_becomes_ready_false_and_a_retry(error, reason):
    patch = kopf.Patch()
    with pytest.raises(kopf.TemporaryError):
        with failures_as_conditions(BODY, patch):
            raise error
    ready = patch.status["conditions"][0]
    assert (ready["type"], ready["status"], ready["reason"], ready["observedGeneration"]) == \
        ("Ready", "False", reason, 3)
    assert type(error).__name__ in ready["message"]


def test_a_planned_retry_passes_through_untouched():
    patch = kopf.Patch()
    with pytest.raises(kopf.TemporaryError, match="wait"):
        with failures_as_conditions(BODY, patch):
            raise kopf.TemporaryError("wait", delay=1)
    assert "conditions" not in patch.get("status", {})


def test_a_namespace_being_deleted_is_a_condition_and_one_log_line(caplog):
    error = KubeError(403, 'secrets "demo-frontend-tls" is forbidden: unable to create new content in namespace apps '
                           "because it is being terminated", ("NamespaceTerminating",))
    patch = kopf.Patch()
    with caplog.at_level("INFO"), pytest.raises(NamespaceTerminating):
        with failures_as_conditions(BODY, patch):
            raise error
    assert patch.status["conditions"][0]["reason"] == "APIError"
    assert [(r.levelname, r.getMessage(), r.exc_info) for r in caplog.records] == [
        ("INFO", "reconcile of apps/demo stopped: its namespace is being deleted", None)]


def test_a_reconcile_stopped_by_the_namespaces_deletion_reports_nothing():
    def reconcile(body, patch):
        with failures_as_conditions(body, patch):
            raise KubeError(403, "unable to create new content in namespace apps", ("NamespaceTerminating",))

    assert report_status(reconcile, "TemporalCluster", BODY) is False  # no status patch: no API client needed


def test_a_request_rbac_refuses_is_forbidden_saying_so():
    body = {"metadata": {"name": "demo", "namespace": "apps", "uid": "u", "generation": 1}}
    patch = kopf.Patch()
    with pytest.raises(kopf.TemporaryError):
        with failures_as_conditions(body, patch):
            raise KubeError(403, 'pods is forbidden: User "system:serviceaccount:tmo:tmo" cannot list resource "pods"')
    ready = patch.status["conditions"][0]
    assert ready["reason"] == "Forbidden" and "service account may not do this" in ready["message"]
    assert 'cannot list resource "pods"' in ready["message"]
