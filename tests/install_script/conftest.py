"""Fixtures for the tests of scripts/install.

Two releases of the engine are built once (cached builds); one OpenBao dev server, whose plugin directory
starts empty, serves the session. Each test uses its own catalog name and mount, so tests do not depend on
each other's order. Everything started here is stopped by PID at teardown.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from devkit.bao import BaoServer

# The shared helpers live beside this file; make them importable under any pytest import mode.
sys.path.insert(0, str(Path(__file__).parent))
from install_script_support import (
    Api,
    Provider,
    Releases,
    build_releases,
    openai_provider,
    start_server,
)


@pytest.fixture(scope="session")
def releases(tmp_path_factory: pytest.TempPathFactory) -> Releases:
    return build_releases(tmp_path_factory.mktemp("releases"))


@pytest.fixture(scope="session")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaoServer]:
    server = start_server(tmp_path_factory.mktemp("install-bao"))
    try:
        yield server
    finally:
        survivors = server.stop_with_plugins()
    assert not survivors, f"plugin processes {survivors} outlived the stopped server (see {server.log_path})"


@pytest.fixture(scope="session")
def api(bao: BaoServer) -> Iterator[Api]:
    client = Api(bao)
    yield client
    client.close()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty HOME for the script: no ~/.vault-token of the machine's user can leak in."""
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def provider() -> Iterator[Provider]:
    with openai_provider() as p:
        yield p
