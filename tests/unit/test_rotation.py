"""Admin-key rotation's state machine (llmsecrets/rotation.py) on an in-memory storage, a fake clock and the
emulators behind in-process transports: both phases, a crash at each step, a failed check, providers that
cannot rotate, the rotation period, and the in-flight gate of phase 2."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent / "engine"))
from engine_env import ADMIN_KEYS, Env
from llm_emulators import LiteLLMEmulator, OpenAIEmulator
from llmsecrets import rotation
from llmsecrets.models import ConnectionConfig, PendingAdminKey, WalKind
from llmsecrets.providers.http import InFlight
from llmsecrets.providers.openai import _redaction_of
from vaultplugin.framework import BadRequest, Operation, list_wal
from vaultplugin.framework.wal import get_wal

OLD = ADMIN_KEYS["openai"]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Env:
    # Phase 2 is driven by the tests (rotation.periodic), not by the rotation's own thread.
    started: list[tuple[str, str]] = []
    monkeypatch.setattr(
        rotation, "_retire_later", lambda _b, _s, name, old_id: started.append((name, old_id))
    )
    # A client handed out counts as "maybe about to call" for SETTLE_SECONDS of real time: none by default
    # here; the tests of that gate set it.
    monkeypatch.setattr(rotation, "SETTLE_SECONDS", 0.0)
    e = Env()
    e.connect("openai")
    e.role("openai", name="x")
    return e


def emu(env: Env) -> OpenAIEmulator:
    found = env.emus["openai"]
    assert isinstance(found, OpenAIEmulator)
    return found


def conn(env: Env) -> ConnectionConfig:
    found = env.backend.connection(env.storage, "openai")
    assert found is not None
    return found


def rotate(env: Env) -> dict[str, Any]:
    resp = env.write("config/openai/rotate")
    assert resp is not None
    return dict(resp.data)


def config(env: Env) -> dict[str, Any]:
    resp = env.read("config/openai")
    assert resp is not None
    return dict(resp.data)


def test_two_phases_switch_then_delete_the_old_key(env: Env) -> None:
    old_id = emu(env).live_admin_keys()[0][0]
    out = rotate(env)

    new = conn(env)
    assert out["previous_admin_key_id"] == old_id and out["admin_key_id"] == new.admin_key_id != old_id
    assert new.admin_key != OLD and new.admin_key.startswith("sk-admin-")
    assert emu(env).admin_key_works(new.admin_key)
    assert emu(env).admin_key_works(OLD)  # phase 1 only: the old key lives through the overlap
    seen = config(env)
    assert seen["admin_key_id"] == new.admin_key_id and seen["previous_admin_key_id"] == old_id
    assert seen["admin_key_rotated_at"] and seen["previous_admin_key_delete_by"]
    assert OLD not in repr(seen) and new.admin_key not in repr(seen)
    assert list_wal(env.storage) == []
    env.creds("x")  # issued with the new key

    rotation.periodic(env.backend, env.storage)  # nothing in flight with the old key: phase 2
    assert not emu(env).admin_key_works(OLD)
    assert [k for k, _ in emu(env).live_admin_keys()] == [new.admin_key_id]
    assert conn(env).previous_admin_key_id is None and config(env)["previous_admin_key_id"] == ""
    env.creds("x")


def test_the_old_key_waits_for_calls_in_flight_until_the_overlap_ends(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rotation, "SETTLE_SECONDS", 3600.0)
    env.creds("x")  # the old key's client is cached
    stale = conn(env)
    rotate(env)
    # A request that read the connection before the switch gets the old key's client, not a new one.
    old_client = env.backend.clients.get(stale)
    assert env.backend.clients.get(stale) is old_client
    assert not env.backend.clients.retired_idle("openai", rotation.SETTLE_SECONDS)  # handed out just now

    rotation.periodic(env.backend, env.storage)
    assert emu(env).admin_key_works(OLD)  # not deleted under a call that may be about to start
    env.clock.advance(61)  # past rotation_overlap: deleted whatever is in flight
    rotation.periodic(env.backend, env.storage)
    assert not emu(env).admin_key_works(OLD)


def test_retired_client_is_idle_only_without_calls_in_flight() -> None:
    from llmsecrets.clients import ClientCache

    e = Env()
    e.connect("openrouter")
    cache: ClientCache = e.backend.clients
    stale = e.backend.connection(e.storage, "openrouter")
    assert stale is not None
    cache.get(stale)
    cache.retire(stale)
    retired = cache._retired[next(iter(cache._retired))]
    assert isinstance(retired.in_flight, InFlight)
    with retired.in_flight:
        assert not cache.retired_idle("openrouter", 0.0)
    assert cache.retired_idle("openrouter", 0.0)
    assert not cache.retired_idle("openrouter", 60.0)  # set aside a moment ago
    cache.release("openrouter")
    assert cache.retired_idle("openrouter", 60.0)


def test_a_new_key_that_fails_its_check_is_deleted_and_the_old_key_stays(env: Env) -> None:
    old_id = emu(env).live_admin_keys()[0][0]
    env.write("config/openai", admin_key_id=old_id)  # so the only list call is the new key's check
    emu(env).faults.server_error(times=2, op="list")  # the check fails twice: both attempts
    with pytest.raises(BadRequest, match=r"failed its check.*old key stays in use"):
        rotate(env)
    assert conn(env).admin_key == OLD and conn(env).previous_admin_key_id is None
    assert [k for k, _ in emu(env).live_admin_keys()] == [old_id]
    assert list_wal(env.storage) == []
    env.creds("x")


def test_a_refused_create_changes_nothing(env: Env) -> None:
    emu(env).faults.server_error(times=None, op="create")
    with pytest.raises(Exception, match="rotating the admin key"):
        rotate(env)
    assert conn(env).admin_key == OLD and len(emu(env).live_admin_keys()) == 1
    assert list_wal(env.storage) == []


def test_crash_after_create_before_store_is_undone_by_the_rollback(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Crash(BaseException):
        pass

    def crash(*_: Any) -> None:
        raise Crash

    monkeypatch.setattr(env.backend.clients, "retire", crash)
    with pytest.raises(Crash):
        rotate(env)
    assert len(emu(env).live_admin_keys()) == 2  # the new key exists; nothing stored it
    [wal_id] = list_wal(env.storage)
    entry = get_wal(env.storage, wal_id)
    assert entry is not None and entry.kind == WalKind.ROTATE_ADMIN_KEY
    assert PendingAdminKey.from_wal(entry.data).key_name.startswith("vault-admin-1a2b3c4d-openai-")

    env.clock.advance(601)
    env.rollback()
    assert list_wal(env.storage) == []
    assert [n for _, n in emu(env).live_admin_keys()] == ["Dashboard admin key"]
    assert conn(env).admin_key == OLD and emu(env).admin_key_works(OLD)


def test_crash_after_store_keeps_the_new_key_and_finishes_phase_two(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Crash(BaseException):
        pass

    def crash(*_: Any) -> None:
        raise Crash

    monkeypatch.setattr(rotation, "delete_wal", crash)
    with pytest.raises(Crash):
        rotate(env)
    monkeypatch.undo()
    new = conn(env)
    assert new.admin_key != OLD and len(list_wal(env.storage)) == 1
    env.backend.clients.clear()  # a new plugin process: nothing in flight, nothing set aside

    env.clock.advance(601)
    env.rollback()  # the WAL entry is dropped (its key is in use); the periodic work deletes the old key
    assert list_wal(env.storage) == []
    assert [k for k, _ in emu(env).live_admin_keys()] == [new.admin_key_id]
    assert emu(env).admin_key_works(new.admin_key) and not emu(env).admin_key_works(OLD)


def test_crash_between_the_phases_is_finished_by_the_next_tick(env: Env) -> None:
    rotate(env)
    env.backend.clients.clear()  # the process died after phase 1
    env.rollback()
    new = conn(env)
    assert [k for k, _ in emu(env).live_admin_keys()] == [new.admin_key_id]
    assert new.previous_admin_key_id is None


def test_phase_two_retries_while_the_provider_fails(env: Env) -> None:
    rotate(env)
    emu(env).faults.server_error(times=None, op="delete")
    env.clock.advance(61)
    rotation.periodic(env.backend, env.storage)
    assert emu(env).admin_key_works(OLD) and conn(env).previous_admin_key_id is not None
    emu(env).faults.clear()
    rotation.periodic(env.backend, env.storage)
    assert not emu(env).admin_key_works(OLD) and conn(env).previous_admin_key_id is None


def test_a_second_rotation_waits_for_the_first_ones_old_key(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rotation, "SETTLE_SECONDS", 3600.0)
    env.creds("x")
    stale = conn(env)
    rotate(env)
    env.backend.clients.get(stale)  # a call may be about to start with the old key
    with pytest.raises(BadRequest, match="not deleted yet"):
        rotate(env)
    env.clock.advance(61)
    rotate(env)  # finishes the first rotation's phase 2 first
    assert len(emu(env).live_admin_keys()) == 2  # the key in use and the one it replaced


def test_rotation_period_rotates_on_the_tick(env: Env) -> None:
    env.write("config/openai", rotation_period="1h")
    rotation.periodic(env.backend, env.storage)
    assert conn(env).admin_key == OLD
    env.clock.advance(3601)
    rotation.periodic(env.backend, env.storage)
    assert conn(env).admin_key != OLD
    assert conn(env).admin_key_rotated_at == env.clock.now


def test_an_admin_key_shared_with_another_connection_is_not_rotated(env: Env) -> None:
    """Rotating deletes the old key: a second connection holding the same key would stop working."""
    env.connect("openai", name="openai-too")
    with pytest.raises(BadRequest, match=r"shares its admin key with 'openai-too'"):
        rotate(env)
    assert conn(env).admin_key == OLD and len(emu(env).live_admin_keys()) == 1
    assert list_wal(env.storage) == []


def test_providers_that_cannot_rotate_answer_400_saying_how(env: Env) -> None:
    env.connect("openrouter")
    with pytest.raises(BadRequest) as refused:
        env.write("config/openrouter/rotate")
    message = str(refused.value)
    assert "dashboard" in message and "bao write llm/config/openrouter admin_key=" in message
    with pytest.raises(BadRequest, match=r"rotation_period.*cannot be rotated"):
        env.write("config/openrouter", rotation_period="30d")


def test_a_written_key_that_fails_its_check_leaves_the_old_one(env: Env) -> None:
    env.connect("openrouter")
    env.role("openrouter", name="or")
    with pytest.raises(BadRequest):
        env.write("config/openrouter", admin_key="sk-or-v1-not-a-management-key")
    stored = env.backend.connection(env.storage, "openrouter")
    assert stored is not None and stored.admin_key == ADMIN_KEYS["openrouter"]
    env.creds("or")


def test_unknown_old_key_id_is_a_400_before_anything_is_created(env: Env) -> None:
    with emu(env)._lock:  # a second dashboard key that shows the same start and end as the stored one
        twin = type(next(iter(emu(env)._admin_keys.values())))(
            "key_twin", "twin", OLD[:8] + "x" + OLD[8:], 0.0
        )
        emu(env)._admin_keys[twin.key_id] = twin
    assert _redaction_of(twin.redacted(), OLD)
    with pytest.raises(BadRequest, match="admin_key_id=<id>"):
        rotate(env)
    assert len(emu(env).live_admin_keys()) == 2 and list_wal(env.storage) == []
    env.write("config/openai", admin_key_id="key_twin")
    rotate(env)
    assert conn(env).previous_admin_key_id == "key_twin"


def test_redaction_matching() -> None:
    assert _redaction_of("sk-admin...def", "sk-admin-0123456789abcdef")
    assert not _redaction_of("sk-admin...deg", "sk-admin-0123456789abcdef")
    assert not _redaction_of("sk-admin-0123456789abcdef", "sk-admin-0123456789abcdef")
    assert not _redaction_of("sk-admin...", "sk-admin-0123456789abcdef")
    assert not _redaction_of(None, "sk-admin-0123456789abcdef")


def test_records_without_rotation_fields_read_with_defaults() -> None:
    released = {
        "schema_version": 1,
        "name": "c",
        "provider": "openai",
        "admin_key": "k",
        "base_url": None,
        "organization_id": None,
        "allowed_roles": [],
    }
    conn = ConnectionConfig.from_storage(released)
    assert (conn.admin_key_id, conn.admin_key_rotated_at, conn.rotation_period) == (None, None, 0)
    assert conn.rotation_overlap == 60 and conn.previous_admin_key_id is None
    assert ConnectionConfig.from_storage(conn.to_storage()) == conn


def test_the_rotations_thread_deletes_the_old_key_once_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rotation, "SETTLE_SECONDS", 0.2)
    env = Env()
    env.connect("openai")
    env.write("config/openai/rotate")
    emulator = env.emus["openai"]
    assert isinstance(emulator, OpenAIEmulator)
    deadline = time.monotonic() + 10
    while emulator.admin_key_works(OLD) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not emulator.admin_key_works(OLD)
    for thread in threading.enumerate():
        if thread.name == "retire-admin-key-openai":
            thread.join(5)  # it clears previous_admin_key_id after the delete
    stored = env.backend.connection(env.storage, "openai")
    assert stored is not None and stored.previous_admin_key_id is None


def test_rotate_is_an_update_on_its_own_path(env: Env) -> None:
    routed = env.backend.route("config/openai/rotate")
    assert routed is not None and Operation.UPDATE in routed[0].operations
    assert "admin key" in (routed[0].synopsis or "")


def test_a_new_plugin_process_finishes_phase_two_on_initialize(monkeypatch: pytest.MonkeyPatch) -> None:
    env = Env()
    env.connect("openai")
    monkeypatch.setattr(rotation, "_retire_later", lambda *_: None)  # the crash: phase 2 never ran
    env.write("config/openai/rotate")
    monkeypatch.undo()
    emulator = env.emus["openai"]
    assert isinstance(emulator, OpenAIEmulator) and emulator.admin_key_works(OLD)
    env.backend.clients.clear()  # a new process: nothing set aside, nothing in flight
    env.backend.initialize(env.storage)
    wait_start = time.monotonic()
    while emulator.admin_key_works(OLD) and time.monotonic() - wait_start < 10:
        time.sleep(0.05)
    assert not emulator.admin_key_works(OLD) and len(emulator.live_admin_keys()) == 1


# --- LiteLLM: virtual keys of a proxy_admin user ----------------------------------------------------------


def litellm_admin_key(env: Env) -> str:
    """A virtual key of a proxy_admin user, made with the master key as an operator would."""
    emulator = env.emus["litellm"]
    assert isinstance(emulator, LiteLLMEmulator)
    emulator.add_user("vault-admin")
    with emulator.client(headers={"Authorization": f"Bearer {ADMIN_KEYS['litellm']}"}) as http:
        resp = http.post("/key/generate", json={"key_alias": "dashboard-admin", "user_id": "vault-admin"})
    assert resp.status_code == 200, resp.text
    return str(resp.json()["key"])


def test_litellm_rotates_a_proxy_admin_virtual_key(env: Env) -> None:
    emulator = env.emus["litellm"]
    assert isinstance(emulator, LiteLLMEmulator)
    old = litellm_admin_key(env)
    env.connect("litellm", admin_key=old)
    env.role("litellm", name="lt")
    env.write("config/litellm/rotate")
    new = env.backend.connection(env.storage, "litellm")
    assert new is not None and new.admin_key != old and emulator.admin_key_works(new.admin_key)
    assert emulator.find_key(new.admin_key_id or "") is not None
    env.creds("lt")
    rotation.periodic(env.backend, env.storage)
    assert not emulator.admin_key_works(old) and emulator.admin_key_works(new.admin_key)
    env.clock.advance(3600)  # an orphan of this mount this old would be swept
    env.write("tidy")  # the sweep never takes an admin key (its name is not under the mount's key prefix)
    assert emulator.admin_key_works(new.admin_key)


def test_litellm_master_key_is_not_rotated_and_the_answer_says_why(env: Env) -> None:
    env.connect("litellm")
    with pytest.raises(BadRequest, match=r"master key.*proxy_admin"):
        env.write("config/litellm/rotate")
    assert len(env.live("litellm")) == 0  # nothing was created


def test_a_second_rotation_while_one_runs_is_refused(env: Env) -> None:
    emu(env).faults.latency(1.0, times=1, op="create")  # the first rotation's create takes a second
    first = threading.Thread(target=lambda: rotate(env))
    first.start()
    time.sleep(0.3)
    with pytest.raises(BadRequest, match="a rotation of its admin key is running"):
        rotate(env)
    first.join(10)
    new = conn(env)
    assert new.admin_key != OLD
    assert {k for k, _ in emu(env).live_admin_keys()} == {new.admin_key_id, new.previous_admin_key_id}
