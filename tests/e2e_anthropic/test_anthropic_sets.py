"""Anthropic check-out sets through a real OpenBao, the engine wired to the Anthropic emulator on loopback.

What a user relies on: `sets/<name>/creds` lends a pre-made key and activates it, and the key works at
/v1/messages only while a lease holds it; renew extends the lease; revoke and expiry deactivate the key and
return it to the set; concurrent reads never get the same key, and an exhausted set is a clear 429 naming the
set; a deactivation the provider fails is retried by the engine until it succeeds, and the key is lent to no
one meanwhile; a key lent before a plugin restart is not lent again after it; after the plugin is SIGKILLed
in the middle of a check-out no key stays active without a lease; the sweep deactivates keys switched on
with no lease; key values never show in reads or logs; roles refuse an anthropic connection.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import pytest
from anthropic_support import SET, SetMount
from devkit.bao import is_gone
from devkit.waiting import wait_for
from engine_support import WAL_MIN_AGE_SECONDS, VaultApi, errors_of, unique_mount_name
from llm_emulators.core import Fault

pytestmark = pytest.mark.timeout(90)


def remount_done(api: VaultApi, migration: str) -> dict[str, Any] | None:
    info: dict[str, Any] = api.call("GET", f"sys/remount/status/{migration}")[1]["data"]["migration_info"]
    return info if info["status"] != "in-progress" else None


def test_a_checked_out_key_works_only_while_leased(sm: SetMount) -> None:
    sm.make_set(3, ttl="30s", max_ttl="2m")
    assert {sm.emu.key_status(k.key_id) for k in sm.keys} == {"inactive"}
    lease = sm.checkout()
    assert lease.lease_duration == 30 and lease.renewable
    assert lease.api_key in sm.values and lease.data["set"] == SET and lease.data["provider"] == "anthropic"
    assert sm.emu.key_status(lease.key_id) == "active" and sm.works(lease.api_key) == 200
    others = [k for k in sm.keys if k.key_id != lease.key_id]
    assert all(sm.works(k.secret) == 401 for k in others)  # keys at rest are inactive
    assert sm.states()[lease.key_id] == "checked_out"

    status, body = sm.renew(lease.lease_id, 90)
    assert status == 200 and body["lease_duration"] == 90, body
    assert sm.works(lease.api_key) == 200

    status, body = sm.revoke(lease.lease_id)
    assert status == 204, body
    assert sm.emu.key_status(lease.key_id) == "inactive" and sm.works(lease.api_key) == 401
    assert set(sm.states().values()) == {"free"}

    # Reads never show a value; neither does the server's log (the plugin's log goes there).
    status, body = sm.m.read(f"sets/{SET}")
    assert status == 200 and not any(v in repr(body) for v in sm.values)
    log = sm.m.server.log_path.read_text(errors="replace")
    assert not any(v in log for v in sm.values)


def test_expiry_deactivates_the_key_and_returns_it(sm: SetMount) -> None:
    sm.make_set(1, ttl="2s", max_ttl="1m")
    lease = sm.checkout()
    assert sm.works(lease.api_key) == 200
    sm.wait_status(lease.key_id, "inactive", timeout=20, what="Vault's expiry to deactivate the key")
    assert sm.works(lease.api_key) == 401
    wait_for(lambda: sm.states()[lease.key_id] == "free", timeout=5, what="the key to be free again")
    again = sm.checkout()  # the same key, lent again: a set is not a key per lease
    assert again.key_id == lease.key_id and again.api_key == lease.api_key and sm.works(again.api_key) == 200


def test_concurrent_reads_never_get_the_same_key(sm: SetMount) -> None:
    sm.make_set(5, ttl="1m", max_ttl="2m")
    results: list[tuple[int, dict[str, Any]]] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def read() -> None:
        start.wait()
        answer = sm.m.read(f"sets/{SET}/creds")
        with lock:
            results.append(answer)

    threads = [threading.Thread(target=read) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    granted = [body["data"]["key_id"] for status, body in results if status == 200]
    refused = [body for status, body in results if status == 429]
    assert sorted(granted) == sorted(k.key_id for k in sm.keys), results
    assert len(refused) == 3, results
    for body in refused:
        assert f"set '{SET}' has no free key: 5 of 5 are checked out" in errors_of(body)
    assert all(sm.emu.key_status(k.key_id) == "active" for k in sm.keys)
    # Every activation was one lease's: each key changed status exactly once.
    assert all(sm.emu.status_changes(k.key_id) == [("inactive", "active")] for k in sm.keys)


def test_a_failed_deactivation_is_retried_and_the_key_lent_to_no_one_meanwhile(sm: SetMount) -> None:
    sm.make_set(2, ttl="1m", max_ttl="2m")
    lease = sm.checkout()
    other = sm.checkout()
    sm.emu.set_faults(Fault.server_error(times=None, status=529, op="update"))
    status, body = sm.revoke(lease.lease_id)
    assert status >= 400 and "still active" in errors_of(body), (status, body)
    assert sm.emu.key_status(lease.key_id) == "active"
    assert sm.states() == {lease.key_id: "deactivating", other.key_id: "checked_out"}
    status, body = sm.m.read(f"sets/{SET}/creds")  # the key awaiting deactivation is lent to no one
    assert status == 429, (status, body)
    assert "1 of 2 are checked out, 1 await deactivation" in errors_of(body)

    # Anthropic answers again, but first drops the connection of the next deactivation (both of its tries).
    sm.emu.set_faults()
    sm.emu.drop_connection("update", times=2, after=False)
    sm.wait_status(lease.key_id, "inactive", timeout=40, what="the engine's retries to deactivate the key")
    wait_for(lambda: sm.states()[lease.key_id] == "free", timeout=5, what="the key to be free again")
    assert sm.works(lease.api_key) == 401
    status, body = sm.revoke(lease.lease_id)  # the lease itself now revokes at once
    assert status == 204, body
    assert sm.checkout().key_id == lease.key_id


def test_a_plugin_killed_mid_checkout_leaves_no_key_active_without_a_lease(sm: SetMount) -> None:
    sm.make_set(2, ttl="1m", max_ttl="2m")
    sm.emu.set_faults(Fault.latency(4.0, times=1, op="update"))  # the activation takes 4 s
    answer: list[tuple[int, dict[str, Any]]] = []
    reader = threading.Thread(target=lambda: answer.append(sm.m.read(f"sets/{SET}/creds")))
    began = time.monotonic()
    reader.start()
    held = wait_for(
        lambda: [k for k, state in sm.states().items() if state == "checked_out"],
        timeout=10,
        what="the check-out's hold",
    )
    for pid in sm.plugin_pids:
        os.kill(pid, signal.SIGKILL)
    reader.join(60)
    assert answer and answer[0][0] >= 500, answer  # the read died with the plugin: no lease
    # The emulator still carries the activation out (its answer goes nowhere): the key is active, unleased.
    sm.wait_status(held[0], "active", timeout=10, what="the lost activation to land")

    # Vault rolls a mount back at once on a remount (else on its once-a-minute tick): the WAL entry of the
    # check-out names it, and the rollback deactivates the key.
    time.sleep(max(0.0, began + WAL_MIN_AGE_SECONDS + 0.5 - time.monotonic()))
    api, source = sm.m.api, sm.m.path
    target = unique_mount_name("anthropic-remounted")
    status, body = api.call("PUT", "sys/remount", json={"from": source, "to": target})
    assert status == 200, body
    try:
        migration = body["data"]["migration_id"]
        info = wait_for(lambda: remount_done(api, migration), timeout=30, what="the remount")
        assert info["status"] == "success", info
        sm.wait_status(held[0], "inactive", timeout=20, what="the rollback to deactivate the key")
        status, body = api.call("GET", f"{target}/sets/{SET}")
        assert status == 200 and body["data"]["free"] == 2, body
        assert all(sm.emu.key_status(k.key_id) == "inactive" for k in sm.keys)
    finally:
        status, body = api.call("PUT", "sys/remount", json={"from": target, "to": source})
        if status == 200:
            back = body["data"]["migration_id"]
            wait_for(lambda: remount_done(api, back), timeout=30, what="the remount back")


def test_a_key_lent_before_a_plugin_restart_is_not_lent_again_after_it(sm: SetMount) -> None:
    sm.make_set(2, ttl="1m", max_ttl="2m")
    first = sm.checkout()
    for pid in sm.plugin_pids:
        os.kill(pid, signal.SIGKILL)
    for pid in sm.plugin_pids:
        wait_for(lambda pid=pid: is_gone(pid), timeout=10, what="the killed plugin process to be gone")

    def answer() -> tuple[int, dict[str, Any]] | None:
        status, body = sm.m.read(f"sets/{SET}/creds")  # a new plugin process answers, from storage
        return (status, body) if status in (200, 429) else None

    status, body = wait_for(answer, timeout=30, what="a new plugin process to answer")
    assert status == 200 and body["data"]["key_id"] != first.key_id, body
    status, body = sm.m.read(f"sets/{SET}/creds")
    assert status == 429 and "2 of 2 are checked out" in errors_of(body), body
    assert sm.works(first.api_key) == 200  # the first lease's key is still its own, still active
    status, body = sm.revoke(first.lease_id)
    assert status == 204, body
    assert sm.works(first.api_key) == 401


def test_the_sweep_deactivates_a_key_switched_on_without_a_lease(sm: SetMount) -> None:
    sm.make_set(2, ttl="1m", max_ttl="2m")
    lease = sm.checkout()
    stray = next(k for k in sm.keys if k.key_id != lease.key_id)
    sm.emu.set_status(stray.key_id, "active")  # someone switched it on in the console
    assert sm.works(stray.secret) == 200
    report = sm.m.tidy()
    assert [k["key_id"] for k in report["set_keys_deactivated"]] == [stray.key_id], report
    assert sm.works(stray.secret) == 401 and sm.works(lease.api_key) == 200


def test_roles_refuse_an_anthropic_connection_and_set_writes_are_checked(sm: SetMount) -> None:
    status, body = sm.m.write("roles/app", connection="main")
    assert status == 400 and "sets/<name>" in errors_of(body), body
    sm.make_set(1)
    unknown = {"apikey_01NoSuchKeyAtAll": "sk-ant-api03-nothing-here-AA"}
    status, body = sm.m.write(f"sets/{SET}", add_keys=unknown)
    assert status == 400 and "does not exist" in errors_of(body), body
    assert "sk-ant-api03-nothing" not in repr(body)
    status, body = sm.m.write(f"sets/{SET}", remove_keys=sm.keys[0].key_id)
    assert status in (200, 204), body
    status, body = sm.m.read(f"sets/{SET}/creds")
    assert status == 400 and "has no keys" in errors_of(body), body
    status, body = sm.m.call("GET", f"sets/{SET}", params={"help": "1"})
    assert status == 200 and "the SAME key value comes back" in body["help"], body
