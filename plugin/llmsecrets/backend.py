"""The LLM secrets engine's backend: factory, paths, help, caches, periodic work and invalidation.

Concurrency model: handlers run concurrently (calls on the hub interleave at every storage call, the rest on
pool threads). The in-memory caches (connections, roles, the sweep config, provider clients) are guarded by
one lock, never held across a storage call: a cache miss notes the cache's generation, reads storage
unlocked, and keeps what it read only if no invalidation bumped the generation meanwhile, so a stale read
never overwrites a newer state. Storage is the only shared truth: caches are dropped on every write/delete
here and whenever Vault calls `invalidate(key)` for a change made elsewhere (e.g. on a performance standby).

Periodic work (Vault's rollback tick, once a minute): the deletion queue's tick (reload, retrier alive),
then admin-key rotation work (rotation.py), then the sweep, then the WAL rollback. Everything that acts on
a provider without a client request behind it (the tick, the WAL rollback, every retrier pass, the sweep)
first asks `provider_actions_allowed`: the one gate for "active node only".

HA: a standby node serves requests itself, with read-only storage, and runs the rollback tick too (see the
protocol notes, 9b). On a standby this backend answers every request that would write or reach a provider
(writes, creds, renew, revoke) with Vault's read-only error before doing anything, which makes the host
forward the request to the active node; the rollback tick does nothing there. Reads of config, roles and
the deletion queue are served by the standby itself.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from vaultplugin.framework import (
    Backend,
    Operation,
    ReadOnlyStorage,
    Request,
    Response,
    SpecialPaths,
    Storage,
    SystemView,
    VaultError,
)
from vaultplugin.framework.logical import REPLICATION_PERFORMANCE_STANDBY
from vaultplugin.framework.storage import get_json, put_json

from llmsecrets import (
    checkout_sets,
    deletions,
    metrics,
    path_config,
    path_creds,
    path_deletions,
    path_metrics,
    path_revoke_keys,
    path_roles,
    path_rotate,
    path_sets,
    path_spend,
    path_tidy,
    rollback,
    rotation,
    secret_api_key,
    secret_checkout,
    spend,
    sweep,
)
from llmsecrets.clients import ClientCache, TransportFactory
from llmsecrets.models import (
    CONFIG_PREFIX,
    ROLES_PREFIX,
    SWEEP_CONFIG_KEY,
    ConnectionConfig,
    RecordError,
    Role,
    SweepConfig,
    WalKind,
)
from llmsecrets.naming import UNKNOWN_MOUNT_HEX, mount_hex, mount_prefix
from llmsecrets.providers.retry import RetryPolicy
from llmsecrets.version import VERSION

log = logging.getLogger(__name__)

_R = TypeVar("_R", ConnectionConfig, Role)

# Seconds a provider call may take, its retries included.
REQUEST_TIMEOUT = 30.0
# The provider expires a key on its own this long after the lease can last at most.
PROVIDER_EXPIRY_GRACE = 300
# Defaults of the sweep (see `tidy/config`).
SWEEP_INTERVAL = 300
MIN_ORPHAN_AGE = 600
EXPIRED_GRACE = 120
# Operations a standby must not run itself: they write storage or act on a provider (creds, a READ, is
# checked by its handler). The host forwards them to the active node on the read-only error.
ACTIVE_ONLY_OPERATIONS = frozenset(
    (Operation.CREATE, Operation.UPDATE, Operation.PATCH, Operation.DELETE, Operation.RENEW, Operation.REVOKE)
)
# Least age of a WAL entry before the rollback settles it (the framework's default: 10 minutes, far longer
# than any create may take). Only tests lower it, through main.py's LLMSECRETS_WAL_MIN_AGE_SECONDS.
WAL_MIN_AGE = 600.0

BACKEND_HELP = """\
The LLM secrets engine issues short-lived API keys for LLM providers (OpenAI, OpenRouter,
LiteLLM proxies, xAI, Fireworks) under Vault leases.

An operator writes a connection (config/<name>) holding a provider admin key, and roles
(roles/<name>) that say how keys are minted: lease TTLs, spend limits, model lists. An application
reads creds/<role>: the engine creates a fresh key through the provider's admin API and returns it
under a renewable lease. When the lease ends (expiry or `bao lease revoke`) the key is deleted at
the provider.

Anthropic cannot mint keys per lease: for it, a check-out set (sets/<name>) lends pre-made keys,
active only while a lease holds them (sets/<name>/creds); the same key comes back to later leases.

