"""Admin-key rotation end to end: the engine plugin on a real OpenBao, provider emulators on loopback.

- OpenAI, under load (4 clients issuing and revoking creds throughout): config/<name>/rotate switches to a
  new admin key with no failed request, the old key is refused at the emulator once its calls are over,
  and exactly one admin key is left;
- the plugin SIGKILLed between the phases (a creds read holds the old key in flight, so the old key is not
  deleted yet): with no request sent, the plugin OpenBao restarts on its rollback tick deletes the old key,
  one admin key is left, and creds work;
- a new key that fails its check is deleted again and the old one stays in use;
- LiteLLM: a virtual key of a proxy_admin user is rotated the same way (the master key is refused, saying
  why);
- OpenRouter cannot make management keys: rotate answers 400 saying how to rotate by hand, and a written
  key that fails its check leaves the old one in place.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest
from devkit.bao import BaoServer
from engine_support import BuiltEngine, EngineMount, Unmounter, VaultApi, engine_mount, errors_of
from llm_emulators import LiteLLMEmulator, OpenAIEmulator
from llm_emulators.core import Fault
from rotation_support import Load, admin_status, kill_tree, plugin_roots, wait_until

pytestmark = pytest.mark.timeout(180)


def openai_emulator(mount: EngineMount) -> OpenAIEmulator:
    assert isinstance(mount.emulator, OpenAIEmulator)
    return mount.emulator


def config(mount: EngineMount) -> dict[str, Any]:
    status, body = mount.read("config/main")
    assert status == 200, body
    return dict(body["data"])


def test_rotation_under_load_fails_no_request_and_kills_the_old_key(
    bao: BaoServer, api: VaultApi, unmounter: Unmounter
) -> None:
    with engine_mount(bao, api, unmounter, "openai", "under-load") as mount:
        mount.configure()
        mount.add_role("app", ttl="5m", max_ttl="10m")
        emulator = openai_emulator(mount)
        [(old_id, _)] = emulator.live_admin_keys()
        load = Load(mount, "app", clients=4).start()
        try:
            wait_until("some creds issued and revoked", lambda: load.done >= 20, 30)
            status, body = mount.write("config/main/rotate")
            assert status == 200, body
            rotated = body["data"]
            assert rotated["previous_admin_key_id"] == old_id
            new_id = rotated["admin_key_id"]
            assert new_id != old_id and {k for k, _ in emulator.live_admin_keys()} == {old_id, new_id}
            issued_at_rotation = load.done
            # Phase 2: the old key is deleted once its calls are over (seconds), within the 60 s overlap.
            seconds = wait_until(
                "the old admin key deleted", lambda: not emulator.admin_key_works(mount.admin_key), 70
            )
            wait_until("more creds after the deletion", lambda: load.done >= issued_at_rotation + 40, 60)
        finally:
            load.stop()
        assert load.failures == [], load.failures[:5]
        print(f"\nold admin key deleted {seconds:.1f} s after the rotation; {load.done} creds issued+revoked")

        assert admin_status(mount, mount.admin_key) == 401  # refused by the provider at once
        assert [k for k, _ in emulator.live_admin_keys()] == [new_id]
        seen = config(mount)
        assert seen["admin_key_id"] == new_id and seen["previous_admin_key_id"] == ""
        assert seen["admin_key_rotated_at"], seen
        lease = mount.creds("app")  # minted with the new key
        assert mount.infer(lease.api_key) == 200


def test_crash_between_the_phases_leaves_exactly_one_admin_key(
    bao: BaoServer, api: VaultApi, unmounter: Unmounter, engine_plugin: BuiltEngine
) -> None:
    before = plugin_roots(bao, engine_plugin)
    with engine_mount(bao, api, unmounter, "openai", "crash") as mount:
        mount.configure()
        mount.add_role("app")
        mount.creds("app")  # the old key's client is cached and used
        [pid] = plugin_roots(bao, engine_plugin) - before
        emulator = openai_emulator(mount)
        [(old_id, _)] = emulator.live_admin_keys()

        # A creds read whose create is slow at the provider: a call in flight with the old key, so phase 2
        # waits for it (at most the 60 s overlap) and the kill lands between the phases.
        emulator.faults.add(Fault.latency(10.0, times=1, op="create"))
        slow = threading.Thread(target=lambda: mount.read("creds/app"), daemon=True)
        slow.start()
        time.sleep(1.0)
        status, body = mount.write("config/main/rotate")
        assert status == 200, body
        new_id = body["data"]["admin_key_id"]
        kill_tree(pid)
        assert {k for k, _ in emulator.live_admin_keys()} == {old_id, new_id}  # phase 2 had not run
        assert emulator.admin_key_works(mount.admin_key)

        # No request is sent: OpenBao's rollback tick (once a minute) starts a new plugin process, which
        # finishes phase 2 (nothing is in flight with the old key there).
        seconds = wait_until(
            "the old admin key deleted after the restart",
            lambda: not emulator.admin_key_works(mount.admin_key),
            90,
            step=0.5,
        )
        print(f"\nold admin key deleted {seconds:.1f} s after the kill, with no request in between")
        slow.join(30)
        assert [k for k, _ in emulator.live_admin_keys()] == [new_id]
        assert admin_status(mount, mount.admin_key) == 401
        assert config(mount)["previous_admin_key_id"] == ""
        assert mount.infer(mount.creds("app").api_key) == 200


def test_a_new_key_that_fails_its_check_leaves_the_old_one(
    bao: BaoServer, api: VaultApi, unmounter: Unmounter
) -> None:
    with engine_mount(bao, api, unmounter, "openai", "bad-new-key") as mount:
        mount.configure()
        mount.add_role("app")
        emulator = openai_emulator(mount)
        [(old_id, _)] = emulator.live_admin_keys()
        mount.must_write("config/main", admin_key_id=old_id)  # no list call before the new key's check
        emulator.faults.add(Fault.server_error(times=None, op="list"))  # the check is a list call
        status, body = mount.write("config/main/rotate")
        emulator.faults.clear()
        assert status == 400, body
        assert "failed its check" in errors_of(body) and "old key stays in use" in errors_of(body)
        assert [k for k, _ in emulator.live_admin_keys()] == [old_id]  # the new key was deleted again
        assert config(mount)["admin_key_id"] == old_id
        assert mount.infer(mount.creds("app").api_key) == 200


def test_openrouter_cannot_rotate_and_says_how(bao: BaoServer, api: VaultApi, unmounter: Unmounter) -> None:
    with engine_mount(bao, api, unmounter, "openrouter", "by-hand") as mount:
        mount.configure()
        mount.add_role("app")
        status, body = mount.write("config/main/rotate")
        assert status == 400, body
        message = errors_of(body)
        assert "dashboard" in message and f"bao write {mount.path}/config/main admin_key=" in message

        status, body = mount.write("config/main", admin_key="not-a-management-key")
        assert status == 400, body  # checked before it replaces the stored key
        assert mount.infer(mount.creds("app").api_key) == 200  # the old key still mints keys

        status, body = mount.write("config/main", rotation_period="30d")
        assert status == 400 and "rotation_period" in errors_of(body), body


def test_litellm_rotates_a_proxy_admin_virtual_key(
    bao: BaoServer, api: VaultApi, unmounter: Unmounter
) -> None:
    with engine_mount(bao, api, unmounter, "litellm", "virtual-admin") as mount:
        emulator = mount.emulator
        assert isinstance(emulator, LiteLLMEmulator)
        mount.configure()  # with the proxy's master key: not rotated
        status, body = mount.write("config/main/rotate")
        assert status == 400 and "master key" in errors_of(body), body

        emulator.add_user("vault-admin")  # a proxy_admin user, and a virtual key of it made by the operator
        resp = httpx.post(
            mount.emu_server.url + "/key/generate",
            headers={"Authorization": f"Bearer {mount.admin_key}"},
            json={"key_alias": "vault-admin-key", "user_id": "vault-admin"},
            timeout=10,
        )
        assert resp.status_code == 200, resp.text
        old = resp.json()["key"]
        mount.must_write("config/main", admin_key=old)
        mount.add_role("app")
        status, body = mount.write("config/main/rotate")
        assert status == 200, body
        wait_until("the old virtual admin key deleted", lambda: not emulator.admin_key_works(old), 70)
        new_id = body["data"]["admin_key_id"]
        assert emulator.find_key(new_id) is not None  # the new admin key, alive at the proxy
        assert mount.infer(mount.creds("app").api_key) == 200
