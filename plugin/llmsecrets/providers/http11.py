"""A lean HTTP/1.1 client for provider calls: keep-alive connections, straight to the provider, over
sockets that obey the running call's `budget.CallBudget` (`transport.GuardedTransport` uses it for every
call that does not go through a proxy).

Why not httpcore + h11: a provider call is a small JSON request and a small JSON answer, and the general
machinery cost more CPU than everything else on the path of a creds read or a revoke (measured in the
plugin under load: ~0.8 ms a call of ~2 ms a creds read). This does only what the provider calls need:
- requests with a body in hand (`Content-Length`), answers framed by `Content-Length`, chunked, or the
  connection's close; informational (1xx) answers skipped; no HTTP/2, no upgrades, no request streaming;
- every connect, TLS handshake, read and write has its timeout cut to the time the current call has
  left, and the socket in use is registered with the call, so aborting the call (its deadline watchdog,
  Vault's cancellation) ends a blocked read at once. Outside a call the request's own timeouts apply;
- sockets are non-blocking, and every wait for one goes through the waits of `vaultplugin.framework.runtime`:
  a call on the plugin's hub is suspended there and the hub serves other calls meanwhile (so a creds read or a
  revoke never leaves the hub thread: each thread hand-off costs more than the call's Python work); on any
  other thread it is a poll(). The DNS lookup of a new connection, which nothing else bounds, runs on a thread
  (`runtime.run_blocking`) and is waited for no longer than the call's connect timeout;
- a connection goes back to its pool only after its answer was read to the end; an idle one is dropped
  after `keepalive_expiry`, or when the server has closed it (checked before reuse);
- failures are httpx's exception types, so the caller maps them as it would httpx's own: ConnectError /
  ConnectTimeout (nothing sent), WriteError / WriteTimeout, ReadError / ReadTimeout,
  RemoteProtocolError (a malformed answer, or the connection closed before the answer was complete).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import ipaddress
import os
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from vaultplugin.framework import runtime

from . import budget

MAX_HEAD_BYTES = 64 * 1024  # status line and headers
MAX_LINE_BYTES = 8 * 1024  # one chunk-size or trailer line
READ_SIZE = 64 * 1024
DEFAULT_PORTS = {b"http": 80, b"https": 443}
_DEFAULT_TIMEOUTS = {"connect": 5.0, "read": 15.0, "write": 15.0, "pool": 5.0}


_NO_TIMEOUT = 365 * 86400.0  # a request made with a timeout of None waits this long


def _cut(timeout: float | None, error: type[httpx.TimeoutException]) -> float | None:
    """`timeout` cut to what the current call has left (unchanged outside a call)."""
    call = budget.current()
    if call is None:
        return timeout
    try:
        return call.cut(timeout)
    except TimeoutError as exc:
        raise error(str(exc)) from None


def _deadline(timeout: float | None, error: type[httpx.TimeoutException]) -> float:
    """When an operation with `timeout` (cut to the call's budget) must have finished (time.monotonic)."""
    cut = _cut(timeout, error)
    return time.monotonic() + (_NO_TIMEOUT if cut is None else cut)


def _retrying(op: Callable[[], Any], sock: socket.socket, deadline: float) -> Any:
    """`op()` on a non-blocking socket (plain or TLS), waited for until it can go on; raises TimeoutError at
    the deadline. TLS may need to read to write, or to write to read (renegotiation, handshake)."""
    while True:
        try:
            return op()
        except (BlockingIOError, ssl.SSLWantReadError):
            ready = runtime.wait_readable(sock, deadline)
        except ssl.SSLWantWriteError:
            ready = runtime.wait_writable(sock, deadline)
        if not ready:
            raise TimeoutError


def _attach(sock: socket.socket) -> None:
    call = budget.current()
    if call is not None:
        call.attach(sock)


@dataclass
class _Connection:
    sock: socket.socket
    idle_since: float = 0.0
    buffer: bytearray = field(default_factory=bytearray)  # read but not yet used

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def dropped_by_server(self) -> bool:
        """An idle connection is readable only once the server closed it (or broke the protocol)."""
        try:
            poller = select.poll()  # not select(): descriptors past 1024 would count as dropped
            poller.register(self.sock, select.POLLIN)
            return bool(poller.poll(0))
        except (OSError, ValueError):
            return True

    # --- socket operations under the call's budget

    def send(self, data: bytes, timeout: float | None) -> None:
        _attach(self.sock)
        deadline = _deadline(timeout, httpx.WriteTimeout)
        view = memoryview(data)
        try:
            while view:
                # A TLS write that wants to wait is retried with the same bytes (as OpenSSL requires).
                sent = _retrying(functools.partial(self.sock.send, view), self.sock, deadline)
                view = view[sent:]
        except TimeoutError:
            raise httpx.WriteTimeout("timed out sending the request") from None
        except OSError as exc:
            raise httpx.WriteError(f"sending the request failed: {exc}") from None

    def recv(self, timeout: float | None) -> bytes:
        _attach(self.sock)
        deadline = _deadline(timeout, httpx.ReadTimeout)
        try:
            data: bytes = _retrying(lambda: self.sock.recv(READ_SIZE), self.sock, deadline)
        except TimeoutError:
            raise httpx.ReadTimeout("timed out waiting for the answer") from None
        except OSError as exc:
            raise httpx.ReadError(f"reading the answer failed: {exc}") from None
        call = budget.current()
        if call is not None:
            call.received += len(data)
        return data

    def read_until(self, marker: bytes, limit: int, timeout: float | None, what: str) -> bytes:
        """Bytes up to and including `marker` (at most `limit`), leaving the rest buffered."""
        while True:
            end = self.buffer.find(marker)
            if end >= 0:
                end += len(marker)
                out = bytes(self.buffer[:end])
                del self.buffer[:end]
                return out
            if len(self.buffer) > limit:
                raise httpx.RemoteProtocolError(f"{what} longer than {limit} bytes")
            data = self.recv(timeout)
            if not data:
                raise httpx.RemoteProtocolError(
                    "Server disconnected without sending a response."
                    if what == "answer headers"
                    else f"the server closed the connection in the middle of the {what}"
                )
            self.buffer += data

    def read_some(self, timeout: float | None) -> bytes:
        """What is buffered, else the next bytes from the socket (b"" once the server has closed)."""
        if self.buffer:
            out = bytes(self.buffer)
            self.buffer.clear()
            return out
        return self.recv(timeout)


@dataclass(frozen=True)
class _Head:
    status: int
    reason: str
    version: bytes
    headers: list[tuple[bytes, bytes]]

    def values(self, name: bytes) -> list[bytes]:
        return [v for k, v in self.headers if k.lower() == name]


def _parse_head(raw: bytes) -> _Head:
    lines = raw[:-4].split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit() or len(parts[1]) != 3:
        raise httpx.RemoteProtocolError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise httpx.RemoteProtocolError(f"malformed header line: {line[:80]!r}")
        headers.append((name, value.strip()))
    reason = parts[2].decode("latin-1") if len(parts) > 2 else ""
    return _Head(int(parts[1]), reason, parts[0], headers)


class _Body(httpx.SyncByteStream):
    """An answer's body as it arrives; the connection is pooled again once the body was read to its end."""

    def __init__(
        self,
        pool: Http11Pool,
        key: tuple[bytes, bytes, int],
        conn: _Connection,
        head: _Head,
        *,
        method: bytes,
        timeout: float | None,
    ) -> None:
        self._pool = pool
        self._key = key
        self._conn: _Connection | None = conn
        self._timeout = timeout
        connection = b",".join(head.values(b"connection")).lower()
        self._reusable = head.version == b"HTTP/1.1" and b"close" not in connection
        self._chunked = False
        self._left: int | None = None  # bytes of a Content-Length body still to come; None: until close
        if method == b"HEAD" or head.status in (204, 304) or 100 <= head.status < 200:
            self._left = 0
        elif any(b"chunked" in v.lower() for v in head.values(b"transfer-encoding")):
            self._chunked = True
        elif lengths := head.values(b"content-length"):
            if len(set(lengths)) != 1 or not lengths[0].strip().isdigit():
                raise httpx.RemoteProtocolError("invalid Content-Length")
            self._left = int(lengths[0])
        else:
            self._reusable = False

    def __iter__(self) -> Iterator[bytes]:
        conn = self._conn
        if conn is None:
            return
        if self._chunked:
            yield from self._chunks(conn)
        else:
            while self._left is None or self._left > 0:
                data = conn.read_some(self._timeout)
                if not data:
                    if self._left is None:
                        break  # the close ends the body
                    raise httpx.RemoteProtocolError(
                        f"the server closed the connection with {self._left} bytes of the answer missing"
                    )
                if self._left is not None:
                    if len(data) > self._left:
                        conn.buffer[:0] = data[self._left :]  # more than the body: not reusable
                        self._reusable = False
                        data = data[: self._left]
                    self._left -= len(data)
                yield data
        self._finish()

    def _chunks(self, conn: _Connection) -> Iterator[bytes]:
        while True:
            line = conn.read_until(b"\r\n", MAX_LINE_BYTES, self._timeout, "chunk size")
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise httpx.RemoteProtocolError(f"invalid chunk size {size_text[:20]!r}") from None
            if size == 0:
                while conn.read_until(b"\r\n", MAX_LINE_BYTES, self._timeout, "trailer") != b"\r\n":
                    pass
                return
            while size > 0:
                data = conn.read_some(self._timeout)
                if not data:
                    raise httpx.RemoteProtocolError(
                        "the server closed the connection in the middle of a chunk"
                    )
                if len(data) > size:
                    conn.buffer[:0] = data[size:]
                    data = data[:size]
                size -= len(data)
                yield data
            if conn.read_until(b"\r\n", 2, self._timeout, "chunk end") != b"\r\n":
                raise httpx.RemoteProtocolError("a chunk is not followed by CRLF")

    def _finish(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._reusable and not conn.buffer:
            self._pool.release(self._key, conn)
        else:
            conn.close()

    def close(self) -> None:
        """Closed before the body's end (a capped answer, an error): the connection cannot be reused."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


class Http11Pool:
    """Keep-alive HTTP/1.1 connections per (scheme, host, port)."""

    def __init__(
        self, *, ssl_context: ssl.SSLContext, max_idle: int = 20, keepalive_expiry: float = 5.0
    ) -> None:
        self._ssl_context = ssl_context
        self._max_idle = max_idle
        self._keepalive_expiry = keepalive_expiry
        self._lock = threading.Lock()
        self._idle: dict[tuple[bytes, bytes, int], list[_Connection]] = {}
        self._closed = False

    def handle(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        key = connection_key(url)
        return self.send(
            key,
            request.method.encode("ascii"),
            url.raw_path,
            request.headers.raw,
            body=request.read(),
            timeout=request.extensions.get("timeout", {}),
        )

    def send(
        self,
        key: tuple[bytes, bytes, int],
        method: bytes,
        target: bytes,
        headers: Iterable[tuple[bytes, bytes]],
        *,
        body: bytes,
        timeout: Mapping[str, float | None],
    ) -> httpx.Response:
        """One request to `key` (scheme, host, port) as bytes in hand: `headers` must hold Host (and
        Content-Length for a body). `transport.DirectRequests` calls this without an httpx.Request."""
        timeouts = {**_DEFAULT_TIMEOUTS, **timeout}
        head = b"%s %s HTTP/1.1\r\n" % (method, target)
        head += b"".join(b"%s: %s\r\n" % (k, v) for k, v in headers) + b"\r\n"
        conn = self._connection(key, timeouts)
        try:
            conn.send(head + body, timeouts["write"])
            while True:
                answer = _parse_head(
                    conn.read_until(b"\r\n\r\n", MAX_HEAD_BYTES, timeouts["read"], "answer headers")
                )
                if not 100 <= answer.status < 200 or answer.status == 101:
                    break  # informational answers (100 Continue, 103 Early Hints) come before the real one
            stream = _Body(self, key, conn, answer, method=method, timeout=timeouts["read"])
        except BaseException:
            conn.close()
            raise
        return httpx.Response(
            status_code=answer.status,
            headers=answer.headers,
            stream=stream,
            extensions={"http_version": answer.version, "reason_phrase": answer.reason.encode("latin-1")},
        )

    def release(self, key: tuple[bytes, bytes, int], conn: _Connection) -> None:
        conn.idle_since = time.monotonic()
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if not self._closed and len(idle) < self._max_idle:
                idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle = [c for conns in self._idle.values() for c in conns]
            self._idle.clear()
        for conn in idle:
            conn.close()

    # --- connections

    def _connection(self, key: tuple[bytes, bytes, int], timeouts: dict[str, float | None]) -> _Connection:
        while True:
            with self._lock:
                idle = self._idle.get(key)
                conn = idle.pop() if idle else None
            if conn is None:
                return self._connect(key, timeouts["connect"])
            if time.monotonic() - conn.idle_since > self._keepalive_expiry or conn.dropped_by_server():
                conn.close()
                continue
            return conn

    def _connect(self, key: tuple[bytes, bytes, int], timeout: float | None) -> _Connection:
        scheme, host, port = key
        sock = self._open((host.decode("ascii"), port), timeout)
        if scheme == b"https":
            try:
                sock = self._tls(sock, host.decode("ascii"), timeout)
            except BaseException:
                with contextlib.suppress(OSError):
                    sock.close()
                raise
        return _Connection(sock)

    @staticmethod
    def _open(address: tuple[str, int], timeout: float | None) -> socket.socket:
        """A connected non-blocking socket: each of the host's addresses in turn, all within `timeout`."""
        host, port = address
        deadline = _deadline(timeout, httpx.ConnectTimeout)
        late = httpx.ConnectTimeout(f"no connection to {host}:{port} in time")
        try:
            addresses = _resolve(host, port, deadline)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"the DNS lookup of {host} did not finish in time") from None
        except OSError as exc:
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {exc}") from None
        failure: OSError | None = None
        for family, kind, proto, _, sockaddr in addresses:
            sock = socket.socket(family, kind, proto)
            try:
                sock.setblocking(False)
                _attach(sock)
                code = sock.connect_ex(sockaddr)
                if code in (errno.EINPROGRESS, errno.EAGAIN):
                    if not runtime.wait_writable(sock, deadline):
                        raise late
                    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    raise OSError(code, os.strerror(code))
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return sock
            except OSError as exc:
                sock.close()
                failure = exc
            except BaseException:
                sock.close()
                raise
        raise httpx.ConnectError(f"cannot connect to {host}:{port}: {failure}")

    def _tls(self, sock: socket.socket, server_hostname: str, timeout: float | None) -> socket.socket:
        """The TLS session over `sock`, its handshake bounded as a whole by `timeout`."""
        deadline = _deadline(timeout, httpx.ConnectTimeout)
        try:
            tls = self._ssl_context.wrap_socket(
                sock, server_hostname=server_hostname, do_handshake_on_connect=False
            )
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(f"TLS handshake failed: {exc}") from None
        _attach(tls)  # the wrapped socket took over the descriptor: an abort must reach it
        try:
            _retrying(tls.do_handshake, tls, deadline)
        except TimeoutError:
            tls.close()
            raise httpx.ConnectTimeout("the TLS handshake did not finish in time") from None
        except (OSError, ssl.SSLError) as exc:
            tls.close()
            raise httpx.ConnectError(f"TLS handshake failed: {exc}") from None
        return tls


def connection_key(url: httpx.URL) -> tuple[bytes, bytes, int]:
    """(scheme, host, port) of `url`: what a pooled connection serves."""
    scheme = url.raw_scheme
    if scheme not in DEFAULT_PORTS:
        raise httpx.UnsupportedProtocol(f"the URL scheme must be http or https, not {url.scheme!r}")
    return scheme, url.raw_host, url.port or DEFAULT_PORTS[scheme]


def _resolve(host: str, port: int, deadline: float) -> list[Any]:
    """The addresses to try for host:port. An IP address needs no lookup; a name is looked up on a thread,
    waited for until `deadline` (getaddrinfo has no timeout of its own)."""
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return runtime.run_blocking(
            lambda: socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, socket.IPPROTO_TCP), deadline
        )
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (str(ip), port))]
