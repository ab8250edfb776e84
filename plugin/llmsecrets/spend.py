"""Spend per lease: what each lease's key spent at its provider, kept per day for `spend` to answer.

At revoke (leases.py), before the key is deleted, `read` asks the provider what the key spent where the
provider reports it on the key itself (OpenRouter `usage`, LiteLLM `spend`): a deleted key can no longer be
asked. That read is bounded by `read_timeout` (default 2 s) and never fails or blocks the revoke: on any
failure the lease is recorded with an unknown amount and the delete goes ahead. When the delete fails (the
key goes to the deletion queue), the queue reads the spend again right before its own delete
(`before_queued_delete`). OpenAI reports spend late, through its costs API (by API key id, deleted keys
included): such a lease is recorded as "collecting" and the rollback tick asks again every `late_interval`
until `late_window` after the revoke, keeping the latest figure; then it is "collected". Providers that
report nothing per key (xAI, Fireworks, OpenAI's service account per lease) are recorded as "unreported", so
the lease still counts.

`keep` logs one line per lease ("spend: role=... key_id=... usd=...") and writes the record after the
revoke's reply (one storage write; two for a late one).

Storage (all under `spend/`, bounded):
- `spend/leases/<day>/<record id>`: one record per lease, in the UTC day the lease ended; the record id is a
  hash of connection and key id, so a retried revoke overwrites its own record. At most
  `max_leases_per_day` a day: beyond it a lease's amount goes only into the day's totals
  (`spend/overflow/<day>`, merged by the tick, so it shows within a minute).
- `spend/days/<day>`: a past day compacted by the tick once nothing of it is still collecting: per-role
  totals and each role's `TOP_KEPT` largest leases; the day's records are then deleted.
- `spend/pending/<record id>`: the leases still collecting (also kept in memory by the active node).
- Days older than `retention_days` (default 30) are dropped, oldest first, by the tick.

Concurrency: revokes run on the hub and on pool threads. The lock guards only memory (never held across a
storage call). The tick (one at a time per mount) is the only writer of `spend/days/`, `spend/overflow/` and
of a collecting record after its revoke.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from vaultplugin.framework import LeaseInfo, Storage, get_json, put_json
from vaultplugin.framework.runtime import defer
from vaultplugin.framework.storage import list_leaves

from llmsecrets import connections
from llmsecrets.deletions import connection_wide
from llmsecrets.models import LeaseRef, PendingDeletion
from llmsecrets.providers.base import SPEND_LATE, SPEND_LIVE, ProviderClient, SpendReporting
from llmsecrets.providers.errors import ProviderError, ProviderNotFound

if TYPE_CHECKING:
    from llmsecrets.backend import LLMBackend

log = logging.getLogger(__name__)

CONFIG_KEY = "spend/config"
LEASES_PREFIX = "spend/leases/"
DAYS_PREFIX = "spend/days/"
OVERFLOW_PREFIX = "spend/overflow/"
PENDING_PREFIX = "spend/pending/"

READ = "read"  # read from the key at revoke
COLLECTING = "collecting"  # reported late: still being collected
COLLECTED = "collected"  # reported late: the collection window is over
UNREPORTED = "unreported"  # the provider reports no spend for this key
FAILED = "failed"  # the read failed; the amount is unknown
STATUSES = (READ, COLLECTING, COLLECTED, UNREPORTED, FAILED)

# Largest leases of each role a compacted day keeps (and the most `spend` shows).
TOP_KEPT = 100
# Ids asked for in one costs call.
LATE_BATCH = 50
# A tick's whole collection pass may take this long.
COLLECT_SECONDS = 30.0
# A day is compacted only this long after it ended (a revoke's write may still be on its way).
COMPACT_AFTER = 600
DAY = 86400

LIMITS: dict[str, tuple[float, float]] = {
    "retention_days": (1, 366),
    "max_leases_per_day": (1, 1_000_000),
    "read_timeout": (0.1, 30),
    "late_window": (0, 7 * DAY),
    "late_interval": (0, DAY),
}


def day_of(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def _day_start(day: str) -> float:
    return datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC).timestamp()


def record_id(connection: str, key_id: str) -> str:
    return hashlib.sha256(f"{connection}\0{key_id}".encode()).hexdigest()[:32]


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def usd_text(usd: float | None, status: str) -> str:
    if usd is not None:
        return f"{usd:.6f}"
    return "pending" if status == COLLECTING else "unknown"


class SpendRecordError(ValueError):
    """A stored spend entry is not what this module writes."""


def _num(data: Mapping[str, Any], name: str, *, optional: bool = False) -> float | None:
    value = data.get(name)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpendRecordError(f"{name!r} is not a number")
    return float(value)


def _text(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name) or ""
    if not isinstance(value, str):
        raise SpendRecordError(f"{name!r} is not a string")
    return value


# --- records ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpendConfig:
    """`spend/config`. `enabled` False: nothing is read at revoke and nothing new is recorded."""

    enabled: bool = True
    retention_days: int = 30
    max_leases_per_day: int = 10_000
    read_timeout: float = 2.0
    late_window: int = DAY
    late_interval: int = 600

    def to_storage(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "retention_days": self.retention_days,
            "max_leases_per_day": self.max_leases_per_day,
            "read_timeout": self.read_timeout,
            "late_window": self.late_window,
            "late_interval": self.late_interval,
        }

    @classmethod
    def from_storage(cls, data: Mapping[str, Any]) -> SpendConfig:
        base = cls()
        enabled = data.get("enabled", base.enabled)
        if not isinstance(enabled, bool):
            raise SpendRecordError("'enabled' is not a bool")
        values: dict[str, Any] = {"enabled": enabled}
        for name in LIMITS:
            number = _num(data, name, optional=True)
            values[name] = getattr(base, name) if number is None else number
        config = cls(
            enabled=values["enabled"],
            retention_days=int(values["retention_days"]),
            max_leases_per_day=int(values["max_leases_per_day"]),
            read_timeout=float(values["read_timeout"]),
            late_window=int(values["late_window"]),
            late_interval=int(values["late_interval"]),
        )
        config.check()
        return config

    def check(self) -> None:
        """ValueError naming the first setting out of its range."""
        for name, (low, high) in LIMITS.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise ValueError(f'"{name}" must be between {low:g} and {high:g}')


@dataclass(frozen=True)
class LeaseSpend:
    """What one lease's key spent. `usd` is None while unknown (unreported, failed, not collected yet).

    `lease_id` is what the host sent with the revoke: OpenBao stores the secret before it names the lease,
    so it sends none, and a lease is known by its key's id (in its creds data) and issue time."""

    lease_id: str
    role: str
    connection: str
    provider: str
    key_id: str
    key_name: str
    issued_at: float | None
    ended_at: float
    usd: float | None
    status: str
    note: str = ""
    checks: int = 0  # late collections made

    @property
    def record_id(self) -> str:
        return record_id(self.connection, self.key_id)

    @property
    def day(self) -> str:
        return day_of(self.ended_at)

    @property
    def storage_key(self) -> str:
        return f"{LEASES_PREFIX}{self.day}/{self.record_id}"

    def to_storage(self) -> dict[str, Any]:
        return {
            "lease_id": self.lease_id or None,  # Vault's revoke does not carry it: the key id names the lease
            "role": self.role,
            "connection": self.connection,
            "provider": self.provider,
            "key_id": self.key_id,
            "key_name": self.key_name,
            "issued_at": self.issued_at,
            "ended_at": self.ended_at,
            "usd": self.usd,
            "status": self.status,
            "note": self.note,
            "checks": self.checks,
        }

    @classmethod
    def from_storage(cls, data: Mapping[str, Any]) -> LeaseSpend:
        status = _text(data, "status")
        if status not in STATUSES:
            raise SpendRecordError(f"unknown status {status!r}")
        ended_at = _num(data, "ended_at")
        assert ended_at is not None
        return cls(
            lease_id=_text(data, "lease_id"),
            role=_text(data, "role"),
            connection=_text(data, "connection"),
            provider=_text(data, "provider"),
            key_id=_text(data, "key_id"),
            key_name=_text(data, "key_name"),
            issued_at=_num(data, "issued_at", optional=True),
            ended_at=ended_at,
            usd=_num(data, "usd", optional=True),
            status=status,
            note=_text(data, "note"),
            checks=int(_num(data, "checks", optional=True) or 0),
        )

    def to_response(self) -> dict[str, Any]:
        return {
            "lease_id": self.lease_id or None,  # Vault's revoke does not carry it: the key id names the lease
            "role": self.role,
            "connection": self.connection,
            "provider": self.provider,
            "key_id": self.key_id,
            "key_name": self.key_name,
            "issued_at": _iso(self.issued_at),
            "ended_at": _iso(self.ended_at),
            "usd": self.usd,
            "status": self.status,
            "note": self.note,
        }


