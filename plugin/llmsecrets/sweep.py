"""The sweep: make sure no key outlives its lease, even when Vault or this plugin lost track of it.

Run from the framework's periodic hook (Vault's rollback tick, about once a minute) at most every
`interval` seconds (default 5 minutes; the last run time is stored in `tidy/state`), and on demand by
`tidy`. For every connection it deletes:

(a) keys in the index whose lease max expiry (+ `expired_grace`) has passed: no lease can own them any
    more (e.g. Vault gave up revoking them);
(b) orphans: keys at the provider whose name carries this mount's prefix, older than
    `min_orphan_age`, that are neither in the index (of any connection of this mount) nor named by a
    pending WAL entry. A key the provider lists without a creation time is aged from when the sweep
    first saw it.

A failure in one connection (or one key) is recorded and the sweep goes on with the rest; a key it
could not delete goes into the deletion queue (deletions.py), which retries it every few seconds instead
of waiting for the next sweep.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vaultplugin.framework import Request, get_json, get_wal, list_leaves, list_wal, put_json, runtime
from vaultplugin.framework.wal import WalDecodeError

from llmsecrets import connections
from llmsecrets.checkout_sets import sweep as sweep_sets
from llmsecrets.connections import UnusableConnection
from llmsecrets.deletions import describe
from llmsecrets.models import (
    CONFIG_PREFIX,
    KEYS_PREFIX,
    SWEEP_STATE_KEY,
    DeletionReason,
    IssuedKeyRecord,
    PendingCreate,
    RecordError,
    SweepConfig,
    SweepState,
    WalKind,
)
from llmsecrets.providers.base import ProviderClient, ProviderKey
from llmsecrets.providers.errors import ProviderError

if TYPE_CHECKING:
    from vaultplugin.framework import Storage

    from llmsecrets.backend import LLMBackend

log = logging.getLogger(__name__)

# How long `tidy` waits for a periodic sweep that is already running.
TIDY_WAIT_SECONDS = 120.0


@dataclass(frozen=True)
class SweptKey:
    connection: str
    key_id: str
    key_name: str

    def to_json(self) -> dict[str, str]:
        return {"connection": self.connection, "key_id": self.key_id, "key_name": self.key_name}


@dataclass
class SweepReport:
    """What one sweep found and did (ids and names only, never key values)."""

    ran_at: float
    connections_checked: int = 0
    expired_deleted: list[SweptKey] = field(default_factory=list)
    orphans_deleted: list[SweptKey] = field(default_factory=list)
    orphans_too_young: int = 0
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # Check-out sets: keys active with no lease (deactivated), and keys past their lease max (reclaimed).
    set_keys_deactivated: list[dict[str, str]] = field(default_factory=list)
    set_keys_reclaimed: list[dict[str, str]] = field(default_factory=list)

    def to_response(self) -> dict[str, Any]:
        return {
            "connections_checked": self.connections_checked,
            "expired_deleted_count": len(self.expired_deleted),
            "expired_deleted": [k.to_json() for k in self.expired_deleted],
            "orphans_deleted_count": len(self.orphans_deleted),
            "orphans_deleted": [k.to_json() for k in self.orphans_deleted],
            "orphans_too_young": self.orphans_too_young,
            "failure_count": len(self.failures),
            "failures": list(self.failures),
            "notes": list(self.notes),
            "set_keys_deactivated": list(self.set_keys_deactivated),
            "set_keys_reclaimed": list(self.set_keys_reclaimed),
        }


class SweepBusy(Exception):
    """Another sweep is running and did not finish in time."""


class Sweeper:
    """Holds the sweep's in-memory state: the last run time, first sightings, and a run lock."""

    def __init__(self, b: LLMBackend) -> None:
        self._b = b
        self._run_lock = threading.Lock()
        self._last_run: float | None = None
        self._first_seen: dict[tuple[str, str], float] = {}

    # --- entry points --------------------------------------------------------------------------------------

    def periodic(self, req: Request) -> None:
        """The framework's periodic hook: sweep if `interval` has passed since the last run."""
        storage = req.storage
        if storage is None:
            return
        config = self._b.sweep_config(storage)
        if config.interval <= 0:
            return
        now = self._b.clock()
        last = self._last_run_time(storage)
        if last is not None and 0 <= now - last < config.interval:
            return
        if not self._run_lock.acquire(blocking=False):
            return  # a tidy is running
        try:
            self._run(storage, config, now)
        finally:
            self._run_lock.release()

    def run(self, storage: Storage) -> SweepReport:
        """Sweep now (for `tidy`), waiting for a periodic sweep already under way (on a pool thread: the
        wait may be long, and `tidy` runs on the hub)."""
        if not runtime.run_blocking(lambda: self._run_lock.acquire(timeout=TIDY_WAIT_SECONDS)):
            raise SweepBusy("another sweep is still running")
        try:
            return self._run(storage, self._b.sweep_config(storage), self._b.clock())
        finally:
            self._run_lock.release()

    # --- the sweep -----------------------------------------------------------------------------------------

    def _last_run_time(self, storage: Storage) -> float | None:
        if self._last_run is None:
            raw = get_json(storage, SWEEP_STATE_KEY)
            if raw is not None:
                try:
                    self._last_run = SweepState.from_storage(raw).last_run
                except RecordError as exc:
                    log.error("sweep state is unreadable (%s); sweeping now", exc)
        return self._last_run

    def _run(self, storage: Storage, config: SweepConfig, now: float) -> SweepReport:
        b = self._b
        report = SweepReport(ran_at=now)
        # Record the run first: a sweep that keeps failing must not run on every tick.
        self._last_run = now
        put_json(storage, SWEEP_STATE_KEY, SweepState(last_run=now).to_storage())

        index, unreadable = _read_index(storage)
        by_connection: dict[str, list[IssuedKeyRecord]] = {}
        for rec in index:
            by_connection.setdefault(rec.connection, []).append(rec)
        names = set(list_leaves(storage, CONFIG_PREFIX)) | set(by_connection)
        scan_orphans = b.mount_known and not unreadable
        if not b.mount_known:
            report.notes.append("orphan scan skipped: the host gave this mount no backend UUID")
        if unreadable:
            report.notes.append(
                f"orphan scan skipped: {unreadable} index record(s) are unreadable (see the plugin's log), "
                "so live keys could not be told from orphans"
            )
        run = _Run(
            storage=storage,
            config=config,
            now=now,
            report=report,
            known_ids={rec.key_id for rec in index},
            pending_names=_pending_names(storage),
        )

        for name in sorted(names):
            try:
                conn = b.connection(storage, name)
            except Exception as exc:
                report.failures.append(f"connection {name!r}: unreadable config ({type(exc).__name__})")
                continue
            records = by_connection.get(name, [])
            if conn is None:
                report.failures.append(
                    f"connection {name!r} no longer exists; {len(records)} indexed key(s) cannot be deleted"
                )
                continue
            try:
                client = connections.client(b, conn)
            except UnusableConnection as exc:
                report.failures.append(f"connection {name!r}: {exc.reason}")
                continue
            report.connections_checked += 1
            if client.capabilities.checkout_only:
                continue  # its keys belong to check-out sets, swept below
            self._delete_expired(run, client, records)
            if scan_orphans:
                self._delete_orphans(run, client, name)

        sets = sweep_sets(b, storage, now=now, expired_grace=config.expired_grace)
        report.set_keys_deactivated.extend(sets.deactivated)
        report.set_keys_reclaimed.extend(sets.freed)
        report.failures.extend(sets.failures)
        # Forget sightings of keys that are gone, so the map cannot grow without bound.
        self._first_seen = {k: v for k, v in self._first_seen.items() if k in run.seen}
        log.info(
            "sweep done: connections=%d expired_deleted=%d orphans_deleted=%d too_young=%d failures=%d",
            report.connections_checked,
            len(report.expired_deleted),
            len(report.orphans_deleted),
            report.orphans_too_young,
            len(report.failures),
        )
        b.metrics.sweep_done(report)
        return report

    def _delete_expired(self, run: _Run, client: ProviderClient, records: list[IssuedKeyRecord]) -> None:
        for rec in records:
            if run.now <= rec.lease_expires_at + run.config.expired_grace:
                continue
            try:
                client.delete_key(rec.key_id, scope=rec.scope, deadline=self._b.deadline())
            except ProviderError as exc:
                key = ProviderKey(rec.key_id, rec.key_name, None, rec.scope)
                queued = self._queue(run, key, rec.connection, rec.provider, exc, role=rec.role)
                run.report.failures.append(
                    f"connection {rec.connection!r}: deleting expired key {rec.key_id}: {exc}{queued}"
                )
                continue
            run.storage.delete(rec.key)
            run.report.expired_deleted.append(SweptKey(rec.connection, rec.key_id, rec.key_name))
            log.info(
                "sweep deleted a key past its lease max TTL: connection=%s role=%s key_id=%s name=%s",
                rec.connection,
                rec.role,
                rec.key_id,
                rec.key_name,
            )

    def _delete_orphans(self, run: _Run, client: ProviderClient, connection: str) -> None:
        prefix = self._b.mount_prefix
        try:
            found = client.find_keys(prefix, scope=None, deadline=self._b.deadline())
        except ProviderError as exc:
            run.report.failures.append(f"connection {connection!r}: listing keys: {exc}")
            return
        for key in found:
            if (
                not key.name.startswith(prefix)
                or key.key_id in run.known_ids
                or key.name in run.pending_names
            ):
                continue
            if self._age(run, connection, key) < run.config.min_orphan_age:
                run.report.orphans_too_young += 1
                continue
            try:
                client.delete_key(key.key_id, scope=key.scope, deadline=self._b.deadline())
            except ProviderError as exc:
                queued = self._queue(run, key, connection, client.name, exc)
                run.report.failures.append(
                    f"connection {connection!r}: deleting orphan {key.key_id}: {exc}{queued}"
                )
                continue
            run.report.orphans_deleted.append(SweptKey(connection, key.key_id, key.name))
            log.info(
                "sweep deleted an orphan key: connection=%s key_id=%s name=%s",
                connection,
                key.key_id,
                key.name,
            )

    def _queue(
        self,
        run: _Run,
        key: ProviderKey,
        connection: str,
        provider: str,
        exc: ProviderError,
        *,
        role: str = "",
    ) -> str:
        """Hand a key the sweep could not delete to the deletion queue; the note for the report."""
        try:
            self._b.deletions.enqueue(
                run.storage,
                connection=connection,
                provider=provider,
                key_id=key.key_id,
                scope=key.scope,
                key_name=key.name,
                role=role,
                reason=DeletionReason.SWEEP,
                expires_by=None,
                vault_waiting=False,
                error=describe(exc),
            )
        except Exception as store_exc:
            log.warning("sweep could not queue key %s for deletion: %s", key.key_id, type(store_exc).__name__)
            return ""
        return " (queued for deletion)"

    def _age(self, run: _Run, connection: str, key: ProviderKey) -> float:
        if key.created_at is not None:
            return run.now - key.created_at.timestamp()
        ident = (connection, key.key_id)
        run.seen.add(ident)
        return run.now - self._first_seen.setdefault(ident, run.now)


