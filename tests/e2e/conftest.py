"""Fixtures for the end-to-end tests: the test backend built as a plugin, a real `bao server`, a mount a test.

One OpenBao server (dev mode, `plugin_directory` set, the plugin registered by sha256) serves the whole
session; each test gets its own mount, so each test talks to its own plugin process. Tests that must kill a
server start their own with `fresh_server`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import hvac
import pytest
from devkit.bao import BaoServer, kill_leftovers
from e2e_support import (
    PLUGIN_NAME,
    BuiltPlugin,
    Mount,
    build_testbackend,
    plugin_processes,
    start_server,
    unique_mount_name,
)


@pytest.fixture(scope="session")
def built_plugin(tmp_path_factory: pytest.TempPathFactory) -> BuiltPlugin:
    return build_testbackend(tmp_path_factory.mktemp("plugins"))


@pytest.fixture(scope="session")
def bao(tmp_path_factory: pytest.TempPathFactory, built_plugin: BuiltPlugin) -> Iterator[BaoServer]:
    server = start_server(tmp_path_factory.mktemp("bao"), built_plugin)
    pids: list[int] = []
    try:
        yield server
        pids = [p.pid for p in plugin_processes(server, built_plugin)]
    finally:
        server.stop()
        survivors = kill_leftovers(pids, timeout=10)
    assert not survivors, f"plugin processes {survivors} outlived the stopped server (see {server.log_path})"


@pytest.fixture
def fresh_server(tmp_path: Path, built_plugin: BuiltPlugin) -> Iterator[Callable[[], BaoServer]]:
    """Start a server of the test's own (for tests that kill it); stopped by PID at teardown."""
    started: list[BaoServer] = []

    def start() -> BaoServer:
        server = start_server(tmp_path / f"bao{len(started)}", built_plugin)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def mount(bao: BaoServer, built_plugin: BuiltPlugin, request: pytest.FixtureRequest) -> Iterator[Mount]:
    """A fresh mount of the test backend on the session server (its own plugin process)."""
    name = unique_mount_name(request.node.name)
    bao.enable(PLUGIN_NAME, name)
    try:
        yield Mount(server=bao, plugin=built_plugin, path=name, client=bao.client())
    finally:
        try:
            bao.client().sys.disable_secrets_engine(name)
        except hvac.exceptions.VaultError as exc:
            # Not a test failure by itself (e.g. a revoke fault still armed); the log has the details.
            print(f"note: disabling {name} failed: {exc}")
