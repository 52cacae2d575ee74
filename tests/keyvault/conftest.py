"""Tests against the Lowkey Vault emulator as a host process (no cluster needed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from localkube.toolchain import ToolError
from support.lowkey import HostVault

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items):
    for item in items:
        if _HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.keyvault)


@pytest.fixture(scope="session")
def host_vault(tmp_path_factory) -> Iterator[HostVault]:
    """One emulator for the session. A missing jar or JDK is an error (its one line says what to do), not a skip."""
    vault, missing = HostVault(tmp_path_factory.mktemp("lowkey-vault")), None
    try:
        vault.start()
    except ToolError as error:
        missing = str(error)
    if missing:
        pytest.fail(missing, pytrace=False)
    try:
        yield vault
    finally:
        vault.stop()
