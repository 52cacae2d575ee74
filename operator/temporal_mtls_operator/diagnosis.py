"""Why a pod does not run, from what the kubelet and the scheduler report (pure: status dicts -> Problem or None).

What a user would otherwise dig out of ``kubectl describe pod``: an image that cannot be pulled, a Secret or ConfigMap
that is missing (or lacks a key), a container in a crash loop (its last exit), a pod no node can take. Messages name
the object and what needs it; they carry the kubelet's own messages and a container's termination message (at most
its tail), never its logs.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

IMAGE_PULL = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "RegistryUnavailable",
              "ErrImageInspect")
CANNOT_START = ("CreateContainerError", "RunContainerError", "StartError", "ContainerCannotRun")
TAIL = 300  # characters of a termination or kubelet message kept in a condition
# How long a pod may be unschedulable or wait for a volume before it counts: a new cluster's claim is bound and the
# Secrets it mounts are made within seconds (the scheduler says "unbound immediate PersistentVolumeClaims" meanwhile).
GRACE_SECONDS = 30
# A container running this long has had its start; not Ready after it is news (the probe's failureThreshold already
# debounced it), where a pod of a rollout still warming up is not.
SETTLED_SECONDS = 60

# The kubelet's words (pkg/kubelet/kubelet_pods.go, volume/secret, volume/configmap) for a missing object or key.
_MISSING = re.compile(r'(?P<kind>secret|configmap)s? "(?P<name>[^"]+)" not found', re.IGNORECASE)
_MISSING_KEY = re.compile(r"couldn't find key (?P<key>\S+) in (?P<kind>Secret|ConfigMap) (?:[^/\s]+/)?(?P<name>\S+)",
                          re.IGNORECASE)
_KINDS = {"secret": "Secret", "configmap": "ConfigMap", "config": "ConfigMap"}
# A volume's item whose key is missing: the kubelet names the volume and the key.
_VOLUME_KEY = re.compile(r'volume "(?P<volume>[^"]+)" : references non-existent (?P<kind>secret|config) key: '
                         r'(?P<key>\S+)')


@dataclass(frozen=True)
class Problem:
    reason: str  # ImagePullFailed, SecretNotFound, CrashLoopBackOff, Unschedulable, ContainerCannotStart, ...
    message: str
    pod: str  # the pod's name
    subject: str = ""  # what the cause is about (an image, a Secret, a container): one Warning Event per subject


def tail(text: str, limit: int = TAIL) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else "..." + text[-(limit - 3):]


def pod_problem(pod: dict, events: list[dict] = (), now: dt.datetime | None = None) -> Problem | None:
    """The first reason ``pod`` cannot run (scheduling, then init containers in order, then app containers), or
    None. ``events``: the pod's Events, which say why a volume cannot be mounted (the pod shows only
    ContainerCreating then). With ``now``, a pod unschedulable or waiting for a volume counts only after
    GRACE_SECONDS."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    name = meta.get("name", "")
    if meta.get("deletionTimestamp") or status.get("phase") in ("Succeeded", "Failed"):
        return None
    scheduled = next((c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"), {})
    if scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
        if not _lasted(scheduled.get("lastTransitionTime"), now):
            return None
        return Problem("Unschedulable", f"pod {name} cannot be scheduled: {tail(scheduled.get('message', ''))}", name,
                       f"pod {name}: {scheduled.get('message', '')}")  # another cause, another Event
    for kind, statuses in (("init container", "initContainerStatuses"), ("container", "containerStatuses")):
        for container in status.get(statuses) or []:
            problem = _container_problem(pod, kind, container)
            if problem:
                return problem
    unready = _unready(pod, now)
    if unready:
        return unready
    if not _lasted(meta.get("creationTimestamp"), now):
        return None
    return _mount_problem(pod, events)


def _unready(pod: dict, now: dt.datetime | None) -> Problem | None:
    """A container that has run SETTLED_SECONDS and is not Ready: its readiness probe fails (the pod is cut off, or
    the process stopped answering), so its Service sends it nothing."""
    name, status = (pod.get("metadata") or {}).get("name", ""), pod.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    for container in status.get("containerStatuses") or []:
        running = (container.get("state") or {}).get("running") or {}
        if container.get("ready") or not running or not container.get("started", True):
            continue
        if now is not None and not _since(running.get("startedAt"), now, SETTLED_SECONDS):
            continue
        since = f" since {ready['lastTransitionTime']}" if ready.get("lastTransitionTime") else ""
        where = f"container {container.get('name')} of pod {name}"
        return Problem("PodNotReady", f"{where} runs but is not Ready{since}: its readiness probe fails (is the pod "
                                      "cut off from the node, or has the process stopped answering?)", name, where)
    return None


def _since(when: str | None, now: dt.datetime, seconds: float) -> bool:
    try:
        start = dt.datetime.fromisoformat((when or "").replace("Z", "+00:00"))
    except ValueError:
        return True
    return (now - start).total_seconds() >= seconds


def _lasted(since: str | None, now: dt.datetime | None) -> bool:
    """Whether GRACE_SECONDS have passed since ``since`` (RFC 3339); always without ``now``."""
    if now is None or not since:
        return True
    try:
        start = dt.datetime.fromisoformat(since.replace("Z", "+00:00"))
    except ValueError:
        return True
    return (now - start).total_seconds() >= GRACE_SECONDS


def _container_problem(pod: dict, kind: str, container: dict) -> Problem | None:
    name = (pod.get("metadata") or {}).get("name", "")
    waiting = (container.get("state") or {}).get("waiting") or {}
    reason, message = waiting.get("reason", ""), waiting.get("message", "")
    where = f"{kind} {container.get('name')} of pod {name}"
    if reason in IMAGE_PULL:
        image = container.get("image") or _spec_image(pod, container.get("name"))
        return Problem("ImagePullFailed", f"image {image} of {where} cannot be pulled ({reason}: {tail(message)})",
                       name, f"image {image}")
    if reason == "CreateContainerConfigError":
        missing = _missing_object(message)
        if missing:
            object_kind, object_name, key = missing
            needs = _who_needs(pod, container.get("name"), object_kind, object_name)
            what = f"{object_kind} {object_name}" + (f" has no key {key}" if key else " does not exist")
            return Problem("SecretNotFound", f"{what} in namespace {(pod.get('metadata') or {}).get('namespace')}: "
                                             f"{needs or where} needs it", name, f"{object_kind} {object_name}")
        return Problem("ContainerConfigError", f"{where}: {tail(message)}", name, where)
    if reason == "CrashLoopBackOff":
        return Problem("CrashLoopBackOff", f"{where} keeps exiting (CrashLoopBackOff); last exit: "
                                           f"{_last_exit(container)}", name, where)
    if reason in CANNOT_START:
        return Problem("ContainerCannotStart", f"{where} cannot start ({reason}: {tail(message)})", name, where)
    return None


def _last_exit(container: dict) -> str:
    terminated = (container.get("lastState") or {}).get("terminated") or {}
    if not terminated:
        return "unknown"
    text = f"{terminated.get('reason') or 'Error'}, exit code {terminated.get('exitCode')}"
    if terminated.get("signal"):
        text += f", signal {terminated['signal']}"
    message = tail(terminated.get("message", ""))
    return f"{text}: {message}" if message else text


def _missing_object(message: str) -> tuple[str, str, str] | None:
    """(kind, name, key or "") of the Secret or ConfigMap a kubelet message says is missing."""
    match = _MISSING_KEY.search(message or "")
    if match:
        return _KINDS[match["kind"].lower()], match["name"], match["key"]
    match = _MISSING.search(message or "")
    if match:
        return _KINDS[match["kind"].lower()], match["name"], ""
    return None


def _missing_volume_key(pod: dict, message: str) -> tuple[str, str, str] | None:
    match = _VOLUME_KEY.search(message or "")
    if not match:
        return None
    volume = next((v for v in (pod.get("spec") or {}).get("volumes") or [] if v.get("name") == match["volume"]), {})
    name = (volume.get("secret") or {}).get("secretName") or (volume.get("configMap") or {}).get("name")
    return (_KINDS[match["kind"]], name, match["key"]) if name else None


def _containers(pod: dict) -> list[dict]:
    spec = pod.get("spec") or {}
    return [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]


def _spec_image(pod: dict, container: str | None) -> str:
    return next((c.get("image", "") for c in _containers(pod) if c.get("name") == container), "")


def _who_needs(pod: dict, container: str | None, kind: str, name: str) -> str:
    """Which env variables and volumes of the pod refer to that Secret or ConfigMap."""
    ref_key = "secretKeyRef" if kind == "Secret" else "configMapKeyRef"
    from_key = "secretRef" if kind == "Secret" else "configMapRef"
    users = []
    for spec in _containers(pod):
        if container and spec.get("name") != container:
            continue
        users += [f"env {e['name']}" for e in spec.get("env") or []
                  if ((e.get("valueFrom") or {}).get(ref_key) or {}).get("name") == name]
        users += ["envFrom" for e in spec.get("envFrom") or [] if (e.get(from_key) or {}).get("name") == name]
    users += [f"volume {v['name']}" for v in _volume_users(pod, kind, name)]
    if not users:
        return ""
    pod_name = (pod.get("metadata") or {}).get("name", "")
    return f"{', '.join(users)} of {f'container {container} of ' if container else ''}pod {pod_name}"


def _volume_users(pod: dict, kind: str, name: str) -> list[dict]:
    found = []
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        if kind == "Secret" and (volume.get("secret") or {}).get("secretName") == name:
            found.append(volume)
        elif kind == "ConfigMap" and (volume.get("configMap") or {}).get("name") == name:
            found.append(volume)
        for source in (volume.get("projected") or {}).get("sources") or []:
            if (source.get("secret" if kind == "Secret" else "configMap") or {}).get("name") == name:
                found.append(volume)
    return found


def _mount_problem(pod: dict, events: list[dict]) -> Problem | None:
    """A volume whose Secret or ConfigMap is missing: the kubelet's FailedMount Event says so."""
    name = (pod.get("metadata") or {}).get("name", "")
    for event in sorted(events or [], key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "", reverse=True):
        if event.get("reason") != "FailedMount":
            continue
        missing = _missing_object(event.get("message", "")) or _missing_volume_key(pod, event.get("message", ""))
        if missing:
            kind, object_name, key = missing
            users = [f"volume {v['name']}" for v in _volume_users(pod, kind, object_name)]
            what = f"{kind} {object_name}" + (f" has no key {key}" if key else " does not exist")
            return Problem("SecretNotFound", f"{what} in namespace {(pod.get('metadata') or {}).get('namespace')}: "
                                             f"{', '.join(users) or 'a volume'} of pod {name} needs it", name,
                           f"{kind} {object_name}")
    return None


def waiting_to_mount(pod: dict) -> bool:
    """Still creating its containers (where only Events tell a volume that cannot be mounted)."""
    status = pod.get("status") or {}
    if (pod.get("metadata") or {}).get("deletionTimestamp") or status.get("phase") != "Pending":
        return False
    states = [((c.get("state") or {}).get("waiting") or {}).get("reason")
              for c in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])]
    return not states or any(s in ("ContainerCreating", "PodInitializing") for s in states)


