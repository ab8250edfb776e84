"""On an HA standby (which serves requests itself, with read-only storage, and runs the rollback tick too)
the engine never calls a provider: every request that would write or reach a provider fails first of all
with Vault's read-only error, whose text makes the host forward it to the active node; the rollback tick
does nothing. Reads are answered by the standby. The same backend on the active node does the work.

A standby here is the harness's mount set up again with the host reporting ReplicationPerformanceStandby,
on a view of the same storage that refuses writes as OpenBao's standby storage does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from engine_env import MOUNT_PREFIX, MOUNT_UUID, Env
from vaultplugin.framework import (
    InMemoryStorage,
    Operation,
    ReadOnlyStorage,
    Request,
    Response,
    StorageError,
    UpstreamError,
    VaultError,
    list_wal,
    to_wire,
)
from vaultplugin.framework.errors import INTERNAL_ERROR_MESSAGE, READ_ONLY_MESSAGE
from vaultplugin.framework.logical import REPLICATION_PERFORMANCE_STANDBY
from vaultplugin.host_services import GrpcStorage
from vaultplugin.proto import backend_pb2 as pb

PROVIDER = "litellm"  # renew extends the key's expiry at the provider: a renew is a provider call too


class ReadOnlyView:
    """The mount's storage as a standby sees it: reads pass, writes fail with the host's error."""

    def __init__(self, inner: InMemoryStorage) -> None:
        self.inner = inner

    def get(self, key: str) -> bytes | None:
        return self.inner.get(key)

    def list(self, prefix: str) -> list[str]:
        return self.inner.list(prefix)

    def put(self, key: str, value: bytes) -> None:
        raise ReadOnlyStorage(f"storage put failed: {READ_ONLY_MESSAGE}")

    def delete(self, key: str) -> None:
        raise ReadOnlyStorage(f"storage delete failed: {READ_ONLY_MESSAGE}")


class Calls:
    """Every admin call the provider emulator answers (inference excluded)."""

    def __init__(self, env: Env) -> None:
        self.seen: list[str] = []
        emulator = env.emus[PROVIDER]
        handle = emulator.handle

        def counting(request: httpx.Request) -> httpx.Response:
            if "chat/completions" not in request.url.path:
                self.seen.append(f"{request.method} {request.url.path}")
            return handle(request)

        emulator.handle = counting  # type: ignore[method-assign]

    def since(self, mark: int) -> list[str]:
        return self.seen[mark:]


class Cluster:
    """One mount's storage, served by the harness's backend as the active node or as a standby."""

    def __init__(self) -> None:
        self.env = Env()
        self.calls = Calls(self.env)  # before any provider client is made
        self.shared = self.env.storage
        self.role = self.env.setup_provider(PROVIDER)

    def become(self, *, standby: bool) -> None:
        """The node changes role: the host sets the mount up again (as it does on failover)."""
        env = self.env
        env.system.replication = REPLICATION_PERFORMANCE_STANDBY if standby else 0
        env.backend.cleanup()
        env.backend.setup({"backend_uuid": MOUNT_UUID, "plugin_name": "llm"}, env.system)
        env.storage = ReadOnlyView(self.shared) if standby else self.shared  # type: ignore[assignment]
        env.backend.initialize(env.storage)

    def snapshot(self) -> dict[str, bytes]:
        return {key: value for key, value in self.shared._data.items()}


@pytest.fixture
def cluster() -> Cluster:
    return Cluster()


def forwarded(exc: BaseException) -> bool:
    """Does this error reach the host with the text it forwards on (logical.ShouldForward)?"""
    _, message, _ = to_wire(exc)
    return READ_ONLY_MESSAGE in message


# --- requests ------------------------------------------------------------------------------------------


def test_a_creds_read_on_a_standby_fails_before_any_provider_call_with_the_text_the_host_forwards_on(
    cluster: Cluster,
) -> None:
    cluster.become(standby=True)
    before, mark = cluster.snapshot(), len(cluster.calls.seen)
    with pytest.raises(ReadOnlyStorage) as caught:
        cluster.env.read(f"creds/{cluster.role}")
    assert forwarded(caught.value)
    assert cluster.calls.since(mark) == []
    assert cluster.env.live(PROVIDER) == []
    assert cluster.snapshot() == before  # not even a WAL entry

    cluster.become(standby=False)  # what the active node does with the forwarded read
    issued = cluster.env.creds(cluster.role)
    assert [k.key_id for k in cluster.env.live(PROVIDER)] == [issued.data["key_id"]]


def _lease_request(cluster: Cluster, issued: Response, operation: str) -> Request:
    return Request(
        operation=operation,
        path=f"creds/{cluster.role}",
        storage=cluster.env.storage,
        secret=cluster.env.lease(issued),
    )


REQUESTS: dict[str, Callable[[Cluster, Response], Request]] = {
    "config write with verify": lambda c, _: Request(
        Operation.UPDATE, f"config/{PROVIDER}", data={"verify": True}, storage=c.env.storage
    ),
    "config delete": lambda c, _: Request(Operation.DELETE, f"config/{PROVIDER}", storage=c.env.storage),
    "roles write": lambda c, _: Request(
        Operation.CREATE, "roles/another", data={"connection": PROVIDER, "ttl": "5m"}, storage=c.env.storage
    ),
    "roles delete": lambda c, _: Request(Operation.DELETE, f"roles/{c.role}", storage=c.env.storage),
    "tidy": lambda c, _: Request(Operation.UPDATE, "tidy", storage=c.env.storage),
    "tidy/config write": lambda c, _: Request(
        Operation.UPDATE, "tidy/config", data={"interval": "1m"}, storage=c.env.storage
    ),
    "renew": lambda c, issued: _lease_request(c, issued, Operation.RENEW),
    "revoke": lambda c, issued: _lease_request(c, issued, Operation.REVOKE),
}


@pytest.mark.parametrize("what", sorted(REQUESTS))
def test_every_request_that_writes_or_reaches_a_provider_is_forwarded_from_a_standby(
    cluster: Cluster, what: str
) -> None:
    issued = cluster.env.creds(cluster.role)
    cluster.env.clock.advance(5000)  # a renew or revoke would act; a tidy would find an expired key
    cluster.become(standby=True)
    before, mark = cluster.snapshot(), len(cluster.calls.seen)
    with pytest.raises(ReadOnlyStorage) as caught:
        cluster.env.backend.handle_request(REQUESTS[what](cluster, issued))
    assert forwarded(caught.value)
    assert cluster.calls.since(mark) == []
    assert cluster.snapshot() == before
    assert cluster.env.emus[PROVIDER].find_key(issued.data["key_id"]) is not None


def test_reads_are_served_by_the_standby_itself(cluster: Cluster) -> None:
    cluster.env.creds(cluster.role)
    cluster.become(standby=True)
    mark = len(cluster.calls.seen)
    config = cluster.env.read(f"config/{PROVIDER}")
    role = cluster.env.read(f"roles/{cluster.role}")
    roles = cluster.env.list_keys("roles/")
    assert config is not None and config.data["provider"] == PROVIDER
    assert config.data["key_name_prefix"] == MOUNT_PREFIX
    assert role is not None and role.data["connection"] == PROVIDER
    assert roles is not None and roles.data["keys"] == [cluster.role]
    assert cluster.env.read("tidy/config") is not None
    cluster.env.list_keys("deletions/")
    assert cluster.calls.since(mark) == []


# --- periodic work -------------------------------------------------------------------------------------


def _work_for_the_rollback_tick(cluster: Cluster) -> dict[str, str]:
    """One of each: an interrupted create (WAL), an orphan, a key past its lease max, a queued deletion.
    Returns what each key's id is."""
    env, emulator = cluster.env, cluster.env.emus[PROVIDER]
    emulator.faults.drop_after_create()
    with pytest.raises(UpstreamError):
        env.read(f"creds/{cluster.role}")
    (interrupted,) = env.live(PROVIDER)
    orphan = emulator.seed_key(MOUNT_PREFIX + "lost", created_at=env.clock() - 7200)
    expired = env.creds(cluster.role)
    queued = env.creds(cluster.role)
    env.clock.advance(3600 + 600)  # past both leases' max TTL and the sweep's grace
    emulator.faults.server_error(times=2, status=503, op="delete")  # the delete and its one retry
    env.revoke(queued)  # the lease ended: queued for the retrier
    assert len(list_wal(cluster.shared)) == 1
    assert [r.key_id for r in env.backend.deletions.listing(cluster.shared)] == [queued.data["key_id"]]
    return {
        "interrupted create": interrupted.key_id,
        "orphan": orphan.key_id,
        "past its lease max": expired.data["key_id"],
        "queued deletion": queued.data["key_id"],
    }


