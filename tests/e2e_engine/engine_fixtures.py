"""The session fixtures the engine's end-to-end suites share: the built plugin, one OpenBao dev server with it
registered, a client of its API, and the unmounter. A suite's conftest imports them by name (pytest registers
fixtures imported into a conftest), so each suite still gets a server of its own. Everything started here is
stopped by PID at teardown."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from devkit.bao import BaoServer
from engine_support import BuiltEngine, Unmounter, VaultApi, build, start_server, stop_server


@pytest.fixture(scope="session")
def engine_plugin(tmp_path_factory: pytest.TempPathFactory) -> BuiltEngine:
    return build(tmp_path_factory.mktemp("engine-plugin"))


@pytest.fixture(scope="session")
def bao(tmp_path_factory: pytest.TempPathFactory, engine_plugin: BuiltEngine) -> Iterator[BaoServer]:
    server = start_server(tmp_path_factory.mktemp("engine-bao"), engine_plugin)
    try:
        yield server
    finally:
        survivors = stop_server(server, engine_plugin)
    assert not survivors, f"plugin processes {survivors} outlived the stopped server (see {server.log_path})"


@pytest.fixture(scope="session")
def api(bao: BaoServer) -> Iterator[VaultApi]:
    client = VaultApi(bao)
    yield client
    client.close()


@pytest.fixture(scope="session")
def unmounter(api: VaultApi) -> Iterator[Unmounter]:
    reaper = Unmounter(api)
    yield reaper
    reaper.join()  # before the server stops (fixtures tear down in reverse order)
