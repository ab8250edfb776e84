"""Fixtures for the Anthropic check-out set tests: one OpenBao server for the session (the engine built and
registered as in tests/e2e_engine), and per test a mount wired to its own Anthropic emulator on loopback, with
an anthropic connection `main`. Everything started here is stopped by PID at teardown."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from devkit.bao import BaoServer

# The engine's e2e helpers and this suite's own, importable under any pytest import mode.
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "e2e_engine"))
from anthropic_support import SPEC, SetMount
from engine_support import (
    BuiltEngine,
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
    server = start_server(tmp_path_factory.mktemp("anthropic-bao"), engine_plugin)
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


@pytest.fixture
def sm(
    bao: BaoServer,
    api: VaultApi,
    unmounter: Unmounter,
    engine_plugin: BuiltEngine,
    request: pytest.FixtureRequest,
) -> Iterator[SetMount]:
    """A fresh mount with an anthropic connection `main` (no set yet); `plugin_pids`: its plugin process's."""
    before = set(bao.plugin_pids(engine_plugin.path))
    with engine_mount(bao, api, unmounter, "anthropic", request.node.originalname, spec=SPEC) as m:
        m.configure(base_url=m.emu_server.url)  # the client adds /v1/... itself
        pids = sorted(set(bao.plugin_pids(engine_plugin.path)) - before)
        yield SetMount(m, pids)
