"""A standby runs OpenBao's rollback tick too (periodic work and WAL rollback), yet never deletes or creates a
key at the provider: only the active node does.

How it can fail: the cluster is left with one node, a standby that cannot become active (no Raft quorum),
while work is waiting for the periodic machinery: an interrupted create (a WAL entry), an orphan key of
this mount, and a key in the deletion queue whose provider is failing. Every provider call made while that
standby is alone is a standby's. The test waits for the standby's rollback tick (its plugin logs the tick
it skipped), and the provider must have seen no admin call at all. Then the other nodes come back, one of
them becomes active, and it does all of that work: the provider ends with only the live lease's key.
"""

from __future__ import annotations

import time

import pytest
from devkit.ha_drill import MOUNT
from devkit.render_config import PluginRef
from devkit.waiting import wait_for
from ha_support import ROLLBACK_PERIOD, WAL_MIN_AGE_SECONDS, ha_drill, log_count
from llm_emulators.core import Fault

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SKIPPED_TICK = "rollback tick skipped"  # the plugin's debug line for a tick it left to the active node


def test_a_standby_never_deletes_or_creates_a_key_and_the_active_node_does_the_work(
    tmp_path_factory: pytest.TempPathFactory, ha_plugin: PluginRef
) -> None:
    roles = {"keep": {"ttl": "1h", "max_ttl": "2h"}, "short": {"ttl": "3s", "max_ttl": "3s"}}
    with ha_drill(
        tmp_path_factory.mktemp("ha-periodic"),
        ha_plugin,
        roles,
        log_level="debug",
        env={"VAULT_PLUGIN_LOG_LEVEL": "debug"},
    ) as drill:
        provider, emulator = drill.provider, drill.provider.emulator
        active = drill.active()
        survivor, other = drill.standbys()
        with drill.api(active) as api:
            api.ok("POST", f"{MOUNT}/tidy/config", json={"min_orphan_age": "60s", "interval": "10s"})
            keep = api.creds("keep")
            prefix = emulator.find_key(keep.key_id).name[: len("vault-12345678-")]  # type: ignore[union-attr]

            # A key whose lease ended while its provider fails deletes: in the deletion queue.
            emulator.faults.add(Fault.server_error(times=None, status=503, op="delete"))
            queued = api.creds("short")
            wait_for(
                lambda: api.call("LIST", f"{MOUNT}/deletions")[0] == 200, 30, "the deletion to be queued"
            )
            # A create whose outcome was lost: its WAL entry waits for the rollback.
            emulator.faults.drop_after_create()
            assert api.call("GET", f"{MOUNT}/creds/keep")[0] == 502
            wal_written = time.monotonic()
            (interrupted,) = provider.live_ids() - {keep.key_id, queued.key_id}
            # A write after those: once the survivor serves it, its replica holds all of the above.
            api.ok("POST", f"{MOUNT}/roles/barrier", json={"connection": "main"})
        with drill.api(survivor) as api:
            wait_for(
                lambda: api.call("GET", f"{MOUNT}/roles/barrier")[0] == 200, 30, "the survivor's replica"
            )
            assert api.call("LIST", f"{MOUNT}/deletions")[0] == 200

        # Only the survivor is left: a standby with no quorum, so it stays one.
        other.kill()
        active.kill()
        # The tick that counts comes once the WAL entry is old enough to be rolled back.
        time.sleep(max(0.0, wal_written + WAL_MIN_AGE_SECONDS + 1 - time.monotonic()))
        mark, ticks_before = time.monotonic(), log_count(survivor, SKIPPED_TICK)
        orphan = emulator.seed_key(prefix + "lost", created_at=emulator.now() - 7200)
        waiting = {
            "interrupted create": interrupted,
            "orphan": orphan.key_id,
            "queued deletion": queued.key_id,
        }
        wait_for(
            lambda: log_count(survivor, SKIPPED_TICK) > ticks_before,
            ROLLBACK_PERIOD + 20,
            "a rollback tick on the standby",
            interval=1.0,
        )
        time.sleep(2.0)  # anything the tick started would have reached the provider by now
        assert survivor.running and survivor in drill.standbys()
        assert provider.ops_since(mark) == {}, "a standby called the provider"
        assert provider.live_ids() == {keep.key_id, *waiting.values()}
        alone = time.monotonic() - mark

        # The cluster comes back; whichever node becomes active does the work.
        emulator.faults.clear()
        for node in (active, other):
            node.start()
            node.unseal(drill.cluster.unseal_key)
        new = drill.active(timeout=120)
        up = time.monotonic()
        wait_for(
            lambda: provider.live_ids() == {keep.key_id},
            2 * ROLLBACK_PERIOD + 30,
            "the active node to settle what the standby left",
            interval=1.0,
        )
        print(
            f"\nstandby alone for {alone:.0f}s: 0 provider calls; {new.name} active again, then "
            f"{time.monotonic() - up:.0f}s until {', '.join(waiting)} were gone"
        )
