"""A TLS bridge between the host's mutual-TLS connections and grpcio speaking plaintext on private sockets.

Why: grpcio's TLS cannot handle the host's P-521 certificate (see tls.py). So the `ssl` module terminates
TLS and each connection is pumped to or from a unix socket in a 0700 directory that only this process uses.

Each bridged connection is served by one thread that owns its `ssl.SSLObject` (memory BIOs): OpenSSL
objects must not be driven from two threads at once, and one poll loop per connection keeps the latency low.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable

from vaultplugin.tls import ALPN_H2

log = logging.getLogger(__name__)

_CHUNK = 256 * 1024
_HANDSHAKE_TIMEOUT = 10.0


class _TlsEnd:
    """The TLS side of one bridged connection: a raw socket plus an SSLObject over memory BIOs."""

    def __init__(self, raw: socket.socket, ctx: ssl.SSLContext, *, server_side: bool) -> None:
        self.raw = raw
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(
            self.incoming, self.outgoing, server_side=server_side, server_hostname=None if server_side else "localhost"
        )

    def flush(self) -> None:
        data = self.outgoing.read()
        if data:
            self.raw.sendall(data)

    def handshake(self, timeout: float = _HANDSHAKE_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.obj.do_handshake()
                self.flush()
                break
            except ssl.SSLWantReadError:
                self.flush()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("TLS handshake timed out") from None
                self.raw.settimeout(remaining)
                data = self.raw.recv(_CHUNK)
                if not data:
                    raise ConnectionError("peer closed the connection during the TLS handshake") from None
                self.incoming.write(data)
        self.raw.settimeout(None)
        if self.obj.selected_alpn_protocol() != ALPN_H2:
            raise ConnectionError("peer did not negotiate ALPN h2")


def _pump(tls: _TlsEnd, plain: socket.socket) -> None:
    """Move bytes both ways until either side closes. Runs in the connection's own thread."""
    raw_fd, plain_fd = tls.raw.fileno(), plain.fileno()
    poller = select.poll()
    poller.register(raw_fd, select.POLLIN)
    poller.register(plain_fd, select.POLLIN)
    while True:
        for fd, _events in poller.poll():
            if fd == raw_fd:
                data = tls.raw.recv(_CHUNK)
                if not data:
                    return
                tls.incoming.write(data)
                while True:
                    try:
                        clear = tls.obj.read(_CHUNK)
                    except ssl.SSLWantReadError:
                        break
                    except ssl.SSLZeroReturnError:
                        return
                    if not clear:
                        return
                    plain.sendall(clear)
                tls.flush()  # reading can produce records to send (key updates, session tickets)
            else:
                data = plain.recv(_CHUNK)
                if not data:
                    return
                tls.obj.write(data)
                tls.flush()


def _bridge_connection(make_tls: Callable[[], _TlsEnd], plain_factory: Callable[[], socket.socket], what: str) -> None:
    tls: _TlsEnd | None = None
    plain: socket.socket | None = None
    try:
        tls = make_tls()
        tls.handshake()
        plain = plain_factory()
        _pump(tls, plain)
    except (OSError, ssl.SSLError, ConnectionError, TimeoutError) as exc:
        # A refused peer (no or wrong client certificate) lands here: log the reason, drop the connection.
        log.debug("%s connection closed: %s", what, exc)
    finally:
        for sock in (plain, tls.raw if tls else None):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()


class _Listener:
    """Accepts connections on a unix socket and hands each to `serve_one` in its own daemon thread."""

    def __init__(self, path: str, serve_one: Callable[[socket.socket], None], name: str) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(path)
        self._sock.listen(64)
        self._serve_one = serve_one
        self._name = name
        self._closed = False
        threading.Thread(target=self._accept_loop, name=f"{name}-accept", daemon=True).start()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve_one, args=(conn,), name=f"{self._name}-conn", daemon=True).start()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()


def _connect_unix(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    return sock


class TlsServerBridge(_Listener):
    """The host dials `listen_path` with mutual TLS; each connection is pumped to grpcio at `target_path`."""

    def __init__(self, listen_path: str, target_path: str, ctx: ssl.SSLContext) -> None:
        def serve_one(conn: socket.socket) -> None:
            _bridge_connection(
                lambda: _TlsEnd(conn, ctx, server_side=True), lambda: _connect_unix(target_path), "host->plugin"
            )

        super().__init__(listen_path, serve_one, "tls-server")


def connect_host(network: str, address: str) -> socket.socket:
    """Open a raw socket to an address the host announced over the broker."""
    if network == "unix":
        return _connect_unix(address)
    if network == "tcp":
        host, _, port = address.rpartition(":")
        return socket.create_connection((host.strip("[]"), int(port)), timeout=_HANDSHAKE_TIMEOUT)
    raise ConnectionError(f"unsupported broker network {network!r}")


class TlsClientBridge(_Listener):
    """grpcio dials `listen_path` in plaintext; each connection is pumped to the host's broker address over mTLS."""

    def __init__(self, listen_path: str, network: str, address: str, ctx: ssl.SSLContext) -> None:
        def serve_one(conn: socket.socket) -> None:
            try:
                _bridge_connection(
                    lambda: _TlsEnd(connect_host(network, address), ctx, server_side=False),
                    lambda: conn,
                    "plugin->host",
                )
            finally:
                conn.close()  # also when dialling the host failed before the pump took it over

        super().__init__(listen_path, serve_one, "tls-client")