def test_the_rollback_tick_of_a_standby_never_calls_a_provider_and_the_active_node_does_the_work(
    cluster: Cluster,
) -> None:
    keys = _work_for_the_rollback_tick(cluster)
    cluster.become(standby=True)
    mark = len(cluster.calls.seen)
    for _ in range(3):
        cluster.env.clock.advance(600)
        cluster.env.rollback()
        assert cluster.env.backend.deletions.run_pass(cluster.env.storage) == 0
    assert cluster.calls.since(mark) == []
    live = {k.key_id for k in cluster.env.live(PROVIDER)}
    assert set(keys.values()) <= live

    cluster.become(standby=False)
    cluster.env.rollback()
    cluster.env.backend.deletions.run_pass(cluster.env.storage)
    still_live = {what for what, key_id in keys.items() if cluster.env.emus[PROVIDER].find_key(key_id)}
    assert still_live == set()
    assert list_wal(cluster.shared) == []


def test_a_host_that_cannot_say_gets_no_provider_call_and_an_error_it_retries(cluster: Cluster) -> None:
    keys = _work_for_the_rollback_tick(cluster)

    def broken() -> int:
        raise ConnectionError("broker gone")

    cluster.env.system.replication_state = broken  # type: ignore[method-assign]
    cluster.become(standby=False)
    mark = len(cluster.calls.seen)
    cluster.env.rollback()
    assert cluster.env.backend.deletions.run_pass(cluster.env.storage) == 0
    with pytest.raises(VaultError, match="could not ask the host whether this node is active") as caught:
        cluster.env.read(f"creds/{cluster.role}")
    assert not isinstance(caught.value, ReadOnlyStorage)
    assert cluster.calls.since(mark) == []
    assert all(cluster.env.emus[PROVIDER].find_key(key_id) for key_id in keys.values())


