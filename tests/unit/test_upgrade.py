"""Upgrades one minor at a time, the services one after another (operator/temporal_mtls_operator/upgrade.py)."""

from __future__ import annotations

import pytest

from temporal_mtls_operator import upgrade
from temporal_mtls_operator.builders.cluster import cluster_objects
from temporal_mtls_operator.handlers.upgrade import progressing, upgrade_record
from temporal_mtls_operator.models.cluster import TemporalClusterSpec
from temporal_mtls_operator.upgrade import Deployed, plan

from .test_builders import CLUSTER, materials
from .test_postgres_builders import spec as postgres_spec

ORDER = upgrade.ORDER
OLD, NEW = "1.31.4", "1.32.2"


def at(version: str, settled: bool = True, services=ORDER) -> dict[str, Deployed]:
    return {s: Deployed(version, settled) for s in services}


@pytest.mark.parametrize("running, target", [("1.31.4", "1.31.4"), ("1.31.4", "1.31.9"), ("1.31.4", "1.32.0"),
                                             ("1.31.4", "1.32.2"), ("1.9.0", "1.10.1")])
def test_one_minor_up_is_allowed(running, target):
    assert upgrade.transition_problem(running, target) is None


def test_a_skipped_minor_is_refused_naming_the_next_step():
    assert upgrade.transition_problem("1.31.4", "1.33.0") == (
        "spec.version 1.33.0 skips a minor version: the servers run 1.31.4, and Temporal upgrades one minor at a "
        "time; set 1.32.x first, then 1.33.0 once that upgrade completed")
    assert "skips a minor" in upgrade.transition_problem("1.31.4", "2.0.0")


def test_a_downgrade_is_refused():
    assert upgrade.transition_problem("1.32.2", "1.31.4") == (
        "spec.version 1.31.4 is older than the running 1.32.2: Temporal cannot be downgraded (its schema and data "
        "are 1.32.2's); set spec.version back to 1.32.2 or later")
    assert upgrade.transition_problem("1.32.2", "1.32.1").startswith("spec.version 1.32.1 is older")


def test_a_new_cluster_starts_every_service_at_its_version():
    result = plan(NEW, None, {}, ORDER)
    assert result.versions == dict.fromkeys(ORDER, NEW) and not result.upgrading and result.done


def test_a_version_change_moves_history_alone_first():
    result = plan(NEW, OLD, at(OLD), ORDER)
    assert result.versions == {"history": NEW, "matching": OLD, "frontend": OLD, "worker": OLD}
    assert result.step == "history" and result.upgrading and not result.done
    assert progressing(result.step, "").reason == "UpgradingHistory"
    assert upgrade.progress(result) == "1.31.4 to 1.32.2: history rolling out"


def test_the_next_service_waits_until_the_one_before_is_rolled_out():
    rolling = {**at(OLD), "history": Deployed(NEW, settled=False)}
    assert plan(NEW, OLD, rolling, ORDER).versions == {"history": NEW, "matching": OLD, "frontend": OLD,
                                                      "worker": OLD}
    done = {**at(OLD), "history": Deployed(NEW, settled=True)}
    result = plan(NEW, OLD, done, ORDER)
    assert result.versions == {"history": NEW, "matching": NEW, "frontend": OLD, "worker": OLD}
    assert result.step == "matching" and upgrade.progress(result) == "1.31.4 to 1.32.2: history done; matching rolling out"


def test_the_worker_service_rolls_last_and_then_the_upgrade_is_done():
    almost = {**at(NEW), "worker": Deployed(NEW, settled=False)}
    result = plan(NEW, OLD, almost, ORDER)
    assert result.step == "worker" and result.upgrading
    assert upgrade.progress(result) == "1.31.4 to 1.32.2: history, matching, frontend done; worker rolling out"
    finished = plan(NEW, OLD, at(NEW), ORDER)
    assert finished.done and not finished.upgrading and finished.versions == dict.fromkeys(ORDER, NEW)


def test_an_unsettled_service_outside_an_upgrade_holds_nothing_back():
    """A crash-looping history at the running version is Degraded's business, not the upgrade's."""
    result = plan(OLD, OLD, {**at(OLD), "history": Deployed(OLD, settled=False)}, ORDER)
    assert result.versions == dict.fromkeys(ORDER, OLD) and not result.upgrading


def test_a_refused_version_keeps_each_service_as_it_runs():
    """Mid-upgrade (history already on 1.32) the user asks for 1.33: nothing moves, Progressing says why."""
    mixed = {**at(OLD), "history": Deployed(NEW, settled=True)}
    result = plan("1.33.0", OLD, mixed, ORDER)
    assert result.versions == {"history": NEW, "matching": OLD, "frontend": OLD, "worker": OLD}
    assert result.refused.startswith("spec.version 1.33.0 skips a minor version: the servers run 1.31.4")
    assert not result.upgrading and not result.done


def test_back_below_a_version_a_service_already_runs_everywhere_is_refused():
    """Mid-upgrade, history runs 1.32.2 on every pod: 1.31.4 again would downgrade it."""
    result = plan(OLD, OLD, {**at(OLD), "history": Deployed(NEW, settled=True)}, ORDER)
    assert result.refused == ("spec.version 1.31.4 is older than 1.32.2, which a service already runs on every pod: "
                              "Temporal cannot be downgraded; set spec.version 1.32.2 or later")
    assert result.versions == {"history": NEW, "matching": OLD, "frontend": OLD, "worker": OLD}


