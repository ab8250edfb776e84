"""The deletion queue: a revoke that fails at the provider is recorded in storage and retried by the engine
until the key is gone, whatever Vault does next; a synchronous revoke never reports a live key as revoked.

Every test drives the retrier's passes itself (`Env` runs no retrier thread) on the fake clock.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import pytest
from engine_env import Env
from llm_emulators.core import Fault
from llmsecrets import deletions
from llmsecrets.leases import lease_ended
from llmsecrets.models import IssuedKeyRecord, PendingDeletion
from llmsecrets.providers.errors import ProviderRejected
from vaultplugin.framework import (
    BadRequest,
    InMemoryStorage,
    LeaseInfo,
    Operation,
    Request,
    Response,
    StorageError,
    Unrecoverable,
    UnsupportedOperation,
    UnsupportedPath,
    UpstreamError,
    VaultError,
)

TTL = 600  # the harness's roles: ttl 10m, max_ttl 1h


def outage(env: Env, provider: str, calls: int = 100_000) -> Fault:
    """Every admin call of `provider` answers 503 (for `calls` calls); `calls - fault.times` counts them."""
    return env.emus[provider].faults.server_error(times=calls, status=503)


def provider_back(env: Env, provider: str) -> None:
    env.emus[provider].faults.clear()


def queue(env: Env) -> list[PendingDeletion]:
    return env.backend.deletions.listing(env.storage)


def listed(env: Env) -> dict[str, Any]:
    resp = env.list_keys("deletions/")
    assert resp is not None
    return resp.data


def run_pass(env: Env) -> int:
    return env.backend.deletions.run_pass(env.storage)


def index_of(env: Env, provider: str, resp: Response) -> bytes | None:
    return env.storage.get(IssuedKeyRecord.storage_key(provider, resp.data["key_id"]))


def tick_until_deleted(env: Env, provider: str, key_id: str, *, limit: float = 60) -> float:
    """Advance the fake clock a second at a time, one pass each, until the key is gone; the seconds taken."""
    waited = 0.0
    while env.emus[provider].find_key(key_id) is not None:
        assert waited < limit, f"key {key_id} still live after {limit}s of passes"
        env.clock.advance(1)
        waited += 1
        run_pass(env)
    return waited


# --- revoke -------------------------------------------------------------------------------------------------


def test_revoke_of_an_ended_lease_during_an_outage_is_done_and_the_engine_deletes_the_key(
    env: Env, provider: str
) -> None:
    role = env.setup_provider(provider)
    resp = env.creds(role)
    key_id = resp.data["key_id"]
    outage(env, provider)
    env.clock.advance(TTL + 1)  # Vault's expiry revoke

    assert env.revoke(resp) is None  # Vault drops the lease: nothing left for its retries to exhaust

    assert env.emus[provider].find_key(key_id) is not None  # still live: the provider is down
    [entry] = queue(env)
    assert (entry.connection, entry.key_id, entry.key_name) == (provider, key_id, resp.data["key_name"])
    assert entry.reason == "lease_ended" and not entry.vault_waiting and entry.done_at is None
    assert entry.attempts == 1 and "503" in entry.last_error
    assert index_of(env, provider, resp) is not None  # still counted as a live key (config delete refuses)

    run_pass(env)  # still down
    assert env.emus[provider].find_key(key_id) is not None
    provider_back(env, provider)
    waited = tick_until_deleted(env, provider, key_id)
    assert waited <= deletions.RETRY_CAP * (1 + deletions.JITTER) + 1
    assert queue(env) == []
    assert index_of(env, provider, resp) is None
    assert env.revoke(resp) is None  # a late revoke (Vault's, or a user's) is still fine


@pytest.mark.parametrize("fault", ["server_error", "rate_limit", "revoke_admin_key"])
def test_sync_revoke_of_a_running_lease_fails_while_the_key_is_live(
    env: Env, provider: str, fault: str
) -> None:
    role = env.setup_provider(provider)
    resp = env.creds(role)
    key_id = resp.data["key_id"]
    faults: Any = env.emus[provider].faults
    if fault == "revoke_admin_key":
        faults.revoke_admin_key()
    else:
        getattr(faults, fault)(times=None, op="delete")

    for _ in range(2):  # asking again changes nothing while the provider fails
        with pytest.raises(VaultError) as err:
            env.revoke(resp)
        assert isinstance(err.value, UpstreamError) and err.value.code == 502
        assert not isinstance(err.value, BadRequest | UnsupportedPath | UnsupportedOperation | Unrecoverable)
        assert "still live" in err.value.message and "queued" in err.value.message
        assert provider in err.value.message
    assert env.emus[provider].find_key(key_id) is not None
    [entry] = queue(env)
    assert entry.reason == "revoke" and entry.vault_waiting and entry.attempts == 2

    # Nobody asks again (a sync revoke is retried by Vault only at expiry; revoke-force gives up): the
    # engine deletes the key anyway, and keeps a tombstone for Vault's next try.
    env.emus[provider].faults.clear()
    tick_until_deleted(env, provider, key_id)
    [tombstone] = queue(env)
    assert tombstone.done_at is not None and tombstone.last_error == ""
    assert listed(env)["key_info"][f"{provider}/{key_id}"]["state"] == "deleted"

    deletes_before = env.emus[provider].delete_count
    faults = outage(env, provider)  # even with the provider down again, the revoke now succeeds...
    assert env.revoke(resp) is None
    assert faults.times == 100_000  # ...without a provider call: the key is known to be gone
    assert env.emus[provider].delete_count == deletes_before
    assert queue(env) == []  # Vault has dropped the lease: the tombstone is not needed any more


def test_revoke_without_its_connection_queues_and_explains(env: Env) -> None:
    role = env.setup_provider("openrouter")
    resp = env.creds(role)
    conn_record = env.storage.get("config/openrouter")
    env.storage.delete("config/openrouter")  # bypassing the guard, as a bad restore would
    env.backend.invalidate("config/openrouter")
    with pytest.raises(VaultError) as err:
        env.revoke(resp)
    assert type(err.value) is VaultError and "config/openrouter" in err.value.message
    [entry] = queue(env)
    assert "no longer exists" in entry.last_error

    env.clock.advance(2)
    run_pass(env)
    assert "no longer exists" in queue(env)[0].last_error
    assert queue(env)[0].attempts == 2

    assert conn_record is not None
    env.storage.put("config/openrouter", conn_record)  # the operator writes the connection again
    env.backend.invalidate("config/openrouter")
    tick_until_deleted(env, "openrouter", resp.data["key_id"])


class FailingDeletionWrites(InMemoryStorage):
    """A copy of `source` whose writes under deletions/ fail, as a read-only (standby) barrier's would."""

    def __init__(self, source: InMemoryStorage) -> None:
        super().__init__()
        for key in list(source.keys()):
            super().put(key, source.get(key) or b"")

    def put(self, key: str, value: bytes) -> None:
        if key.startswith("deletions/"):
            raise StorageError("storage put failed: cannot write to readonly storage")
        super().put(key, value)


