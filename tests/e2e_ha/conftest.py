"""Fixtures for the HA suite: the engine built once as the shipped one-file plugin, and 3-node Raft clusters
from vault-config/ha/ (devkit.cluster) with the engine at llm/, wired to a LiteLLM emulator that records
every admin call. Every node is stopped by its PID at teardown, with its plugin processes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from devkit.build import build_engine
from devkit.render_config import PluginRef, plugin_from_file

# The shared helpers live beside this file, in a uniquely named module; make them importable.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def ha_plugin(tmp_path_factory: pytest.TempPathFactory) -> PluginRef:
    """The one-file plugin, in a directory every node uses as its plugin_directory."""
    path, _ = build_engine(tmp_path_factory.mktemp("ha-plugin"))
    return plugin_from_file(path)
