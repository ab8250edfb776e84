"""The plugin SIGKILLed three times during a burst of 300 creds reads at 8 clients (one OpenBao node with
persistent storage). Creates are slowed down at the provider, so every kill lands on creates in flight.

What must hold: no key is handed out twice; every lease Vault holds is one a client received, with its key
live; and once the rollback (WAL entries of the interrupted creates) and the sweep have run, no key is
live at the provider that no lease owns. Figure: seconds from the end of the burst until the last orphan
was deleted. After a crash OpenBao answers the request in flight with a 500 and starts a new plugin process
on the next request (or on its rollback tick when there is no traffic).
"""

from __future__ import annotations

import re
import signal
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest
from devkit.ha_drill import MOUNT, WAL_MIN_AGE_ENV, Burst, Provider, mount_engine, single_node
from devkit.render_config import PluginRef
from devkit.waiting import wait_for
from llm_emulators.core import Fault

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

READS = 300
CLIENTS = 8
KILLS = 3
LEASE_SECONDS = 120  # ttl = max_ttl: every lease outlives the rollback that removes the orphans
CREATE_LATENCY = 0.2
ROLLBACK_PERIOD = 60.0
# The plugin's line for a WAL entry whose key it found at the provider and deleted.
ROLLED_BACK_KEY = re.compile(r"rolled back an interrupted create: .* deleted=[1-9]")


def kill_plugin(processes: list[psutil.Process]) -> list[int]:
    """SIGKILL the plugin's processes (the bootloader and its Python child), as the OOM killer might."""
    for proc in processes:
        proc.send_signal(signal.SIGKILL)
    psutil.wait_procs(processes, timeout=10)
    return [p.pid for p in processes]


def test_plugin_killed_during_a_burst_hands_out_no_key_twice_and_leaves_no_orphan(
    tmp_path: Path, restart_plugin: PluginRef
) -> None:
    provider = Provider().start()
    try:
        with single_node(tmp_path, restart_plugin, env={WAL_MIN_AGE_ENV: "5"}) as server:
            node = server.node
            with server.api() as api:
                mount_engine(
                    api, provider, {"app": {"ttl": f"{LEASE_SECONDS}s", "max_ttl": f"{LEASE_SECONDS}s"}}
                )
                api.ok("POST", f"{MOUNT}/tidy/config", json={"interval": "10s", "expired_grace": "1s"})
            provider.emulator.faults.add(Fault.latency(CREATE_LATENCY, times=None, op="create"))

            burst = Burst(
                {node.name: node.addr}, server.root_token, "app", clients=CLIENTS, total=READS
            ).start()
            killed: list[int] = []
            for k in range(1, KILLS + 1):
                wait_for(lambda k=k: len(burst.attempts) >= k * READS // (KILLS + 1), 120, f"read {k}")
                plugin = wait_for(node.plugin_processes, 30, "a running plugin process")
                assert not {p.pid for p in plugin} & set(killed), "the killed plugin is still running"
                killed += kill_plugin(plugin)
            issued = burst.join(timeout=300)
            ended = time.monotonic()
            statuses = Counter(a.status for a in burst.attempts)

            # No key handed out twice, and Vault holds exactly the leases the clients received.
            assert len({a.key_id for a in issued}) == len(issued)
            assert len({a.api_key for a in issued}) == len(issued)
            with server.api() as api:
                assert api.leases("app") == {a.lease_id for a in issued}
            handed_out = {a.key_id for a in issued}
            orphans = provider.live_ids() - handed_out
            assert handed_out <= provider.live_ids()

            # The rollback deletes every orphan a WAL entry names: the creates the kills interrupted. A read
            # killed after its key was indexed, but before Vault had the answer, leaves a key no lease and no
            # WAL entry owns (nobody ever saw it): the sweep deletes it once its max TTL has passed.
            gone_after: dict[str, float] = {}

            def orphans_gone() -> bool:
                live = provider.live_ids()
                for key_id in orphans - live - set(gone_after):
                    gone_after[key_id] = time.monotonic() - ended
                return live <= handed_out

            wait_for(
                orphans_gone,
                LEASE_SECONDS + 2 * ROLLBACK_PERIOD,
                "every key no lease owns to go",
                interval=1.0,
            )
            still_leased = [a for a in issued if a.ended + LEASE_SECONDS > time.monotonic() + 1]
            assert all(provider.is_live(a.key_id) for a in still_leased)
            rolled_back = len(ROLLED_BACK_KEY.findall(node.log_path.read_text(errors="replace")))
            quick = [t for t in gone_after.values() if t < LEASE_SECONDS]  # rolled back, not swept
            print(
                f"\nplugin killed {KILLS} times ({len(killed)} processes) during {READS} reads at {CLIENTS} "
                f"clients: {dict(statuses)}; {len(issued)} keys handed out, none twice; {len(orphans)} "
                f"orphans after the burst: {rolled_back} deleted by the WAL rollback ({len(quick)} gone "
                f"within {max(quick, default=0):.0f}s of the burst's end), {len(orphans) - len(quick)} "
                f"indexed but never leased (swept after their max TTL); the last gone "
                f"{max(gone_after.values()):.0f}s after the burst"
            )
            assert orphans, "no create was in flight at a kill: the drill proved nothing"
            assert rolled_back >= 1
    finally:
        provider.stop()