def test_an_ended_lease_is_never_reported_revoked_without_the_durable_record(env: Env) -> None:
    role = env.setup_provider("litellm")
    resp = env.creds(role)
    env.storage = FailingDeletionWrites(env.storage)
    outage(env, "litellm")
    env.clock.advance(TTL + 1)
    with pytest.raises(VaultError) as err:
        env.revoke(resp)
    assert not isinstance(err.value, BadRequest | Unrecoverable)
    assert "could not be queued" in err.value.message and "Vault will retry" in err.value.message


def test_during_a_known_outage_an_ended_lease_is_queued_without_a_provider_call(env: Env) -> None:
    role = env.setup_provider("openrouter")
    leases = [env.creds(role) for _ in range(5)]
    fault = outage(env, "openrouter")
    env.clock.advance(TTL + 1)
    env.revoke(leases[0])
    calls = 100_000 - fault.times
    assert calls == 4  # the spend read, then the delete (still tried): 2 attempts each (harness retries)
    for resp in leases[1:]:
        assert env.revoke(resp) is None
    assert 100_000 - fault.times == calls  # Vault's revokes of the rest cost no provider call
    assert len(queue(env)) == 5

    assert sorted(e.attempts for e in queue(env)) == [0, 0, 0, 0, 1]
    env.clock.advance(deletions.RETRY_CAP * (1 + deletions.JITTER))
    run_pass(env)  # one probe for the connection, not one per key
    assert 100_000 - fault.times == calls + 2
    provider_back(env, "openrouter")
    env.clock.advance(deletions.RETRY_CAP * (1 + deletions.JITTER))
    assert run_pass(env) == 5
    assert env.live("openrouter") == [] and queue(env) == []


