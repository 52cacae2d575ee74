"""Tool pins, cache layout and user overrides (no builds here)."""

from __future__ import annotations

import pytest

from localkube import toolchain
from localkube.paths import REPO_ROOT


def test_every_binary_has_an_override_variable():
    assert toolchain.override_variable("kube-apiserver") == "TMO_KUBE_APISERVER"
    assert toolchain.override_variable("lowkey-vault.jar") == "TMO_LOWKEY_VAULT_JAR"
    names = [toolchain.override_variable(b) for b in toolchain.BINARY_TO_TOOL]
    assert len(names) == len(set(names))


def test_a_users_binary_is_used_as_it_is(tmp_path, monkeypatch):
    helm = tmp_path / "helm"
    helm.write_text("#!/bin/sh\n")
    monkeypatch.setenv("TMO_HELM", str(helm))
    monkeypatch.setenv("TMO_CACHE_DIR", str(tmp_path / "empty-cache"))
    assert toolchain.path_of("helm") == helm
    assert not (tmp_path / "empty-cache").exists()  # nothing was built


def test_a_missing_override_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TMO_ETCD", str(tmp_path / "nope"))
    with pytest.raises(toolchain.ToolError, match="TMO_ETCD=.* is not a file"):
        toolchain.path_of("etcd")


def test_cache_is_keyed_by_version(tmp_path, monkeypatch):
    monkeypatch.setenv("TMO_CACHE_DIR", str(tmp_path))
    tool = toolchain.BINARY_TO_TOOL["kube-apiserver"]
    assert tool.home == tmp_path / "tools" / f"kubernetes-{toolchain.KUBERNETES_VERSION}"


def test_kubernetes_staging_modules_are_pinned_to_the_matching_minor():
    recipe = toolchain.BINARY_TO_TOOL["kube-apiserver"].recipe
    assert recipe.replaces["k8s.io/client-go"] == "k8s.io/client-go@v0.37.2"
    assert "gitVersion=v1.37.2" in recipe.ldflags


# -- Lowkey Vault: a jar built from the vendored source by its build.sh --------------------------

LOWKEY = toolchain.BINARY_TO_TOOL["lowkey-vault.jar"]


@pytest.fixture
def fake_jdk(tmp_path, monkeypatch):
    """A JDK folder with executable bin/java and bin/javac (nothing here runs them)."""
    home = tmp_path / "jdk"
    (home / "bin").mkdir(parents=True)
    for name in ("java", "javac"):
        (home / "bin" / name).write_text("#!/bin/sh\n")
        (home / "bin" / name).chmod(0o755)
    monkeypatch.setenv("TMO_JAVA_HOME", str(home))
    return home


@pytest.fixture
def fake_source(tmp_path, monkeypatch):
    """A vendored folder whose build.sh writes a small jar under OUT_DIR and prints its path, as the real one."""
    source = tmp_path / "lowkey-src"
    source.mkdir()
    (source / "build.sh").write_text(
        '#!/bin/sh\nmkdir -p "$1" && printf "jar built with %s" "$JAVA_HOME" > "$1/app-7.3.74.jar"\n'
        'echo "maven chatter" >&2\necho "$1/app-7.3.74.jar"\n')
    (source / "build.sh").chmod(0o755)
    monkeypatch.setenv("TMO_LOWKEY_VAULT_SOURCE", str(source))
    monkeypatch.setenv("MVN", "true")  # build.sh's Maven; this fake one never calls it
    return source


def test_lowkey_vault_is_the_vendored_version_and_make_tools_builds_it(monkeypatch):
    monkeypatch.delenv("TMO_LOWKEY_VAULT_SOURCE", raising=False)
    assert (LOWKEY.name, LOWKEY.version, LOWKEY.binaries) == ("lowkey-vault", "7.3.74", ("lowkey-vault.jar",))
    assert toolchain.vendored_source(LOWKEY.recipe) == (REPO_ROOT.parent / "shared/vendor/lowkey-vault").resolve()


