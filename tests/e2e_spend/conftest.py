"""Fixtures for the spend-per-lease end-to-end tests: one OpenBao server with the built engine for the
session, one mount and one emulator per test (engine_support from tests/e2e_engine). Everything started is
stopped by PID at teardown."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from devkit.bao import BaoServer

# The engine suite's helpers (a uniquely named module) and this suite's own, importable under any import mode.
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "e2e_engine"))
from engine_support import BuiltEngine, Unmounter, VaultApi, build, start_server, stop_server


@pytest.fixture(scope="session")
def engine_plugin(tmp_path_factory: pytest.TempPathFactory) -> BuiltEngine:
    return build(tmp_path_factory.mktemp("spend-plugin"))


@pytest.fixture(scope="session")
def bao(tmp_path_factory: pytest.TempPathFactory, engine_plugin: BuiltEngine) -> Iterator[BaoServer]:
    server = start_server(tmp_path_factory.mktemp("spend-bao"), engine_plugin)
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
    reaper.join()