Nothing outlives its lease: keys carry a provider-side expiry where the provider supports one, a
write-ahead log cleans up creates that were interrupted, and a periodic sweep (also run by `tidy`)
deletes keys whose lease is long over and keys of this mount that nobody owns.
"""


class LLMBackend(Backend):
    """The framework backend plus the engine's caches and settings. Built by `new_backend`."""

    def __init__(
        self,
        *,
        transport_factory: TransportFactory | None = None,
        clock: Callable[[], float] = time.time,
        retry: RetryPolicy | None = None,
        request_timeout: float = REQUEST_TIMEOUT,
        provider_expiry_grace: int = PROVIDER_EXPIRY_GRACE,
        sweep_defaults: SweepConfig | None = None,
        wal_min_age_seconds: float = WAL_MIN_AGE,
        background_deletions: bool = True,
    ) -> None:
        # The mount's own figures, in a registry of its own (metrics.py).
        self.metrics = metrics.EngineMetrics()
        self.clients = ClientCache(
            transport_factory, retry, call_seconds=request_timeout, observe=self.metrics.provider_call
        )
        self.request_timeout = request_timeout
        self.provider_expiry_grace = provider_expiry_grace
        self.sweep_defaults = sweep_defaults or SweepConfig(
            interval=SWEEP_INTERVAL, min_orphan_age=MIN_ORPHAN_AGE, expired_grace=EXPIRED_GRACE
        )
        self._monotonic = retry.clock if retry is not None else time.monotonic
        self._cache_lock = threading.Lock()
        self._cache_generation = 0
        self._connections: dict[str, ConnectionConfig] = {}
        self._roles: dict[str, Role] = {}
        self._sweep_config: SweepConfig | None = None
        self.mount_prefix = mount_prefix("")
        self.mount_known = False
        # Is this process serving an HA standby? Asked once per Setup (see `is_standby`).
        self._standby: bool | None = None
        self.sweeper = sweep.Sweeper(self)
        self.deletions = deletions.DeletionQueue(self, background=background_deletions)
        self.spend = spend.SpendLedger(self)
        self.api_key = secret_api_key.api_key_secret(self)
        self.sets = checkout_sets.CheckoutSets(self, background=background_deletions)
        self.checkout = secret_checkout.checkout_secret(self)
        super().__init__(
            help=BACKEND_HELP,
            paths=[
                *path_revoke_keys.paths(self),  # before config/<name> and roles/<name>, which match it too
                *path_rotate.paths(self),  # before config/<name> too
                *path_config.paths(self),
                *path_roles.paths(self),
                *path_creds.paths(self),
                *path_tidy.paths(self),
                *path_deletions.paths(self),
                *path_spend.paths(self),
                *path_sets.paths(self),
                *path_metrics.paths(self),
            ],
            # Fixed when the mount starts; metrics/config decides whether it answers (path_metrics.py).
            special_paths=SpecialPaths(unauthenticated=(path_metrics.PUBLIC_PATH,)),
            secrets=[self.api_key, self.checkout],
            periodic=self._periodic,
            wal_rollback=rollback.make_rollback(self),
            wal_kinds=[WalKind.CREATE_KEY, WalKind.ROTATE_ADMIN_KEY, WalKind.CHECKOUT_KEY],
            wal_min_age_seconds=wal_min_age_seconds,
            invalidate=self._on_invalidate,
            initialize=self._on_initialize,
            clean=self._on_clean,
            running_version=VERSION,
            clock=clock,
        )

    # --- lifecycle -----------------------------------------------------------------------------------------

    def setup(self, config: dict[str, str], system: SystemView) -> None:
        super().setup(config, system)
        self._standby = None
        uuid = config.get("backend_uuid", "")
        self.mount_prefix = mount_prefix(uuid)
        self.mount_known = mount_hex(uuid) != UNKNOWN_MOUNT_HEX
        if not self.mount_known:
            log.warning("the host sent no backend_uuid; the orphan sweep is off for this instance")

    def _on_initialize(self, storage: Storage) -> None:
        # Vault initializes every plugin process it starts (restarts included): resume the deletion queue.
        # A standby starts the same process: its retrier would only ever be refused by the gate.
        if not self.provider_actions_allowed(storage):
            return
        try:
            self.deletions.start(storage)
        except Exception:
            log.exception("could not load the deletion queue; the next rollback tick tries again")
        rotation.resume(self, storage)  # old admin keys a crash left alive: nothing is in flight with them
        self.sets.start(storage)  # keys of check-out sets awaiting deactivation

    def handle_request(self, req: Request) -> Response | None:
        if req.operation == Operation.ROLLBACK:
            storage = req.storage
            if storage is None or not self.provider_actions_allowed(storage):
                log.debug("rollback tick skipped: periodic work and WAL rollback are the active node's")
                return None
        elif req.operation in ACTIVE_ONLY_OPERATIONS:
            self.require_active()
        return super().handle_request(req)

    def _periodic(self, req: Request) -> None:
        storage = req.storage
        if storage is None or not self.provider_actions_allowed(storage):
            return
        try:
            self.deletions.tick(storage)
        except Exception:
            log.exception("deletion queue tick failed")
        try:
            self.spend.tick(storage)
        except Exception:
            log.exception("spend tick failed")
        try:
            self.sets.tick(storage)
        except Exception:
            log.exception("check-out sets tick failed")
        rotation.periodic(self, storage)  # old admin keys still to delete, rotation periods
        self.sweeper.periodic(req)

    def provider_actions_allowed(self, storage: Storage) -> bool:
        """May periodic work act on providers from this process now? The single gate in front of the
        rollback tick (its periodic work and the WAL rollback), every deletion retry pass and the sweep.

        Only on the active node: a standby runs the rollback manager too (protocol notes, 9b), and its
        replica of storage may lag behind the active node's (a key created a moment ago would look like an
        orphan there). When the host cannot say, nothing is done: the next tick asks again. Independently,
        every retry attempt writes to storage before it calls the provider, so a read-only node never gets
        that far.
        """
        try:
            return not self.is_standby()
        except VaultError as exc:
            log.warning("periodic provider work skipped: %s", exc.message)
            return False

    def is_standby(self) -> bool:
        """Does this process serve an HA standby (the host reports ReplicationPerformanceStandby)?

        Asked once per Setup: a node that changes role (standby -> active on failover, active -> standby on
        step-down) first tears its mounts down and sets them up again, which Setup-s this backend anew (and
        Cleanup forgets the answer). Raises VaultError when the host cannot be asked.
        """
        standby = self._standby
        if standby is None:
            try:
                state = self.system.replication_state()
            except Exception as exc:
                raise VaultError(
                    f"could not ask the host whether this node is active ({type(exc).__name__}); try again"
                ) from None
            standby = bool(state & REPLICATION_PERFORMANCE_STANDBY)
            self._standby = standby
            if standby:
                log.info(
                    "this node is an HA standby: writes, creds, renewals and revocations are forwarded to "
                    "the active node, and periodic provider work is left to it"
                )
        return standby

    def require_active(self) -> None:
        """Raise Vault's read-only error on a standby, before any storage write or provider call: the host
        forwards the request to the active node, which answers it."""
        if self.is_standby():
            raise ReadOnlyStorage()

    def _on_clean(self) -> None:
        self._standby = None
        self.deletions.stop()
        self.spend.clear()
        self.sets.stop()
        self.clients.clear()
        with self._cache_lock:
            self._cache_generation += 1
            self._connections.clear()
            self._roles.clear()
            self._sweep_config = None

    def _on_invalidate(self, key: str) -> None:
        if key.startswith(CONFIG_PREFIX):
            self.forget_connection(key.removeprefix(CONFIG_PREFIX))
        elif key.startswith(ROLES_PREFIX):
            self.forget_role(key.removeprefix(ROLES_PREFIX))
        elif key == SWEEP_CONFIG_KEY:
            self.forget_sweep_config()
        elif key == spend.CONFIG_KEY:
            self.spend.forget_config()

    # --- helpers for handlers ------------------------------------------------------------------------------

    def deadline(self, seconds: float | None = None) -> float:
        """The deadline for one provider call (on the retry policy's clock): `seconds` from now, by default
        the request timeout."""
        return self._monotonic() + (self.request_timeout if seconds is None else seconds)

    @staticmethod
    def storage_of(req: Request) -> Storage:
        if req.storage is None:
            raise VaultError(f"{req.operation} request on {req.path!r} carries no storage")
        return req.storage

    # --- cached records ------------------------------------------------------------------------------------
    # No lock is held across a storage call: a call waiting for Vault is suspended there on
    # the hub, where every call shares one thread. A load caches its record only if nothing was saved or
    # forgotten while it read; a save writes storage first, then drops the cached copy.

    def _load(self, storage: Storage, key: str, cache: dict[str, _R], name: str, kind: type[_R]) -> _R | None:
        with self._cache_lock:
            hit = cache.get(name)
            if hit is not None:
                return hit
            generation = self._cache_generation
        raw = get_json(storage, key)
        if raw is None:
            return None
        try:
            record = kind.from_storage(raw)
        except RecordError as exc:
            log.error("stored record %s is unreadable: %s", key, exc)
            raise VaultError(f"stored record {key} is unreadable; see the plugin's log") from None
        with self._cache_lock:
            if self._cache_generation == generation:
                cache[name] = record
        return record

    def _forget(self, cache: dict[str, Any], name: str) -> None:
        with self._cache_lock:
            self._cache_generation += 1
            cache.pop(name, None)

    def connection(self, storage: Storage, name: str) -> ConnectionConfig | None:
        return self._load(
            storage, ConnectionConfig.storage_key(name), self._connections, name, ConnectionConfig
        )

    def save_connection(self, storage: Storage, conn: ConnectionConfig) -> None:
        put_json(storage, ConnectionConfig.storage_key(conn.name), conn.to_storage())
        self.forget_connection(conn.name)

    def delete_connection(self, storage: Storage, name: str) -> None:
        storage.delete(ConnectionConfig.storage_key(name))
        self.forget_connection(name)

    def forget_connection(self, name: str) -> None:
        self._forget(self._connections, name)
        self.clients.invalidate(name)

    def role(self, storage: Storage, name: str) -> Role | None:
        return self._load(storage, Role.storage_key(name), self._roles, name, Role)

    def save_role(self, storage: Storage, role: Role) -> None:
        put_json(storage, Role.storage_key(role.name), role.to_storage())
        self._forget(self._roles, role.name)

    def delete_role(self, storage: Storage, name: str) -> None:
        storage.delete(Role.storage_key(name))
        self._forget(self._roles, name)

    def forget_role(self, name: str) -> None:
        self._forget(self._roles, name)

    def sweep_config(self, storage: Storage) -> SweepConfig:
        with self._cache_lock:
            if self._sweep_config is not None:
                return self._sweep_config
            generation = self._cache_generation
        raw = get_json(storage, SWEEP_CONFIG_KEY)
        try:
            config = self.sweep_defaults if raw is None else SweepConfig.from_storage(raw)
        except RecordError as exc:
            log.error("stored sweep config is unreadable (%s); using the defaults", exc)
            config = self.sweep_defaults
        with self._cache_lock:
            if self._cache_generation == generation:
                self._sweep_config = config
        return config

    def save_sweep_config(self, storage: Storage, config: SweepConfig) -> None:
        put_json(storage, SWEEP_CONFIG_KEY, config.to_storage())
        self.forget_sweep_config()

    def forget_sweep_config(self) -> None:
        with self._cache_lock:
            self._cache_generation += 1
            self._sweep_config = None


