"""`roles/<name>/revoke-keys` and `config/<name>/revoke-keys` (update): delete at the provider, now and in
parallel, every key issued for a role (or through a connection); the leases are cleaned up afterwards.

Why: Vault revokes the leases of a synchronous `revoke-prefix` one at a time (measured: 992 leases against a
provider answering in 200 ms took 202 s, the keys staying usable meanwhile), and `-sync=false` leaves the
pace to Vault's expiry workers. An incident responder needs the keys dead at the provider first, and the
leases gone after.

Per key in the index (`keys/<connection>/<key id>`) that belongs to the role or connection, up to
CONCURRENCY at a time:
- deleted (or already gone): a tombstone goes into the deletion queue, then the index entry goes. The
  lease stays in Vault until revoked or expired, and its revoke then succeeds without a provider call
  (so `bao lease revoke -prefix` after this is fast); a renewal of it is refused;
- not deleted (the provider failed): the key goes into the deletion queue, which retries it every few
  seconds until it is gone. Once a call fails for the whole connection (outage, rate limit, refused admin
  key) the connection's remaining keys are queued at once instead of each waiting for the same failure;
  so are keys not reached within TIME_LIMIT.
Keys being created while this runs are not in the index yet: to stop new keys, delete the role (or take
it out of the connection's `allowed_roles`) first. Writes nothing but the queue and the index.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from vaultplugin.framework import (
    Field,
    FieldData,
    FieldType,
    Operation,
    OperationSpec,
    Path,
    Request,
    Response,
    VaultError,
    get_json,
    list_leaves,
    runtime,
)

from llmsecrets import connections
from llmsecrets.connections import UnusableConnection
from llmsecrets.deletions import connection_wide, describe
from llmsecrets.models import (
    KEYS_PREFIX,
    DeletionReason,
    IssuedKeyRecord,
    PendingDeletion,
    RecordError,
)
from llmsecrets.providers.base import ProviderClient
from llmsecrets.providers.errors import ProviderError

if TYPE_CHECKING:
    from vaultplugin.framework import Storage

    from llmsecrets.backend import LLMBackend

log = logging.getLogger(__name__)

# Provider deletes in flight at once (each connection's bulkhead bounds them too).
CONCURRENCY = 64
# The whole call: keys not reached by then are queued (Vault's own request limit is 90 s).
TIME_LIMIT = 60.0
# Outcomes of one key.
DELETED, ALREADY_GONE, QUEUED, FAILED, OTHER = "deleted", "already_gone", "queued", "failed", "other"

REVOKE_KEYS_HELP = """\
Deletes at the provider, now, every key issued for this {what} that is not deleted yet, {concurrency} at
a time, and answers when each is deleted or queued. For an incident: the keys stop working within
seconds, whatever the number of leases.

The leases stay in Vault until they are revoked or expire; revoking them afterwards is quick (the engine
already knows their keys are gone and does not call the provider again), and a renewal is refused:
    {cleanup}

A key the provider would not delete now is put in the deletion queue (bao list -detailed <mount>/deletions),
which retries it every few seconds until it is gone. Keys created while this runs are not included: to
stop new keys, {stop} first.

Returns: keys (found), deleted, already_gone, queued (left to the deletion queue), failed (storage errors:
run it again), seconds.

Example:
    $ bao write -f llm/{example}/revoke-keys