@dataclass
class Pending:
    """A lease whose spend is reported late: collected by the tick until `until`."""

    record: LeaseSpend
    scope: str
    since: float  # the costs query starts at this time's day
    until: float  # end of the collection window
    next_at: float = 0.0  # memory only: a restart collects at once

    @property
    def storage_key(self) -> str:
        return PENDING_PREFIX + self.record.record_id

    def to_storage(self) -> dict[str, Any]:
        return {
            "record": self.record.to_storage(),
            "scope": self.scope,
            "since": self.since,
            "until": self.until,
        }

    @classmethod
    def from_storage(cls, data: Mapping[str, Any]) -> Pending:
        raw = data.get("record")
        if not isinstance(raw, Mapping):
            raise SpendRecordError("'record' is not an object")
        since, until = _num(data, "since"), _num(data, "until")
        assert since is not None and until is not None
        return cls(LeaseSpend.from_storage(raw), _text(data, "scope"), since, until)


@dataclass
class RoleTotal:
    usd: float = 0.0
    leases: int = 0
    unknown: int = 0  # leases whose amount is not known (unreported, failed, not collected yet)
    collecting: int = 0

    def add(self, rec: LeaseSpend) -> None:
        self.leases += 1
        if rec.usd is None:
            self.unknown += 1
        else:
            self.usd += rec.usd
        if rec.status == COLLECTING:
            self.collecting += 1

    def merge(self, other: RoleTotal) -> None:
        self.usd += other.usd
        self.leases += other.leases
        self.unknown += other.unknown
        self.collecting += other.collecting

    def to_storage(self) -> dict[str, Any]:
        return {
            "usd": round(self.usd, 9),
            "leases": self.leases,
            "unknown": self.unknown,
            "collecting": self.collecting,
        }

    @classmethod
    def from_storage(cls, data: Any) -> RoleTotal:
        if not isinstance(data, Mapping):
            raise SpendRecordError("a role total is not an object")
        return cls(
            usd=_num(data, "usd") or 0.0,
            leases=int(_num(data, "leases") or 0),
            unknown=int(_num(data, "unknown") or 0),
            collecting=int(_num(data, "collecting", optional=True) or 0),
        )


