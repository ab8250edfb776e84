"""Provider failures through a real OpenBao, for all three providers at once (each test waits on Vault's own
timers, so the providers share one wait).

What a user relies on:
- a create whose answer was lost (the provider made the key, the connection dropped) fails the creds read
  with a 502, and the stray key is deleted by Vault's rollback tick: nothing is left behind;
- a revoke during a provider outage is retried until the key is deleted (by the engine's deletion queue, every
  few seconds; Vault's next retry then finds it gone); the lease is never marked irrevocable (the plugin
  answers provider faults with retryable errors). More in tests/e2e_outage.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from devkit.waiting import wait_for
from engine_support import PROVIDER_NAMES, WAL_MIN_AGE_SECONDS, EngineMount, errors_of
from llm_emulators.core import Fault


def make_mounts(new_mount: Callable[[str], EngineMount]) -> list[EngineMount]:
    mounts = [new_mount(p) for p in PROVIDER_NAMES]
    for m in mounts:
        m.must_write("tidy/config", interval="0")  # only the mechanism under test may delete keys
        m.add_role("app", ttl="10m", max_ttl="1h")
    return mounts


@pytest.mark.timeout(150)
def test_dropped_create_is_rolled_back_by_vaults_rollback_tick(
    new_mount: Callable[[str], EngineMount],
) -> None:
    """SLOW (up to ~60 s): waits for Vault's once-a-minute rollback tick.

    The plugin runs with LLMSECRETS_WAL_MIN_AGE_SECONDS=2 (production: 10 minutes), so the first tick after
    the failed read settles the WAL entry; OpenBao's tick period is fixed at one minute.
    """
    mounts = make_mounts(new_mount)
    strays = {}
    for m in mounts:
        m.emulator.set_faults(Fault.drop_after_create())
        status, body = m.read("creds/app")
        assert status == 502, (m.spec.name, status, body)
        assert "may have been created" in errors_of(body)
        assert m.emulator.create_count == 1
        [stray] = m.emulator.live_keys()  # the provider made the key; nobody got it
        assert stray.name.startswith("vault-")
        assert m.infer(stray.secret) == 200
        strays[m.path] = stray

        # Nothing tracks it, and the connection cannot be deleted while the create is unsettled.
        assert m.read("config/main")[1]["data"]["live_keys"] == 0
        status, body = m.call("DELETE", "config/main")
        assert status == 400 and "unfinished create" in errors_of(body), body

    for m in mounts:
        stray = strays[m.path]
        wait_for(
            lambda m=m, stray=stray: m.is_deleted_at_provider(stray.key_id),
            timeout=90,
            what=f"the rollback tick to delete the stray {m.spec.name} key",
            interval=0.5,
        )
        assert m.infer(stray.secret) == 401
        assert m.emulator.live_keys() == []
        # The WAL entry is gone with it: the connection has no unfinished create left.
        status, body = m.call("DELETE", "config/main")
        assert status == 204, body
    assert WAL_MIN_AGE_SECONDS < 60  # the knob is what makes a one-tick wait enough


def failed_revoke_logged(m: EngineMount, lease_id: str) -> bool:
    """Vault's expiration manager logged a failed (to be retried) revoke of `lease_id`."""
    pattern = re.compile(r"expiration: failed to revoke lease: lease_id=" + re.escape(lease_id) + r"\b")
    return bool(pattern.search(m.server.log_path.read_text(errors="replace")))


@pytest.mark.timeout(180)
def test_revoke_during_outage_is_retried_until_the_key_is_deleted(
    new_mount: Callable[[str], EngineMount],
) -> None:
    """SLOW (~20-70 s): Vault's revoke retries come 20 s, then 40 s (+/- 50 %) after the failed attempts."""
    mounts = make_mounts(new_mount)
    leases = {m.path: m.creds("app") for m in mounts}

    for m in mounts:
        lease = leases[m.path]
        m.emulator.set_faults(Fault.server_error(times=None, op="delete"))  # the outage starts

        # `bao lease revoke <id>` (synchronous) fails and says why; the lease and the key stay.
        status, body = m.api.call("PUT", "sys/leases/revoke", json={"lease_id": lease.lease_id})
        assert status >= 400, body
        assert m.spec.name in errors_of(body) and "retry" in errors_of(body)
        assert m.admin_key not in str(body)
        assert m.lookup(lease.lease_id)[0] == 200

        # `bao lease revoke -sync=false <id>` (and expiry): Vault queues the revoke and retries it.
        status, body = m.api.call(
            "PUT", "sys/leases/revoke", json={"lease_id": lease.lease_id, "sync": False}
        )
        assert status == 202, body

    for m in mounts:
        lease = leases[m.path]
        wait_for(
            lambda m=m, lease=lease: failed_revoke_logged(m, lease.lease_id),
            timeout=30,
            what="Vault's first (failing) revoke attempt",
        )
        # Between attempts: the lease is kept, not irrevocable, and the key still exists.
        assert m.lookup(lease.lease_id)[0] == 200
        assert lease.lease_id not in m.irrevocable_leases()
        assert m.emulator.find_key(lease.key_id) is not None

    for m in mounts:
        m.emulator.set_faults()  # the outage ends

    for m in mounts:
        lease = leases[m.path]
        wait_for(
            lambda m=m, lease=lease: m.is_deleted_at_provider(lease.key_id),
            timeout=30,
            what=f"the engine's deletion queue to delete the {m.spec.name} key",
            interval=0.5,
        )
        assert m.infer(lease.api_key) == 401
    for m in mounts:
        lease = leases[m.path]
        wait_for(
            lambda m=m, lease=lease: m.lookup(lease.lease_id)[0] == 400,
            timeout=90,
            what="Vault's next revoke retry to find the key deleted",
            interval=0.5,
        )
        status, body = m.lookup(lease.lease_id)
        assert status == 400 and "invalid lease" in str(body)  # revoked, not stranded
        assert m.irrevocable_leases() == []