def deployment_problem(deployment: dict) -> Problem | None:
    """A Deployment whose ReplicaSet cannot create pods (a quota, an admission policy): its ReplicaFailure condition."""
    name = (deployment.get("metadata") or {}).get("name", "")
    failure = next((c for c in (deployment.get("status") or {}).get("conditions") or []
                    if c.get("type") == "ReplicaFailure" and c.get("status") == "True"), None)
    if not failure:
        return None
    return Problem("FailedCreate", f"Deployment {name} cannot create its pods ({failure.get('reason') or 'FailedCreate'}"
                                   f": {tail(failure.get('message', ''))})", "", f"Deployment {name}")


def job_problem(job: dict | None, events: list[dict]) -> Problem | None:
    """A Job that has not started a pod because the Job controller cannot create it (its FailedCreate Events)."""
    if not job:
        return None
    status = job.get("status") or {}
    if status.get("active") or status.get("succeeded") or status.get("failed") or status.get("ready"):
        return None
    name = (job.get("metadata") or {}).get("name", "")
    failed = [e for e in events or [] if e.get("reason") == "FailedCreate"]
    if not failed:
        return None
    latest = max(failed, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
    return Problem("SchemaJobCannotStart", f"schema Job {name} cannot create its pod: {tail(latest.get('message', ''))}",
                   "", f"Job {name}")


def first(problems: list[Problem]) -> Problem | None:
    """One condition for several pods: the first problem (stable from pass to pass, so one Event per cause)."""
    return min(problems, key=lambda p: (PRIORITY.index(p.reason) if p.reason in PRIORITY else len(PRIORITY), p.pod),
               default=None)


# What most likely explains the others (a missing Secret stops every pod that needs it; a crash may follow it).
PRIORITY = ("SecretNotFound", "FailedCreate", "SchemaJobCannotStart", "ImagePullFailed", "Unschedulable", "ContainerConfigError", "ContainerCannotStart",
            "CrashLoopBackOff", "PodNotReady")
