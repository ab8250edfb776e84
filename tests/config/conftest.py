"""Fixtures for the tests of vault-config/ (server configs, policies) and the Dockerfile.

The plugin is built once per session by scripts/build-plugin, as an operator and the Dockerfile build it.
Every server started here is stopped by its PID at teardown, with its plugin processes.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The shared helpers live beside this file; make them importable under any pytest import mode.
sys.path.insert(0, str(Path(__file__).parent))
from config_support import BuiltPlugin, SingleNode, build_plugin, render_config, single_node


@pytest.fixture(scope="session")
def built_plugin(tmp_path_factory: pytest.TempPathFactory) -> BuiltPlugin:
    return build_plugin(tmp_path_factory.mktemp("config-plugin"))


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory: pytest.TempPathFactory, built_plugin: BuiltPlugin) -> Iterator[SingleNode]:
    """A server from vault-config/dev.hcl rendered by scripts/render-config (on free ports), initialised and
    unsealed, with nothing registered through the API."""
    workdir = tmp_path_factory.mktemp("config-dev")
    rendered = workdir / "dev.hcl"
    result = render_config("dev", rendered, "--plugin", built_plugin.path, "--data-dir", workdir / "data")
    assert result.returncode == 0, result.stderr
    with single_node(rendered.read_text(), workdir) as server:
        yield server
