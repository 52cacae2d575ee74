"""One pod: its network namespace, volumes, containers, and the status it reports."""

from __future__ import annotations

import re
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from ..paths import REPO_ROOT, cache_dir
from . import oci
from .containers import ConfigError, ContainerRunner, Plan, now
from .images import ImageMap, search_path
from .network import GATEWAY, NodeNetwork
from .volumes import PodVolumes, Sources, Volume, VolumeNotReady, field_value, resource_value

STATUS_RESYNC_SECONDS = 10.0  # the kubelet's status sync period
_SYSTEM_PATH = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: known variables are replaced, $$ escapes, the rest stays."""
    return _VAR_REF.sub(lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), value)


class PodWorker:
    """Owns a pod from binding to deletion; the agent calls ``update`` with each new pod object."""

    def __init__(self, pod: dict, node_dir: Path, network: NodeNetwork, sources: Sources, images: ImageMap,
                 service_env: Callable[[str, bool], dict[str, str]], hosts_file: Callable[[dict, Path], None],
                 network_executor, report: Callable[[dict, dict], None],
                 event: Callable[[dict, str, str, str], None]) -> None:
        self.pod = pod
        self.uid = pod["metadata"]["uid"]
        meta = pod["metadata"]
        self.pod_dir = node_dir / "pods" / f"{meta['namespace']}_{meta['name']}_{self.uid}"
        self.node_network, self.sources, self.images = network, sources, images
        self.service_env, self.hosts_file, self.network = service_env, hosts_file, network_executor
        self.report, self.event = report, event
        self.netns = network.pod_namespace(self.uid)
        self.pod_ip = ""
        self.volumes: dict[str, Volume] = {}
        self.init_runners: list[ContainerRunner] = []
        self.runners: list[ContainerRunner] = []
        self.started_at = now()
        self.waiting_message = ""
        self.phase_override = ""
        self.terminating = False
        self._wake = threading.Event()
        self._done = threading.Event()
        self._last_status: dict = {}
        self._reported_at = 0.0  # monotonic time of the last status report
        self._conditions: dict[str, dict] = {}
        self._pod_volumes = PodVolumes(pod, self.pod_dir, sources)
        self._thread = threading.Thread(target=self._run, name=f"pod-{meta['name']}", daemon=True)

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def update(self, pod: dict) -> None:
        self.pod = pod
        self._pod_volumes.pod = pod
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def terminate(self, grace_seconds: float) -> None:
        """Stop every container (SIGTERM, grace, SIGKILL) and free the pod's network."""
        self.terminating = True
        for runner in [*self.init_runners, *self.runners]:
            threading.Thread(target=runner.stop, args=(grace_seconds,), daemon=True).start()
        deadline = time.monotonic() + grace_seconds + 10
        for runner in [*self.init_runners, *self.runners]:
            runner.finished.wait(max(0.0, deadline - time.monotonic()))
        self._done.set()
        self._wake.set()
        self._thread.join(5)
        self.node_network.detach_pod(self.uid)
        shutil.rmtree(self.pod_dir, ignore_errors=True)

    # -- main loop -----------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self.pod_dir.mkdir(parents=True, exist_ok=True)
            self.pod_ip = self.node_network.attach_pod(self.uid)
        except Exception as error:
            self.waiting_message = f"pod network setup failed: {error}"
            self.event(self.pod, "Warning", "FailedCreatePodSandBox", self.waiting_message)
        mount_failure_reported = ""
        while not self._done.is_set():
            if self.pod_ip and not self.terminating:
                try:
                    self.volumes = self._pod_volumes.sync()
                    self.hosts_file(self.pod, self.pod_dir)
                    self.waiting_message = ""
                    self._start_containers()
                except VolumeNotReady as error:
                    self.waiting_message = str(error)
                    if mount_failure_reported != str(error):
                        self.event(self.pod, "Warning", "FailedMount", f"MountVolume.SetUp failed: {error}")
                        mount_failure_reported = str(error)
                except Exception as error:  # keep the node alive whatever one pod does
                    self.waiting_message = f"{type(error).__name__}: {error}"
            self._publish_status()
            self._wake.wait(1.0)
            self._wake.clear()

    def _start_containers(self) -> None:
        """Init containers one after another, each to success; then every app container."""
        if self.runners:
            return
        policy = self.pod["spec"].get("restartPolicy", "Always")
        init_specs = self.pod["spec"].get("initContainers") or []
        if self.init_runners and not self.init_runners[-1].succeeded:
            if self.init_runners[-1].finished.is_set():
                self.phase_override = "Failed"
            return
        if len(self.init_runners) < len(init_specs):
            runner = ContainerRunner(init_specs[len(self.init_runners)], self, policy, init=True, on_change=self.wake)
            self.init_runners.append(runner)
            runner.start()
            return
        for spec in self.pod["spec"]["containers"]:
            runner = ContainerRunner(spec, self, policy, init=False, on_change=self.wake)
            self.runners.append(runner)
            runner.start()

    # -- container plans -----------------------------------------------------------------------
    def plan(self, container: dict) -> Plan:
        image = oci.IMAGES.lookup(container.get("image", ""))
        if image is not None:  # in local image storage: runc runs the real image
            return oci.plan(self, container, image, self.pod_dir.parents[1] / "runc")
        argv = self.images.argv(container.get("image", ""), container.get("command"), container.get("args"))
        env = self._environment(container)
        programs = self._programs(container)
        if programs:
            env["PATH"] = f"{programs}:{env['PATH']}"
        argv = [argv[0], *(expand(a, env) for a in argv[1:])]
        security = {**(self.pod["spec"].get("securityContext") or {}), **(container.get("securityContext") or {})}
        run_as_user = security.get("runAsUser")
        if security.get("runAsNonRoot") and not run_as_user:
            raise ConfigError("container has runAsNonRoot and no runAsUser: the local node cannot "
                              "tell the image's user (set runAsUser)")
        return Plan(
            argv=argv, env=env, working_dir=container.get("workingDir") or "/",
            mounts=self._mounts(container), hostname=self.pod["spec"].get("hostname") or self.pod["metadata"]["name"],
            run_as_user=run_as_user, run_as_group=security.get("runAsGroup", run_as_user),
            supplemental_groups=[g for g in [security.get("fsGroup"), *(security.get("supplementalGroups") or [])]
                                 if g is not None],
            read_only_root=bool(security.get("readOnlyRootFilesystem")),
            # What a non-root container must still reach when it lives under /root (mode 700): the Python
            # runtime, the tool cache, and a checkout (its venv and cluster state) under /root.
            expose_under_root=[str(Path.home() / ".pyenv"), str(cache_dir()), str(REPO_ROOT), sys.prefix],
            runtime_paths=[str(REPO_ROOT), sys.prefix, str(cache_dir())],
        )

    def _programs(self, container: dict) -> str | None:
        """A directory of links to the image's own programs (the image map's `programs`), or None."""
        programs = self.images.programs(container.get("image", ""))
        if not programs:
            return None
        directory = self.pod_dir / "programs" / container["name"]
        directory.mkdir(parents=True, exist_ok=True)
        for name, target in programs.items():
            link = directory / name
            if not link.is_symlink() or str(link.readlink()) != target:
                link.unlink(missing_ok=True)
                link.symlink_to(target)
        return str(directory)

    def _mounts(self, container: dict) -> list[dict]:
        mounts = [{"source": str(self.pod_dir / "hosts"), "target": "/etc/hosts"},
                  {"source": str(self._resolv_conf()), "target": "/etc/resolv.conf"}]
        for mount in container.get("volumeMounts") or []:
            volume = self.volumes.get(mount["name"])
            if volume is None:
                raise ConfigError(f"volumeMount {mount['name']!r} names no volume of the pod")
            source = volume.host_path
            if mount.get("subPath"):
                # Like the kubelet: a subPath mount pins today's file and is not refreshed.
                source = (source / "..data" / mount["subPath"] if volume.atomic else source / mount["subPath"]).resolve()
                if not source.exists():
                    if volume.atomic:
                        raise ConfigError(f"subPath {mount['subPath']!r} does not exist in volume {mount['name']!r}")
                    source.mkdir(parents=True, exist_ok=True)
            mounts.append({"source": str(source), "target": mount["mountPath"],
                           "read_only": bool(mount.get("readOnly")) or volume.atomic})
        return mounts

    def _resolv_conf(self) -> Path:
        """The node's DNS server (Service names only) with the kubelet's search path."""
        path = self.pod_dir / "resolv.conf"
        if not path.exists():
            namespace = self.pod["metadata"]["namespace"]
            path.write_text(f"nameserver {GATEWAY}\nsearch {namespace}.svc.cluster.local svc.cluster.local "
                            "cluster.local\noptions ndots:5 timeout:1 attempts:2\n")
        return path

    def _environment(self, container: dict) -> dict[str, str]:
        meta = self.pod["metadata"]
        run_as_root = not (container.get("securityContext") or {}).get("runAsUser") and not (
            self.pod["spec"].get("securityContext") or {}).get("runAsUser")
        env = {"PATH": ":".join(search_path() + _SYSTEM_PATH), "HOSTNAME": meta["name"],
               "HOME": "/root" if run_as_root else "/"}
        env.update(self.service_env(meta["namespace"], self.pod["spec"].get("enableServiceLinks", True)))
        for source in container.get("envFrom") or []:
            ref = source.get("configMapRef") or source.get("secretRef") or {}
            getter = self.sources.config_map if "configMapRef" in source else self.sources.secret
            data = getter(meta["namespace"], ref.get("name", ""))
            if data is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'{"configmap" if "configMapRef" in source else "secret"} "{ref.get("name")}" not found')
            env.update({source.get("prefix", "") + k: v.decode(errors="replace") for k, v in data.items()})
        for var in container.get("env") or []:
            if "valueFrom" not in var:
                env[var["name"]] = expand(var.get("value", ""), env)
                continue
            value = self._value_from(var["valueFrom"], container)
            if value is not None:
                env[var["name"]] = value
        return env

    def _value_from(self, source: dict, container: dict) -> str | None:
        namespace = self.pod["metadata"]["namespace"]
        if "fieldRef" in source:
            # The pod object may predate our status report: the IP we assigned is the current one.
            current = {**self.pod, "status": {**(self.pod.get("status") or {}), "podIP": self.pod_ip}}
            return field_value(current, source["fieldRef"]["fieldPath"])
        if "resourceFieldRef" in source:
            return resource_value(container, source["resourceFieldRef"]["resource"])
        for key, getter, kind in (("secretKeyRef", self.sources.secret, "secret"),
                                  ("configMapKeyRef", self.sources.config_map, "configmap")):
            if key in source:
                ref = source[key]
                data = getter(namespace, ref["name"])
                if data is None or ref["key"] not in data:
                    if ref.get("optional"):
                        return None
                    missing = f'{kind} "{ref["name"]}" not found' if data is None else \
                        f'couldn\'t find key {ref["key"]} in {kind} {namespace}/{ref["name"]}'
                    raise ConfigError(missing)
                return data[ref["key"]].decode(errors="replace")
        raise ConfigError(f"unsupported valueFrom: {sorted(source)}")

    # -- status --------------------------------------------------------------------------------
    def _publish_status(self) -> None:
        status = self.status()
        if status != self._last_status or self._overwritten(status):
            self._last_status = status
            self._reported_at = time.monotonic()
            self.report(self.pod, status)

    def _overwritten(self, status: dict) -> bool:
        """The pod's conditions in the API are not the last report's: another writer changed them (the node
        lifecycle controller marks pods NotReady while the node's lease is stale) or the report was lost (the API
        server was away). Written again, at most every STATUS_RESYNC_SECONDS, as a kubelet's status sync does."""
        return (time.monotonic() - self._reported_at >= STATUS_RESYNC_SECONDS
                and _condition_states(self.pod.get("status") or {}) != _condition_states(status))

    def _condition(self, kind: str, ok: bool, reason: str = "") -> dict:
        value = "True" if ok else "False"
        previous = self._conditions.get(kind)
        if not previous or previous["status"] != value:
            previous = {"type": kind, "status": value, "lastTransitionTime": now(), "lastProbeTime": None}
            if reason:
                previous["reason"] = reason
            self._conditions[kind] = previous
        return previous

    def status(self) -> dict:
        containers = [r.status() for r in self.runners] or [
            {"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": False, "started": False,
             "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating", "message": self.waiting_message}
                                          if self.waiting_message else {"reason": "ContainerCreating"}},
             "lastState": {}} for c in self.pod["spec"]["containers"]]
        init_statuses = [r.status() for r in self.init_runners]
        initialized = all(r.succeeded for r in self.init_runners) and len(self.init_runners) == len(
            self.pod["spec"].get("initContainers") or [])
        all_ready = bool(self.runners) and all(r.ready for r in self.runners)
        phase = self._phase()
        status = {
            "phase": phase, "hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}], "startTime": self.started_at,
            "conditions": [
                self._condition("PodReadyToStartContainers", bool(self.pod_ip)),
                self._condition("Initialized", initialized),
                self._condition("ContainersReady", all_ready, "" if all_ready else "ContainersNotReady"),
                self._condition("Ready", all_ready, "" if all_ready else "ContainersNotReady"),
                self._condition("PodScheduled", True),
            ],
            "containerStatuses": containers,
        }
        if self.pod_ip:
            status["podIP"], status["podIPs"] = self.pod_ip, [{"ip": self.pod_ip}]
        if init_statuses:
            status["initContainerStatuses"] = init_statuses
        return status

    def _phase(self) -> str:
        if self.phase_override:
            return self.phase_override
        if not self.runners or any("waiting" in r.state and not r.restart_count for r in self.runners):
            return "Pending" if not self.runners or not any("running" in r.state for r in self.runners) else "Running"
        if all(r.finished.is_set() for r in self.runners):
            return "Succeeded" if all(r.succeeded for r in self.runners) else "Failed"
        return "Running"


def _condition_states(status: dict) -> dict[str, str]:
    return {c.get("type"): c.get("status") for c in status.get("conditions") or []}
