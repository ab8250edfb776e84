"""Provider outages through a real OpenBao, all three providers at once (they share the waits).

What a user relies on:
- every key whose lease ends during an outage of T seconds is deleted soon after the provider answers again
  (within 30 s: the engine's deletion queue retries every few seconds; Vault's retries would take minutes);
- no such lease is left to Vault's retries, so none can become irrevocable, however long the outage: Vault's
  expiry revoke is answered "revoked" once the deletion is queued in the mount's storage;
- a synchronous `bao lease revoke` of a running lease never reports success while the key is live;
- a lease Vault gave up on (revoke-force) still has its key deleted, and so does one whose plugin process was
  killed meanwhile (the queue is in storage; Vault restarts the plugin and initializes it);
- operators see the outstanding deletions (`LIST <mount>/deletions`), without any key value.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from devkit.bao import BaoServer, kill_leftovers
from devkit.waiting import wait_for
from engine_support import PROVIDER_NAMES, BuiltEngine, EngineMount, Lease, errors_of
from outage_support import (
    DELETED_WITHIN_SECONDS,
    deletions,
    end_outage,
    lease_exists,
    register_copy,
    start_outage,
    sync_revoke,
    wait_until_deleted,
)

MakeMount = Callable[..., EngineMount]


def run_outage(new_mount: MakeMount, outage_seconds: float, leases_per_provider: int) -> None:
    """Leases that end at spread times during an outage of `outage_seconds`, plus one running lease that a
    user revokes (synchronously) during it; then the provider comes back."""
    mounts = [new_mount(p) for p in PROVIDER_NAMES]
    ending: dict[str, list[Lease]] = {}
    running: dict[str, Lease] = {}
    first_ttl, last_ttl = 3, int(outage_seconds) - 3
    for m in mounts:
        ending[m.path] = []
        for i in range(leases_per_provider):
            ttl = first_ttl + (last_ttl - first_ttl) * i // max(leases_per_provider - 1, 1)
            m.add_role(f"r{i}", ttl=f"{ttl}s", max_ttl="1h")
            ending[m.path].append(m.creds(f"r{i}"))
        m.add_role("long", ttl="1h", max_ttl="2h")
        running[m.path] = m.creds("long")

    started = start_outage(mounts)

    # A user revokes a running lease: the answer is an error while the key is live, every time.
    for m in mounts:
        lease = running[m.path]
        for _ in range(2):
            status, body = sync_revoke(m, lease)
            assert status >= 400, (m.spec.name, status, body)  # Vault answers a failed revoke with 400
            assert "still live" in errors_of(body) and "queued" in errors_of(body)
            assert m.admin_key not in str(body)
        assert lease_exists(m, lease)
        assert m.emulator.find_key(lease.key_id) is not None

    time.sleep(max(0.0, started + outage_seconds - 2 - time.monotonic()))
    # Near the outage's end: every ended lease is gone from Vault (nothing for its retries to exhaust, so
    # nothing can turn irrevocable), its key is still live at the provider, and the queue shows it.
    for m in mounts:
        queue = deletions(m)
        for lease in ending[m.path]:
            assert not lease_exists(m, lease), (m.spec.name, lease.lease_id)
            assert m.emulator.find_key(lease.key_id) is not None
            entry = queue[f"main/{lease.key_id}"]
            assert entry["state"] == "pending" and entry["reason"] == "lease_ended"
            assert entry["key_name"] == lease.data["key_name"]
            assert entry["next_attempt_at"]
        assert any(e["attempts"] >= 1 and "503" in e["last_error"] for e in queue.values())
        revoked = queue[f"main/{running[m.path].key_id}"]
        assert revoked["reason"] == "revoke" and revoked["attempts"] >= 2
        shown = str(queue)
        assert all(lease.api_key not in shown for lease in [*ending[m.path], running[m.path]])
        assert m.irrevocable_leases() == []

    back = end_outage(mounts)
    gone = wait_until_deleted(
        [(m, [lease.key_id for lease in [*ending[m.path], running[m.path]]]) for m in mounts],
        since=back,
        timeout=DELETED_WITHIN_SECONDS,
    )
    print(
        f"\nFIGURE outage={outage_seconds:.0f}s keys={gone.keys}: last key deleted "
        f"{gone.seconds:.1f}s after the provider came back"
    )
    assert gone.seconds <= DELETED_WITHIN_SECONDS

    for m in mounts:
        for lease in ending[m.path]:
            assert m.infer(lease.api_key) == 401
        # The user's revoke now succeeds at once: the engine knows the key is gone.
        lease = running[m.path]
        assert lease_exists(m, lease)
        status, body = sync_revoke(m, lease)
        assert status == 204, (m.spec.name, status, body)
        assert not lease_exists(m, lease)
        assert deletions(m) == {}
        assert m.irrevocable_leases() == []
        assert m.emulator.live_keys() == []


@pytest.mark.timeout(120)
def test_keys_of_leases_that_end_during_a_15s_outage_are_deleted_soon_after(new_mount: MakeMount) -> None:
    run_outage(new_mount, outage_seconds=15, leases_per_provider=4)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_keys_of_leases_that_end_during_a_60s_outage_are_deleted_soon_after(new_mount: MakeMount) -> None:
    run_outage(new_mount, outage_seconds=60, leases_per_provider=11)


@pytest.mark.timeout(90)
def test_a_lease_vault_gave_up_on_still_has_its_key_deleted(new_mount: MakeMount) -> None:
    """`bao lease revoke -force` drops the lease whatever the plugin answers (as an irrevocable lease is
    never retried): the deletion the failed revoke queued still happens."""
    mounts = [new_mount(p) for p in PROVIDER_NAMES]
    leases = {}
    for m in mounts:
        m.add_role("app", ttl="1h", max_ttl="2h")
        leases[m.path] = m.creds("app")
    start_outage(mounts)
    for m in mounts:
        lease = leases[m.path]
        status, body = m.api.call("PUT", f"sys/leases/revoke-force/{m.path}/creds/app")
        assert status == 204, (status, body)
        assert not lease_exists(m, lease)
        assert m.emulator.find_key(lease.key_id) is not None
        assert deletions(m)[f"main/{lease.key_id}"]["state"] == "pending"

    back = end_outage(mounts)
    gone = wait_until_deleted(
        [(m, [leases[m.path].key_id]) for m in mounts], since=back, timeout=DELETED_WITHIN_SECONDS
    )
    print(f"\nFIGURE revoke-force: key deleted {gone.seconds:.1f}s after the provider came back")
    for m in mounts:
        assert m.infer(leases[m.path].api_key) == 401


@pytest.mark.timeout(240)
@pytest.mark.parametrize("trigger", ["request", pytest.param("rollback tick", marks=pytest.mark.slow)])
def test_queued_deletions_survive_a_killed_plugin(
    new_mount: MakeMount, outage_bao: BaoServer, outage_engine: BuiltEngine, trigger: str
) -> None:
    """The plugin process is SIGKILLed while keys wait in the queue. OpenBao starts a new one on the mount's
    next requests and initializes it, which resumes the queue from storage. `request`: an operator lists the
    queue. `rollback tick`: no traffic at all; OpenBao's once-a-minute tick is the next request (the first
    request after a crash fails, the next starts the plugin: up to two ticks)."""
    copy = register_copy(outage_bao, outage_engine, f"llm-outage-kill-{trigger.replace(' ', '-')}")
    m = new_mount("litellm", plugin=copy.name)
    m.add_role("short", ttl="3s", max_ttl="1h")
    leases = [m.creds("short") for _ in range(3)]
    start_outage([m])
    wait_for(
        lambda: all(not lease_exists(m, lease) for lease in leases),
        timeout=30,
        what="Vault's expiry revokes (answered once the deletions are queued)",
        interval=0.5,
    )
    assert len(deletions(m)) == 3

    pids = [p.pid for p in outage_bao.plugin_processes(copy)]
    assert len(pids) == 1, pids  # this mount's process only: its registration runs its own file
    assert kill_leftovers(pids, timeout=0) == pids  # SIGKILL, by PID
    wait_for(lambda: not outage_bao.plugin_processes(copy), timeout=10, what="the plugin process to die")

    back = end_outage([m])
    timeout = DELETED_WITHIN_SECONDS
    if trigger == "request":
        # OpenBao answers the first request after the crash with a 500 ("error reading from server") and
        # starts a new plugin process for the next one.
        wait_for(
            lambda: m.call("LIST", "deletions")[0] in (200, 404),
            timeout=20,
            what="OpenBao to start a new plugin process",
            interval=0.5,
        )
    else:
        timeout = 2 * 60 + DELETED_WITHIN_SECONDS
    gone = wait_until_deleted([(m, [lease.key_id for lease in leases])], since=back, timeout=timeout)
    print(
        f"\nFIGURE plugin killed, restarted by {trigger}: last key deleted {gone.seconds:.1f}s after the "
        "provider came back"
    )
    assert [p.pid for p in outage_bao.plugin_processes(copy)] != pids
    assert deletions(m) == {}