def _roles_from(data: Any) -> dict[str, RoleTotal]:
    if not isinstance(data, Mapping):
        raise SpendRecordError("'roles' is not an object")
    return {str(role): RoleTotal.from_storage(total) for role, total in data.items()}


@dataclass(frozen=True)
class Reading:
    """What `read` found before the delete."""

    usd: float | None
    status: str
    note: str = ""


@dataclass
class DayView:
    """One day as `spend` sees it: per-role totals and the day's leases (all, or a compacted day's top)."""

    roles: dict[str, RoleTotal] = field(default_factory=dict)
    leases: list[LeaseSpend] = field(default_factory=list)


def _top(records: Iterable[LeaseSpend], n: int) -> list[LeaseSpend]:
    """The `n` largest spenders; unknown amounts last, then the most recent first."""
    return sorted(records, key=lambda r: (r.usd is None, -(r.usd or 0.0), -r.ended_at))[:n]


# --- the ledger ---------------------------------------------------------------------------------------------


class SpendLedger:
    """Reads, keeps and reports spend per lease for one mount (see the module docstring)."""

    def __init__(self, b: LLMBackend) -> None:
        self._b = b
        self._lock = threading.Lock()
        self._config: SpendConfig | None = None
        self._config_generation = 0
        self._day_counts: dict[str, int] = {}  # records written per day (seeded by one list of the day)
        self._overflow: dict[str, dict[str, RoleTotal]] = {}  # day -> role -> totals over the cap
        self._pending: dict[str, Pending] = {}
        self._pending_loaded = False

    # --- config

    def config(self, storage: Storage) -> SpendConfig:
        with self._lock:
            if self._config is not None:
                return self._config
            generation = self._config_generation
        raw = get_json(storage, CONFIG_KEY)
        try:
            config = SpendConfig() if raw is None else SpendConfig.from_storage(raw)
        except (SpendRecordError, ValueError) as exc:
            log.error("stored spend config is unreadable (%s); using the defaults", exc)
            config = SpendConfig()
        with self._lock:
            if self._config_generation == generation:
                self._config = config
        return config

    def save_config(self, storage: Storage, config: SpendConfig) -> None:
        config.check()
        put_json(storage, CONFIG_KEY, config.to_storage())
        self.forget_config()

    def forget_config(self) -> None:
        with self._lock:
            self._config_generation += 1
            self._config = None

    def clear(self) -> None:
        """Forget what is in memory (Cleanup); the storage stays. Unflushed overflow totals are lost."""
        with self._lock:
            self._config_generation += 1
            self._config = None
            self._day_counts.clear()
            self._overflow.clear()
            self._pending.clear()
            self._pending_loaded = False

    # --- at revoke

    def read(self, storage: Storage, client: ProviderClient, ref: LeaseRef) -> Reading | None:
        """What the lease's key spent, asked before it is deleted; None when recording is off. Never raises:
        a failure is a reading with an unknown amount, after at most `read_timeout`."""
        try:
            config = self.config(storage)
        except Exception:
            config = SpendConfig()  # a storage fault must not cost the revoke: record with the defaults
        if not config.enabled:
            return None
        if not isinstance(client, SpendReporting):
            return Reading(None, UNREPORTED, f"{ref.provider} reports no spend per key")
        try:
            kind = client.spend_kind(ref.scope)
            if kind == SPEND_LATE:
                return Reading(
                    None, COLLECTING, f"{ref.provider} reports spend late; collected after the revoke"
                )
            if kind != SPEND_LIVE:
                return Reading(None, UNREPORTED, f"{ref.provider} reports no spend for this kind of key")
            usd = client.key_spend(
                ref.key_id, scope=ref.scope, deadline=self._b.deadline(config.read_timeout)
            )
        except ProviderNotFound:
            return Reading(None, FAILED, "the key was already gone at the provider")
        except ProviderError as exc:
            return Reading(None, FAILED, f"reading the spend failed: {exc.message[:300]}")
        except Exception as exc:
            log.exception("reading the spend of key %s failed", ref.key_id)
            return Reading(None, FAILED, f"reading the spend failed ({type(exc).__name__})")
        return Reading(usd, READ)

    def not_read(self, storage: Storage, why: str) -> Reading | None:
        """A reading for a revoke that makes no provider call (None when recording is off)."""
        try:
            enabled = self.config(storage).enabled
        except Exception:
            enabled = True
        return Reading(None, FAILED, f"not read: {why}") if enabled else None

    def before_queued_delete(
        self, storage: Storage, client: ProviderClient, entry: PendingDeletion
    ) -> tuple[LeaseSpend, Reading] | None:
        """The deletion queue is about to delete a key whose revoke failed: read its spend now (the revoke
        could not, or the key has been live since). A failure every call would meet now (outage, rate limit,
        refused admin key) is raised: the queue's attempt then fails as the delete would have, with no call
        more than before; any other failure leaves the record as it is."""
        try:
            if not self.config(storage).enabled or not isinstance(client, SpendReporting):
                return None
            if client.spend_kind(entry.scope) != SPEND_LIVE:
                return None
            rec: LeaseSpend | None = None
            # The revoke recorded the lease in the day it queued the key.
            for day in dict.fromkeys((day_of(entry.queued_at), day_of(entry.queued_at + 60))):
                raw = get_json(storage, f"{LEASES_PREFIX}{day}/{record_id(entry.connection, entry.key_id)}")
                if raw is not None:
                    rec = LeaseSpend.from_storage(raw)
                    break
            if rec is None or rec.status not in (FAILED, READ):
                return None
            config = self.config(storage)
            usd = client.key_spend(
                entry.key_id, scope=entry.scope, deadline=self._b.deadline(config.read_timeout)
            )
        except ProviderError as exc:
            if connection_wide(exc):
                raise
            return None
        except Exception:
            log.exception("spend: reading the spend of queued key %s failed", entry.key_id)
            return None
        return rec, Reading(usd, READ)

    def after_queued_delete(self, storage: Storage, found: tuple[LeaseSpend, Reading] | None) -> None:
        """Keep what `before_queued_delete` read, now that the key is deleted. Never raises."""
        if found is None:
            return
        rec, reading = found
        new = replace(rec, usd=reading.usd, status=READ, note="read by the deletion queue, before its delete")
        try:
            put_json(storage, new.storage_key, new.to_storage())
        except Exception:
            log.exception("spend: could not record the spend of key %s", rec.key_id)
            return
        log.info(
            "spend: role=%s connection=%s key_id=%s usd=%s status=%s",
            new.role,
            new.connection,
            new.key_id,
            usd_text(new.usd, new.status),
            new.status,
        )

    def keep(self, storage: Storage, ref: LeaseRef, lease: LeaseInfo, reading: Reading | None) -> None:
        """Log the lease's spend and record it after the reply. Never raises."""
        if reading is None:
            return
        try:
            now = self._b.clock()
            issued = lease.issue_time.timestamp() if lease.issue_time is not None else None
            rec = LeaseSpend(
                lease_id=lease.lease_id or "",
                role=ref.role,
                connection=ref.connection,
                provider=ref.provider,
                key_id=ref.key_id,
                key_name=ref.key_name,
                issued_at=issued,
                ended_at=now,
                usd=reading.usd,
                status=reading.status,
                note=reading.note,
            )
            log.info(
                "spend: role=%s connection=%s key_id=%s usd=%s status=%s",
                rec.role,
                rec.connection,
                rec.key_id,
                usd_text(rec.usd, rec.status),
                rec.status,
            )
            pending = None
            if rec.status == COLLECTING:
                config = self.config(storage)
                # The key lived at most its lease's max TTL before now; a month when Vault did not say.
                since = issued if issued is not None else now - (lease.max_ttl or 31 * DAY)
                pending = Pending(rec, ref.scope, since, now + config.late_window)
            defer(lambda: self._write(storage, rec, pending))
        except Exception:
            log.exception("could not record the spend of key %s", ref.key_id)

    def _write(self, storage: Storage, rec: LeaseSpend, pending: Pending | None) -> None:
        config = self.config(storage)
        if not self._admit(storage, rec.day, config.max_leases_per_day):
            # Over the day's cap: only the totals keep it. A late amount is not collected for it.
            counted = replace(rec, status=FAILED) if rec.status == COLLECTING else rec
            with self._lock:
                self._overflow.setdefault(rec.day, {}).setdefault(rec.role, RoleTotal()).add(counted)
            return
        put_json(storage, rec.storage_key, rec.to_storage())
        if pending is not None:
            put_json(storage, pending.storage_key, pending.to_storage())
            with self._lock:
                self._pending[rec.record_id] = pending

    def _admit(self, storage: Storage, day: str, cap: int) -> bool:
        with self._lock:
            known = day in self._day_counts
        if not known:
            count = len(list_leaves(storage, f"{LEASES_PREFIX}{day}/"))
            with self._lock:
                self._day_counts.setdefault(day, count)
        with self._lock:
            if self._day_counts[day] >= cap:
                return False
            self._day_counts[day] += 1
            return True

    # --- the rollback tick

    def tick(self, storage: Storage) -> None:
        """Flush over-cap totals, collect late spend, compact one past day, drop days past retention."""
        config = self.config(storage)
        now = self._b.clock()
        for step in (self._flush_overflow, self._collect, self._compact, self._expire):
            try:
                step(storage, config, now)
            except Exception:
                log.exception("spend tick: %s failed", step.__name__.strip("_"))

    def _flush_overflow(self, storage: Storage, config: SpendConfig, now: float) -> None:
        with self._lock:
            overflow, self._overflow = self._overflow, {}
        for day, roles in overflow.items():
            try:
                key = OVERFLOW_PREFIX + day
                raw = get_json(storage, key)
                merged = _roles_from(raw["roles"]) if raw is not None else {}
                for role, total in roles.items():
                    merged.setdefault(role, RoleTotal()).merge(total)
                put_json(storage, key, {"roles": {r: t.to_storage() for r, t in merged.items()}})
            except Exception:
                with self._lock:  # try again on the next tick
                    for role, total in roles.items():
                        self._overflow.setdefault(day, {}).setdefault(role, RoleTotal()).merge(total)
                raise

    def _load_pending(self, storage: Storage) -> None:
        with self._lock:
            if self._pending_loaded:
                return
        found: dict[str, Pending] = {}
        for name in list_leaves(storage, PENDING_PREFIX):
            raw = get_json(storage, PENDING_PREFIX + name)
            if raw is None:
                continue
            try:
                found[name] = Pending.from_storage(raw)
            except SpendRecordError as exc:
                log.error("spend: dropping the unreadable pending entry %s: %s", name, exc)
                storage.delete(PENDING_PREFIX + name)
        with self._lock:
            for name, entry in found.items():
                self._pending.setdefault(name, entry)
            self._pending_loaded = True

    def pending(self) -> list[Pending]:
        with self._lock:
            return list(self._pending.values())

    def _collect(self, storage: Storage, config: SpendConfig, now: float) -> None:
        self._load_pending(storage)
        due = [p for p in self.pending() if p.next_at <= now]
        groups: dict[tuple[str, str, str], list[Pending]] = {}
        for p in due:
            groups.setdefault((p.record.connection, p.record.provider, p.scope), []).append(p)
        stop_at = time.monotonic() + COLLECT_SECONDS
        for (conn, provider, scope), entries in groups.items():
            for start in range(0, len(entries), LATE_BATCH):
                if time.monotonic() >= stop_at:
                    return  # the rest waits for the next tick
                batch = entries[start : start + LATE_BATCH]
                spent: dict[str, float] | None = None
                error = ""
                try:
                    client = connections.client_for_keys(self._b, storage, conn, provider)[1]
                    if not isinstance(client, SpendReporting):
                        raise ProviderError(provider, f"{provider} reports no spend per key")
                    spent = client.keys_spend(
                        [p.record.key_id for p in batch],
                        scope=scope,
                        since=datetime.fromtimestamp(min(p.since for p in batch), UTC),
                        deadline=self._b.deadline(),
                    )
                except ProviderError as exc:
                    error = exc.message[:300]
                except connections.UnusableConnection as exc:
                    error = str(exc)[:300]
                for p in batch:
                    self._settle(storage, config, p, now=now, spent=spent, error=error)

    def _settle(
        self,
        storage: Storage,
        config: SpendConfig,
        p: Pending,
        *,
        now: float,
        spent: dict[str, float] | None,
        error: str,
    ) -> None:
        rec = p.record
        final = now >= p.until
        if spent is not None:
            usd = spent.get(rec.key_id, 0.0)
            note = "" if final else f"reported late: collected until {_iso(p.until)}"
            new = replace(
                rec, usd=usd, checks=rec.checks + 1, status=COLLECTED if final else COLLECTING, note=note
            )
        else:
            note = f"collection failed: {error}" if error else rec.note
            new = replace(rec, status=COLLECTED if final else COLLECTING, note=note)
        if new != rec:
            put_json(storage, new.storage_key, new.to_storage())
        if final:
            storage.delete(p.storage_key)
            with self._lock:
                self._pending.pop(rec.record_id, None)
            log.info(
                "spend: role=%s connection=%s key_id=%s usd=%s status=%s",
                new.role,
                new.connection,
                new.key_id,
                usd_text(new.usd, new.status),
                new.status,
            )
            return
        p.record = new
        p.next_at = now + config.late_interval

    def _compact(self, storage: Storage, config: SpendConfig, now: float) -> None:
        """Fold the oldest finished day into a summary (one day a tick)."""
        busy = {p.record.day for p in self.pending()}
        for folder in sorted(storage.list(LEASES_PREFIX)):
            day = folder.rstrip("/")
            if not folder.endswith("/") or day in busy or _day_start(day) + DAY + COMPACT_AFTER > now:
                continue
            names = list_leaves(storage, LEASES_PREFIX + folder)
            if get_json(storage, DAYS_PREFIX + day) is None:
                view = self._day_from_records(storage, day, names)
                top = {
                    role: [r.to_storage() for r in _top((x for x in view.leases if x.role == role), TOP_KEPT)]
                    for role in view.roles
                }
                put_json(
                    storage,
                    DAYS_PREFIX + day,
                    {"roles": {r: t.to_storage() for r, t in view.roles.items()}, "top": top},
                )
            for name in names:
                storage.delete(LEASES_PREFIX + folder + name)
            storage.delete(OVERFLOW_PREFIX + day)
            with self._lock:
                self._day_counts.pop(day, None)
            return

    def _expire(self, storage: Storage, config: SpendConfig, now: float) -> None:
        """Drop every day older than the retention, oldest first (one day of records a tick)."""
        first_kept = day_of(now - (config.retention_days - 1) * DAY)
        for prefix in (DAYS_PREFIX, OVERFLOW_PREFIX):
            for name in list_leaves(storage, prefix):
                if name < first_kept:
                    storage.delete(prefix + name)
        with self._lock:
            stale = [p for p in self._pending.values() if p.record.day < first_kept]
            for p in stale:
                self._pending.pop(p.record.record_id, None)
            for day in [d for d in self._day_counts if d < first_kept]:
                del self._day_counts[day]
        for p in stale:
            storage.delete(p.storage_key)
        for folder in sorted(storage.list(LEASES_PREFIX)):
            if folder.endswith("/") and folder.rstrip("/") < first_kept:
                for name in list_leaves(storage, LEASES_PREFIX + folder):
                    storage.delete(LEASES_PREFIX + folder + name)
                return

    # --- what `spend` reads

    def _day_from_records(self, storage: Storage, day: str, names: list[str] | None = None) -> DayView:
        view = DayView()
        folder = f"{LEASES_PREFIX}{day}/"
        for name in names if names is not None else list_leaves(storage, folder):
            raw = get_json(storage, folder + name)
            if raw is None:
                continue
            try:
                rec = LeaseSpend.from_storage(raw)
            except SpendRecordError as exc:
                log.error("spend: unreadable record %s%s: %s", folder, name, exc)
                continue
            view.leases.append(rec)
            view.roles.setdefault(rec.role, RoleTotal()).add(rec)
        overflow = get_json(storage, OVERFLOW_PREFIX + day)
        if overflow is not None:
            for role, total in _roles_from(overflow.get("roles")).items():
                view.roles.setdefault(role, RoleTotal()).merge(total)
        return view

    def day_view(self, storage: Storage, day: str) -> DayView:
        summary = get_json(storage, DAYS_PREFIX + day)
        if summary is None:
            return self._day_from_records(storage, day)
        view = DayView(roles=_roles_from(summary.get("roles")))
        top = summary.get("top")
        if isinstance(top, Mapping):
            for records in top.values():
                if isinstance(records, list):
                    for raw in records:
                        with contextlib.suppress(SpendRecordError, AttributeError):
                            view.leases.append(LeaseSpend.from_storage(raw))
        return view

    def report(self, storage: Storage, *, days: int, role: str | None, top: int) -> dict[str, Any]:
        """Per-role totals and the largest leases over the last `days` UTC days (today included)."""
        now = self._b.clock()
        wanted = [day_of(now - i * DAY) for i in range(days)]
        roles: dict[str, RoleTotal] = {}
        by_day: dict[str, float] = {}
        leases: list[LeaseSpend] = []
        for day in wanted:
            view = self.day_view(storage, day)
            day_usd = 0.0
            for name, total in view.roles.items():
                if role is not None and name != role:
                    continue
                roles.setdefault(name, RoleTotal()).merge(total)
                day_usd += total.usd
            by_day[day] = round(day_usd, 9)
            leases.extend(r for r in view.leases if role is None or r.role == role)
        overall = RoleTotal()
        for total in roles.values():
            overall.merge(total)
        return {
            "days": days,
            "from": wanted[-1],
            "to": wanted[0],
            "role": role,
            "total_usd": round(overall.usd, 9),
            "leases": overall.leases,
            "unknown": overall.unknown,
            "collecting": overall.collecting,
            "roles": {name: roles[name].to_storage() for name in sorted(roles)},
            "by_day": by_day,
            "top_leases": [r.to_response() for r in _top(leases, top)],
        }
