"""creds/<role>: issue, WAL discipline, index, revoke semantics and WAL rollback."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from engine_env import MOUNT_PREFIX, PROJECT, Env
from llmsecrets.models import IssuedKeyRecord
from vaultplugin.framework import (
    BadRequest,
    InMemoryStorage,
    Operation,
    Request,
    Unrecoverable,
    UnsupportedOperation,
    UnsupportedPath,
    UpstreamError,
    VaultError,
    list_wal,
)
from vaultplugin.transport import after_reply


def test_issue_for_every_provider(env: Env, provider: str) -> None:
    role = env.setup_provider(provider)
    resp = env.creds(role)
    data, secret = resp.data, resp.secret
    assert secret is not None
    live = env.live(provider)
    assert len(live) == 1
    key = live[0]
    assert data["api_key"] == key.secret
    assert data["key_id"] == key.key_id
    assert data["key_name"] == key.name
    assert key.name.startswith(MOUNT_PREFIX + role + "-")
    assert data["provider"] == provider and data["role"] == role and data["connection"] == provider
    assert secret.ttl == 600 and secret.max_ttl == 3600 and secret.renewable
    assert secret.internal_data == {
        "connection": provider,
        "provider": provider,
        "key_id": key.key_id,
        "scope": PROJECT if provider == "openai" else "",
        "role": role,
        "key_name": key.name,
        "secret_type": "llm_api_key",
    }
    # Index entry written, WAL cleaned up.
    assert env.storage.get(IssuedKeyRecord.storage_key(provider, key.key_id)) is not None
    assert list_wal(env.storage) == []


def test_provider_side_expiry(env: Env) -> None:
    now = env.clock()
    env.setup_provider("openrouter")
    resp = env.creds("openrouter-role")
    key = env.live("openrouter")[0]
    # Not extendable: expires max_ttl + grace after issue.
    assert key.expires_at is not None and abs(key.expires_at - (now + 3600 + 300)) < 2
    expires = datetime.fromisoformat(resp.data["expires_at"].replace("Z", "+00:00"))
    assert abs(expires.timestamp() - (now + 3600 + 300)) < 2

    env.setup_provider("litellm")
    resp = env.creds("litellm-role")
    key = env.live("litellm")[0]
    # Extendable: expires ttl + grace after issue; renew pushes it.
    assert key.expires_at is not None and abs(key.expires_at - (now + 600 + 300)) < 2

    env.setup_provider("openai")
    resp = env.creds("openai-role")
    key = env.live("openai")[0]
    # Not extendable either (expires_in_seconds is fixed at creation): max_ttl + grace after issue.
    assert key.expires_at is not None and abs(key.expires_at - (now + 3600 + 300)) < 2
    expires = datetime.fromisoformat(resp.data["expires_at"].replace("Z", "+00:00"))
    assert abs(expires.timestamp() - (now + 3600 + 300)) < 2


def test_per_key_controls_reach_the_provider(env: Env) -> None:
    env.connect("litellm")
    env.role("litellm", name="l", spend_limit=3, models="gpt-4o", metadata={"team": "ml"})
    env.creds("l")
    key = env.live("litellm")[0]
    assert key.max_budget == 3 and key.models == ("gpt-4o",) and dict(key.metadata) == {"team": "ml"}
    env.connect("openrouter")
    env.role("openrouter", name="o", spend_limit=1.5)
    env.creds("o")
    assert env.live("openrouter")[0].limit == 1.5


def test_name_template_and_display_name(env: Env) -> None:
    env.connect("openrouter")
    env.role("openrouter", name="r", name_template="{{display_name}}.{{random}}")
    resp = env.creds("r")
    name = resp.data["key_name"]
    assert name.startswith(MOUNT_PREFIX + "token-my-app.")
    assert len(name) == len(MOUNT_PREFIX + "token-my-app.") + 8


def test_unknown_role_is_400_naming_it(env: Env) -> None:
    with pytest.raises(BadRequest, match="unknown role 'ghost'"):
        env.read("creds/ghost")


def test_role_not_in_allowed_roles_is_400(env: Env) -> None:
    env.connect("openrouter", allowed_roles="other")
    env.role("openrouter", name="r")
    with pytest.raises(BadRequest, match="allowed_roles"):
        env.read("creds/r")
    assert env.live("openrouter") == []
    env.write("config/openrouter", allowed_roles="*")
    env.creds("r")


def test_role_whose_connection_is_gone_is_400(env: Env) -> None:
    env.connect("openrouter")
    env.role("openrouter", name="r")
    env.delete("config/openrouter")
    with pytest.raises(BadRequest, match="connection 'openrouter', which does not exist"):
        env.read("creds/r")


def test_minimal_storage_calls_per_read(env: Env) -> None:
    role = env.setup_provider("openrouter")
    env.creds(role)  # warm the caches
    calls: list[tuple[str, str]] = []
    real = env.storage

    class Counting(InMemoryStorage):
        def get(self, key: str) -> bytes | None:
            calls.append(("get", key))
            return real.get(key)

        def put(self, key: str, value: bytes) -> None:
            calls.append(("put", key))
            real.put(key, value)

        def delete(self, key: str) -> None:
            calls.append(("delete", key))
            real.delete(key)

        def list(self, prefix: str) -> list[str]:
            calls.append(("list", prefix))
            return real.list(prefix)

    env.system.calls = 0
    with after_reply.collecting() as deferred:  # as the gRPC server runs a call
        env.backend.handle_request(
            Request(operation=Operation.READ, path=f"creds/{role}", storage=Counting())
        )
    # The WAL entry's deletion waits for the reply: in an HA cluster every write is a Raft commit.
    assert [(op, key.split("/")[0]) for op, key in calls] == [("put", "wal"), ("put", "keys")]
    after_reply.run(deferred)
    ops = [(op, key.split("/")[0]) for op, key in calls]
    assert ops == [("put", "wal"), ("put", "keys"), ("delete", "wal")]
    assert env.system.calls == 0  # the role sets both TTLs: no need to ask Vault for the mount's


def test_a_role_without_ttls_takes_the_mounts(env: Env) -> None:
    env.connect("openrouter")
    env.role("openrouter", ttl="0", max_ttl="0")
    env.system.default_ttl, env.system.max_ttl = 600, 1800
    resp = env.creds("openrouter-role")
    assert resp.secret is not None
    assert (resp.secret.ttl, resp.secret.max_ttl) == (600, 1800)


# --- create failures and the WAL ---------------------------------------------------------------------------


def test_definitive_create_failure_is_502_and_leaves_no_wal(env: Env) -> None:
    role = env.setup_provider("openrouter")
    env.emus["openrouter"].faults.rate_limit(times=None, op="create")
    with pytest.raises(UpstreamError, match="rate limited"):
        env.read(f"creds/{role}")
    assert list_wal(env.storage) == []
    assert env.live("openrouter") == []


def test_rejected_create_is_400(env: Env) -> None:
    role = env.setup_provider("openai")
    env.emus["openai"].archive_project(PROJECT)  # type: ignore[attr-defined]
    with pytest.raises(BadRequest, match="refused the request"):
        env.read(f"creds/{role}")
    assert list_wal(env.storage) == []


def test_revoked_admin_key_on_create_is_502(env: Env) -> None:
    role = env.setup_provider("litellm")
    env.emus["litellm"].revoke_admin_key()
    with pytest.raises(UpstreamError, match="refused the admin key"):
        env.read(f"creds/{role}")
    assert list_wal(env.storage) == []


def test_lost_create_response_is_rolled_back_by_name(env: Env, provider: str) -> None:
    role = env.setup_provider(provider)
    other = env.creds(role)  # a live key that rollback must not touch
    env.emus[provider].faults.drop_after_create()
    with pytest.raises(UpstreamError, match="may have been created"):
        env.read(f"creds/{role}")
    assert len(env.live(provider)) == 2
    assert len(list_wal(env.storage)) == 1
    env.rollback()  # too young: the framework waits 10 minutes
    assert len(env.live(provider)) == 2
    env.clock.advance(601)
    env.rollback()
    assert env.live_ids(provider) == {other.data["key_id"]}
    assert list_wal(env.storage) == []


def test_rollback_keeps_wal_while_the_provider_fails(env: Env) -> None:
    role = env.setup_provider("openrouter")
    env.emus["openrouter"].faults.drop_after_create()
    with pytest.raises(UpstreamError):
        env.read(f"creds/{role}")
    env.clock.advance(601)
    env.emus["openrouter"].faults.server_error(times=None)
    env.rollback()
    assert len(list_wal(env.storage)) == 1
    assert len(env.live("openrouter")) == 1
    env.emus["openrouter"].faults.clear()
    env.rollback()
    assert list_wal(env.storage) == []
    assert env.live("openrouter") == []


def test_index_write_failure_deletes_the_new_key(env: Env) -> None:
    role = env.setup_provider("openrouter")
    real = env.storage

    class FailingIndex(InMemoryStorage):
        def get(self, key: str) -> bytes | None:
            return real.get(key)

        def put(self, key: str, value: bytes) -> None:
            if key.startswith("keys/"):
                raise OSError("storage is down")
            real.put(key, value)

        def delete(self, key: str) -> None:
            real.delete(key)

        def list(self, prefix: str) -> list[str]:
            return real.list(prefix)

    with pytest.raises(OSError):
        env.backend.handle_request(
            Request(operation=Operation.READ, path=f"creds/{role}", storage=FailingIndex())
        )
    assert env.live("openrouter") == []


def test_rollback_leaves_an_indexed_key_to_its_lease(env: Env) -> None:
    # The process died after the reply, before the WAL entry's deletion: a lease may own the key.
    role = env.setup_provider("openrouter")
    with after_reply.collecting():  # the deferred WAL delete never runs
        resp = env.creds(role)
    assert len(list_wal(env.storage)) == 1
    env.clock.advance(601)
    env.rollback()
    assert list_wal(env.storage) == []
    assert env.live_ids("openrouter") == {resp.data["key_id"]}
    assert env.revoke(resp) is None
    assert env.live("openrouter") == []


# --- revoke ------------------------------------------------------------------------------------------------


def test_a_revoke_deletes_the_key_before_its_reply_and_the_index_entry_after(env: Env) -> None:
    role = env.setup_provider("openrouter")
    resp = env.creds(role)
    index_key = IssuedKeyRecord.storage_key("openrouter", resp.data["key_id"])
    with after_reply.collecting() as deferred:  # as the gRPC server runs a call
        assert env.revoke(resp) is None
    assert env.live("openrouter") == []
    assert env.storage.get(index_key) is not None
    after_reply.run(deferred)
    assert env.storage.get(index_key) is None


def test_revoke_deletes_at_the_provider_and_twice_is_fine(env: Env, provider: str) -> None:
    role = env.setup_provider(provider)
    keep = env.creds(role)
    resp = env.creds(role)
    assert env.revoke(resp) is None
    assert env.live_ids(provider) == {keep.data["key_id"]}
    assert env.storage.get(IssuedKeyRecord.storage_key(provider, resp.data["key_id"])) is None
    assert env.revoke(resp) is None  # already gone = success
    assert env.emus[provider].deleted_key_ids() == [resp.data["key_id"]]


@pytest.mark.parametrize("fault", ["server_error", "rate_limit", "revoke_admin_key"])
def test_revoke_during_outage_is_retryable_then_succeeds(env: Env, provider: str, fault: str) -> None:
    role = env.setup_provider(provider)
    resp = env.creds(role)
    emu = env.emus[provider]
    faults: Any = emu.faults
    getattr(faults, fault)(
        times=None, op="delete"
    ) if fault != "revoke_admin_key" else faults.revoke_admin_key()
    with pytest.raises(VaultError) as err:
        env.revoke(resp)
    assert isinstance(err.value, UpstreamError)
    assert err.value.code == 502
    assert not isinstance(err.value, BadRequest | UnsupportedPath | UnsupportedOperation | Unrecoverable)
    assert len(env.live(provider)) == 1
    assert env.storage.get(IssuedKeyRecord.storage_key(provider, resp.data["key_id"])) is not None
    emu.faults.clear()
    env.revoke(resp)
    assert env.live(provider) == []


def test_revoke_right_after_create_needs_only_the_lease(env: Env) -> None:
    role = env.setup_provider("litellm")
    resp = env.creds(role)
    fresh = Env()  # a restarted plugin: empty caches
    fresh.storage = env.storage
    fresh.emus = env.emus
    fresh.revoke(resp)
    assert env.live("litellm") == []


def test_revoke_without_connection_is_retryable_and_explains(env: Env) -> None:
    role = env.setup_provider("openrouter")
    resp = env.creds(role)
    env.storage.delete("config/openrouter")  # bypassing the guard, as a bad restore would
    env.backend.invalidate("config/openrouter")
    with pytest.raises(VaultError) as err:
        env.revoke(resp)
    assert type(err.value) is VaultError
    assert "config/openrouter" in err.value.message


def test_revoke_with_foreign_internal_data_is_retryable(env: Env) -> None:
    req = Request(
        operation=Operation.REVOKE,
        path="creds/x",
        storage=env.storage,
        secret=env.lease(_fake_response()),
    )
    with pytest.raises(VaultError) as err:
        env.backend.handle_request(req)
    assert type(err.value) is VaultError


def _fake_response() -> Any:
    from vaultplugin.framework import Response, Secret

    return Response(data={}, secret=Secret(internal_data={"secret_type": "llm_api_key", "key_id": 5}))
