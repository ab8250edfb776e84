"""A cache of provider clients, one per connection, so a creds read reuses its HTTP connection pool.

A client is rebuilt when the connection's settings change (provider, base URL, organization or admin
key: compared by fingerprint) and dropped on config write/delete, on `invalidate(key)` and on cleanup.
`TransportFactory` is the test seam: it returns the httpx transport for a connection (e.g.
`httpx.MockTransport(emulator.handle)`), or None for real HTTP.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable

import httpx

from llmsecrets.models import ConnectionConfig
from llmsecrets.providers.base import ProviderClient, SecretStr
from llmsecrets.providers.registry import make_client
from llmsecrets.providers.retry import RetryPolicy

log = logging.getLogger(__name__)

# (provider, base_url or None) -> the transport to use, or None for httpx's default.
TransportFactory = Callable[[str, str | None], httpx.BaseTransport | None]


def _fingerprint(conn: ConnectionConfig) -> str:
    digest = hashlib.sha256()
    for part in (conn.provider, conn.base_url or "", conn.organization_id or "", conn.admin_key):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


class ClientCache:
    """Thread-safe map of connection name -> provider client."""

    def __init__(
        self,
        transport_factory: TransportFactory | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._transport_factory = transport_factory
        self._retry = retry
        self._lock = threading.Lock()
        self._clients: dict[str, tuple[str, ProviderClient]] = {}

    def build(self, conn: ConnectionConfig) -> ProviderClient:
        """A new client for `conn`, not cached (config writes verify with one before storing).

        Raises ValueError for settings the provider layer refuses (the caller turns it into a 400)."""
        transport = self._transport_factory(conn.provider, conn.base_url) if self._transport_factory else None
        return make_client(
            conn.provider,
            admin_key=SecretStr(conn.admin_key),
            base_url=conn.base_url,
            organization_id=conn.organization_id,
            transport=transport,
            retry=self._retry,
        )

    def get(self, conn: ConnectionConfig) -> ProviderClient:
        fingerprint = _fingerprint(conn)
        with self._lock:
            cached = self._clients.get(conn.name)
            if cached is not None and cached[0] == fingerprint:
                return cached[1]
            client = self.build(conn)
            self._clients[conn.name] = (fingerprint, client)
        if cached is not None:
            _close(cached[1])
        return client

    def invalidate(self, name: str) -> None:
        with self._lock:
            cached = self._clients.pop(name, None)
        if cached is not None:
            _close(cached[1])

    def clear(self) -> None:
        with self._lock:
            cached = list(self._clients.values())
            self._clients.clear()
        for _, client in cached:
            _close(client)


def _close(client: ProviderClient) -> None:
    try:
        client.close()
    except Exception:
        log.warning("closing a provider client failed", exc_info=True)
