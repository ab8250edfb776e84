"""The mount's metrics, as Prometheus scrapes them from `metrics` (path_metrics.py declares the paths).

Each backend has a registry of its own, never prometheus_client's global default one: that would mix the
figures of every backend built in the process (a process serves one mount today, as the plugin declines
multiplexing, but tests build many) and outlive the backend.

Two kinds of figures:
- counted as things happen, in this process (reset when the plugin process restarts, as Prometheus expects
  of a counter): keys issued, renewed, revoked and failed by provider and role, every admin-API call's
  latency and failures by provider and operation, sweeps and what they deleted;
- read at scrape time from the mount's storage, so they are right whichever process wrote them: deletions
  still outstanding, WAL entries by kind, when the sweep last ran, how old each connection's admin key is.

Cost on the hot path: a counter child per label set is kept in a dict, so a creds read adds a dict lookup and
an increment for the issue, and one for the create's latency (about 2 microseconds in all). The scrape reads
the deletion queue and the WAL (one storage read per entry, at most `MAX_ENTRIES_READ` each).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from vaultplugin.framework import get_json, get_wal, list_leaves, list_wal
from vaultplugin.framework.wal import WalDecodeError

from llmsecrets import checkout_sets
from llmsecrets.models import (
    CONFIG_PREFIX,
    DELETIONS_PREFIX,
    SWEEP_STATE_KEY,
    HoldState,
    PendingDeletion,
    RecordError,
    SweepState,
)
from llmsecrets.providers import errors as perrors
from llmsecrets.version import VERSION

if TYPE_CHECKING:
    from vaultplugin.framework import Storage

    from llmsecrets.backend import LLMBackend
    from llmsecrets.sweep import SweepReport

log = logging.getLogger(__name__)

# No `_created` series beside each counter and histogram: they would double what Prometheus stores, for a
# start time nothing here alerts on (a restart shows as the counters' reset). Process-wide: the plugin
# process uses prometheus_client for this module only.
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus_client

PREFIX = "llm_secrets_"
# The classic text format: what every Prometheus server reads (the names here need no UTF-8 escaping).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Admin-API calls take from a few milliseconds (a list) to the 30 s call budget (a stuck provider).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Entries a scrape reads at most from the deletion queue and from the WAL (each is one storage read).
MAX_ENTRIES_READ = 2000

# What a provider call did, from the words of the `op` its client names it by ("create service account api
# key", "key info", "give the service account role member"): the first word found here.
_OPERATION_WORDS = {
    "create": "create",
    "generate": "create",
    "delete": "delete",
    "extend": "extend",
    "update": "update",
    "give": "update",
    "list": "list",
    "get": "get",
    "read": "get",
    "info": "get",
    "verify": "verify",
}

# Failures of provider calls, by kind (most specific class first).
_ERROR_KINDS: tuple[tuple[type[BaseException], str], ...] = (
    (perrors.CreateOutcomeUnknown, "outcome_unknown"),
    (perrors.ProviderBusy, "busy"),
    (perrors.ProviderAuthError, "auth"),
    (perrors.ProviderRateLimited, "rate_limited"),
    (perrors.ProviderUnavailable, "unavailable"),
    (perrors.ProviderCallCancelled, "cancelled"),
    (perrors.ProviderNotFound, "not_found"),
    (perrors.ProviderRejected, "rejected"),
    (perrors.ProviderBadResponse, "bad_response"),
)


def operation_of(op: str) -> str:
    """The operation label of a provider call named `op` (see `_OPERATION_WORDS`); "other" if none fits."""
    for word in op.lower().split():
        found = _OPERATION_WORDS.get(word)
        if found is not None:
            return found
    return "other"


def error_kind(exc: BaseException) -> str:
    for cls, kind in _ERROR_KINDS:
        if isinstance(exc, cls):
            return kind
    return "error"


@dataclass(frozen=True)
class SweepFigures:
    """What the last sweep of this process did."""

    ran_at: float
    expired_deleted: int
    orphans_deleted: int
    orphans_too_young: int
    failures: int


class EngineMetrics:
    """The counters and histograms of one mount, and its scrape (`exposition`)."""

    def __init__(self, *, process: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        reg = self.registry
        key_labels = ("provider", "role")
        self._issued = Counter(
            PREFIX + "keys_issued", "Keys created at a provider for a creds read.", key_labels, registry=reg
        )
        self._renewed = Counter(PREFIX + "keys_renewed", "Leases renewed.", key_labels, registry=reg)
        self._revoked = Counter(
            PREFIX + "keys_revoked",
            "Revokes answered as done: the key was deleted (or already gone), or its lease had ended and the "
            "deletion queue took the key over.",
            key_labels,
            registry=reg,
        )
        self._failed = Counter(
            PREFIX + "key_failures",
            "Creds reads, renewals and revokes that failed at the provider or in storage (operation: issue, "
            "renew, revoke). A failed revoke leaves its key in the deletion queue.",
            (*key_labels, "operation"),
            registry=reg,
        )
        self._latency = Histogram(
            PREFIX + "provider_request_duration_seconds",
            "Admin-API calls to the provider, retries included, by outcome (ok or error).",
            ("provider", "operation", "outcome"),
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self._call_errors = Counter(
            PREFIX + "provider_request_errors",
            "Admin-API calls that failed, by kind (auth: the admin key was refused; not_found is also how a "
            "delete learns that a key is already gone).",
            ("provider", "operation", "kind"),
            registry=reg,
        )
        self._sweeps = Counter(PREFIX + "sweeps", "Sweeps run (periodic and tidy).", registry=reg)
        self._sweep_deleted = Counter(
            PREFIX + "sweep_deleted_keys",
            "Keys the sweep deleted (reason: expired, past their lease; orphan, unknown to the mount).",
            ("reason",),
            registry=reg,
        )
        self._sweep_failures = Counter(
            PREFIX + "sweep_failures", "Failures the sweeps reported (a connection or a key).", registry=reg
        )
        if process:
            ProcessCollector(registry=reg)  # the plugin process's CPU, RSS and open files
        self._lock = threading.Lock()  # guards the caches' misses and the last sweep
        self._children: dict[tuple[object, ...], Any] = {}
        self._ok_calls: dict[tuple[str, str], Any] = {}
        self._last_sweep: SweepFigures | None = None

    # --- counted as it happens (hot path: a dict lookup and an increment) --------------------------------

    def _child(self, metric: Counter | Histogram, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            with self._lock:
                child = self._children.setdefault(key, metric.labels(*labels))
        return child

    def issued(self, provider: str, role: str) -> None:
        self._child(self._issued, provider, role).inc()

    def renewed(self, provider: str, role: str) -> None:
        self._child(self._renewed, provider, role).inc()

    def revoked(self, provider: str, role: str) -> None:
        self._child(self._revoked, provider, role).inc()

    def failed(self, provider: str, role: str, operation: str) -> None:
        self._child(self._failed, provider, role, operation).inc()

    def provider_call(self, provider: str, op: str, seconds: float, error: BaseException | None) -> None:
        """One admin-API call (`providers.http.CallGuards.observe`): `op` as its client names it."""
        if error is None:
            # The usual case, one dict lookup: the histogram child of (provider, op) as the client names it.
            child = self._ok_calls.get((provider, op))
            if child is None:
                child = self._child(self._latency, provider, operation_of(op), "ok")
                self._ok_calls[(provider, op)] = child
            child.observe(seconds)
            return
        operation = operation_of(op)
        self._child(self._latency, provider, operation, "error").observe(seconds)
        self._child(self._call_errors, provider, operation, error_kind(error)).inc()

    def sweep_done(self, report: SweepReport) -> None:
        figures = SweepFigures(
            ran_at=report.ran_at,
            expired_deleted=len(report.expired_deleted),
            orphans_deleted=len(report.orphans_deleted),
            orphans_too_young=report.orphans_too_young,
            failures=len(report.failures),
        )
        self._sweeps.inc()
        self._sweep_deleted.labels("expired").inc(figures.expired_deleted)
        self._sweep_deleted.labels("orphan").inc(figures.orphans_deleted)
        self._sweep_failures.inc(figures.failures)
        with self._lock:
            self._last_sweep = figures

    @property
    def last_sweep(self) -> SweepFigures | None:
        with self._lock:
            return self._last_sweep

    # --- the scrape ----------------------------------------------------------------------------------------

    def exposition(self, b: LLMBackend, storage: Storage) -> bytes:
        """The Prometheus text of this mount: the registry, then the figures read from storage now."""
        state = _Snapshot(scrape_state(b, storage, self.last_sweep))
        return generate_latest(self.registry) + generate_latest(state)


class _Snapshot(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return iter(self._families)


def _gauge(name: str, documentation: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, documentation, labels=list(labels))


def scrape_state(b: LLMBackend, storage: Storage, last_sweep: SweepFigures | None) -> list[Metric]:
    """The figures read at scrape time. Each part is read on its own: one that fails is left out (and
    logged), and `llm_secrets_scrape_errors` counts the parts left out."""
    now = b.clock()
    families: list[Metric] = []
    info = _gauge("build_info", "The engine's version.", ("version",))
    info.add_metric([VERSION], 1)
    families.append(info)
    errors = 0
    parts: tuple[tuple[str, Callable[[], Iterator[Metric]]], ...] = (
        ("deletion queue", lambda: _deletions(b, storage, now)),
        ("WAL", lambda: _wal(storage, now)),
        ("sweep", lambda: _sweep(b, storage, last_sweep)),
        ("connections", lambda: _connections(b, storage, now)),
        ("check-out sets", lambda: _checkout_sets(storage, now)),
    )
    for what, part in parts:
        try:
            families.extend(part())
        except Exception as exc:
            errors += 1
            log.warning("metrics: could not read the %s: %s", what, type(exc).__name__)
    failed = _gauge("scrape_errors", "Parts of this scrape that could not be read (see the plugin's log).")
    failed.add_metric([], errors)
    families.append(failed)
    return families


def _deletions(b: LLMBackend, storage: Storage, now: float) -> Iterator[Metric]:
    outstanding = _gauge(
        "deletions_outstanding",
        "Keys the deletion queue still has to delete at their provider. Past the entries a scrape reads, "
        "the rest count as outstanding.",
        ("connection", "provider"),
    )
    oldest = _gauge(
        "deletions_oldest_age_seconds",
        "How long the oldest outstanding deletion (of those read) has been queued.",
        ("connection", "provider"),
    )
    counts: dict[tuple[str, str], int] = {}
    queued: dict[tuple[str, str], float] = {}
    budget = MAX_ENTRIES_READ
    for folder in storage.list(DELETIONS_PREFIX):
        if not folder.endswith("/"):
            continue
        connection = folder.removesuffix("/")
        leaves = list_leaves(storage, DELETIONS_PREFIX + folder)
        provider = ""
        unread = 0
        for leaf in leaves:
            if budget <= 0:
                unread += 1
                continue
            budget -= 1
            rec = _pending_deletion(storage, DELETIONS_PREFIX + folder + leaf)
            if rec is None or rec.done_at is not None:
                continue  # gone since the listing, unreadable (logged by the queue too), or a tombstone
            provider = rec.provider
            labels = (connection, provider)
            counts[labels] = counts.get(labels, 0) + 1
            queued[labels] = min(queued.get(labels, rec.queued_at), rec.queued_at)
        if unread:
            if not provider:
                conn = b.connection(storage, connection)
                provider = conn.provider if conn is not None else ""
            counts[(connection, provider)] = counts.get((connection, provider), 0) + unread
    for labels, count in sorted(counts.items()):
        outstanding.add_metric(list(labels), count)
        if labels in queued:
            oldest.add_metric(list(labels), max(0.0, now - queued[labels]))
    yield from (outstanding, oldest)


def _pending_deletion(storage: Storage, key: str) -> PendingDeletion | None:
    try:
        raw = get_json(storage, key)
        return None if raw is None else PendingDeletion.from_storage(raw)
    except (ValueError, RecordError):
        return None


def _wal(storage: Storage, now: float) -> Iterator[Metric]:
    entries = _gauge(
        "wal_entries",
        "Write-ahead log entries (creates not yet settled; the rollback settles entries older than "
        "10 minutes). kind=unreadable: an entry that cannot be decoded; kind=unread: entries past those a "
        "scrape reads.",
        ("kind",),
    )
    oldest = _gauge("wal_oldest_age_seconds", "Age of the oldest WAL entry of each kind.", ("kind",))
    counts: dict[str, int] = {}
    created: dict[str, float] = {}
    listed = list_wal(storage)
    if len(listed) > MAX_ENTRIES_READ:
        counts["unread"] = len(listed) - MAX_ENTRIES_READ
    for wal_id in listed[:MAX_ENTRIES_READ]:
        try:
            entry = get_wal(storage, wal_id)
        except WalDecodeError:
            counts["unreadable"] = counts.get("unreadable", 0) + 1
            continue
        if entry is None:
            continue  # settled since the listing
        counts[entry.kind] = counts.get(entry.kind, 0) + 1
        created[entry.kind] = min(created.get(entry.kind, entry.created_at), entry.created_at)
    for kind, count in sorted(counts.items()):
        entries.add_metric([kind], count)
        if kind in created:
            oldest.add_metric([kind], max(0.0, now - created[kind]))
    yield from (entries, oldest)


def _sweep(b: LLMBackend, storage: Storage, last: SweepFigures | None) -> Iterator[Metric]:
    config = b.sweep_config(storage)
    interval = _gauge("sweep_interval_seconds", "The periodic sweep's interval (0: off; tidy/config).")
    interval.add_metric([], config.interval)
    yield interval
    raw = get_json(storage, SWEEP_STATE_KEY)
    if raw is not None:
        try:
            last_run = SweepState.from_storage(raw).last_run
        except RecordError:
            last_run = None
        if last_run is not None:
            when = _gauge(
                "sweep_last_run_timestamp_seconds", "When a sweep last started (any node, any process)."
            )
            when.add_metric([], last_run)
            yield when
    if last is not None:
        result = _gauge(
            "sweep_last_keys",
            "What the last sweep of this plugin process did: keys deleted past their lease (expired), "
            "orphans deleted, orphans kept for being too young (kept), and failures reported (failed).",
            ("result",),
        )
        result.add_metric(["expired"], last.expired_deleted)
        result.add_metric(["orphan"], last.orphans_deleted)
        result.add_metric(["kept"], last.orphans_too_young)
        result.add_metric(["failed"], last.failures)
        yield result


def _connections(b: LLMBackend, storage: Storage, now: float) -> Iterator[Metric]:
    connections = _gauge("connections", "Provider connections of this mount.", ("provider",))
    age = _gauge(
        "admin_key_age_seconds",
        "Time since the connection's admin key was last set (written or rotated; records older than "
        "rotation have no such time and no series).",
        ("connection", "provider"),
    )
    per_provider: dict[str, int] = {}
    for name in sorted(list_leaves(storage, CONFIG_PREFIX)):
        try:
            conn = b.connection(storage, name)
        except Exception:
            log.warning("metrics: connection %r is unreadable", name)
            continue
        if conn is None:
            continue
        per_provider[conn.provider] = per_provider.get(conn.provider, 0) + 1
        if conn.admin_key_rotated_at is not None:
            age.add_metric([conn.name, conn.provider], max(0.0, now - conn.admin_key_rotated_at))
    for provider, count in sorted(per_provider.items()):
        connections.add_metric([provider], count)
    yield from (connections, age)


def _checkout_sets(storage: Storage, now: float) -> Iterator[Metric]:
    keys = _gauge(
        "checkout_keys",
        "Keys of each check-out set (Anthropic) by state: free (can be lent), checked_out (a lease holds it; "
        "active at the provider), deactivating (its lease is over but it is still to be made inactive), "
        "unusable (the provider refuses to activate it).",
        ("set", "connection", "state"),
    )
    deactivating = _gauge(
        "checkout_deactivating_oldest_age_seconds",
        "How long the set's oldest key awaiting deactivation has been waiting (still active meanwhile).",
        ("set", "connection"),
    )
    states = [state.value for state in HoldState]
    for name in checkout_sets.set_names(storage):
        found = checkout_sets.get_set(storage, name)
        if found is None:
            continue
        holds = checkout_sets.holds_of(storage, name)
        counts = dict.fromkeys(states, 0)
        for hold in holds.values():
            counts[hold.state] = counts.get(hold.state, 0) + 1
        keys.add_metric([name, found.connection, "free"], len(set(found.keys) - set(holds)))
        for state, count in counts.items():
            keys.add_metric([name, found.connection, state], count)
        waiting = [h.since for h in holds.values() if h.state == HoldState.DEACTIVATING]
        if waiting:
            deactivating.add_metric([name, found.connection], max(0.0, now - min(waiting)))
    yield from (keys, deactivating)
