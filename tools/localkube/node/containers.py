"""One container as a supervised process: start, probe, restart per policy, stop gracefully."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from .images import ImageError
from .probes import ProbeState, ProbeTarget, run_probe

_BACKOFF_START, _BACKOFF_CAP, _BACKOFF_RESET_AFTER = 1.0, 20.0, 60.0


class ConfigError(Exception):
    """The container's configuration refers to something missing (CreateContainerConfigError)."""


@dataclass(frozen=True)
class Plan:
    """Everything launch.py needs to start the container (serialised to a 0600 file)."""
    argv: list[str]
    env: dict[str, str]
    working_dir: str
    mounts: list[dict]
    hostname: str
    run_as_user: int | None
    run_as_group: int | None
    supplemental_groups: list[int]
    read_only_root: bool
    expose_under_root: list[str]
    runtime_paths: list[str]
    oci: dict | None = None  # a container from a real image, run by runc (oci.py); None: a local program


class PodContext(Protocol):
    pod_dir: Path
    netns: str
    pod_ip: str
    network: object  # Executor running inside the node namespace

    def plan(self, container: dict) -> Plan: ...


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class ContainerRunner:
    def __init__(self, spec: dict, ctx: PodContext, restart_policy: str, init: bool,
                 on_change: Callable[[], None]) -> None:
        self.spec, self.ctx, self.init = spec, ctx, init
        self.name = spec["name"]
        self.restart_policy = "OnFailure" if init and restart_policy == "Always" else restart_policy
        self.on_change = on_change
        self.state: dict = {"waiting": {"reason": "ContainerCreating"}}
        self.last_state: dict = {}
        self.ready = False
        self.started = False
        self.restart_count = 0
        self.pid: int | None = None
        self.oci: dict | None = None  # the running container's image and runc id, when it runs from an image
        self.finished = threading.Event()  # no restart will follow
        self._stop = threading.Event()
        self._process: subprocess.Popen | None = None
        self._thread = threading.Thread(target=self._run, name=f"container-{self.name}", daemon=True)
        self._ports = {p["name"]: p["containerPort"] for p in spec.get("ports") or [] if p.get("name")}

    def start(self) -> None:
        self._thread.start()

    @property
    def succeeded(self) -> bool:
        return "terminated" in self.state and self.state["terminated"]["exitCode"] == 0

    def status(self) -> dict:
        image_id, container_id = f"localkube://{self.spec.get('image', '')}", f"localkube://{self.pid}" if self.pid else None
        if self.oci:
            image_id, container_id = f"sha256:{self.oci['image_id']}", f"runc://{self.oci['id']}"
        return {
            "name": self.name, "image": self.spec.get("image", ""), "imageID": image_id,
            "containerID": container_id,
            "ready": self.ready, "started": self.started, "restartCount": self.restart_count,
            "state": self.state, "lastState": self.last_state,
        }

    def stop(self, grace_seconds: float) -> None:
        """SIGTERM, wait for the grace period, then SIGKILL; no restart afterwards."""
        self._stop.set()
        process = self._process
        if process and process.poll() is None:
            _signal(process.pid, signal.SIGTERM)
            try:
                process.wait(grace_seconds)
            except subprocess.TimeoutExpired:
                _signal(process.pid, signal.SIGKILL)
                process.wait(5)
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(10)

    def _set(self, **changes) -> None:
        for key, value in changes.items():
            setattr(self, key, value)
        self.on_change()

    def _run(self) -> None:
        backoff, first_pull = _BACKOFF_START, True
        while not self._stop.is_set():
            try:
                plan = self.ctx.plan(self.spec)
            except ImageError as error:
                self._set(state={"waiting": {"reason": "ErrImagePull" if first_pull else "ImagePullBackOff",
                                             "message": str(error)}})
                first_pull = False
                self._stop.wait(backoff)
                backoff = min(backoff * 2, _BACKOFF_CAP)
                continue
            except ConfigError as error:
                self._set(state={"waiting": {"reason": "CreateContainerConfigError", "message": str(error)}})
                self._stop.wait(2)
                continue
            started_at = time.monotonic()
            exit_code, reason = self._run_once(plan)
            if self._stop.is_set():
                break
            if time.monotonic() - started_at > _BACKOFF_RESET_AFTER:
                backoff = _BACKOFF_START
            restart = {"Always": True, "OnFailure": exit_code != 0, "Never": False}[self.restart_policy]
            if not restart:
                break
            self.last_state = self.state
            self._set(restart_count=self.restart_count + 1, ready=False, started=False,
                      state={"waiting": {"reason": "CrashLoopBackOff",
                                         "message": f"back-off {backoff:.0f}s restarting failed container={self.name}"}})
            self._stop.wait(backoff)
            backoff = min(backoff * 2, _BACKOFF_CAP)
        self.finished.set()
        self.on_change()

    def _run_once(self, plan: Plan) -> tuple[int, str]:
        log_dir = self.ctx.pod_dir / "logs" / self.name
        log_dir.mkdir(parents=True, exist_ok=True)
        plan_path = self.ctx.pod_dir / "plans" / f"{self.name}.json"
        plan_path.parent.mkdir(parents=True, exist_ok=True)
        plan_path.touch(mode=0o600)
        plan_path.write_text(json.dumps({**plan.__dict__, "scratch": str(self.ctx.pod_dir / "scratch" / self.name)}))
        with open(log_dir / f"{self.restart_count}.log", "ab") as log:
            self._process = subprocess.Popen(
                ["ip", "netns", "exec", self.ctx.netns, sys.executable, "-m", "localkube.node.launch", str(plan_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd="/",
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": os.environ.get("PYTHONPATH", "")},
            )
        started_at = now()
        self._set(pid=self._process.pid, oci=plan.oci, state={"running": {"startedAt": started_at}},
                  started="startupProbe" not in self.spec,
                  ready="readinessProbe" not in self.spec and "startupProbe" not in self.spec)
        reason = self._supervise(plan)
        code = self._process.wait()
        if plan.oci:  # whatever runc left (its container, if runc itself was killed): gone
            from .oci import delete
            delete(plan.oci)
        exit_code = 128 + -code if code < 0 else code
        terminated = {
            "exitCode": exit_code, "reason": reason or ("Completed" if exit_code == 0 else "Error"),
            "startedAt": started_at, "finishedAt": now(),
            "containerID": f"runc://{plan.oci['id']}" if plan.oci else f"localkube://{self._process.pid}"}
        if exit_code != 0 and self.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            message = _log_tail(log_dir / f"{self.restart_count}.log")
            if message:
                terminated["message"] = message
        self._set(ready=False, state={"terminated": terminated})
        return exit_code, reason

    def _supervise(self, plan: Plan) -> str:
        """Run probes until the process exits; returns a reason if we killed it."""
        created = time.monotonic()
        probes = {kind: ProbeState(self.spec[kind]) for kind in ("startupProbe", "livenessProbe", "readinessProbe")
                  if kind in self.spec}
        for state in probes.values():
            state.next_at = created + float(state.spec.get("initialDelaySeconds", 0))
        target = ProbeTarget(self.ctx.pod_ip, self._process.pid, plan.env)
        if plan.oci:
            from .oci import exec_prefix
            target.exec_prefix = exec_prefix(plan.oci)
        while self._process.poll() is None:
            if self._stop.wait(0.1):
                return ""
            now_ = time.monotonic()
            for kind, state in probes.items():
                if now_ < state.next_at or (kind != "startupProbe" and not self.started):
                    continue
                if kind == "startupProbe" and self.started:
                    continue
                ok, message = run_probe(state.spec, target, self._ports, self.ctx.network)
                state.next_at = time.monotonic() + state.period
                changed = state.record(ok, message)
                if changed is None:
                    continue
                if kind == "readinessProbe":
                    self._set(ready=changed)
                elif kind == "startupProbe" and changed:
                    self._set(started=True, ready="readinessProbe" not in self.spec)
                elif not changed:  # liveness or startup failed: kill and let the restart policy decide
                    _signal(self._process.pid, signal.SIGKILL)
                    self._process.wait()
                    return f"{kind} failed: {message}"
        return ""


def _log_tail(path: Path, lines: int = 80, limit: int = 2048) -> str:
    """A kubelet's FallbackToLogsOnError termination message: the log's last 80 lines, at most 2048 bytes."""
    try:
        with open(path, "rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - 64 * 1024))
            data = b"\n".join(log.read().splitlines()[-lines:])
    except OSError:
        return ""
    return data[-limit:].decode(errors="replace")


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