"""


def paths(b: LLMBackend) -> list[Path]:
    def revoke_role_keys(req: Request, d: FieldData) -> Response:
        name = d.get_str("name")
        storage = b.storage_of(req)
        result = _Kill(b, storage, role=name).run()
        warnings = []
        if result["keys"] == 0 and b.role(storage, name) is None:
            warnings.append(f"there is no role named {name!r}, and no live key was issued for one")
        return _response(result, f"{req.mount_point or '<mount>/'}creds/{name}", warnings)

    def revoke_connection_keys(req: Request, d: FieldData) -> Response:
        name = d.get_str("name")
        storage = b.storage_of(req)
        result = _Kill(b, storage, connection=name).run()
        warnings = []
        if result["keys"] == 0 and b.connection(storage, name) is None:
            warnings.append(f"there is no connection named {name!r}, and no live key was issued through one")
        return _response(result, f"{req.mount_point or '<mount>/'}creds/<role> (each role of it)", warnings)

    def spec(handler: Any, summary: str) -> dict[Operation, OperationSpec]:
        # Vault sends CREATE or UPDATE for a write depending on an existence check; both do the same.
        op = OperationSpec(handler, summary=summary)
        return {Operation.UPDATE: op, Operation.CREATE: op}

    return [
        Path(
            r"roles/(?P<name>\w(([\w.-]+)?\w)?)/revoke-keys",
            fields={
                "name": Field(FieldType.NAME, "The role whose keys to delete (it may be deleted already).")
            },
            operations=spec(revoke_role_keys, "Delete every key of a role at the provider, now."),
            synopsis="Delete every live key issued for a role at its provider, now (incident response).",
            description=REVOKE_KEYS_HELP.format(
                what="role (whichever connection issued it)",
                concurrency=CONCURRENCY,
                cleanup="bao lease revoke -prefix <mount>/creds/<role>",
                stop="delete the role (bao delete <mount>/roles/<role>)",
                example="roles/chatbot",
            ),
        ),
        Path(
            r"config/(?P<name>\w(([\w.-]+)?\w)?)/revoke-keys",
            fields={"name": Field(FieldType.NAME, "The connection whose keys to delete.")},
            operations=spec(revoke_connection_keys, "Delete every key of a connection at the provider, now."),
            synopsis="Delete every live key issued through a connection at its provider, now.",
            description=REVOKE_KEYS_HELP.format(
                what="connection (every role of it)",
                concurrency=CONCURRENCY,
                cleanup="bao lease revoke -prefix <mount>/creds/<role> for each of its roles",
                stop="set the connection's allowed_roles to a role that does not exist",
                example="config/openrouter",
            ),
        ),
    ]


def _response(result: dict[str, Any], lease_prefix: str, warnings: list[str]) -> Response:
    if result["queued"]:
        warnings.append(
            f"{result['queued']} key(s) could not be deleted now and are in the deletion queue, retried "
            "every few seconds (bao list -detailed <mount>/deletions)"
        )
    if result["failed"]:
        warnings.append(
            f"{result['failed']} key(s) were not handled (storage errors, see the log): run it again"
        )
    result["revoke_leases"] = f"bao lease revoke -prefix {lease_prefix}"
    return Response(data=result, warnings=warnings)


class _Kill:
    """One revoke-keys call: the keys of `role` (any connection) or of `connection` (any role)."""

    def __init__(
        self, b: LLMBackend, storage: Storage, *, role: str | None = None, connection: str | None = None
    ) -> None:
        self._b = b
        self._storage = storage
        self._role = role
        self._connection = connection
        self._started = time.monotonic()
        self._lock = threading.Lock()
        self._clients: dict[str, ProviderClient | str] = {}  # connection -> client, or why there is none
        self._failing: dict[str, str] = {}  # connection -> the connection-wide failure seen
        self._counts: Counter[str] = Counter()

    def _all(self, storage_keys: list[str]) -> list[str]:
        with ThreadPoolExecutor(
            max_workers=min(CONCURRENCY, len(storage_keys)), thread_name_prefix="llm-revoke-keys"
        ) as pool:
            return list(pool.map(self._one, storage_keys))

    def run(self) -> dict[str, Any]:
        storage_keys = self._index_keys()
        if storage_keys:
            # The handler runs on the hub: the pool's deletions are waited for on a thread of its own.
            for outcome in runtime.run_blocking(lambda: self._all(storage_keys)):
                self._counts[outcome] += 1
        seconds = time.monotonic() - self._started
        counts = self._counts
        found = counts[DELETED] + counts[ALREADY_GONE] + counts[QUEUED] + counts[FAILED]
        log.warning(
            "revoke-keys: %s=%s keys=%d deleted=%d already_gone=%d queued=%d failed=%d seconds=%.1f",
            "role" if self._role is not None else "connection",
            self._role if self._role is not None else self._connection,
            found,
            counts[DELETED],
            counts[ALREADY_GONE],
            counts[QUEUED],
            counts[FAILED],
            seconds,
        )
        return {
            "keys": found,
            "deleted": counts[DELETED],
            "already_gone": counts[ALREADY_GONE],
            "queued": counts[QUEUED],
            "failed": counts[FAILED],
            "seconds": round(seconds, 3),
        }

    def _index_keys(self) -> list[str]:
        if self._connection is not None:
            folders = [self._connection + "/"]
        else:
            folders = [f for f in self._storage.list(KEYS_PREFIX) if f.endswith("/")]
        return [
            KEYS_PREFIX + folder + leaf
            for folder in folders
            for leaf in list_leaves(self._storage, KEYS_PREFIX + folder)
        ]

    def _one(self, storage_key: str) -> str:
        try:
            raw = get_json(self._storage, storage_key)
            if raw is None:
                return OTHER  # revoked meanwhile
            record = IssuedKeyRecord.from_storage(raw)
        except (RecordError, ValueError) as exc:
            log.error("revoke-keys: index entry %s is unreadable: %s", storage_key, exc)
            return FAILED
        except Exception as exc:
            log.error("revoke-keys: reading %s failed: %s", storage_key, type(exc).__name__)
            return FAILED
        if self._role is not None and record.role != self._role:
            return OTHER
        try:
            return self._delete(record)
        except Exception as exc:
            log.error("revoke-keys: key %s: %s: %s", record.key_id, type(exc).__name__, exc)
            return FAILED

    def _delete(self, record: IssuedKeyRecord) -> str:
        client = self._client(record)
        left = TIME_LIMIT - (time.monotonic() - self._started)
        with self._lock:
            failing = self._failing.get(record.connection)
        if isinstance(client, str):
            return self._queue(record, client, attempted=False)
        if failing is not None:
            return self._queue(record, f"not tried: the connection is failing ({failing})", attempted=False)
        if left <= 1.0:
            return self._queue(record, f"not tried within revoke-keys' {TIME_LIMIT:.0f} s", attempted=False)
        try:
            existed = client.delete_key(
                record.key_id,
                scope=record.scope,
                deadline=self._b.deadline(min(left, self._b.request_timeout)),
            )
        except ProviderError as exc:
            message = describe(exc, self._b.connection(self._storage, record.connection))
            if connection_wide(exc):
                self._b.deletions.note_failure(record.connection, exc)
                with self._lock:
                    self._failing.setdefault(record.connection, message)
            return self._queue(record, message, attempted=True)
        self._b.deletions.note_success(record.connection)
        now = self._b.clock()
        self._b.deletions.record_deleted(self._storage, self._pending(record, now, error="", attempted=True))
        self._storage.delete(record.key)
        return DELETED if existed else ALREADY_GONE

    def _client(self, record: IssuedKeyRecord) -> ProviderClient | str:
        """The connection's client, or why there is none (the key is then queued with that reason)."""
        name = record.connection
        with self._lock:
            found = self._clients.get(name)
        if found is not None:
            return found
        result: ProviderClient | str
        try:
            _, result = connections.client_for_keys(self._b, self._storage, name, record.provider)
        except UnusableConnection as exc:
            result = connections.deletion_blocker(exc)
        with self._lock:
            return self._clients.setdefault(name, result)

    def _pending(
        self, record: IssuedKeyRecord, now: float, *, error: str, attempted: bool
    ) -> PendingDeletion:
        expires_by: float | None = None
        if record.provider_expires_at is not None:
            expires_by = max(
                record.provider_expires_at, record.lease_expires_at + self._b.provider_expiry_grace
            )
        return PendingDeletion(
            connection=record.connection,
            provider=record.provider,
            key_id=record.key_id,
            scope=record.scope,
            key_name=record.key_name,
            role=record.role,
            reason=DeletionReason.REVOKE.value,
            queued_at=now,
            expires_by=expires_by,
            vault_waiting=True,
            attempts=int(attempted),
            last_error=error,
            last_attempt_at=now if attempted else None,
        )

    def _queue(self, record: IssuedKeyRecord, error: str, *, attempted: bool) -> str:
        """Leave the key to the deletion queue (a storage failure here counts as FAILED)."""
        pending = self._pending(record, self._b.clock(), error=error, attempted=attempted)
        try:
            self._b.deletions.enqueue(
                self._storage,
                connection=pending.connection,
                provider=pending.provider,
                key_id=pending.key_id,
                scope=pending.scope,
                key_name=pending.key_name,
                role=pending.role,
                reason=DeletionReason.REVOKE,
                expires_by=pending.expires_by,
                vault_waiting=True,
                error=error,
                attempted=attempted,
            )
        except Exception as exc:
            raise VaultError(f"queueing its deletion failed: {type(exc).__name__}") from None
        return QUEUED
