"""The deletion queue: keys the engine still has to delete at their provider, kept in the mount's storage
and retried by the plugin itself, every few seconds, until each is gone.

Why: Vault retries a failed revoke only about 6 times in 10 minutes (after ~20, 40, 80, 160, 320 s), then
marks the lease irrevocable and stops; and a provider that comes back is noticed only at Vault's next try.
So the engine keeps its own durable to-do list and its own, faster schedule.

- Entry: a revoke (or the sweep) that cannot delete a key writes a `PendingDeletion` under
  `deletions/<connection>/<key id>` BEFORE it answers. If that write fails the revoke fails too.
- Retries: one thread per plugin process. While a connection keeps failing it costs one probe call per pass
  (1, 2, 4, 8, then every 10 s, +/- 20 % jitter; a Retry-After is honoured); once the provider answers,
  every due key of the connection is deleted, `CONCURRENCY` at a time. Each attempt is written to storage
  before the provider sees it, so a node whose storage is read-only never calls the provider.
- End: the key is deleted, or already gone (404), or the provider has expired it by itself (`expires_by`
  passed). The index entry goes with it. An entry Vault will ask about again (`vault_waiting`) stays as a
  tombstone for a day, so that revoke succeeds without calling the provider.
- Who runs it: `start` (Vault's Initialize, which it sends every time it starts the plugin process, restarts
  included: on the first request or rollback tick after a crash), `tick` (Vault's rollback tick, once a
  minute: reloads the queue from storage, so entries written before a restart or on another node are never
  forgotten), and `wake` (a new entry). Without a background thread (`background=False`, unit tests) the
  tick runs one pass itself.
- Gate: every pass first asks `LLMBackend.provider_actions_allowed` (the one place an "active node only"
  rule goes).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from enum import Enum
from typing import TYPE_CHECKING

from vaultplugin.framework import VaultError, get_json, list_leaves, put_json

from llmsecrets import connections
from llmsecrets.connections import UnusableConnection
from llmsecrets.models import (
    DELETIONS_PREFIX,
    ConnectionConfig,
    DeletionReason,
    IssuedKeyRecord,
    PendingDeletion,
    RecordError,
)
from llmsecrets.providers.base import ProviderClient
from llmsecrets.providers.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderRateLimited,
    ProviderUnavailable,
    scrub,
)
from llmsecrets.retrier import IDLE_SECONDS, Retrier

if TYPE_CHECKING:
    from vaultplugin.framework import Storage

    from llmsecrets.backend import LLMBackend

log = logging.getLogger(__name__)

# Retry schedule of a failing connection: FIRST_RETRY * 2**n seconds, at most RETRY_CAP, +/- JITTER.
FIRST_RETRY = 1.0
RETRY_CAP = 10.0
JITTER = 0.2
# A key the provider refused to delete (a 4xx that is not "gone") is retried at most this often.
KEY_RETRY_CAP = 60.0
# One provider call of the retrier may take this long, its own retries included.
ATTEMPT_SECONDS = 10.0
# Deletes in flight at once once a provider is back.
CONCURRENCY = 8
# A connection counts as failing this long after its last failure, unless a call succeeded since.
FAILING_WINDOW = 30.0
# How long after the provider's own expiry an entry is dropped (clocks differ).
EXPIRY_MARGIN = 60.0
# Tombstones outlive OpenBao's daily retry of irrevocable leases.
TOMBSTONE_SECONDS = 25 * 3600.0


class Outcome(Enum):
    DELETED = "deleted"
    KEY_FAILED = "key_failed"  # this key only; the others of the connection are tried
    CONNECTION_FAILED = "connection_failed"  # the connection is failing: the pass stops for it
    DROPPED = "dropped"  # nothing to do any more (finished elsewhere, or expired at the provider)


@dataclass
class _Entry:
    """A pending entry as the retrier schedules it (the record is the last one read or written)."""

    record: PendingDeletion
    next_try: float


@dataclass
class _ConnectionState:
    failures: int = 0
    next_try: float = 0.0
    last_failure_at: float | None = None
    last_success_at: float | None = None


def connection_wide(exc: Exception) -> bool:
    """Failures that every key of the connection would hit now (outage, rate limit, refused admin key)."""
    return isinstance(exc, ProviderUnavailable | ProviderRateLimited | ProviderAuthError)


def describe(exc: Exception, conn: ConnectionConfig | None = None) -> str:
    """A one-line, secret-free account of a failure for the queue's `last_error`."""
    text = f"{type(exc).__name__}: {exc}"
    if conn is not None and conn.admin_key:
        text = text.replace(conn.admin_key, "[redacted]")  # whatever its shape
    return scrub(text)