def new_backend(
    *,
    transport_factory: TransportFactory | None = None,
    clock: Callable[[], float] = time.time,
    retry: RetryPolicy | None = None,
    request_timeout: float = REQUEST_TIMEOUT,
    provider_expiry_grace: int = PROVIDER_EXPIRY_GRACE,
    sweep_interval: int = SWEEP_INTERVAL,
    min_orphan_age: int = MIN_ORPHAN_AGE,
    expired_grace: int = EXPIRED_GRACE,
    wal_min_age_seconds: float = WAL_MIN_AGE,
    background_deletions: bool = True,
) -> LLMBackend:
    """Build the engine's backend (the factory `serve` calls once per mount).

    - `transport_factory(provider, base_url)`: the httpx transport for a connection (tests pass the
      emulators' `httpx.MockTransport`); None = real HTTP.
    - `clock`: unix time, injectable so tests can age WAL entries, leases and orphans.
    - `retry`: the provider clients' retry policy (tests pass one that does not sleep).
    - `sweep_interval`, `min_orphan_age`, `expired_grace`: defaults of `tidy/config` (seconds).
    - `wal_min_age_seconds`: how old a pending create's WAL entry must be before the rollback settles it.
    - `background_deletions`: retry queued deletions on a thread of their own (False: only on the rollback
      tick, for tests that drive the clock).
    """
    return LLMBackend(
        transport_factory=transport_factory,
        clock=clock,
        retry=retry,
        request_timeout=request_timeout,
        provider_expiry_grace=provider_expiry_grace,
        sweep_defaults=SweepConfig(
            interval=sweep_interval, min_orphan_age=min_orphan_age, expired_grace=expired_grace
        ),
        wal_min_age_seconds=wal_min_age_seconds,
        background_deletions=background_deletions,
    )
