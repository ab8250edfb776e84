"""A blocking gRPC client for unary calls to the host, speaking HTTP/2 over mutual TLS in the caller's thread.

Why not a grpcio channel: it needs the TLS bridge (grpcio cannot verify the host's P-521 certificate) and
every call then crosses four threads (caller, grpc core, bridge, back). Storage calls sit on the path of
every request, so this client does the whole call in the calling thread: encode, encrypt, send, wait,
decrypt, decode. Connections are pooled; each is used by one thread at a time.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable
from urllib.parse import unquote

import h2.connection
import h2.events
import h2.exceptions

from vaultplugin.grpc_framing import MessageReader, Status, frame, h2_config
from vaultplugin.tls import ALPN_H2

_RECV = 256 * 1024
_MAX_IDLE_CONNECTIONS = 16


class RpcError(Exception):
    """A call failed: transport fault, timeout, or a non-OK grpc-status from the host."""

    def __init__(self, message: str, *, status: int | None = None, transient: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.transient = transient


class _Connection:
    def __init__(self, sock: ssl.SSLSocket) -> None:
        self.sock = sock
        self.h2 = h2.connection.H2Connection(h2_config(client_side=True))
        self.h2.initiate_connection()
        self.broken = False

    def close(self) -> None:
        self.broken = True
        with contextlib.suppress(OSError):
            self.sock.close()

    def _flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)

    def _receive(self, deadline: float) -> list[h2.events.Event]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        self.sock.settimeout(remaining)
        data = self.sock.recv(_RECV)
        if not data:
            raise ConnectionError("the host closed the connection")
        events = self.h2.receive_data(data)
        self._flush()  # settings acks, pings, window updates
        return events

    def call(self, method: str, payload: bytes, deadline: float) -> bytes:
        stream_id = self.h2.get_next_available_stream_id()
        timeout_ms = max(1, int((deadline - time.monotonic()) * 1000))
        self.h2.send_headers(
            stream_id,
            [
                (b":method", b"POST"),
                (b":scheme", b"https"),
                (b":path", method.encode()),
                (b":authority", b"localhost"),
                (b"content-type", b"application/grpc"),
                (b"te", b"trailers"),
                (b"grpc-timeout", b"%dm" % timeout_ms),
            ],
        )
        self._send_body(stream_id, frame(payload), deadline)

        status: int | None = None
        message = ""
        reader = MessageReader()
        replies: list[bytes] = []
        while True:
            for event in self._receive(deadline):
                if isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
                    headers = dict(event.headers)
                    http_status = headers.get(b":status", b"200")
                    if http_status != b"200":
                        raise RpcError(f"host answered HTTP {http_status.decode()}", transient=True)
                    if b"grpc-status" in headers:
                        status = int(headers[b"grpc-status"])
                        message = unquote(headers.get(b"grpc-message", b"").decode())
                elif isinstance(event, h2.events.DataReceived) and event.stream_id == stream_id:
                    replies += reader.feed(event.data)
                    self.h2.acknowledge_received_data(event.flow_controlled_length, stream_id)
                elif isinstance(event, h2.events.StreamReset) and event.stream_id == stream_id:
                    raise RpcError(f"the host reset the call (code {event.error_code})", transient=True)
                elif isinstance(event, h2.events.ConnectionTerminated):
                    raise ConnectionError("the host ended the connection")
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream_id:
                    self._flush()
                    return _decode(status, message, replies)

    def _send_body(self, stream_id: int, body: bytes, deadline: float) -> None:
        view = memoryview(body)
        while view:
            window = min(self.h2.local_flow_control_window(stream_id), self.h2.max_outbound_frame_size)
            if window <= 0:
                self._flush()
                self._receive(deadline)  # wait for a WINDOW_UPDATE
                continue
            self.h2.send_data(stream_id, view[:window].tobytes())
            view = view[window:]
        self.h2.end_stream(stream_id)
        self._flush()


def _decode(status: int | None, message: str, replies: list[bytes]) -> bytes:
    if status is None:
        raise RpcError("the host sent no grpc-status", transient=True)
    if status != Status.OK:
        # UNAVAILABLE and DEADLINE_EXCEEDED are worth another try; anything else is an answer.
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
        raw.settimeout(max(0.1, deadline - time.monotonic()))
        sock = self._ctx.wrap_socket(raw, server_hostname="localhost")
        if sock.selected_alpn_protocol() != ALPN_H2:
            sock.close()
            raise ConnectionError("the host did not negotiate ALPN h2")
        return _Connection(sock)

    def call(self, method: str, payload: bytes, timeout: float) -> bytes:
        """Call `method` ("/pkg.Service/Method") with a serialized request; return the serialized reply."""
        deadline = time.monotonic() + timeout
        for attempt in range(2):
            with self._lock:
                pooled = self._idle.pop() if self._idle else None
            conn = pooled
            try:
                if conn is None:
                    conn = self._new_connection(deadline)
                reply = conn.call(method, payload, deadline)
            except RpcError as exc:
                if conn is not None and exc.status is None:
                    conn.close()  # a protocol-level fault leaves the connection in an unknown state
                elif conn is not None:
                    self._release(conn)
                raise
            except (OSError, ssl.SSLError, ConnectionError, h2.exceptions.ProtocolError) as exc:
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
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