class DeletionQueue:
    """The durable queue (storage) plus its retrier (memory schedule, one thread)."""

    def __init__(
        self,
        b: LLMBackend,
        *,
        background: bool = True,
        jitter: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self._b = b
        self._background = background
        self._jitter = jitter
        self._lock = threading.Lock()  # guards the fields below; never held across a storage or provider call
        self._entries: dict[str, _Entry] = {}
        # Storage keys of every entry (tombstones too), once the queue was read: lets a revoke skip a storage
        # read for the (usual) key that was never queued.
        self._stored: set[str] = set()
        self._loaded = False
        self._connections: dict[str, _ConnectionState] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._retrier = Retrier(
            "llm-deletions",
            self._pass_and_next_due,
            may_act=b.provider_actions_allowed,
            failure_pause=RETRY_CAP,
        )
        self._pass_lock = threading.Lock()

    # --- life cycle ----------------------------------------------------------------------------------------

    def start(self, storage: Storage) -> None:
        """Load the queue and make sure the retrier runs (Vault's Initialize, and every rollback tick)."""
        self.reload(storage)
        if self._background:
            self._retrier.start(storage)

    def tick(self, storage: Storage) -> None:
        """Vault's rollback tick: reload, and without a background thread run one pass here."""
        self.start(storage)
        if not self._background:
            self.run_pass(storage)

    def wake(self) -> None:
        self._retrier.wake()

    def stop(self) -> None:
        """Stop the retrier (Vault's Cleanup: unmount, reload, seal). Pending entries stay in storage."""
        self._retrier.stop()
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    def _pass_and_next_due(self, storage: Storage) -> float:
        self.run_pass(storage)
        return self._seconds_to_next_due()

    def _seconds_to_next_due(self) -> float:
        now = self._b.clock()
        with self._lock:
            due = [
                max(e.next_try, self._connections.get(e.record.connection, _ConnectionState()).next_try)
                for e in self._entries.values()
            ]
        if not due:
            return IDLE_SECONDS
        return min(due) - now

    # --- the queue in storage ------------------------------------------------------------------------------

    def get(self, storage: Storage, connection: str, key_id: str) -> PendingDeletion | None:
        return _read(storage, PendingDeletion.storage_key(connection, key_id))

    def lookup(self, storage: Storage, connection: str, key_id: str) -> PendingDeletion | None:
        """The entry of a key, reading storage only if this process does not know there is none."""
        key = PendingDeletion.storage_key(connection, key_id)
        with self._lock:
            if self._loaded and key not in self._stored:
                return None
        return _read(storage, key)

    def enqueue(
        self,
        storage: Storage,
        *,
        connection: str,
        provider: str,
        key_id: str,
        scope: str,
        key_name: str,
        role: str,
        reason: DeletionReason,
        expires_by: float | None,
        vault_waiting: bool,
        error: str,
        attempted: bool = True,
    ) -> PendingDeletion:
        """Record durably that `key_id` must still be deleted, after a failed attempt (`error`; with
        `attempted=False` the reason no attempt was made).

        Raises whatever storage raises: the caller must not report success without this record.
        """
        now = self._b.clock()
        key = PendingDeletion.storage_key(connection, key_id)
        old = _read(storage, key)
        pending = old is not None and old.done_at is None
        record = PendingDeletion(
            connection=connection,
            provider=provider,
            key_id=key_id,
            scope=scope,
            key_name=key_name,
            role=role,
            reason=old.reason if old is not None and pending else reason.value,
            queued_at=old.queued_at if old is not None and pending else now,
            expires_by=expires_by,
            vault_waiting=vault_waiting or (old is not None and old.vault_waiting),
            attempts=(old.attempts if old is not None and pending else 0) + int(attempted),
            last_error=error,
            last_attempt_at=now if attempted else (old.last_attempt_at if old is not None else None),
            next_attempt_at=now + FIRST_RETRY,
        )
        put_json(storage, key, record.to_storage())
        with self._lock:
            self._stored.add(key)
            entry = self._entries.get(key)
            next_try = now + FIRST_RETRY if entry is None else min(entry.next_try, now + FIRST_RETRY)
            self._entries[key] = _Entry(record, next_try)
        if not pending:
            log.warning(
                "deletion queued: connection=%s key_id=%s name=%s reason=%s error=%s",
                connection,
                key_id,
                key_name,
                record.reason,
                error or "-",
            )
        if self._background:
            self._retrier.start(storage)
        return record

    def record_deleted(self, storage: Storage, record: PendingDeletion) -> None:
        """Note a key deleted outside the queue while its lease lives on (`revoke-keys`): a tombstone lets
        the lease's revoke succeed without a provider call (and refuses its renewals); a pending entry of the
        key is settled by it."""
        done = replace(record, done_at=self._b.clock(), vault_waiting=True, next_attempt_at=None)
        put_json(storage, done.key, done.to_storage())
        with self._lock:
            self._stored.add(done.key)
            self._entries.pop(done.key, None)

    def discard(self, storage: Storage, connection: str, key_id: str) -> None:
        """Forget an entry whose key was just deleted by someone else (a revoke that succeeded)."""
        key = PendingDeletion.storage_key(connection, key_id)
        storage.delete(key)
        with self._lock:
            self._entries.pop(key, None)
            self._stored.discard(key)

    def reload(self, storage: Storage) -> int:
        """Read the queue from storage into the schedule; purge old tombstones. Returns the pending count."""
        with self._lock:
            known_before = set(self._entries)
            stored_before = set(self._stored)
        records = list(_read_all(storage))
        now = self._b.clock()
        pending: dict[str, PendingDeletion] = {}
        stored: set[str] = set()
        for rec in records:
            stored.add(rec.key)
            if rec.done_at is None:
                pending[rec.key] = rec
            elif now - rec.done_at > TOMBSTONE_SECONDS:
                try:
                    storage.delete(rec.key)
                    stored.discard(rec.key)
                except Exception as exc:
                    log.warning("could not purge deletion tombstone %s: %s", rec.key, type(exc).__name__)
        with self._lock:
            self._stored = stored | (self._stored - stored_before)  # keeps entries queued meanwhile
            self._loaded = True
            for key in known_before - set(pending):
                self._entries.pop(key, None)  # finished elsewhere (or by an older process)
            for key, rec in pending.items():
                entry = self._entries.get(key)
                if entry is None:
                    self._entries[key] = _Entry(rec, now)  # new to this process: due at once
                else:
                    entry.record = rec
        return len(pending)

    def listing(self, storage: Storage) -> list[PendingDeletion]:
        """Every stored entry (pending first, then tombstones), with this node's next try where it has one."""
        out: list[PendingDeletion] = []
        records = list(_read_all(storage))
        with self._lock:
            for stored in records:
                entry = self._entries.get(stored.key)
                if entry is not None and stored.done_at is None:
                    conn = self._connections.get(stored.connection, _ConnectionState())
                    out.append(replace(stored, next_attempt_at=max(entry.next_try, conn.next_try)))
                else:
                    out.append(stored)
        out.sort(key=lambda r: (r.done_at is not None, r.queued_at, r.key))
        return out

    # --- what revoke asks ----------------------------------------------------------------------------------

    def connection_failing(self, connection: str) -> bool:
        """Did the last call on `connection` fail, recently, with no success since?"""
        now = self._b.clock()
        with self._lock:
            state = self._connections.get(connection)
            if state is None or state.last_failure_at is None:
                return False
            if state.last_success_at is not None and state.last_success_at >= state.last_failure_at:
                return False
            return now - state.last_failure_at < FAILING_WINDOW

    def note_success(self, connection: str) -> None:
        """A call on `connection` worked: its entries are due at once (the retrier is woken)."""
        with self._lock:
            state = self._connections.setdefault(connection, _ConnectionState())
            was_failing = state.failures > 0
            state.failures = 0
            state.next_try = 0.0
            state.last_success_at = self._b.clock()
            if was_failing:
                for entry in self._entries.values():
                    if entry.record.connection == connection:
                        entry.next_try = min(entry.next_try, state.last_success_at)
        if was_failing:
            self.wake()

    def note_failure(self, connection: str, exc: Exception | None = None) -> float:
        """A connection-wide failure: back the connection off. Returns the delay chosen."""
        now = self._b.clock()
        with self._lock:
            state = self._connections.setdefault(connection, _ConnectionState())
            state.failures += 1
            delay = self._delay(state.failures, RETRY_CAP)
            if isinstance(exc, ProviderRateLimited) and exc.retry_after is not None:
                delay = max(delay, exc.retry_after)
            state.next_try = now + delay
            state.last_failure_at = now
        return delay

    # --- the retrier ---------------------------------------------------------------------------------------

    def run_pass(self, storage: Storage) -> int:
        """Try every due entry once; returns how many keys were deleted. Skipped if a pass is running."""
        if not self._pass_lock.acquire(blocking=False):
            return 0
        try:
            if not self._b.provider_actions_allowed(storage):
                return 0
            now = self._b.clock()
            due: dict[str, list[_Entry]] = {}
            with self._lock:
                for entry in self._entries.values():
                    conn = self._connections.get(entry.record.connection, _ConnectionState())
                    if entry.next_try <= now and conn.next_try <= now:
                        due.setdefault(entry.record.connection, []).append(entry)
            deleted = 0
            for connection in sorted(due):
                entries = sorted(due[connection], key=lambda e: (e.record.queued_at, e.record.key))
                deleted += self._pass_connection(storage, connection, entries)
            return deleted
        finally:
            self._pass_lock.release()

    def _pass_connection(self, storage: Storage, connection: str, entries: list[_Entry]) -> int:
        try:
            conn, client = connections.client_for_keys(
                self._b, storage, connection, entries[0].record.provider
            )
        except UnusableConnection as exc:
            self._connection_unusable(storage, entries[0], connections.deletion_blocker(exc))
            return 0
        except VaultError as exc:  # an unreadable record
            self._connection_unusable(storage, entries[0], str(exc))
            return 0
        except Exception as exc:  # storage: try again later
            message = f"reading the connection failed: {type(exc).__name__}"
            self._connection_unusable(storage, entries[0], message)
            return 0
        # One probe while the provider may be down; everything else once it answered.
        first = self._attempt(storage, client, conn, entries[0])
        if first is Outcome.CONNECTION_FAILED:
            return 0
        rest = entries[1:]
        if not rest:
            return int(first is Outcome.DELETED)
        stop = threading.Event()

        def attempt(entry: _Entry) -> Outcome:
            if stop.is_set():
                return Outcome.CONNECTION_FAILED
            outcome = self._attempt(storage, client, conn, entry)
            if outcome is Outcome.CONNECTION_FAILED:
                stop.set()
            return outcome

        outcomes = list(self._pool().map(attempt, rest))
        return sum(o is Outcome.DELETED for o in [first, *outcomes])

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=CONCURRENCY, thread_name_prefix="llm-delete")
            return self._executor

    def _attempt(
        self, storage: Storage, client: ProviderClient, conn: ConnectionConfig, entry: _Entry
    ) -> Outcome:
        now = self._b.clock()
        key = entry.record.key
        try:
            current = _read(storage, key)
            if current is None or current.done_at is not None:
                self._forget(key, stored=current is not None)  # done meanwhile (a revoke, another process)
                return Outcome.DROPPED
            if current.expires_by is not None and now > current.expires_by + EXPIRY_MARGIN:
                self._expired_at_provider(storage, current)
                return Outcome.DROPPED
            # On record before the provider sees it; on a read-only (standby) node this write fails.
            claimed = replace(current, attempts=current.attempts + 1, last_attempt_at=now)
            put_json(storage, key, claimed.to_storage())
        except Exception as exc:
            log.warning("deletion queue: storage failed, skipping this pass: %s", type(exc).__name__)
            self.note_failure(conn.name)
            return Outcome.CONNECTION_FAILED
        try:
            spent = self._b.spend.before_queued_delete(storage, client, claimed)  # first: see spend.py
            existed = client.delete_key(
                claimed.key_id, scope=claimed.scope, deadline=self._b.deadline(ATTEMPT_SECONDS)
            )
        except ProviderError as exc:
            return self._failed(storage, entry, claimed, exc, conn)
        self.note_success(conn.name)
        self._finish(storage, claimed, existed=existed)
        self._b.spend.after_queued_delete(storage, spent)
        return Outcome.DELETED

    def _failed(
        self,
        storage: Storage,
        entry: _Entry,
        claimed: PendingDeletion,
        exc: ProviderError,
        conn: ConnectionConfig,
    ) -> Outcome:
        now = self._b.clock()
        wide = connection_wide(exc)
        delay = self.note_failure(conn.name, exc) if wide else self._delay(claimed.attempts, KEY_RETRY_CAP)
        failed = replace(claimed, last_error=describe(exc, conn), next_attempt_at=now + delay)
        with self._lock:
            if key_entry := self._entries.get(failed.key):
                key_entry.record = failed
                key_entry.next_try = now + delay
        try:
            put_json(storage, failed.key, failed.to_storage())
        except Exception as store_exc:
            log.warning("deletion queue: could not record a failed attempt: %s", type(store_exc).__name__)
        log.warning(
            "deletion retry failed: connection=%s key_id=%s attempts=%d next_in=%.1fs error=%s status=%s",
            failed.connection,
            failed.key_id,
            failed.attempts,
            delay,
            type(exc).__name__,
            exc.status,
        )
        return Outcome.CONNECTION_FAILED if wide else Outcome.KEY_FAILED

    def _connection_unusable(self, storage: Storage, entry: _Entry, message: str) -> None:
        """No client for the connection (deleted, changed, refused settings): keep the entry, say why."""
        delay = self.note_failure(entry.record.connection)
        now = self._b.clock()
        try:
            current = _read(storage, entry.record.key)
            if current is None or current.done_at is not None:
                self._forget(entry.record.key, stored=current is not None)
                return
            failed = replace(
                current,
                attempts=current.attempts + 1,
                last_attempt_at=now,
                last_error=scrub(message),
                next_attempt_at=now + delay,
            )
            put_json(storage, failed.key, failed.to_storage())
        except Exception as exc:
            log.warning("deletion queue: storage failed: %s", type(exc).__name__)
            return
        log.warning(
            "deletion retry cannot run: connection=%s key_id=%s next_in=%.1fs error=%s",
            failed.connection,
            failed.key_id,
            delay,
            message,
        )

    def _finish(self, storage: Storage, rec: PendingDeletion, *, existed: bool) -> None:
        now = self._b.clock()
        try:
            storage.delete(IssuedKeyRecord.storage_key(rec.connection, rec.key_id))
            if rec.vault_waiting:
                done = replace(rec, done_at=now, last_error="", next_attempt_at=None)
                put_json(storage, rec.key, done.to_storage())
            else:
                storage.delete(rec.key)
        except Exception as exc:
            # The key is gone; the entry is tried again and then finds it gone (404).
            log.warning("deletion queue: could not record a deletion: %s", type(exc).__name__)
            return
        self._forget(rec.key, stored=rec.vault_waiting)
        log.info(
            "deleted a queued key: connection=%s role=%s key_id=%s name=%s attempts=%d queued_for=%.1fs "
            "already_gone=%s",
            rec.connection,
            rec.role or "-",
            rec.key_id,
            rec.key_name,
            rec.attempts,
            now - rec.queued_at,
            not existed,
        )

    def _expired_at_provider(self, storage: Storage, rec: PendingDeletion) -> None:
        storage.delete(IssuedKeyRecord.storage_key(rec.connection, rec.key_id))
        storage.delete(rec.key)
        self._forget(rec.key, stored=False)
        log.warning(
            "dropped a queued deletion: the provider expired the key by itself: connection=%s key_id=%s "
            "name=%s attempts=%d",
            rec.connection,
            rec.key_id,
            rec.key_name,
            rec.attempts,
        )

    def _forget(self, key: str, *, stored: bool = True) -> None:
        """Drop an entry from the schedule (`stored=False`: and from storage's shadow, it was deleted)."""
        with self._lock:
            self._entries.pop(key, None)
            if not stored:
                self._stored.discard(key)

    def _delay(self, failures: int, cap: float) -> float:
        base = min(cap, FIRST_RETRY * 2.0 ** max(failures - 1, 0))
        return base * float(self._jitter(1 - JITTER, 1 + JITTER))


def _read(storage: Storage, key: str) -> PendingDeletion | None:
    raw = get_json(storage, key)
    if raw is None:
        return None
    try:
        return PendingDeletion.from_storage(raw)
    except RecordError as exc:
        log.error("deletion queue entry %s is unreadable: %s", key, exc)
        return None


def _read_all(storage: Storage) -> Iterable[PendingDeletion]:
    for folder in storage.list(DELETIONS_PREFIX):
        if not folder.endswith("/"):
            continue
        for leaf in list_leaves(storage, DELETIONS_PREFIX + folder):
            try:
                rec = _read(storage, DELETIONS_PREFIX + folder + leaf)
            except ValueError as exc:
                log.error("deletion queue entry %s%s is unreadable: %s", folder, leaf, exc)
                continue
            if rec is not None:
                yield rec