def test_queued_key_cannot_be_renewed(env: Env) -> None:
    role = env.setup_provider("litellm")
    resp = env.creds(role)
    outage(env, "litellm")
    with pytest.raises(UpstreamError):
        env.revoke(resp)
    provider_back(env, "litellm")
    with pytest.raises(BadRequest, match="being deleted"):
        env.renew(resp, increment=600)


# --- lease end ----------------------------------------------------------------------------------------------


def lease(ttl: float, issued: float, internal: dict[str, Any] | None = None) -> LeaseInfo:
    return LeaseInfo(internal_data=internal or {}, ttl=ttl, issue_time=datetime.fromtimestamp(issued, UTC))


def test_lease_end_is_issue_time_plus_ttl_or_last_renewal_plus_ttl() -> None:
    assert not lease_ended(lease(60, 1000), 1059.9)
    assert lease_ended(lease(60, 1000), 1060)
    renewed = lease(60, 1000, {"renewed_at": 1050.0})
    assert not lease_ended(renewed, 1100)
    assert lease_ended(renewed, 1110)
    # Unknown counts as running: the answer that never calls a live key revoked.
    assert not lease_ended(lease(0, 1000), 10**10)
    assert not lease_ended(LeaseInfo(internal_data={}, ttl=60, issue_time=None), 10**10)
    assert lease_ended(lease(60, 1000, {"renewed_at": True}), 1070)  # not a time: the issue time counts


def test_revoke_after_a_renewal_counts_from_the_renewal(env: Env) -> None:
    role = env.setup_provider("openrouter")
    resp = env.creds(role)
    env.clock.advance(500)
    renewed = env.renew(resp, increment=600)
    assert renewed.secret is not None
    env.clock.advance(200)  # 700 s after issue, 200 s into the renewed TTL: still running
    outage(env, "openrouter")
    req = Request(
        operation=Operation.REVOKE,
        path="creds/x",
        data=dict(resp.data),
        storage=env.storage,
        secret=LeaseInfo(
            internal_data=dict(renewed.secret.internal_data),
            ttl=renewed.secret.ttl,
            issue_time=resp.secret.issue_time if resp.secret else None,
        ),
    )
    with pytest.raises(UpstreamError, match="still live"):
        env.backend.handle_request(req)
    env.clock.advance(401)  # past renewal + TTL: Vault's expiry
    assert env.backend.handle_request(req) is None


# --- the retrier --------------------------------------------------------------------------------------------


