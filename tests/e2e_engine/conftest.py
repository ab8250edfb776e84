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
from engine_fixtures import api, bao, engine_plugin, unmounter  # noqa: F401 (fixtures)
from engine_support import (
    PROVIDER_NAMES,
    EngineMount,
    Unmounter,
    VaultApi,
    engine_mount,
)


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
