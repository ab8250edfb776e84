"""Fixtures for the restart and crash suite: the engine built once as the shipped one-file plugin, for a
single OpenBao node with persistent storage (vault-config/dev.hcl: one-node Raft, not -dev) that a test
stops and starts, or whose plugin it kills. Servers are stopped by PID (devkit.ha_drill.single_node).
"""

from __future__ import annotations

import pytest
from devkit.build import build_engine
from devkit.render_config import PluginRef, plugin_from_file


@pytest.fixture(scope="session")
def restart_plugin(tmp_path_factory: pytest.TempPathFactory) -> PluginRef:
    path, _ = build_engine(tmp_path_factory.mktemp("restart-plugin"))
    return plugin_from_file(path)
