"""Unary gRPC calls to the host over HTTP/2 (http2.py) and mutual TLS, made by the caller itself.

Why not a grpcio channel: grpcio cannot verify the host's P-521 certificate, so it would need a TLS bridge,
and every call would cross four threads (caller, grpc core, bridge, back). Storage calls sit on the path of
every request, so this client does the whole call in the caller: encode, encrypt, send, wait, decrypt,
decode. The wait suspends a call on the hub (hub.py) and blocks any other thread. Connections are pooled;
each is used by one caller at a time.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from urllib.parse import unquote

from vaultplugin.transport import http2
from vaultplugin.transport.grpc_framing import MessageReader, Status, frame
from vaultplugin.transport.hub import wait_readable
from vaultplugin.transport.tls import MemoryTls

_RECV = 256 * 1024
_MAX_IDLE_CONNECTIONS = 16
_SEND_TIMEOUT = 30  # seconds a send may wait for the host to read
# A pooled connection idle for longer is checked before reuse (a GOAWAY, a close). One used more recently
# is not: the check is a syscall per call, and a call on a connection that went away is retried anyway.
_CHECK_AFTER_IDLE = 1.0


class RpcError(Exception):
    """A call failed: transport fault, timeout, or a non-OK grpc-status from the host."""

    def __init__(self, message: str, *, status: int | None = None, transient: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.transient = transient


class _Connection:
    """One HTTP/2 connection over mutual TLS (`ssl` memory BIOs), used by one caller at a time.

    The socket stays blocking for sends (bounded by SO_SNDTIMEO); reads never block in recv: a caller
    waits in `hub.wait_readable`, which suspends a call on the hub instead of holding a thread.
    """

    def __init__(self, raw: socket.socket, ctx: ssl.SSLContext) -> None:
        self.raw = raw
        self._tls = MemoryTls(ctx, raw, server_side=False, server_hostname="localhost")
        self.h2 = http2.Connection(client_side=True)
        self.broken = False
        self.released_at = 0.0  # monotonic time it went back to the pool

    def handshake(self, deadline: float) -> None:
        self._tls.handshake(lambda: self._recv(deadline))

    def close(self) -> None:
        self.broken = True
        with contextlib.suppress(OSError):
            self.raw.close()

    def still_usable(self) -> bool:
        """For a pooled connection: process what the host sent while it was idle (a GOAWAY, a close)."""
        try:
            while True:
                try:
                    data = self.raw.recv(_RECV, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    break
                clear = self._tls.receive(data) if data else None
                if clear is None:
                    return False
                for event in self.h2.receive(clear):
                    if event[0] == "goaway":
                        return False
                # What this queued (a SETTINGS or PING acknowledgement) leaves with the call that follows.
        except (OSError, ssl.SSLError, http2.ProtocolError):
            return False
        return not self.h2.closed

    def _flush(self) -> None:
        self._tls.send(self.h2.take_output())

    def _recv(self, deadline: float) -> bytes:
        """The host's next bytes (b"" once it has closed), waiting for them until the deadline."""
        while True:
            try:
                return self.raw.recv(_RECV, socket.MSG_DONTWAIT)
            except BlockingIOError:
                if not wait_readable(self.raw, deadline):
                    raise TimeoutError from None

    def _receive(self, deadline: float) -> list[tuple[object, ...]]:
        clear = self._tls.receive(b"")  # what came with the handshake or the last read
        while clear == b"":
            data = self._recv(deadline)
            if not data:
                raise ConnectionError("the host closed the connection")
            clear = self._tls.receive(data)
        if clear is None:
            raise ConnectionError("the host closed the TLS session")
        events = self.h2.receive(clear)
        if not self.h2.output_can_wait:
            self._flush()  # settings acks, window updates; PING acks leave with this connection's next call
        return events

    def call(self, method: bytes, payload: bytes, deadline: float) -> bytes:
        stream_id = self.h2.new_stream()
        timeout_ms = max(1, int((deadline - time.monotonic()) * 1000))
        timeout = http2.encode_headers([(b"grpc-timeout", b"%dm" % timeout_ms)])
        self.h2.send_headers(stream_id, _request_headers(method) + timeout)
        body = frame(payload)
        sent = 0
        while True:
            sent += self.h2.send_data(stream_id, body[sent:], end_stream=True)
            self._flush()
            if sent == len(body):
                break
            self._receive(deadline)  # wait for a WINDOW_UPDATE

        fields: dict[bytes, bytes] = {}
        reader = MessageReader()
        replies: list[bytes] = []
        try:
            while True:
                for event in self._receive(deadline):
                    if event[0] == "goaway":
                        self.broken = True
                    if len(event) < 2 or event[1] != stream_id:
                        continue
                    if event[0] == "headers":
                        fields.update(event[2])  # type: ignore[call-overload]
                        if fields.get(b":status", b"200") != b"200":
                            raise RpcError(
                                f"host answered HTTP {fields[b':status'].decode()}", transient=True
                            )
                        if event[3]:
                            return _decode(fields, replies)
                    elif event[0] == "data":
                        replies += reader.feed(event[2])  # type: ignore[arg-type]
                        if event[3]:
                            return _decode(fields, replies)
                    elif event[0] == "reset":
                        raise RpcError(f"the host reset the call (code {event[2]})", transient=True)
        finally:
            self.h2.close_stream(stream_id)


