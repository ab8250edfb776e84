"""WAL rollback after a crash in the middle of an operation, through a real OpenBao.

When does Vault send the `rollback` operation? (OpenBao internal/vault/rollback.go and mount.go):
- the rollback manager's ticker fires every `rollbackPeriod`, fixed at 1 minute for a real server (only the Go
  test harness can change it), counted from when the manager started (unseal);
- a rollback also runs at once, synchronously, on the SOURCE mount of a remount (`sys/remount`) and before an
  unmount. Nothing else triggers one sooner.
So one test triggers it with a remount (fast), and one waits for the periodic tick (slow, up to a minute).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from devkit.bao import is_gone
from devkit.waiting import wait_for
from e2e_support import Mount, unique_mount_name
from testbackend import WAL_KIND

WAL_MIN_AGE = 1.0  # the test backend's wal_min_age_seconds


def crash_with_wal_entry(mount: Mount, name: str) -> float:
    """Write a WAL entry and kill the plugin mid-request; return when the entry was written (about)."""
    old_pid = mount.pid()
    written_at = time.time()
    status, body = mount.write("crash", name=name)
    assert status >= 500, (status, body)  # the request that crashed the plugin fails
    wait_for(lambda: is_gone(old_pid), timeout=10, what="the crashed plugin process to be gone")

    # Vault reloads the plugin after the failed request; a request racing that reload may still be sent to
    # the dead process (a 500 from the host, not the plugin), so poll until the new process answers.
    def wal_listing() -> dict[str, Any] | None:
        status, body = mount.api.call("GET", f"{mount.path}/wal")
        return body["data"] if status == 200 else None

    keys = wait_for(wal_listing, timeout=20, what="a new plugin process to answer")["keys"]
    assert len(keys) == 1  # the entry outlived the process: it is in Vault's storage
    assert mount.pid() != old_pid
    return written_at


def assert_rolled_back(mount_path: str, mount: Mount, name: str) -> None:
    body = mount.api.call("GET", f"{mount_path}/rollbacks")[1]
    assert body["data"]["rollbacks"] == [{"kind": WAL_KIND, "data": {"name": name}}]
    assert mount.api.call("GET", f"{mount_path}/wal")[1]["data"]["keys"] == []  # deleted after the rollback


@pytest.mark.timeout(60)
def test_crash_wal_entry_is_rolled_back_on_remount(mount: Mount) -> None:
    written_at = crash_with_wal_entry(mount, "thing-remount")
    assert mount.read("rollbacks")["data"]["rollbacks"] == []

    # The entry must be older than the backend's minimum age before a rollback may touch it.
    time.sleep(max(0.0, written_at + WAL_MIN_AGE + 0.5 - time.time()))
    target = unique_mount_name("remounted")
    status, body = mount.api.call("PUT", "sys/remount", json={"from": mount.path, "to": target})
    assert status == 200, body
    migration = body["data"]["migration_id"]
    try:

        def finished() -> dict[str, Any] | None:
            info = mount.api.call("GET", f"sys/remount/status/{migration}")[1]["data"]["migration_info"]
            return info if info["status"] != "in-progress" else None

        info = wait_for(finished, timeout=30, what="the remount to finish")
        assert info["status"] == "success", info
        assert_rolled_back(target, mount, "thing-remount")
    finally:
        mount.client.sys.disable_secrets_engine(target)


@pytest.mark.timeout(120)
def test_crash_wal_entry_is_rolled_back_by_the_periodic_rollback(mount: Mount) -> None:
    """SLOW (up to ~60 s): waits for Vault's once-a-minute rollback tick."""
    crash_with_wal_entry(mount, "thing-periodic")
    wait_for(
        lambda: mount.read("rollbacks")["data"]["rollbacks"],
        timeout=75,
        what="the periodic rollback (Vault sends one a minute)",
        interval=0.5,
    )
    assert_rolled_back(mount.path, mount, "thing-periodic")