def test_a_thirty_minute_outage_costs_one_probe_every_few_seconds_and_nothing_is_given_up(env: Env) -> None:
    """The "outages up to 30 minutes" goal on a fake clock: the queue retries on its own schedule for as long
    as it takes (OpenAI keys never expire at the provider, so nothing else would delete them)."""
    role = env.setup_provider("openai")
    leases = [env.creds(role) for _ in range(3)]
    fault = outage(env, "openai")
    env.clock.advance(TTL + 1)
    for resp in leases:
        assert env.revoke(resp) is None
    start = 100_000 - fault.times
    for _ in range(1800):
        env.clock.advance(1)
        run_pass(env)
    probes = (100_000 - fault.times - start) // 2  # 2 HTTP calls per probe (the harness's retry policy)
    assert 1800 / (deletions.RETRY_CAP * (1 + deletions.JITTER)) - 1 <= probes <= 1800 / 7
    assert len(env.live("openai")) == 3 and len(queue(env)) == 3
    entry = queue(env)[0]
    assert entry.attempts >= probes and "503" in entry.last_error and entry.next_attempt_at is not None
    provider_back(env, "openai")
    waited = 0
    while env.live("openai"):
        env.clock.advance(1)
        waited += 1
        run_pass(env)
    assert waited <= deletions.RETRY_CAP * (1 + deletions.JITTER) + 1
    assert queue(env) == []


def test_a_key_the_provider_expired_by_itself_leaves_the_queue_without_a_call(env: Env) -> None:
    role = env.setup_provider("openrouter")  # OpenRouter keys expire at max TTL + 5 min
    resp = env.creds(role)
    outage(env, "openrouter")
    env.clock.advance(TTL + 1)
    env.revoke(resp)
    [entry] = queue(env)
    assert entry.expires_by is not None
    env.clock.advance(entry.expires_by - env.clock() + deletions.EXPIRY_MARGIN + 1)
    fault = outage(env, "openrouter", calls=10)
    run_pass(env)
    assert fault.times == 10
    assert queue(env) == [] and index_of(env, "openrouter", resp) is None


def test_the_queue_survives_a_plugin_restart(env: Env) -> None:
    role = env.setup_provider("litellm")
    resp = env.creds(role)
    outage(env, "litellm")
    env.clock.advance(TTL + 1)
    env.revoke(resp)
    provider_back(env, "litellm")

    fresh = Env()  # a new plugin process: nothing in memory
    fresh.emus = env.emus
    fresh.clock = env.clock
    fresh.backend.clock = env.clock
    fresh.storage = env.storage
    fresh.backend.initialize(env.storage)  # Vault initializes every plugin process it starts
    assert fresh.backend.deletions.run_pass(env.storage) == 1
    assert env.live("litellm") == [] and queue(fresh) == []


def test_the_rollback_tick_runs_the_queue(env: Env) -> None:
    role = env.setup_provider("litellm")
    resp = env.creds(role)
    outage(env, "litellm")
    env.clock.advance(TTL + 1)
    env.revoke(resp)
    provider_back(env, "litellm")
    env.clock.advance(deletions.RETRY_CAP * 2)
    env.rollback()
    assert env.live("litellm") == [] and queue(env) == []


