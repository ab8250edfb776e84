"""OpenBao stopped (persistent storage) while leases expire: when it is back and unsealed, every one of those
leases is revoked and its key deleted at the provider, within seconds; a long-lived lease keeps its key."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from devkit.ha_drill import WAL_MIN_AGE_ENV, Provider, mount_engine, single_node
from devkit.render_config import PluginRef
from devkit.waiting import wait_for

pytestmark = pytest.mark.timeout(300)

LEASES = 20
DELETED_WITHIN_SECONDS = 30.0  # after unseal


@pytest.mark.parametrize(
    ("down_seconds", "ttl"),
    [pytest.param(10, 5, id="down-10s"), pytest.param(30, 10, id="down-30s", marks=pytest.mark.slow)],
)
def test_keys_of_leases_that_expired_while_openbao_was_down_are_deleted_after_unseal(
    tmp_path: Path, restart_plugin: PluginRef, down_seconds: int, ttl: int
) -> None:
    provider = Provider().start()
    try:
        with single_node(tmp_path, restart_plugin, env={WAL_MIN_AGE_ENV: "5"}) as server:
            api = server.api()
            mount_engine(api, provider, {"short": {"ttl": f"{ttl}s"}, "keep": {"ttl": "1h"}})
            keep = api.creds("keep")
            leases = [api.creds("short") for _ in range(LEASES)]
            api.close()

            server.node.stop()
            stopped = time.monotonic()
            # Stopped before any of them ended: Vault has revoked none, every key is still live.
            assert all(provider.is_live(lease.key_id) for lease in leases)
            assert stopped < min(lease.issued_at for lease in leases) + ttl
            time.sleep(max(0.0, stopped + down_seconds - time.monotonic()))
            assert time.monotonic() > max(lease.issued_at for lease in leases) + ttl  # all ended while down

            server.node.start()
            server.node.unseal(server.init.unseal_key)
            unsealed = time.monotonic()
            wait_for(
                lambda: not any(provider.is_live(lease.key_id) for lease in leases),
                DELETED_WITHIN_SECONDS,
                f"the {LEASES} keys whose leases ended while OpenBao was down to be deleted",
                interval=0.2,
            )
            deleted_after = time.monotonic() - unsealed
            with server.api() as api:
                assert api.leases("short") == set()
                assert api.leases("keep") == {keep.lease_id}
                assert api.irrevocable_leases() == []
            assert provider.live_ids() == {keep.key_id}
            print(f"\ndown {down_seconds}s: all {LEASES} keys deleted {deleted_after:.1f}s after unseal")
    finally:
        provider.stop()
