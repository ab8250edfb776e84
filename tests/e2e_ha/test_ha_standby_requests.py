"""Requests through the standbys of a 3-node cluster, as a load balancer in front of it sends them.

OpenBao 2.5+ standbys serve requests themselves, with read-only storage, running their own plugin process.
The engine answers everything that writes or reaches a provider there with Vault's read-only error before
doing anything, so OpenBao forwards it to the active node: each request is served exactly once, by the
active node, and a standby never calls the provider. "Exactly once" is checked at the provider: the same
request sent through a standby makes the same admin calls as through the active node, not more.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from devkit.ha_drill import MOUNT, Api, Lease
from devkit.render_config import PluginRef
from devkit.waiting import wait_for
from ha_support import Drill, ha_drill

pytestmark = pytest.mark.timeout(300)

READS_PER_NODE = 12


@pytest.fixture(scope="module")
def drill(tmp_path_factory: pytest.TempPathFactory, ha_plugin: PluginRef) -> Iterator[Drill]:
    with ha_drill(tmp_path_factory.mktemp("ha-requests"), ha_plugin, {"app": {"ttl": "1h"}}) as d:
        yield d


def calls_made(drill: Drill, action: Callable[[], Any]) -> Counter[str]:
    """The provider's admin calls (by operation) that `action` caused."""
    start = len(drill.provider.calls)
    action()
    return Counter(c.op for c in drill.provider.calls[start:])


def test_creds_through_every_node_give_one_key_per_lease_and_no_stray_key(drill: Drill) -> None:
    creates_before = Counter(c.op for c in drill.provider.calls)["create"]
    live_before = drill.provider.live_ids()
    leases: list[Lease] = []
    by_node: Counter[str] = Counter()
    for node in drill.cluster.nodes:
        with drill.api(node) as api:
            for _ in range(READS_PER_NODE):
                leases.append(api.creds("app", node=node.name))
                by_node[node.name] += 1
    active = drill.active()
    assert len(drill.standbys()) == 2
    assert all(count == READS_PER_NODE for count in by_node.values()), by_node

    # One key per lease: every lease Vault holds owns a live key of its own, and the provider made no other.
    key_ids = [lease.key_id for lease in leases]
    assert len(set(key_ids)) == len(leases)
    assert len({lease.api_key for lease in leases}) == len(leases)
    with drill.api(active) as api:
        assert {lease.lease_id for lease in leases} <= api.leases("app")
    assert drill.provider.live_ids() - live_before == set(key_ids)
    creates = Counter(c.op for c in drill.provider.calls)["create"] - creates_before
    assert creates == len(leases), "a standby created a key of its own before the read was forwarded"


def test_a_standby_serves_reads_of_config_and_roles_itself(drill: Drill) -> None:
    for node in drill.standbys():
        with drill.api(node) as api:
            assert api.ok("GET", f"{MOUNT}/config/main")["data"]["provider"] == "litellm"
            assert api.ok("GET", f"{MOUNT}/roles/app")["data"]["ttl"] == 3600
            assert "app" in api.ok("LIST", f"{MOUNT}/roles")["data"]["keys"]


def test_writes_through_a_standby_are_done_once_by_the_active_node(drill: Drill) -> None:
    active_api = drill.api(drill.active())
    standby_api = drill.api(drill.standbys()[0])

    def verify(api: Api) -> Callable[[], Any]:
        return lambda: api.ok("POST", f"{MOUNT}/config/main", json={"verify": True})

    def tidy(api: Api) -> Callable[[], Any]:
        return lambda: api.ok("POST", f"{MOUNT}/tidy")

    for action in (verify, tidy):
        direct = calls_made(drill, action(active_api))
        assert direct, f"{action.__name__} should call the provider"
        assert calls_made(drill, action(standby_api)) == direct, action.__name__

    # A role written through a standby: written once (by the active node), read back on every node.
    assert (
        calls_made(
            drill,
            lambda: standby_api.ok(
                "POST", f"{MOUNT}/roles/written", json={"connection": "main", "ttl": "2m"}
            ),
        )
        == Counter()
    )
    assert active_api.ok("GET", f"{MOUNT}/roles/written")["data"]["ttl"] == 120
    for node in drill.standbys():  # standbys read their replica: it may lag by a moment
        with drill.api(node) as api:
            wait_for(
                lambda: api.call("GET", f"{MOUNT}/roles/written")[0] == 200, 10, f"the role on {node.name}"
            )
    standby_api.ok("DELETE", f"{MOUNT}/roles/written")
    assert active_api.call("GET", f"{MOUNT}/roles/written")[0] == 404
    active_api.close()
    standby_api.close()


def test_renew_and_revoke_through_a_standby_reach_the_provider_once(drill: Drill) -> None:
    standby = drill.standbys()[-1]
    with drill.api(standby) as api:
        lease = api.creds("app", node=standby.name)
        # A renewal moves the key's expiry at LiteLLM: one update call, made by the active node only.
        renewed = calls_made(
            drill, lambda: api.ok("PUT", "sys/leases/renew", json={"lease_id": lease.lease_id})
        )
        assert renewed == Counter(update=1)
        revoked = calls_made(
            drill, lambda: api.ok("PUT", "sys/leases/revoke", json={"lease_id": lease.lease_id})
        )
        # The revoke: the key's spend is read (spend per lease), then the key deleted, both once.
        assert revoked == Counter(get=1, delete=1)
        assert not drill.provider.is_live(lease.key_id)
        # The standby answers the lookup from its own copy of the storage, which trails the active node's.
        wait_for(lambda: not api.lease_live(lease.lease_id), 10, "the standby to see the lease gone")
