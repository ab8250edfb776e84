"""vault-config/ha/ brought up for real: three `bao server` processes from the rendered node configs, one
initialised, all unsealed, Raft with three peers; the engine enabled on the active node with no register
call, and a key issued and revoked through it against an emulator.

(Creds reads on a standby are the next issue's; they are not exercised here.)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from config_support import Api, BuiltPlugin, catalog_entry, enable_engine, openrouter
from devkit.cluster import BaoCluster
from devkit.render_config import ENGINE_NAME, plugin_from_file
from llmsecrets.version import VERSION

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, built_plugin: BuiltPlugin) -> Iterator[BaoCluster]:
    bao = BaoCluster(tmp_path_factory.mktemp("config-ha"), plugin_from_file(built_plugin.path))
    bao.start()
    try:
        yield bao
    finally:
        survivors = bao.stop()
    assert not survivors, f"plugin processes {survivors} outlived their nodes"


def audit_entries(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_three_nodes_form_one_raft_cluster(cluster: BaoCluster) -> None:
    servers = cluster.raft_servers()
    assert sorted(s["node_id"] for s in servers) == ["node1", "node2", "node3"]
    assert sum(bool(s["leader"]) for s in servers) == 1
    active = cluster.active()
    assert sorted(n.name for n in cluster.standbys()) == sorted(
        n.name for n in cluster.nodes if n is not active
    )


def test_the_active_node_issues_and_revokes_a_key_with_the_declared_plugin(
    cluster: BaoCluster, built_plugin: BuiltPlugin
) -> None:
    active = cluster.active()
    api = Api(active.addr, cluster.root_token)
    entry = catalog_entry(api, VERSION)
    assert (entry["command"], entry["sha256"]) == (ENGINE_NAME, built_plugin.sha256)

    enable_engine(api)
    with openrouter() as provider:
        provider.connect(api)
        api.ok("POST", "llm/roles/chatbot", json={"connection": "main", "ttl": "5m", "max_ttl": "1h"})
        body = api.ok("GET", "llm/creds/chatbot")
        api_key, key_id, lease_id = body["data"]["api_key"], body["data"]["key_id"], body["lease_id"]
        assert provider.chat(api_key) == 200
        assert any(p.is_running() for p in active.plugin_processes())

        api.ok("PUT", f"sys/leases/revoke/{lease_id}")
        assert not provider.is_live(key_id)
        assert provider.chat(api_key) != 200

    # The active node's own audit log has the creds read, with the key HMAC'd.
    audit_path = active.workdir / "audit.log"
    assert api_key not in audit_path.read_text()
    served = [
        e
        for e in audit_entries(audit_path)
        if e["type"] == "response" and e["request"]["path"] == "llm/creds/chatbot"
    ]
    assert len(served) == 1
    api.close()