def test_a_node_that_may_not_act_never_calls_the_provider(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    role = env.setup_provider("openrouter")
    resp = env.creds(role)
    outage(env, "openrouter")
    env.clock.advance(TTL + 1)
    env.revoke(resp)
    provider_back(env, "openrouter")
    env.clock.advance(60)
    fault = outage(env, "openrouter", calls=10)
    monkeypatch.setattr(env.backend, "provider_actions_allowed", lambda _storage: False)
    env.rollback()
    assert run_pass(env) == 0
    assert fault.times == 10
    monkeypatch.undo()
    # Read-only storage (a standby): the attempt is written first, so the provider is never called.
    assert env.backend.deletions.run_pass(FailingDeletionWrites(env.storage)) == 0
    assert fault.times == 10


class RefusingClient:
    """A provider client whose delete of one key id is refused with a 400 (the rest pass through)."""

    def __init__(self, inner: Any, refused: str) -> None:
        self._inner = inner
        self._refused = refused

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def delete_key(self, key_id: str, *, scope: str, deadline: float) -> bool:
        if key_id == self._refused:
            raise ProviderRejected("openrouter", "delete key: 400 refused by the test")
        return bool(self._inner.delete_key(key_id, scope=scope, deadline=deadline))


def test_a_key_the_provider_refuses_to_delete_does_not_hold_up_the_others(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    role = env.setup_provider("openrouter")
    first, second = env.creds(role), env.creds(role)
    outage(env, "openrouter")
    env.clock.advance(TTL + 1)
    env.revoke(first)
    env.revoke(second)
    provider_back(env, "openrouter")
    real_get = env.backend.clients.get
    monkeypatch.setattr(
        env.backend.clients, "get", lambda conn: RefusingClient(real_get(conn), first.data["key_id"])
    )
    env.clock.advance(30)
    run_pass(env)  # the refused key is tried first (queued first), and the other still goes
    assert env.emus["openrouter"].find_key(second.data["key_id"]) is None
    [left] = queue(env)
    assert left.key_id == first.data["key_id"] and "refused by the test" in left.last_error
    assert left.next_attempt_at is not None
    monkeypatch.undo()
    tick_until_deleted(env, "openrouter", first.data["key_id"], limit=deletions.KEY_RETRY_CAP * 2)


# --- what operators see -------------------------------------------------------------------------------------


def test_list_deletions_shows_progress_and_no_secret(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    role = env.setup_provider("openrouter")
    resp = env.creds(role)
    outage(env, "openrouter")
    env.clock.advance(TTL + 1)
    env.revoke(resp)
    run_pass(env)
    data = listed(env)
    key = f"openrouter/{resp.data['key_id']}"
    assert data["keys"] == [key]
    info = data["key_info"][key]
    assert info["state"] == "pending" and info["reason"] == "lease_ended"
    assert info["key_name"] == resp.data["key_name"] and info["role"] == role
    assert info["attempts"] >= 1 and "503" in info["last_error"]
    assert info["next_attempt_at"] and info["queued_at"] and info["expires_by"]
    provider_back(env, "openrouter")
    env.clock.advance(30)
    run_pass(env)
    logs = "\n".join(r.getMessage() for r in caplog.records)
    assert "deletion queued" in logs and "deleted a queued key" in logs
    assert resp.data["api_key"] not in logs + json.dumps(data) + env.storage_dump()


def test_a_key_the_sweep_cannot_delete_joins_the_queue(env: Env) -> None:
    role = env.setup_provider("litellm")
    resp = env.creds(role)
    outage(env, "litellm")
    env.clock.advance(3600 + 200)  # past max TTL + grace: the sweep's to delete (Vault gave up on it)
    report = env.request("update", "tidy")
    assert report is not None
    assert report.data["deletions_pending"] == 1
    assert any("queued for deletion" in f for f in report.data["failures"])
    [entry] = queue(env)
    assert entry.reason == "sweep" and entry.role == role
    provider_back(env, "litellm")
    tick_until_deleted(env, "litellm", resp.data["key_id"])
    assert index_of(env, "litellm", resp) is None


class CountingStorage(InMemoryStorage):
    """Counts reads of deletion-queue entries."""

    def __init__(self) -> None:
        super().__init__()
        self.queue_reads = 0

    def get(self, key: str) -> bytes | None:
        if key.startswith("deletions/"):
            self.queue_reads += 1
        return super().get(key)


def test_a_revoke_that_works_costs_no_queue_read() -> None:
    """The queue is known to this process (read at Initialize): an ordinary revoke does not look it up."""
    env = Env()
    env.storage = CountingStorage()
    env.backend.initialize(env.storage)
    role = env.setup_provider("litellm")
    resp = env.creds(role)
    env.renew(resp, increment=60)
    assert env.revoke(resp) is None
    assert isinstance(env.storage, CountingStorage) and env.storage.queue_reads == 0
