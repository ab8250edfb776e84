"""The sweep (`tidy`) through a real OpenBao, for each provider: it deletes what no lease owns, nothing else.

What a user relies on: a key with this mount's name prefix that the engine does not track (an orphan, e.g.
left by a crash) is deleted once it is older than min_orphan_age; young keys, other mounts' keys and keys
that are not Vault's are never touched; and a key whose lease Vault dropped without deleting it
(revoke-force during an outage) is deleted: by the engine's deletion queue as soon as the provider answers,
and the sweep hands it to that queue too once the lease's max TTL has passed.
"""

from __future__ import annotations

import time

import pytest
from devkit.waiting import wait_for
from engine_support import EngineMount
from llm_emulators.core import Fault

pytestmark = pytest.mark.timeout(60)


def seed(mount: EngineMount, name: str, *, age: float) -> str:
    project = "proj_default" if mount.spec.name == "openai" else None
    return mount.emulator.seed_key(name, created_at=time.time() - age, project_id=project).key_id


def deleted_ids(report: dict[str, object], kind: str) -> set[str]:
    return {str(k["key_id"]) for k in report[kind]}  # type: ignore[attr-defined, index]


def test_tidy_deletes_old_orphans_of_this_mount_only(mount: EngineMount) -> None:
    mount.must_write("tidy/config", interval="0")  # no periodic sweep racing the one under test
    mount.add_role("app", ttl="10m", max_ttl="1h")
    live = mount.creds("app")
    prefix = mount.prefix()

    orphan = seed(mount, f"{prefix}app-1700000000-crashed1", age=3600)
    young = seed(mount, f"{prefix}app-1700000000-inflight", age=5)  # younger than min_orphan_age (10m)
    other_mount = seed(mount, "vault-0badc0de-app-1700000000-notmine1", age=3600)
    not_vault = seed(mount, "team-ci-key", age=3600)

    report = mount.tidy()

    assert deleted_ids(report, "orphans_deleted") == {orphan}
    assert report["orphans_too_young"] == 1
    assert report["expired_deleted_count"] == 0
    assert report["failure_count"] == 0, report["failures"]
    assert mount.is_deleted_at_provider(orphan)
    for key_id in (young, other_mount, not_vault, live.key_id):
        assert mount.emulator.find_key(key_id) is not None, f"{key_id} was deleted"
    assert mount.infer(live.api_key) == 200  # the tracked key of a live lease is untouched
    assert mount.lookup(live.lease_id)[0] == 200

    # A second sweep finds nothing more to do.
    again = mount.tidy()
    assert again["orphans_deleted_count"] == 0 and again["expired_deleted_count"] == 0


def test_a_key_whose_lease_vault_dropped_is_deleted(mount: EngineMount) -> None:
    mount.must_write("tidy/config", interval="0", expired_grace="0s")
    mount.add_role("short", ttl="8s", max_ttl="8s")
    issued_at = time.time()
    lease = mount.creds("short")

    # The provider fails every delete, and the operator force-revokes: Vault calls the plugin's revoke,
    # ignores its failure and drops the lease. The key stays at the provider, working, in the index and in
    # the engine's deletion queue.
    mount.emulator.set_faults(Fault.server_error(times=None, op="delete"))
    mount.api.ok("PUT", f"sys/leases/revoke-force/{lease.lease_id}")
    assert mount.lookup(lease.lease_id)[0] == 400  # Vault no longer knows the lease
    assert mount.emulator.find_key(lease.key_id) is not None
    assert mount.infer(lease.api_key) == 200
    assert mount.read("config/main")[1]["data"]["live_keys"] == 1

    # Before the lease's max TTL has passed, the sweep leaves it alone (a lease could still own it); it
    # reports the queued deletion.
    early = mount.tidy()
    assert time.time() < issued_at + 8, "the test was too slow to check the early sweep"
    assert early["expired_deleted_count"] == 0 and early["orphans_deleted_count"] == 0
    assert early["deletions_pending"] == 1
    assert mount.emulator.find_key(lease.key_id) is not None

    # Once it has passed, the sweep tries too; the provider still fails, so the key stays queued.
    time.sleep(max(0.0, issued_at + 9 - time.time()))  # nothing to poll: only time has to pass
    report = mount.tidy()
    assert report["expired_deleted_count"] == 0
    assert report["failure_count"] == 1 and "queued for deletion" in report["failures"][0], report
    assert report["deletions_pending"] == 1

    # The outage ends: the deletion queue deletes the key within seconds (no sweep needed), and forgets it.
    mount.emulator.set_faults()
    wait_for(
        lambda: mount.is_deleted_at_provider(lease.key_id),
        timeout=30,
        what="the deletion queue to delete the key",
        interval=0.5,
    )
    assert mount.infer(lease.api_key) == 401
    assert mount.read("config/main")[1]["data"]["live_keys"] == 0
