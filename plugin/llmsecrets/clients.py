"""A cache of provider clients, one per connection, so a creds read reuses its HTTP connection pool.

A client is rebuilt when the connection's settings change (provider, base URL, account fields or admin
key: compared by fingerprint) and dropped on config write/delete, on `invalidate(key)` and on cleanup.
`TransportFactory` is the test seam: it returns the httpx transport for a connection (e.g.
`httpx.MockTransport(emulator.handle)`), or None for real HTTP.

Every client of a connection, cached or built for a config write's check, shares that connection's
`Bulkhead` (kept by name, across rebuilds), and every call learns of its request's cancellation by Vault
through `runtime.current_cancellation` (vaultplugin.framework). The bulkheads are bounded by the connections
in use: a name's
bulkhead is kept while the name has a cached client or a check open, while calls of an older client are
in flight, or for `SLOW_MEMORY` seconds after its provider was last slow (so a config write does not make
a stuck provider look healthy); past that it is dropped, as it is at once when the connection is deleted.

Admin-key rotation (rotation.py): `retire(conn)` sets the client of the old admin key aside before the new
key is stored. It keeps serving what is still in flight with the old key (and a request that read the
connection before the switch gets it again, rather than replacing the new key's client); `retired_idle`
tells when none of its calls is in progress and none was handed out for `settle` seconds, and `release`
closes it once the old key is deleted.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
from vaultplugin.framework import runtime

from llmsecrets.models import ConnectionConfig
from llmsecrets.providers.base import ProviderClient, SecretStr
from llmsecrets.providers.body import MAX_BODY_BYTES
from llmsecrets.providers.budget import CancelSignal
from llmsecrets.providers.bulkhead import Bulkhead
from llmsecrets.providers.http import VERIFY_SECONDS, CallGuards, CallObserver, InFlight
from llmsecrets.providers.registry import make_client
from llmsecrets.providers.retry import RetryPolicy

log = logging.getLogger(__name__)

# (provider, base_url or None) -> the transport to use, or None for httpx's default.
TransportFactory = Callable[[str, str | None], httpx.BaseTransport | None]

# Provider calls one connection may have in flight: three quarters of the plugin's call threads, so a
# provider that stalls leaves a quarter to the mount's other connections and to Vault's other calls.
CONNECTION_CALL_LIMIT = max(1, runtime.CALL_THREADS * 3 // 4)
# How long the bulkhead of a connection without a client still remembers that its provider was slow.
SLOW_MEMORY = 600.0


def fingerprint(conn: ConnectionConfig) -> str:
    """What identifies the client a connection needs: its provider, base URL, admin key and account."""
    digest = hashlib.sha256()
    account = [f"{k}={v}" for k, v in sorted(conn.account.items())]
    for part in (conn.provider, conn.base_url or "", conn.admin_key, *account):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


class ClientCache:
    """Thread-safe map of connection name -> provider client.

    `call_seconds` is the budget of a call made without a deadline (the admin-key check on config
    write); `connection_limit` the calls a connection may have in flight; `max_body_bytes` the largest
    answer read.
    """

    def __init__(
        self,
        transport_factory: TransportFactory | None = None,
        retry: RetryPolicy | None = None,
        *,
        call_seconds: float = VERIFY_SECONDS,
        connection_limit: int = CONNECTION_CALL_LIMIT,
        max_body_bytes: int = MAX_BODY_BYTES,
        cancel_signal: Callable[[], CancelSignal | None] = runtime.current_cancellation,
        observe: CallObserver | None = None,
    ) -> None:
        self._transport_factory = transport_factory
        self._retry = retry
        self._call_seconds = call_seconds
        self._connection_limit = connection_limit
        self._max_body_bytes = max_body_bytes
        self._cancel_signal = cancel_signal
        self._observe = observe  # every provider call of every client (the mount's metrics)
        self._lock = threading.Lock()  # guards the three maps below
        self._clients: dict[str, tuple[str, ProviderClient, InFlight]] = {}
        self._retired: dict[str, _Retired] = {}  # by fingerprint: clients of old admin keys (rotation)
        self._checks: Counter[str] = Counter()  # open check clients per name
        self._bulkheads: dict[str, Bulkhead] = {}

    def _bulkhead_locked(self, name: str) -> Bulkhead:
        """The connection's bulkhead: one per name while the name is in use (see the module's doc)."""
        found = self._bulkheads.get(name)
        if found is None:
            self._sweep_locked()  # the map grows only here: drop what is no longer in use first
            found = self._bulkheads[name] = Bulkhead(self._connection_limit)
        return found

    def _sweep_locked(self) -> None:
        for name, bulkhead in list(self._bulkheads.items()):
            if (
                name not in self._clients
                and not self._checks[name]
                and bulkhead.forgettable(SLOW_MEMORY)
                and not any(r.name == name for r in self._retired.values())
            ):
                del self._bulkheads[name]

    def _build(
        self, conn: ConnectionConfig, bulkhead: Bulkhead, in_flight: InFlight | None = None
    ) -> ProviderClient:
        """Raises ValueError for settings the provider layer refuses (the caller turns it into a 400)."""
        transport = self._transport_factory(conn.provider, conn.base_url) if self._transport_factory else None
        guards = CallGuards(
            bulkhead=bulkhead,
            cancel_signal=self._cancel_signal,
            observe=self._observe,
            max_body_bytes=self._max_body_bytes,
            default_seconds=self._call_seconds,
            in_flight=in_flight if in_flight is not None else InFlight(),
        )
        return make_client(
            conn.provider,
            admin_key=SecretStr(conn.admin_key),
            base_url=conn.base_url,
            account=conn.account,
            transport=transport,
            retry=self._retry,
            guards=guards,
        )

    @contextmanager
    def checking(self, conn: ConnectionConfig) -> Iterator[ProviderClient]:
        """A new client for `conn`, not cached, closed at the end (config writes verify with one before
        storing). Raises ValueError for settings the provider layer refuses."""
        with self._lock:
            client = self._build(conn, self._bulkhead_locked(conn.name))
            self._checks[conn.name] += 1
        try:
            yield client
        finally:
            _close(client)
            with self._lock:
                self._checks[conn.name] -= 1
                if not self._checks[conn.name]:
                    del self._checks[conn.name]
                self._sweep_locked()

    def get(self, conn: ConnectionConfig) -> ProviderClient:
        fp = fingerprint(conn)
        with self._lock:
            cached = self._clients.get(conn.name)
            if cached is not None and cached[0] == fp:
                return cached[1]
            retired = self._retired.get(fp)
            if retired is not None and retired.name == conn.name:
                # Read before a rotation stored the new key: the old key still works until it is deleted.
                retired.handed_out = time.monotonic()
                return retired.client
            in_flight = InFlight()
            client = self._build(conn, self._bulkhead_locked(conn.name), in_flight)
            self._clients[conn.name] = (fp, client, in_flight)
        if cached is not None:
            _close(cached[1])
        return client

    def retire(self, conn: ConnectionConfig) -> None:
        """Set the client of `conn` (whose admin key is about to be replaced) aside: it serves the calls
        still in flight with the old key until `release`. Call before the new key is stored."""
        fp = fingerprint(conn)
        with self._lock:
            cached = self._clients.get(conn.name)
            if cached is None or cached[0] != fp:
                return  # no client of the old key is cached: nothing can be in flight with it here
            del self._clients[conn.name]
            self._retired[fp] = _Retired(conn.name, cached[1], cached[2], time.monotonic())

    def retired_idle(self, name: str, settle: float) -> bool:
        """Are the calls with connection `name`'s old admin keys over: none in flight, and none handed out
        for `settle` seconds (a request may hold the client a moment before its call starts)? True if none
        is kept (e.g. after a restart)."""
        now = time.monotonic()
        with self._lock:
            retired = [r for r in self._retired.values() if r.name == name]
        return all(r.in_flight.count == 0 and now - r.handed_out >= settle for r in retired)

    def release(self, name: str) -> None:
        """The old admin key of connection `name` is deleted: close the clients set aside for it."""
        with self._lock:
            retired = [self._retired.pop(fp) for fp, r in list(self._retired.items()) if r.name == name]
            self._sweep_locked()
        for old in retired:
            _close(old.client)

    def invalidate(self, name: str) -> None:
        """Drop the cached client (the connection was written or deleted: the next `get` rebuilds it)."""
        with self._lock:
            cached = self._clients.pop(name, None)
            self._sweep_locked()
        if cached is not None:
            _close(cached[1])

    def forget(self, name: str) -> None:
        """The connection is gone (deleted, or never stored): drop its client and its bulkhead. Calls still
        in flight keep the bulkhead they hold; a new connection of that name starts with a new one."""
        with self._lock:
            cached = self._clients.pop(name, None)
            self._bulkheads.pop(name, None)
            retired = [self._retired.pop(fp) for fp, r in list(self._retired.items()) if r.name == name]
        if cached is not None:
            _close(cached[1])
        for old in retired:
            _close(old.client)

    def clear(self) -> None:
        with self._lock:
            cached = [entry[1] for entry in self._clients.values()]
            cached += [r.client for r in self._retired.values()]
            self._clients.clear()
            self._retired.clear()
            self._sweep_locked()
        for client in cached:
            _close(client)


@dataclass
class _Retired:
    """The client of an admin key a rotation replaced, kept while calls with it may still be in flight."""

    name: str
    client: ProviderClient
    in_flight: InFlight
    handed_out: float  # monotonic time it was last handed out (or set aside)


def _close(client: ProviderClient) -> None:
    try:
        client.close()
    except Exception:
        log.warning("closing a provider client failed", exc_info=True)