def test_a_users_lowkey_jar_is_used_as_it_is(tmp_path, monkeypatch):
    jar = tmp_path / "mine.jar"
    jar.write_bytes(b"PK")
    monkeypatch.setenv("TMO_LOWKEY_VAULT_JAR", str(jar))
    monkeypatch.setenv("TMO_CACHE_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("TMO_LOWKEY_VAULT_SOURCE", str(tmp_path / "no-source"))
    assert toolchain.path_of("lowkey-vault.jar") == jar
    assert not LOWKEY.optional


def test_missing_source_is_one_clear_line_and_make_tools_goes_on(tmp_path, monkeypatch, fake_jdk):
    monkeypatch.setenv("TMO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TMO_LOWKEY_VAULT_SOURCE", str(tmp_path / "nope"))
    monkeypatch.delenv("TMO_LOWKEY_VAULT_JAR", raising=False)
    lines: list[str] = []
    monkeypatch.setattr(toolchain, "TOOLS", (LOWKEY,))
    toolchain.ensure_all(log=lines.append)
    assert lines == [f"[tools] lowkey-vault 7.3.74: skipped: no source at {tmp_path / 'nope'} "
                     "(set TMO_LOWKEY_VAULT_SOURCE); the Key Vault demo and tests need it"]
    assert LOWKEY.optional  # the CLI then lists it as not fetched instead of failing
    with pytest.raises(toolchain.ToolError) as error:
        toolchain.path_of("lowkey-vault.jar")
    assert str(error.value) == (f"lowkey-vault 7.3.74 is not built: no source at {tmp_path / 'nope'} "
                                "(set TMO_LOWKEY_VAULT_SOURCE); the Key Vault demo and tests need it")
    with pytest.raises(toolchain.ToolError, match="is not built: no source"):
        toolchain.ensure_all(["lowkey-vault"])  # asked for by name: an error
    assert not (tmp_path / "cache" / "tools").exists()


def test_missing_jdk_is_named_with_its_variable(tmp_path, monkeypatch, fake_source):
    monkeypatch.setenv("TMO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TMO_JAVA_HOME", str(tmp_path / "no-jdk"))
    monkeypatch.delenv("TMO_LOWKEY_VAULT_JAR", raising=False)
    with pytest.raises(toolchain.ToolError, match=r"not built: no JDK at .*no-jdk \(set TMO_JAVA_HOME\); the Key Vault"):
        toolchain.path_of("lowkey-vault.jar")
    with pytest.raises(toolchain.ToolError, match=r"no JDK at .*no-jdk \(set TMO_JAVA_HOME"):
        toolchain.java_binary()


def test_missing_maven_is_named(tmp_path, monkeypatch, fake_jdk, fake_source):
    monkeypatch.setenv("TMO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MVN", str(tmp_path / "no-mvn"))
    monkeypatch.delenv("TMO_LOWKEY_VAULT_JAR", raising=False)
    assert LOWKEY.unavailable_reason() == ("no mvn on PATH (install Maven 3.8+, or set MVN); "
                                           "the Key Vault demo and tests need it")


def test_java_binary_comes_from_tmo_java_home(fake_jdk):
    assert toolchain.java_binary() == fake_jdk / "bin" / "java"


def test_vendored_build_lands_in_the_cache_readable_by_any_user(tmp_path, monkeypatch, fake_jdk, fake_source):
    monkeypatch.setenv("TMO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("TMO_LOWKEY_VAULT_JAR", raising=False)
    jar = toolchain.path_of("lowkey-vault.jar")
    assert jar == tmp_path / "cache" / "tools" / "lowkey-vault-7.3.74" / "bin" / "lowkey-vault.jar"
    assert jar.read_text() == f"jar built with {fake_jdk}"  # build.sh got TMO_JAVA_HOME as JAVA_HOME
    assert jar.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in jar.parent.parent.iterdir()) == [".complete", "bin", "build-minutes"]
    (fake_source / "build.sh").unlink()
    assert toolchain.path_of("lowkey-vault.jar") == jar  # cached: the source is no longer needed

# -- our server build (server/): a Go module of the checkout -------------------------------------

SERVER = toolchain.BINARY_TO_TOOL["temporal-mtls-server"]


def fake_module(root, monkeypatch):
    module = root / "server"
    (module / "authz").mkdir(parents=True)
    (module / "go.mod").write_text("module example.com/server\n")
    (module / "go.sum").write_text("")
    (module / "main.go").write_text("package main\n")
    (module / "authz" / "policy.go").write_text("package authz\n")
    (module / "authz" / "policy_test.go").write_text("package authz\n")
    (module / "Containerfile").write_text("FROM scratch\n")
    monkeypatch.setattr(toolchain, "REPO_ROOT", root)
    return module


def test_server_version_is_temporals_plus_a_hash_of_its_sources():
    assert SERVER.version == f"1.31.4-{toolchain.source_hash('server')}"
    assert SERVER.recipe == toolchain.LocalGoModule("server", tags=("disable_grpc_modules",))
    assert "go.temporal.io/server v1.31.4" in (REPO_ROOT / "server/go.mod").read_text()
    assert not SERVER.on_demand  # make tools builds it


def test_source_hash_follows_what_the_binary_is_built_from(tmp_path, monkeypatch):
    module = fake_module(tmp_path, monkeypatch)
    first = toolchain.source_hash("server")
    assert len(first) == 12
    (module / "authz" / "policy_test.go").write_text("package authz // edited\n")
    (module / "Containerfile").write_text("FROM scratch\nUSER 1\n")
    assert toolchain.source_hash("server") == first  # tests and the image recipe are no input of the binary
    for name in ("authz/policy.go", "go.sum", "go.mod"):
        (module / name).write_text((module / name).read_text() + "// edited\n")
        changed = toolchain.source_hash("server")
        assert changed != first, name
        first = changed
    (module / "go.mod").unlink()
    assert toolchain.source_hash("server") == "none"
    tool = toolchain.Tool("temporal-mtls-server", "x", ("temporal-mtls-server",), SERVER.recipe, "1")
    assert toolchain.missing_prerequisite(tool) == f"no Go module at {module}"


def test_server_builds_in_place_like_the_other_go_tools(tmp_path, monkeypatch):
    module = fake_module(tmp_path, monkeypatch)
    calls = []
    monkeypatch.setattr(toolchain, "_run", lambda cmd, cwd, env=None: calls.append((cmd, cwd, env)) or "")
    monkeypatch.setattr(toolchain.shutil, "which", lambda name: "/usr/bin/go")
    toolchain._local_go_module(SERVER, tmp_path / "staging")
    [(cmd, cwd, env)] = calls
    assert cmd == ["go", "build", "-tags", "disable_grpc_modules", "-trimpath", "-ldflags", "-s -w",
                   "-o", str(tmp_path / "staging" / "bin" / "temporal-mtls-server"), "."]
    assert cwd == module
    assert env == {"GOTOOLCHAIN": "local", "CGO_ENABLED": "0", "GOFLAGS": "-mod=readonly -buildvcs=false"}


def test_a_new_server_build_drops_the_older_ones(tmp_path, monkeypatch):
    monkeypatch.setenv("TMO_CACHE_DIR", str(tmp_path))
    tools = tmp_path / "tools"
    for name in ("temporal-mtls-server-1.31.4-old", "temporal-mtls-server-1.31.4-new", "temporal-server-1.31.4"):
        (tools / name).mkdir(parents=True)
        (tools / name / ".complete").touch()
    (tools / "temporal-mtls-server-1.31.4-building.partial").mkdir()
    tool = toolchain.Tool("temporal-mtls-server", "1.31.4-new", ("temporal-mtls-server",), SERVER.recipe, "1")
    toolchain._prune_other_versions(tool)
    assert sorted(p.name for p in tools.iterdir()) == [
        "temporal-mtls-server-1.31.4-building.partial", "temporal-mtls-server-1.31.4-new", "temporal-server-1.31.4"]

