"""Fixtures for the provider-outage suite: one OpenBao dev server with the engine, one mount per provider per
test, each wired to its own emulator whose admin API the test takes down and brings back.

The engine's own end-to-end helpers (tests/e2e_engine/engine_support.py) start the server and the mounts;
this directory adds outage helpers in outage_support.py. Everything started here is stopped by PID.
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
from engine_support import BuiltEngine, EngineMount, Unmounter, VaultApi, build, start_server, stop_server
from outage_support import outage_mount


@pytest.fixture(scope="session")
def outage_engine(tmp_path_factory: pytest.TempPathFactory) -> BuiltEngine:
    return build(tmp_path_factory.mktemp("outage-plugin"))


@pytest.fixture(scope="session")
def outage_bao(tmp_path_factory: pytest.TempPathFactory, outage_engine: BuiltEngine) -> Iterator[BaoServer]:
    server = start_server(tmp_path_factory.mktemp("outage-bao"), outage_engine)
    try:
        yield server
    finally:
        survivors = stop_server(server, outage_engine)
    assert not survivors, f"plugin processes {survivors} outlived the stopped server (see {server.log_path})"


@pytest.fixture(scope="session")
def outage_api(outage_bao: BaoServer) -> Iterator[VaultApi]:
    client = VaultApi(outage_bao)
    yield client
    client.close()


@pytest.fixture(scope="session")
def outage_unmounter(outage_api: VaultApi) -> Iterator[Unmounter]:
    reaper = Unmounter(outage_api)
    yield reaper
    reaper.join()


@pytest.fixture
def new_mount(
    outage_bao: BaoServer, outage_api: VaultApi, outage_unmounter: Unmounter, request: pytest.FixtureRequest
) -> Iterator[Callable[..., EngineMount]]:
    """Make mounts of the engine, each with connection `main` and no periodic sweep; `plugin` names another
    registration of the engine. Unmounted at teardown (after the outage ends and its leases are revoked)."""
    with ExitStack() as stack:

        def make(provider: str, plugin: str = "llm") -> EngineMount:
            hint = request.node.originalname
            return stack.enter_context(
                outage_mount(outage_bao, outage_api, outage_unmounter, provider, hint, plugin=plugin)
            )

        yield make
