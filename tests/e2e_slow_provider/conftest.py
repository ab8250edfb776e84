"""Fixtures for the slow-provider end-to-end tests: one OpenBao server for the directory (the engine with a
4 s provider-call budget and debug logs, a hashed file audit device); stopped by PID at teardown."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The shared helpers live beside this file; make them importable under any pytest import mode.
sys.path.insert(0, str(Path(__file__).parent))
from slow_provider_support import SlowServer, start, stop


@pytest.fixture(scope="session")
def slow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlowServer]:
    slow = start(tmp_path_factory.mktemp("slow-provider"))
    try:
        yield slow
    finally:
        survivors = stop(slow)
    assert not survivors, f"plugin processes {survivors} outlived the stopped server"