def test_a_version_whose_pods_never_ran_may_be_corrected():
    """spec.version 9.9.9 (no such image): history's pods never ran it, so going back is no downgrade."""
    result = plan(OLD, None, {**at(OLD), "history": Deployed("9.9.9", settled=False)}, ORDER)
    assert result.refused is None and result.versions == dict.fromkeys(ORDER, OLD)
    created_so = plan(OLD, None, {"server": Deployed("9.9.9", settled=False)}, ("server",))  # a new cluster's typo
    assert created_so.refused is None and created_so.versions == {"server": OLD}


def test_without_status_version_the_oldest_deployment_stands_for_the_running_version():
    """A cluster made before status.version: its Deployments say what runs (label, else image tag)."""
    result = plan(NEW, None, {**at(NEW), "worker": Deployed(OLD, True)}, ORDER)
    assert result.running == OLD and result.step == "worker"
    assert plan("1.33.0", None, at(OLD), ORDER).refused


def test_sqlite_upgrades_its_one_pod():
    result = plan(NEW, OLD, at(OLD, services=("server",)), ("server",))
    assert result.versions == {"server": NEW} and progressing(result.step, "").reason == "UpgradingServer"


def test_a_deployment_says_its_version_by_label_or_image_tag():
    labelled = {"metadata": {"generation": 2, "labels": {"app.kubernetes.io/version": NEW}},
                "spec": {"replicas": 2, "template": {"spec": {"containers": [{"image": "x:1.31.4"}]}}},
                "status": {"observedGeneration": 2, "updatedReplicas": 2, "replicas": 2, "availableReplicas": 2}}
    assert upgrade.deployed(labelled) == Deployed(NEW, True)
    old = {"metadata": {"generation": 3}, "spec": {"template": {"spec": {"containers": [
        {"image": "ghcr.io/temporal-mtls-operator/temporal-server:1.31.4"}]}}},
        "status": {"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1}}
    assert upgrade.deployed(old) == Deployed(OLD, False)  # generation 3 not observed yet: not settled
    custom = {"metadata": {}, "spec": {"template": {"spec": {"containers": [{"image": "registry/temporal:latest"}]}}}}
    assert upgrade.deployed(custom).version is None and upgrade.deployed(None) is None


def test_each_service_deployment_carries_its_own_version_and_images():
    spec = postgres_spec()
    spec = spec.model_copy(update={"version": NEW})
    versions = {"history": NEW, "matching": OLD, "frontend": OLD, "worker": OLD}
    deployments = {o["metadata"]["name"]: o for o in cluster_objects(CLUSTER, spec, materials(spec), (), versions)
                   if o["kind"] == "Deployment"}
    for service, version in versions.items():
        deployment = deployments[f"{CLUSTER.name}-{service}"]
        assert deployment["metadata"]["labels"]["app.kubernetes.io/version"] == version
        pod = deployment["spec"]["template"]
        assert pod["spec"]["containers"][0]["image"].endswith(f":{version}")
        assert "app.kubernetes.io/version" not in pod["metadata"]["labels"]  # a label change rolls nothing
    frontend = deployments[f"{CLUSTER.name}-frontend"]["spec"]["template"]["spec"]
    assert frontend["initContainers"][0]["image"] == f"temporalio/admin-tools:{OLD}"


def test_a_service_kept_at_its_version_renders_exactly_as_before():
    """The services that wait are applied unchanged: the same pod template, so not one pod restarts early."""
    before = postgres_spec()
    after = before.model_copy(update={"version": NEW})
    old = cluster_objects(CLUSTER, before, materials(before))
    held = cluster_objects(CLUSTER, after, materials(before), (), {"history": NEW, "matching": OLD,
                                                                   "frontend": OLD, "worker": OLD})
    pick = lambda objects, name: next(o for o in objects if o["metadata"]["name"] == f"{CLUSTER.name}-{name}"
                                      and o["kind"] == "Deployment")
    for name in ("matching", "frontend", "worker"):
        assert pick(held, name) == pick(old, name)
    assert pick(held, "history") != pick(old, "history")


def test_status_upgrade_records_the_steps_and_the_completion():
    started = upgrade_record(plan(NEW, OLD, at(OLD), ORDER), None, "schema")
    assert started["from"] == OLD and started["to"] == NEW and started["step"] == "schema"
    moving = upgrade_record(plan(NEW, OLD, {**at(OLD), "history": Deployed(NEW, False)}, ORDER), started, "history")
    assert moving["step"] == "history" and moving["startedAt"] == started["startedAt"]
    done = upgrade_record(plan(NEW, OLD, at(NEW), ORDER), moving, None)
    assert done["step"] == "Completed" and done["completedAt"] and done["startedAt"] == started["startedAt"]
    assert upgrade_record(plan(NEW, NEW, at(NEW), ORDER), done, None) == done  # kept afterwards
    assert upgrade_record(plan(OLD, None, {}, ORDER), None, None) is None  # a new cluster: none


def test_the_schema_job_is_the_first_step():
    assert progressing(None, "").reason == "UpgradingSchema"


def test_spec_version_default_is_the_oldest_supported_release():
    assert TemporalClusterSpec().version == OLD
