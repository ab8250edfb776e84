"""Fixtures for the engine's end-to-end tests.

One OpenBao server (dev mode, `plugin_directory` set, the engine registered by sha256) serves the session;
each test gets its own mount (its own plugin process) wired to its own provider emulator on loopback.
Everything started here is stopped by PID at teardown.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from devkit.bao import BaoServer

# The shared helpers live beside this file; make them importable under any pytest import mode.
sys.path.insert(0, str(Path(__file__).parent))
from engine_support import (
    PROVIDER_NAMES,
    BuiltEngine,
    EngineMount,
    Unmounter,
    VaultApi,
    build,
    engine_mount,
    start_server,
    stop_server,
)


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


@pytest.fixture(params=PROVIDER_NAMES)
def provider(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def mount(
    bao: BaoServer, api: VaultApi, unmounter: Unmounter, provider: str, request: pytest.FixtureRequest
) -> Iterator[EngineMount]:
    """A fresh mount of the engine for `provider`, with its emulator and a connection `main` written."""
    with engine_mount(bao, api, unmounter, provider, request.node.originalname) as m:
        m.configure()
        yield m


@pytest.fixture
def new_mount(
    bao: BaoServer, api: VaultApi, unmounter: Unmounter, request: pytest.FixtureRequest
) -> Iterator[Callable[[str], EngineMount]]:
    """Make more mounts (e.g. one per provider in one test); all are unmounted at teardown."""
    with ExitStack() as stack:

        def make(provider: str) -> EngineMount:
            m = stack.enter_context(engine_mount(bao, api, unmounter, provider, request.node.originalname))
            m.configure()
            return m

        yield make
