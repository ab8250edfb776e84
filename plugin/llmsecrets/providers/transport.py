"""The HTTP transport of real provider calls: httpcore's connection pool over sockets that obey the
running call's `budget.CallBudget`.

`GuardedBackend` wraps httpcore's socket backend: every connect, TLS handshake, read and write gets its
timeout cut to the time the current call has left (CPython bounds a whole TLS handshake by its socket
timeout), and the socket is registered with the call, so aborting it (deadline watchdog, cancellation)
ends a blocked read. Outside a provider call (no current budget) sockets behave as httpcore's own.

`GuardedTransport` is an `httpx.BaseTransport` over that pool. It takes the place of httpx's default
transport, so it also handles the proxy from the environment (HTTPS_PROXY / HTTP_PROXY / ALL_PROXY,
NO_PROXY), which httpx would otherwise route through a transport of its own, unguarded. Calls straight to
the provider (no proxy: the usual case) go through `http11.Http11Pool` instead, a lean HTTP/1.1 client
with the same budget rules that costs a fraction of httpcore's CPU a call.
"""

from __future__ import annotations

import contextlib
import json as jsonlib
import re
import ssl
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import httpcore
import httpx
from vaultplugin.framework import runtime

from . import budget
from .bulkhead import Bulkhead
from .http11 import Http11Pool, connection_key

# httpcore's exceptions -> httpx's (the same names); the most specific match wins.
_EXCEPTIONS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)

# The limits of httpx's default transport.
MAX_CONNECTIONS = 100
MAX_KEEPALIVE_CONNECTIONS = 20
KEEPALIVE_EXPIRY = 5.0


@contextlib.contextmanager
def _httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for source, target in _EXCEPTIONS:
            if isinstance(exc, source):
                raise target(str(exc)) from exc
        raise


