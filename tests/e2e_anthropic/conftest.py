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
from engine_fixtures import api, bao, engine_plugin, unmounter  # noqa: F401 (fixtures)
from engine_support import (
    BuiltEngine,
    Unmounter,
    VaultApi,
    engine_mount,
)


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