@dataclass
class _Run:
    """The state of one sweep."""

    storage: Storage
    config: SweepConfig
    now: float
    report: SweepReport
    known_ids: set[str]
    pending_names: set[str]
    seen: set[tuple[str, str]] = field(default_factory=set)


def _read_index(storage: Storage) -> tuple[list[IssuedKeyRecord], int]:
    """Every readable record of the index, and how many were unreadable (logged)."""
    out: list[IssuedKeyRecord] = []
    unreadable = 0
    for folder in storage.list(KEYS_PREFIX):
        if not folder.endswith("/"):
            continue
        for leaf in storage.list(KEYS_PREFIX + folder):
            if leaf.endswith("/"):
                continue
            key = KEYS_PREFIX + folder + leaf
            try:
                raw = get_json(storage, key)
                if raw is not None:
                    out.append(IssuedKeyRecord.from_storage(raw))
            except (RecordError, ValueError) as exc:
                log.error("skipping unreadable index record %s: %s", key, exc)
                unreadable += 1
    return out, unreadable


def _pending_names(storage: Storage) -> set[str]:
    """Key names of every pending create in the WAL, whatever its age."""
    names: set[str] = set()
    for wal_id in list_wal(storage):
        try:
            entry = get_wal(storage, wal_id)
            if entry is not None and entry.kind == WalKind.CREATE_KEY:
                names.add(PendingCreate.from_wal(entry.data).key_name)
        except (WalDecodeError, RecordError) as exc:
            log.error("skipping unreadable WAL entry %s: %s", wal_id, exc)
    return names