class _GuardedStream(httpcore.NetworkStream):
    """A connection whose operations obey the running call's budget."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def _guard(self, timeout: float | None, error: type[Exception]) -> float | None:
        call = budget.current()
        if call is None:
            return timeout
        call.attach(self._inner.get_extra_info("socket"))
        try:
            return call.cut(timeout)
        except TimeoutError as exc:
            raise error(str(exc)) from None

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data = self._inner.read(max_bytes, self._guard(timeout, httpcore.ReadTimeout))
        call = budget.current()
        if call is not None:
            call.received += len(data)
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._guard(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        cut = self._guard(timeout, httpcore.ConnectTimeout)
        return _GuardedStream(self._inner.start_tls(ssl_context, server_hostname, cut))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class GuardedBackend(httpcore.NetworkBackend):
    """httpcore's socket backend with every operation cut to the running call's budget."""

    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    @staticmethod
    def _connect_timeout(timeout: float | None) -> float | None:
        call = budget.current()
        if call is None:
            return timeout
        try:
            return call.cut(timeout)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(str(exc)) from None

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        inner = self._inner.connect_tcp(
            host, port, self._connect_timeout(timeout), local_address, socket_options
        )
        return _GuardedStream(inner)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        return _GuardedStream(
            self._inner.connect_unix_socket(path, self._connect_timeout(timeout), socket_options)
        )

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _ResponseStream(httpx.SyncByteStream):
    def __init__(self, inner: Iterable[bytes]) -> None:
        self._inner = inner

    def __iter__(self) -> Iterator[bytes]:
        with _httpx_errors():
            yield from self._inner

    def close(self) -> None:
        close = getattr(self._inner, "close", None)
        if close is not None:
            close()


def environment_proxy(url: str) -> str | None:
    """The proxy the environment sets for `url` (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY; NO_PROXY honoured),
    or None. Raises ValueError for a proxy scheme other than http(s)."""
    target = httpx.URL(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(target.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(target.host):
        return None
    if not proxy.startswith(("http://", "https://")):
        raise ValueError(f"the proxy set in the environment for {target.scheme} URLs must be http(s)://")
    return proxy


def runs_here(transport: httpx.BaseTransport, bulkhead: Bulkhead | None) -> bool:
    """May a provider call go on right here? Anywhere but on the plugin's hub, yes. On the hub only through
    a transport whose every wait is the hub's (`cooperative`: `Http11Pool`; a proxy's httpcore pool or a
    test's transport blocks), and only while the connection's bulkhead has room to spare: a call that had to
    wait there for a slot would hold the hub, and with it the calls that would free the slot. Otherwise the
    caller runs the call through `runtime.run_blocking`, on a pool thread."""
    if not runtime.on_hub():
        return True
    if not getattr(transport, "cooperative", False):
        return False
    return bulkhead is None or bulkhead.in_flight < bulkhead.limit - max(1, bulkhead.limit // 4)


# A path that needs no percent-encoding: sent as it is, as httpx.URL would send it.
_PLAIN_PATH = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*")


class DirectRequests:
    """Requests to one base URL over the direct pool, built straight as bytes.

    Why: building an `httpx.Request` (URL parsing, header normalisation, body encoding) cost ~8 % of the
    plugin's CPU per creds read, for a request whose shape never changes. What this sends is byte for
    byte what the same `httpx.Request` would (tested): Host, the given headers, Content-Length and
    Content-Type for a JSON body. A request it cannot build that way (query parameters, a path or header
    that needs encoding) gets `None`, and the caller builds the httpx.Request."""

    def __init__(self, pool: Http11Pool, base_url: str) -> None:
        url = httpx.URL(base_url)
        self._pool = pool
        self._key = connection_key(url)
        self._host = url.netloc
        self._base_path = url.raw_path.rstrip(b"/")
        self.usable = not url.query and not url.fragment and b"?" not in url.raw_path

    def send(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        json: Any,
        timeout: Mapping[str, float | None],
    ) -> httpx.Response | None:
        rest = path.lstrip("/")
        if not _PLAIN_PATH.fullmatch(rest) or "/." in "/" + rest:  # httpx would encode or normalise it
            return None
        try:
            raw = [(b"Host", self._host)]
            raw += [(k.encode("ascii"), v.encode("ascii")) for k, v in headers.items()]
        except UnicodeEncodeError:
            return None  # httpx.Request refuses it the same way
        body = b""
        if json is not None:
            body = jsonlib.dumps(json, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
            raw += [(b"Content-Length", str(len(body)).encode()), (b"Content-Type", b"application/json")]
        target = self._base_path + b"/" + rest.encode("ascii")
        return self._pool.send(self._key, method.encode("ascii"), target, raw, body=body, timeout=timeout)


class GuardedTransport(httpx.BaseTransport):
    """httpx transport over guarded sockets: straight to the provider through `Http11Pool`, or through an
    HTTP(S) proxy over an httpcore pool. (A connection's bulkhead bounds its calls in flight.)"""

    def __init__(self, *, proxy: str | None = None, ssl_context: ssl.SSLContext | None = None) -> None:
        context = ssl_context if ssl_context is not None else httpx.create_ssl_context()
        limits: dict[str, Any] = {
            "ssl_context": context,
            "max_connections": MAX_CONNECTIONS,
            "max_keepalive_connections": MAX_KEEPALIVE_CONNECTIONS,
            "keepalive_expiry": KEEPALIVE_EXPIRY,
            "network_backend": GuardedBackend(),
        }
        self._pool: httpcore.ConnectionPool | None = None
        self._direct: Http11Pool | None = None
        if proxy is None:
            # Idle connections kept: as many as a burst opens (a connection's bulkhead admits up to 96 calls),
            # so the next burst within KEEPALIVE_EXPIRY reuses them instead of opening as many again.
            self._direct = Http11Pool(
                ssl_context=context,
                max_idle=MAX_CONNECTIONS,
                keepalive_expiry=KEEPALIVE_EXPIRY,
            )
        else:
            proxy_url = httpx.URL(proxy)
            self._pool = httpcore.HTTPProxy(
                proxy_url=httpcore.URL(
                    scheme=proxy_url.raw_scheme,
                    host=proxy_url.raw_host,
                    port=proxy_url.port,
                    target=proxy_url.raw_path,
                ),
                proxy_auth=(proxy_url.username, proxy_url.password or "") if proxy_url.username else None,
                **limits,
            )

    def direct_requests(self, base_url: str) -> DirectRequests | None:
        """Requests to `base_url` built as bytes (`DirectRequests`), when calls go straight to it."""
        if self._direct is None:
            return None
        prepared = DirectRequests(self._direct, base_url)
        return prepared if prepared.usable else None

    @property
    def cooperative(self) -> bool:
        """Every wait goes through the framework's runtime (see `runs_here`): direct to the provider only."""
        return self._direct is not None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self._direct is not None:
            return self._direct.handle(request)
        assert self._pool is not None and isinstance(request.stream, httpx.SyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_errors():
            response = self._pool.handle_request(core_request)
        assert isinstance(response.stream, Iterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream),
            extensions=response.extensions,
        )

    def close(self) -> None:
        if self._direct is not None:
            self._direct.close()
        if self._pool is not None:
            self._pool.close()
