"""Helpers for the HA suite: a 3-node cluster with the engine mounted and its emulator, as one object.

A uniquely named module (not conftest), so test directories without __init__.py cannot shadow it.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devkit.cluster import BaoCluster, BaoNode
from devkit.ha_drill import WAL_MIN_AGE_ENV, Api, Provider, mount_engine, wait_for_mount
from devkit.render_config import PluginRef

# A pending create's WAL entry is rolled back once it is this old (production: 10 minutes).
WAL_MIN_AGE_SECONDS = 5
# OpenBao's rollback tick: fixed at one minute, on every node.
ROLLBACK_PERIOD = 60.0


@dataclass
class Drill:
    cluster: BaoCluster
    provider: Provider

    @property
    def token(self) -> str:
        return self.cluster.root_token

    def api(self, node: BaoNode) -> Api:
        return Api(node.addr, self.token)

    def active(self, timeout: float = 30.0) -> BaoNode:
        return self.cluster.active(timeout=timeout)

    def standbys(self) -> list[BaoNode]:
        return self.cluster.standbys()

    def targets(self) -> dict[str, str]:
        """Every node, as a load balancer in front of the cluster sees them."""
        return {node.name: node.addr for node in self.cluster.nodes}


def log_count(node: BaoNode, text: str) -> int:
    """How often `text` appears in the node's log (the plugin's lines are in it)."""
    return node.log_path.read_text(errors="replace").count(text) if node.log_path.exists() else 0


# The plugin's line for a WAL entry whose key it found at the provider and deleted (deleted=0: the create
# never reached the provider).
ROLLED_BACK_KEY = re.compile(r"rolled back an interrupted create: .* deleted=[1-9]")


def keys_rolled_back(log_path: Path) -> int:
    """How many interrupted creates' keys the rollback deleted, from a node's log."""
    return len(ROLLED_BACK_KEY.findall(log_path.read_text(errors="replace"))) if log_path.exists() else 0


@contextlib.contextmanager
def ha_drill(
    workdir: Path,
    plugin: PluginRef,
    roles: dict[str, dict[str, Any]],
    *,
    log_level: str = "info",
    env: dict[str, str] | None = None,
) -> Iterator[Drill]:
    """A cluster from vault-config/ha/ with the engine at llm/ (connection `main` to a new emulator, the
    given roles) served by every node. Stopped by PID at exit; its plugin processes must stop with it."""
    provider = Provider().start()
    cluster = BaoCluster(
        workdir,
        plugin,
        log_level=log_level,
        extra_env={WAL_MIN_AGE_ENV: str(WAL_MIN_AGE_SECONDS), **(env or {})},
    )
    try:
        cluster.start()
        with Api(cluster.active().addr, cluster.root_token) as api:
            mount_engine(api, provider, roles)
        for node in cluster.nodes:
            with Api(node.addr, cluster.root_token) as api:
                wait_for_mount(api, next(iter(roles)))
        yield Drill(cluster, provider)
    finally:
        survivors = cluster.stop()
        provider.stop()
    assert not survivors, f"plugin processes {survivors} outlived their nodes"


def seconds_since(start: float) -> float:
    return round(time.monotonic() - start, 1)
