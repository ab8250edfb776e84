"""Fixtures for the live tests: a real OpenBao with the engine, started only if a live test actually runs.

The live tests talk to the real providers and run only when their credentials are in the environment;
otherwise each one skips with a reason naming the missing variables.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Reuse the engine e2e helpers (building the plugin, starting the server, stopping it by PID).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "e2e_engine"))
from engine_support import BuiltEngine, Unmounter, VaultApi, build, start_server, stop_server


class LiveServer:
    def __init__(self, api: VaultApi, unmounter: Unmounter) -> None:
        self.api = api
        self.unmounter = unmounter


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    engine: BuiltEngine = build(tmp_path_factory.mktemp("live-plugin"))
    server = start_server(tmp_path_factory.mktemp("live-bao"), engine, env=[])
    api = VaultApi(server)
    unmounter = Unmounter(api)
    try:
        yield LiveServer(api, unmounter)
    finally:
        unmounter.join()
        api.close()
        survivors = stop_server(server, engine)
    assert not survivors, f"plugin processes {survivors} outlived the stopped server"
