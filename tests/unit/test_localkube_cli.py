"""`python -m localkube`: one clear line before anything slow starts, and `down --all` leaves nothing running."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time

import pytest

from localkube import cli, processes, toolchain
from localkube.control_plane import ControlPlane, ControlPlaneError, check_host_ports

# What a plain `make tools` builds with Go (promtool is on demand: `make lint` only).
GO_TOOLS = [t.name for t in toolchain.TOOLS if isinstance(t.recipe, toolchain.GoBuild) and toolchain.wanted_by_default(t)]


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TMO_CACHE_DIR", str(tmp_path / "cache"))
    for binary in toolchain.BINARY_TO_TOOL:
        monkeypatch.delenv(toolchain.override_variable(binary), raising=False)
    return tmp_path / "cache"


@pytest.fixture
def as_root(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)


@pytest.fixture
def go_on_path(tmp_path, monkeypatch):
    """PATH holds only a fake go that reports the version the test sets (none: no go at all)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv("SUDO_USER", raising=False)

    def install(version: str | None) -> None:
        if version:
            (bin_dir / "go").write_text(f"#!/bin/sh\necho {version}\n")
            (bin_dir / "go").chmod(0o755)

    return install


def one_line_error(capsys, argv: list[str]) -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err.strip()


def test_make_tools_as_a_user_stops_with_one_line_before_building(capsys, empty_cache, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert one_line_error(capsys, ["tools"]) == (
        "localkube: needs root (network and mount namespaces for the local node); run with sudo")
    assert one_line_error(capsys, ["up"]).endswith("run with sudo")
    assert one_line_error(capsys, ["demo", "--source", "selfSigned"]).endswith("run with sudo")
    assert not empty_cache.exists()


def test_named_tools_need_no_root(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    helm = tmp_path / "helm"
    helm.write_text("#!/bin/sh\n")
    monkeypatch.setenv("TMO_HELM", str(helm))
    assert cli.main(["tools", "helm"]) == 0
    assert str(helm) in capsys.readouterr().out


def test_without_go_a_go_tool_not_built_yet_stops_with_one_line(capsys, empty_cache, as_root, go_on_path):
    go_on_path(None)
    assert one_line_error(capsys, ["tools", "helm"]) == (
        "localkube: go is not on PATH and helm is not built yet: install Go 1.26 (https://go.dev/dl/), "
        "put it on PATH and run again")
    line = one_line_error(capsys, ["tools"])
    assert f"{', '.join(GO_TOOLS)} are not built yet: install Go 1.26" in line
    assert not empty_cache.exists()


def test_under_sudo_the_line_says_sudo_dropped_go_from_path(capsys, empty_cache, as_root, go_on_path, monkeypatch):
    go_on_path(None)
    monkeypatch.setenv("SUDO_USER", "someone")
    assert 'sudo env PATH="$PATH"' in one_line_error(capsys, ["tools", "etcd"])


def test_an_old_go_is_named(capsys, empty_cache, as_root, go_on_path):
    go_on_path("go1.22.5")
    assert one_line_error(capsys, ["tools", "etcd"]).startswith("localkube: go is go1.22 and etcd is not built yet")


def test_go_is_needed_only_while_a_go_tool_is_not_cached(empty_cache, as_root, go_on_path, monkeypatch):
    go_on_path(None)
    for tool in toolchain.TOOLS:
        (tool.home).mkdir(parents=True)
        (tool.home / ".complete").touch()
    cli.preflight([t.name for t in toolchain.TOOLS], root=True)
    cli.preflight(["kubectl"], root=False)  # a pip tool never needs go


def test_a_current_go_passes(empty_cache, as_root, go_on_path):
    go_on_path("go1.26.8")
    cli.preflight(GO_TOOLS, root=True)


# -- published host ports ------------------------------------------------------------------------

@pytest.fixture
def taken_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_taken_host_port_is_named_with_its_holder_and_what_to_do(taken_port):
    with pytest.raises(ControlPlaneError) as error:
        check_host_ports({30800: ("127.0.0.1", taken_port)})
    message = str(error.value)
    assert message.startswith(f"127.0.0.1:{taken_port} is taken; the local cluster publishes NodePort 30800 there")
    assert f"stop that program (pid {os.getpid()}: " in message and message.endswith("and run again")
    assert "\n" not in message


def test_a_port_held_by_another_local_cluster_names_how_to_stop_it(tmp_path):
    listen = ("import socket, time; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); "
              "print(s.getsockname()[1], flush=True); time.sleep(60)")
    node = subprocess.Popen([sys.executable, "-c", listen, "localkube.kubelet_node.publisher", f"--state-dir={tmp_path / 'other'}"],
                            stdout=subprocess.PIPE, text=True)
    try:
        port = int(node.stdout.readline())
        with pytest.raises(ControlPlaneError, match=re.escape(
                f"stop that local cluster (python -m localkube --dir {tmp_path / 'other'} down, or make down)")):
            check_host_ports({30843: ("127.0.0.1", port)})
    finally:
        node.kill()
        node.wait()


def test_a_port_held_by_this_clusters_own_node_is_fine(taken_port):
    check_host_ports({30800: ("127.0.0.1", taken_port)}, own_pid=os.getpid())


def test_up_stops_before_starting_anything(capsys, tmp_path, taken_port, monkeypatch):
    monkeypatch.setattr(cli, "preflight", lambda *args, **kwargs: None)
    monkeypatch.setattr(cli, "kind_port_mappings", lambda _: {30800: ("127.0.0.1", taken_port)})
    line = one_line_error(capsys, ["--dir", str(tmp_path / "c"), "up"])
    assert line.startswith(f"localkube: 127.0.0.1:{taken_port} is taken")
    assert not (tmp_path / "c").exists()


# -- down --all ----------------------------------------------------------------------------------

def test_down_all_stops_every_cluster_under_the_state_root(capsys, tmp_path, monkeypatch):
    root = tmp_path / "state"
    monkeypatch.setenv("LOCALKUBE_STATE_ROOT", str(root))
    pids = []
    for name in ("default", "other", "pytest-1-abc"):
        state_dir = root / name
        for component in ("etcd", "kube-apiserver"):
            # processes.running() knows its own by the state directory in the command line.
            pids.append(processes.start(component, [sys.executable, "-c", "import time; time.sleep(120)",
                                                    str(state_dir)], state_dir))
    (root / "stopped" / "pids").mkdir(parents=True)
    try:
        monkeypatch.setattr(os, "geteuid", lambda: 1000)
        assert one_line_error(capsys, ["down", "--all"]).endswith("run with sudo")
        monkeypatch.setattr(os, "geteuid", lambda: 0)
        assert cli.main(["down", "--all"]) == 0
        assert capsys.readouterr().out.splitlines() == [
            "cluster default stopped", "cluster other stopped", "cluster pytest-1-abc stopped"]
        assert [ControlPlane(root / n).running() for n in ("default", "other", "pytest-1-abc")] == [{}, {}, {}]
        assert not [pid for pid in pids if os.path.exists(f"/proc/{pid}")]
    finally:
        for pid in pids:
            if os.path.exists(f"/proc/{pid}"):
                os.kill(pid, 9)


@pytest.mark.parametrize("argv, expected", [
    (["keyvault-certs", "--client", "hello"], ["--client", "hello"]),  # what make keyvault-certs passes
    (["keyvault-certs", "--client", "hello", "--rotate"], ["--client", "hello", "--rotate"]),
    (["keyvault-certs"], []),
])
def test_keyvault_certs_passes_every_argument_to_the_seed(monkeypatch, argv, expected):
    seen = {}
    monkeypatch.setattr(cli, "cmd_keyvault_certs", lambda args: seen.update(args=args.seed_args) or 0)
    assert cli.main(argv) == 0
    assert seen["args"] == expected


def test_an_unknown_option_of_another_command_is_still_refused(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["status", "--client", "hello"])
    assert exit_.value.code == 2 and "unrecognized arguments: --client hello" in capsys.readouterr().err


def test_a_stopped_process_starts_again_with_the_arguments_it_had(tmp_path):
    marker = tmp_path / "runs"

    def runs() -> str:
        deadline = time.monotonic() + 10
        while not (marker.exists() and marker.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        return marker.read_text()

    argv = [sys.executable, "-c", "import sys, time; open(sys.argv[1], 'a').write('x'); time.sleep(60)", str(marker)]
    first = processes.start("sleeper", argv, tmp_path)
    try:
        assert processes.running(tmp_path) == {"sleeper": first} and runs() == "x"
        processes.stop(tmp_path, ["sleeper"], others=False)
        assert processes.running(tmp_path) == {}
        marker.write_text("")
        second = processes.restart("sleeper", tmp_path)
        assert second != first and processes.running(tmp_path) == {"sleeper": second}
        assert runs() == "x"  # the same program, with the same arguments, ran again
    finally:
        processes.stop(tmp_path, ["sleeper"])