@functools.cache
def _request_headers(method: bytes) -> bytes:
    """The header block of a call to `method`, but for its grpc-timeout (a few methods, each called often)."""
    return http2.encode_headers(
        [
            (b":method", b"POST"),
            (b":scheme", b"https"),
            (b":path", method),
            (b":authority", b"localhost"),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
        ]
    )


def _decode(fields: dict[bytes, bytes], replies: list[bytes]) -> bytes:
    if b"grpc-status" not in fields:
        raise RpcError("the host sent no grpc-status", transient=True)
    status = int(fields[b"grpc-status"])
    if status != Status.OK:
        # UNAVAILABLE and DEADLINE_EXCEEDED are worth another try; anything else is an answer.
        message = unquote(fields.get(b"grpc-message", b"").decode())
        transient = status in (Status.UNAVAILABLE, Status.DEADLINE_EXCEEDED)
        raise RpcError(f"grpc status {status}: {message}", status=status, transient=transient)
    if len(replies) != 1:
        raise RpcError(f"the host sent {len(replies)} messages for a unary call")
    return replies[0]


class UnaryClient:
    """Pooled HTTP/2 connections to one host service address, for blocking unary gRPC calls."""

    def __init__(self, connect: Callable[[], socket.socket], ctx: ssl.SSLContext) -> None:
        self._connect = connect
        self._ctx = ctx
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    def _new_connection(self, deadline: float) -> _Connection:
        raw = self._connect()
        raw.settimeout(None)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", _SEND_TIMEOUT, 0))
        conn = _Connection(raw, self._ctx)
        try:
            conn.handshake(deadline)
        except BaseException:
            conn.close()
            raise
        return conn

    def call(self, method: str, payload: bytes, timeout: float) -> bytes:
        """Call `method` ("/pkg.Service/Method") with a serialized request; return the serialized reply."""
        deadline = time.monotonic() + timeout
        path = method.encode()
        for attempt in range(2):
            with self._lock:
                pooled = self._idle.pop() if self._idle else None
            if (
                pooled is not None
                and time.monotonic() - pooled.released_at > _CHECK_AFTER_IDLE
                and not pooled.still_usable()
            ):
                pooled.close()
                pooled = None
            conn = pooled
            try:
                if conn is None:
                    conn = self._new_connection(deadline)
                reply = conn.call(path, payload, deadline)
            except RpcError as exc:
                if conn is not None and exc.status is None:
                    conn.close()  # a protocol-level fault leaves the connection in an unknown state
                elif conn is not None:
                    self._release(conn)
                raise
            except (OSError, ssl.SSLError, ConnectionError, http2.ProtocolError) as exc:
                if conn is not None:
                    conn.close()
                # A pooled connection may have been closed by the host while idle: one retry on a fresh one.
                # Storage calls are idempotent (get, put of a whole value, delete, list), so a retry is safe.
                if pooled is not None and attempt == 0 and not isinstance(exc, TimeoutError):
                    continue
                raise RpcError(
                    f"connection to the host failed: {type(exc).__name__}", transient=True
                ) from None
            self._release(conn)
            return reply
        raise AssertionError("unreachable")

    def _release(self, conn: _Connection) -> None:
        with self._lock:
            if not self._closed and not conn.broken and len(self._idle) < _MAX_IDLE_CONNECTIONS:
                conn.released_at = time.monotonic()
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
