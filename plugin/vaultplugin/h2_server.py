"""A gRPC server on HTTP/2 (the `h2` library) over the host's mutual-TLS connections.

Why not grpcio's server: grpcio's TLS cannot verify the host's P-521 certificate, so it would need a
TLS-to-plaintext bridge, and every call would then cross five threads (bridge, grpc core, dispatcher,
worker, back). Here one reader thread per connection owns the TLS state (`ssl` memory BIOs) and the h2
state machine; unary calls run on a worker pool and write their replies under the connection's lock.
Long-lived streams (the broker's StartStream, StreamStdio) get threads of their own.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from typing import Any
from urllib.parse import quote

import h2.connection
import h2.events
import h2.exceptions
import h2.settings

from vaultplugin.grpc_framing import MessageReader, Status, frame, h2_config
from vaultplugin.tls import ALPN_H2

log = logging.getLogger(__name__)

_RECV = 256 * 1024
_HANDSHAKE_TIMEOUT = 10.0
_WINDOW = 16 * 1024 * 1024  # generous receive window: requests are small, but never stall the host
_FLOW_CONTROL_WAIT = 30.0


class Kind(Enum):
    UNARY = "unary"
    SERVER_STREAM = "server_stream"  # one request in, a stream of replies out
    BIDI_STREAM = "bidi_stream"  # a stream of requests in


class CallError(Exception):
    """Raised by a handler to end the call with a gRPC status other than OK."""

    def __init__(self, status: Status, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Method:
    """One RPC: how to decode its request and what handles it.

    UNARY: handler(request) -> reply. SERVER_STREAM: handler(request) -> iterator of replies.
    BIDI_STREAM: handler(iterator of requests) -> None (replies are not used by any service we serve).
    `inline(request)` true means the call is pure CPU and never blocks: it runs on the connection's reader
    thread, which saves waking a worker (resolve-path precedes every client request).
    """

    kind: Kind
    request_type: Any
    handler: Callable[[Any], Any]
    inline: Callable[[Any], bool] | None = None


class _Stream:
    def __init__(self, method: Method | None) -> None:
        self.method = method
        self.reader = MessageReader()
        self.requests: queue.SimpleQueue[bytes | None] | None = None  # bidi streams only
        self.headers_sent = False
        self.closed = False


class _Connection:
    """One TLS connection from the host, read by its own thread."""

    def __init__(self, server: H2GrpcServer, raw: socket.socket, ctx: ssl.SSLContext) -> None:
        self._server = server
        self._raw = raw
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = ctx.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self._h2 = h2.connection.H2Connection(h2_config(client_side=False))
        # One lock for the h2 state, the TLS object and the socket's send side: OpenSSL objects must not
        # be used from two threads at once, and records must leave in the order they were sealed.
        self._lock = threading.Condition()
        self._streams: dict[int, _Stream] = {}
        self._alive = True

    # ---- TLS -----------------------------------------------------------------------------------------------

    def _handshake(self) -> None:
        deadline = time.monotonic() + _HANDSHAKE_TIMEOUT
        while True:
            try:
                self._tls.do_handshake()
                self._send_sealed()
                break
            except ssl.SSLWantReadError:
                self._send_sealed()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("TLS handshake timed out") from None
                self._raw.settimeout(remaining)
                data = self._raw.recv(_RECV)
                if not data:
                    raise ConnectionError("peer closed the connection during the TLS handshake") from None
                self._incoming.write(data)
        self._raw.settimeout(None)
        if self._tls.selected_alpn_protocol() != ALPN_H2:
            raise ConnectionError("peer did not negotiate ALPN h2")

    def _send_sealed(self) -> None:
        data = self._outgoing.read()
        if data:
            self._raw.sendall(data)

    def _flush_locked(self) -> None:
        """Seal whatever h2 has queued and send it. Caller holds the lock."""
        data = self._h2.data_to_send()
        if data:
            self._tls.write(data)
        self._send_sealed()

    # ---- reading -------------------------------------------------------------------------------------------

    def serve(self) -> None:
        try:
            self._handshake()
            with self._lock:
                self._h2.initiate_connection()
                self._h2.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: _WINDOW})
                self._h2.increment_flow_control_window(_WINDOW - 65535)
                self._flush_locked()
            while True:
                data = self._raw.recv(_RECV)
                if not data:
                    return
                ready: list[tuple[int, _Stream, bytes]] = []
                with self._lock:
                    self._incoming.write(data)
                    clear = self._read_clear()
                    events = self._h2.receive_data(clear) if clear else []
                    for event in events:
                        self._on_event(event, ready)
                    self._flush_locked()
                    if events:
                        self._lock.notify_all()  # writers waiting for flow-control window
                for stream_id, stream, message in ready:
                    self._start_call(stream_id, stream, message)
                if clear is None:
                    return
        except (OSError, ssl.SSLError, ConnectionError, TimeoutError, h2.exceptions.ProtocolError) as exc:
            # A refused peer (no or wrong client certificate) lands here: log the reason, drop the connection.
            log.debug("host connection closed: %s", exc)
        finally:
            self._close()

    def _read_clear(self) -> bytes | None:
        """Decrypt everything buffered; None when the peer closed the TLS session."""
        chunks: list[bytes] = []
        while True:
            try:
                chunk = self._tls.read(_RECV)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                return None
            if not chunk:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    def _on_event(self, event: h2.events.Event, ready: list[tuple[int, _Stream, bytes]]) -> None:
        if isinstance(event, h2.events.RequestReceived):
            path = dict(event.headers).get(b":path", b"").decode("ascii", "replace")
            method = self._server.methods.get(path)
            stream = _Stream(method)
            self._streams[event.stream_id] = stream
            if method is None:
                self._end_locked(
                    event.stream_id, Status.UNIMPLEMENTED, f"unknown method {path}", headers_sent=False
                )
            elif method.kind is Kind.BIDI_STREAM:
                stream.requests = queue.SimpleQueue()
                self._server.spawn(self._run_bidi, event.stream_id, stream)
        elif isinstance(event, h2.events.DataReceived):
            self._h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            stream_or_none = self._streams.get(event.stream_id)
            if stream_or_none is not None and stream_or_none.method is not None:
                for message in stream_or_none.reader.feed(event.data):
                    if stream_or_none.requests is not None:
                        stream_or_none.requests.put(message)
                    elif stream_or_none.reader.pending == 0:
                        ready.append((event.stream_id, stream_or_none, message))
        elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
            stream_or_none = self._streams.get(event.stream_id)
            if stream_or_none is not None and stream_or_none.requests is not None:
                stream_or_none.requests.put(None)
            if isinstance(event, h2.events.StreamReset) and stream_or_none is not None:
                stream_or_none.closed = True
                self._streams.pop(event.stream_id, None)
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._alive = False

    def _start_call(self, stream_id: int, stream: _Stream, message: bytes) -> None:
        """Run a call whose request is complete. Called by the reader thread without the lock held."""
        method = stream.method
        assert method is not None
        if method.kind is not Kind.UNARY:
            self._server.spawn(self._run_server_stream, stream_id, stream, message)
            return
        try:
            request = method.request_type.FromString(message)
        except Exception:
            self.finish(stream_id, Status.INTERNAL, "malformed request message")
            return
        if method.inline is not None and method.inline(request):
            self._run_unary(stream_id, method, request)
        else:
            self._server.submit(self._run_unary, stream_id, method, request)

    # ---- running handlers ----------------------------------------------------------------------------------

    def _run_unary(self, stream_id: int, method: Method, request: Any) -> None:
        try:
            payload = method.handler(request).SerializeToString()
        except CallError as exc:
            self.finish(stream_id, exc.status, str(exc))
            return
        except Exception as exc:
            log.error("gRPC handler failed", exc_info=exc)
            self.finish(stream_id, Status.INTERNAL, "internal error")
            return
        self.reply(stream_id, payload)

    def _run_server_stream(self, stream_id: int, stream: _Stream, message: bytes) -> None:
        assert stream.method is not None
        try:
            for reply in stream.method.handler(stream.method.request_type.FromString(message)):
                if stream.closed or not self.send_message(stream_id, reply.SerializeToString()):
                    return
            self.finish(stream_id, Status.OK, "")
        except Exception as exc:
            log.error("gRPC stream handler failed", exc_info=exc)
            self.finish(stream_id, Status.INTERNAL, "internal error")

    def _run_bidi(self, stream_id: int, stream: _Stream) -> None:
        assert stream.method is not None and stream.requests is not None
        request_type = stream.method.request_type
        requests = stream.requests

        def incoming() -> Iterator[Any]:
            while (message := requests.get()) is not None:
                yield request_type.FromString(message)

        try:
            stream.method.handler(incoming())
            self.finish(stream_id, Status.OK, "")
        except Exception as exc:
            log.error("gRPC stream handler failed", exc_info=exc)
            self.finish(stream_id, Status.INTERNAL, "internal error")

    # ---- writing (any thread) ------------------------------------------------------------------------------

    def _send_data_locked(self, stream_id: int, data: bytes) -> None:
        view = memoryview(data)
        deadline = time.monotonic() + _FLOW_CONTROL_WAIT
        while view:
            window = min(self._h2.local_flow_control_window(stream_id), self._h2.max_outbound_frame_size)
            if window <= 0:
                self._flush_locked()
                if not self._alive or not self._lock.wait(timeout=deadline - time.monotonic()):
                    raise TimeoutError("the host did not open its flow-control window")
                continue
            self._h2.send_data(stream_id, view[:window].tobytes())
            view = view[window:]

    def _response_headers(self) -> list[tuple[bytes, bytes]]:
        return [(b":status", b"200"), (b"content-type", b"application/grpc")]

    def _end_locked(self, stream_id: int, status: Status, message: str, *, headers_sent: bool) -> None:
        trailers = [(b"grpc-status", str(int(status)).encode())]
        if message:
            trailers.append((b"grpc-message", quote(message, safe=" ").encode()))
        if not headers_sent:
            trailers = self._response_headers() + trailers  # a trailers-only response
        self._h2.send_headers(stream_id, trailers, end_stream=True)
        self._streams.pop(stream_id, None)

    def reply(self, stream_id: int, payload: bytes) -> None:
        """Send a unary reply: headers, the message, OK trailers."""
        with self._lock:
            if not self._alive or stream_id not in self._streams:
                return
            try:
                self._h2.send_headers(stream_id, self._response_headers())
                self._send_data_locked(stream_id, frame(payload))
                self._end_locked(stream_id, Status.OK, "", headers_sent=True)
                self._flush_locked()
            except (
                h2.exceptions.StreamClosedError,
                h2.exceptions.ProtocolError,
                TimeoutError,
                OSError,
            ) as exc:
                log.debug("could not send a reply on stream %d: %s", stream_id, exc)

    def send_message(self, stream_id: int, payload: bytes) -> bool:
        """Send one message on a streaming call (headers first time). False when the call is gone."""
        with self._lock:
            stream = self._streams.get(stream_id)
            if not self._alive or stream is None:
                return False
            try:
                if not stream.headers_sent:
                    self._h2.send_headers(stream_id, self._response_headers())
                    stream.headers_sent = True
                self._send_data_locked(stream_id, frame(payload))
                self._flush_locked()
                return True
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, TimeoutError, OSError):
                return False

    def finish(self, stream_id: int, status: Status, message: str) -> None:
        with self._lock:
            stream = self._streams.get(stream_id)
            if not self._alive or stream is None:
                return
            try:
                self._end_locked(stream_id, status, message, headers_sent=stream.headers_sent)
                self._flush_locked()
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, OSError) as exc:
                log.debug("could not end stream %d: %s", stream_id, exc)

    def _close(self) -> None:
        with self._lock:
            self._alive = False
            for stream in self._streams.values():
                stream.closed = True
                if stream.requests is not None:
                    stream.requests.put(None)
            self._streams.clear()
            self._lock.notify_all()
        with contextlib.suppress(OSError):
            self._raw.shutdown(socket.SHUT_RDWR)
        self._raw.close()


class H2GrpcServer:
    """Accepts the host's connections on a unix socket and serves `methods` ("/pkg.Service/Method")."""

    def __init__(self, path: str, ctx: ssl.SSLContext, methods: dict[str, Method], workers: int = 16) -> None:
        self.methods = methods
        self._ctx = ctx
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc-worker")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(path)
        self._sock.listen(64)
        self._closed = False
        threading.Thread(target=self._accept_loop, name="grpc-accept", daemon=True).start()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                raw, _ = self._sock.accept()
            except OSError:
                return
            self.spawn(_Connection(self, raw, self._ctx).serve)

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        self._pool.submit(fn, *args)

    @staticmethod
    def spawn(fn: Callable[..., None], *args: Any) -> None:
        threading.Thread(target=fn, args=args, daemon=True).start()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
