"""Fixtures for the metrics suite: one OpenBao dev server with the engine, a mount per test wired to its own
provider emulator, and scrapes of the mount's metrics paths as Prometheus makes them.

The engine's end-to-end helpers (tests/e2e_engine/engine_support.py) start the server and the mounts; the
scrape helpers are in metrics_e2e_support.py. Everything started here is stopped by PID.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from devkit.bao import BaoServer

# Both support modules are uniquely named, so neither shadows another directory's under any import mode.
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "e2e_engine"))
from engine_support import (
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
def metrics_engine(tmp_path_factory: pytest.TempPathFactory) -> BuiltEngine:
    return build(tmp_path_factory.mktemp("metrics-plugin"))


@pytest.fixture(scope="session")
def metrics_bao(tmp_path_factory: pytest.TempPathFactory, metrics_engine: BuiltEngine) -> Iterator[BaoServer]:
    # The production WAL age (no env): an unsettled create stays in the WAL for the whole test.
    server = start_server(tmp_path_factory.mktemp("metrics-bao"), metrics_engine, env=[])
    try:
        yield server
    finally:
        survivors = stop_server(server, metrics_engine)
    assert not survivors, f"plugin processes {survivors} outlived the stopped server (see {server.log_path})"


@pytest.fixture(scope="session")
def metrics_api(metrics_bao: BaoServer) -> Iterator[VaultApi]:
    client = VaultApi(metrics_bao)
    yield client
    client.close()


@pytest.fixture(scope="session")
def metrics_unmounter(metrics_api: VaultApi) -> Iterator[Unmounter]:
    reaper = Unmounter(metrics_api)
    yield reaper
    reaper.join()


@pytest.fixture
def metrics_mount(
    metrics_bao: BaoServer,
    metrics_api: VaultApi,
    metrics_unmounter: Unmounter,
    request: pytest.FixtureRequest,
) -> Iterator[Callable[[str], EngineMount]]:
    """Make mounts of the engine (a connection `main` written on each); all are unmounted at teardown."""
    with ExitStack() as stack:

        def make(provider: str) -> EngineMount:
            m = stack.enter_context(
                engine_mount(metrics_bao, metrics_api, metrics_unmounter, provider, request.node.originalname)
            )
            m.configure()
            return m

        yield make
