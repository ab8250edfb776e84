"""vault-config/ha/ brought up for real: three `bao server` processes from the rendered node configs, one
initialised, all unsealed, Raft with three voters; the engine enabled on the active node with no register
call, a key issued and revoked through it against an emulator, and the same again after the active node
steps down and a standby takes over.

(Creds reads on a standby, and crashes, are the next issue's; they are not exercised here.)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from config_support import Api, BuiltPlugin, Provider, catalog_entry, enable_engine, openrouter
from devkit.cluster import BaoCluster, BaoNode
from devkit.render_config import ENGINE_NAME, plugin_from_file
from devkit.waiting import wait_for
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


@pytest.fixture(scope="module")
def provider(cluster: BaoCluster) -> Iterator[Provider]:
    """The engine enabled at llm/ on the active node (nothing registered), connected to an emulator."""
    api = Api(cluster.active().addr, cluster.root_token)
    enable_engine(api)
    with openrouter() as emulator:
        emulator.connect(api)
        api.ok("POST", "llm/roles/chatbot", json={"connection": "main", "ttl": "5m", "max_ttl": "1h"})
        api.close()
        yield emulator


def audit_entries(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def issue_use_revoke(node: BaoNode, token: str, provider: Provider) -> str:
    """Issue a key through `node`, use it at the provider, revoke it; return the key."""
    api = Api(node.addr, token)
    body = api.ok("GET", "llm/creds/chatbot")
    api_key, key_id = body["data"]["api_key"], body["data"]["key_id"]
    assert provider.chat(api_key) == 200
    api.ok("PUT", f"sys/leases/revoke/{body['lease_id']}")
    assert not provider.is_live(key_id)
    assert provider.chat(api_key) != 200
    api.close()
    return str(api_key)


def test_three_nodes_form_one_raft_cluster(cluster: BaoCluster) -> None:
    servers = cluster.raft_servers()
    assert sorted(s["node_id"] for s in servers) == ["node1", "node2", "node3"]
    assert all(s["voter"] for s in servers)
    assert sum(bool(s["leader"]) for s in servers) == 1
    active = cluster.active()
    others = [n.name for n in cluster.nodes if n is not active]
    assert sorted(n.name for n in cluster.standbys()) == others


def test_the_active_node_issues_and_revokes_a_key_with_the_declared_plugin(
    cluster: BaoCluster, built_plugin: BuiltPlugin, provider: Provider
) -> None:
    active = cluster.active()
    api = Api(active.addr, cluster.root_token)
    entry = catalog_entry(api, VERSION)
    assert (entry["command"], entry["sha256"]) == (ENGINE_NAME, built_plugin.sha256)
    api.close()

    api_key = issue_use_revoke(active, cluster.root_token, provider)
    assert any(p.is_running() for p in active.plugin_processes())

    # The audit log (one path on every node) has the creds read once, with the key HMAC'd.
    assert api_key not in cluster.audit_log.read_text()
    served = [
        e
        for e in audit_entries(cluster.audit_log)
        if e["type"] == "response" and e["request"]["path"] == "llm/creds/chatbot"
    ]
    assert len(served) == 1


def test_a_standby_takes_over_and_serves_the_engine(cluster: BaoCluster, provider: Provider) -> None:
    old = cluster.active()
    with old.http(cluster.root_token) as http:
        assert http.put("sys/step-down").status_code == 204
    new = wait_for(lambda: (a := cluster.active()) is not old and a, 30, "another node to become active")
    issue_use_revoke(new, cluster.root_token, provider)
    wait_for(lambda: old in cluster.standbys(), 30, "the old active node to serve as a standby")