def test_the_host_is_asked_once_per_setup(cluster: Cluster) -> None:
    system = cluster.env.system
    cluster.become(standby=False)
    asked = system.replication_calls
    for _ in range(5):
        cluster.env.creds(cluster.role)
    cluster.env.rollback()
    assert system.replication_calls == asked  # the answer came with Initialize
    cluster.become(standby=True)
    with pytest.raises(ReadOnlyStorage):
        cluster.env.read(f"creds/{cluster.role}")
    assert system.replication_calls == asked + 1


# --- the host's storage error -------------------------------------------------------------------------


class FakeHost:
    """A UnaryClient whose storage calls all fail in-band with `err`."""

    def __init__(self, err: str) -> None:
        self.err = err

    def call(self, method: str, request: bytes, timeout: float) -> bytes:
        replies: dict[str, Any] = {
            "/pb.Storage/Put": pb.StoragePutReply,
            "/pb.Storage/Delete": pb.StorageDeleteReply,
        }
        return bytes(replies[method](err=self.err).SerializeToString())


@pytest.mark.parametrize(
    "err",
    [
        READ_ONLY_MESSAGE,
        "please forward to the active node",
        "failed to persist: node is not the leader",
    ],
)
def test_a_read_only_storage_error_from_the_host_reaches_it_again_intact(err: str) -> None:
    storage = GrpcStorage(FakeHost(err))  # type: ignore[arg-type]
    with pytest.raises(ReadOnlyStorage) as caught:
        storage.put("wal/x", b"{}")
    assert isinstance(caught.value, StorageError)
    _, message, _ = to_wire(caught.value)
    assert err in message


def test_other_storage_errors_stay_hidden_behind_the_generic_message() -> None:
    storage = GrpcStorage(FakeHost("disk on fire at /var/lib/openbao"))  # type: ignore[arg-type]
    with pytest.raises(StorageError) as caught:
        storage.delete("wal/x")
    assert not isinstance(caught.value, ReadOnlyStorage)
    assert to_wire(caught.value)[1] == INTERNAL_ERROR_MESSAGE


def test_a_queued_deletion_is_listed_on_a_standby(cluster: Cluster) -> None:
    keys = _work_for_the_rollback_tick(cluster)
    cluster.become(standby=True)
    listed = cluster.env.list_keys("deletions/")
    assert listed is not None
    info: dict[str, dict[str, Any]] = listed.data["key_info"]
    assert list(info) == [f"{PROVIDER}/{keys['queued deletion']}"]
    assert info[f"{PROVIDER}/{keys['queued deletion']}"]["state"] == "pending"
