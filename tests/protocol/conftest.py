"""Fixtures for the process-level protocol tests (no Vault server): the built test plugin, host identities."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# The test backend and the process helpers live beside the end-to-end tests.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "e2e"))

from e2e_support import BuiltPlugin, build_testbackend
from protocol_support import Identity, make_identity


@pytest.fixture(scope="session")
def plugin_exe(tmp_path_factory: pytest.TempPathFactory) -> BuiltPlugin:
    return build_testbackend(tmp_path_factory.mktemp("protocol-plugin"))


@pytest.fixture(scope="session")
def host(tmp_path_factory: pytest.TempPathFactory) -> Identity:
    """The host's P-521 certificate (PLUGIN_CLIENT_CERT) and key."""
    return make_identity(tmp_path_factory.mktemp("host-identity"), "host")


@pytest.fixture(scope="session")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> Identity:
    """Another P-521 certificate for localhost: not the one the plugin was given."""
    return make_identity(tmp_path_factory.mktemp("stranger-identity"), "stranger")


@pytest.fixture
def spawn(plugin_exe: BuiltPlugin) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start the plugin executable (or another command) with an environment; killed by PID at teardown."""
    started: list[subprocess.Popen[bytes]] = []

    def start(env: dict[str, str], argv: list[str] | None = None) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            argv or [str(plugin_exe.path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
