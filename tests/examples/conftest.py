"""Fixtures for the tests of examples/: one OpenBao dev server with the engine mounted at llm/ for the
session, and for each test a fresh OpenAI emulator behind the mount's connection. Everything started here
is stopped by PID at teardown.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from devkit.bao import BaoServer

# The shared helpers live beside this file; make them importable under any pytest import mode.
sys.path.insert(0, str(Path(__file__).parent))
from examples_support import Api, Provider, chatbot_provider, start_engine_server


@pytest.fixture(scope="session")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaoServer]:
    server = start_engine_server(tmp_path_factory.mktemp("examples-bao"))
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
def provider(api: Api) -> Iterator[Provider]:
    with chatbot_provider(api) as p:
        yield p
