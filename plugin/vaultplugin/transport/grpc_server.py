"""A gRPC server over HTTP/2 (http2.py) on the host's mutual-TLS connections.

Why not grpcio's server: grpcio's TLS cannot verify the host's P-521 certificate, so it would need a
TLS-to-plaintext bridge, and every call would then cross five threads (bridge, grpc core, dispatcher,
worker, back). Here each connection's TLS state (`ssl` memory BIOs) and HTTP/2 state sit behind one lock.

The hub (hub.py) reads every connection. A call whose method says it is cooperative (it blocks on nothing
but the hub's waits) runs on the hub as a greenlet of its own; any other call runs on a thread pool, which
also runs what a call on the hub hands off (`hub.run_blocking`). Long-lived streams (the broker's
StartStream, StreamStdio) get threads of their own.
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
from dataclasses import dataclass
from enum import Enum
from typing import Any
from urllib.parse import quote

from vaultplugin.transport import after_reply, http2
from vaultplugin.transport.cancellation import Cancellation, running
from vaultplugin.transport.grpc_framing import MessageReader, Status, frame
from vaultplugin.transport.hub import Hub
from vaultplugin.transport.tls import MemoryTls

log = logging.getLogger(__name__)

# Most threads the pool that runs the calls that are not cooperative (and provider calls that may not wait
# on the hub: through a proxy, or a bulkhead nearly full) may have. Vault revokes up to 200 leases at once
# (its expiration workers): against a provider that takes 200 ms a call, 32 threads capped the plugin at
# ~120 deletes/s. Threads are started only when every one is busy, and leave again after
# IDLE_THREAD_SECONDS without work, so a quiet plugin keeps a handful.
CALL_THREADS = 128
IDLE_THREAD_SECONDS = 30.0
_RECV = 256 * 1024
_HANDSHAKE_TIMEOUT = 10.0
_FLOW_CONTROL_WAIT = 30.0
# How long a PING acknowledgement may wait for a reply to ride on (see http2.Connection.output_can_wait).
_PING_ACK_DELAY = 0.010
_RESPONSE_HEADERS = http2.encode_headers([(b":status", b"200"), (b"content-type", b"application/grpc")])
_OK_TRAILERS = http2.encode_headers([(b"grpc-status", b"0")])


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
    """

    kind: Kind
    request_type: Any
    handler: Callable[[Any], Any]
    # cooperative(request) true: the call blocks on nothing but calls to the host, so it may run on the hub.
    cooperative: Callable[[Any], bool] | None = None


Call = tuple["_Connection", int, Method, Any, Cancellation]  # connection, stream, method, request, its cancel


class _Stream:
    def __init__(self, method: Method | None) -> None:
        self.method = method
        self.reader = MessageReader()
        self.requests: queue.SimpleQueue[bytes | None] | None = None  # bidi streams only
        self.headers_sent = False
        self.closed = False
        self.cancellation = Cancellation()  # cancelled when the host resets the stream or goes away


def _trailers(status: Status, message: str) -> bytes:
    fields = [(b"grpc-status", str(int(status)).encode())]
    if message:
        fields.append((b"grpc-message", quote(message, safe=" ").encode()))
    return http2.encode_headers(fields)


class _Connection:
    """One TLS connection from the host, read by its own thread."""

    def __init__(self, server: GrpcServer, raw: socket.socket, ctx: ssl.SSLContext) -> None:
        self._server = server
        self._raw = raw
        self._tls = MemoryTls(ctx, raw, server_side=True)
        self._h2 = http2.Connection(client_side=False)
        # One lock for the HTTP/2 state, the TLS session and the socket's send side.
        self._lock = threading.Condition()
        self._streams: dict[int, _Stream] = {}
        self._alive = True

    def _handshake(self) -> None:
        deadline = time.monotonic() + _HANDSHAKE_TIMEOUT

        def receive() -> bytes:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("TLS handshake timed out")
            self._raw.settimeout(remaining)
            return self._raw.recv(_RECV)

        self._tls.handshake(receive)
        self._raw.settimeout(None)

    def _flush_locked(self) -> None:
        """Seal whatever HTTP/2 has queued and send it. Caller holds the lock."""
        self._tls.send(self._h2.take_output())

    # ---- reading ------------------------------------------------------------------------------------------

    def fileno(self) -> int:
        return self._raw.fileno()

    def start(self) -> list[Call] | None:
        """TLS handshake and our SETTINGS; then what arrived with the handshake. None: refused or gone."""
        try:
            self._handshake()
            with self._lock:
                self._flush_locked()
        except (OSError, ssl.SSLError, ConnectionError, TimeoutError) as exc:
            # A refused peer (no or wrong client certificate) lands here: log the reason, drop the connection.
            log.debug("host connection refused: %s", exc)
            return None
        return self._receive(b"")

    def read_ready(self) -> list[Call] | None:
        """Read what the host sent, without blocking: the calls it completed; None once the host is gone."""
        try:
            data = self._raw.recv(_RECV, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return []
        except OSError as exc:
            log.debug("host connection closed: %s", exc)
            return None
        return self._receive(data) if data else None

    def _receive(self, data: bytes) -> list[Call] | None:
        ready: list[tuple[int, _Stream, bytes]] = []
        try:
            with self._lock:
                clear = self._tls.receive(data)
                events = self._h2.receive(clear) if clear else []
                for event in events:
                    self._on_event(event, ready)
                if not self._h2.output_can_wait:
                    self._flush_locked()
                self._lock.notify_all()  # writers waiting for flow-control window
        except (OSError, ssl.SSLError, http2.ProtocolError) as exc:
            log.debug("host connection closed: %s", exc)
            return None
        if clear is None or self._h2.closed:
            return None
        calls = []
        for stream_id, stream, message in ready:
            call = self._decode_call(stream_id, stream, message)
            if call is not None:
                calls.append(call)
        return calls

    @property
    def ping_acks_pending(self) -> bool:
        return self._h2.ping_acks_pending

    def flush_ping_acks(self) -> None:
        with self._lock:
            if self._alive and self._h2.ping_acks_pending:
                with contextlib.suppress(OSError, ssl.SSLError):
                    self._flush_locked()

    def _on_event(self, event: tuple[Any, ...], ready: list[tuple[int, _Stream, bytes]]) -> None:
        kind = event[0]
        if kind == "headers":
            _, stream_id, headers, end_stream = event
            if stream_id in self._streams:
                return  # trailers from the client: gRPC clients send none we need
            path = next((v for k, v in headers if k == b":path"), b"").decode("ascii", "replace")
            method = self._server.methods.get(path)
            stream = _Stream(method)
            self._streams[stream_id] = stream
            self._h2.open_stream(stream_id)
            if method is None:
                self._end_locked(stream_id, Status.UNIMPLEMENTED, f"unknown method {path}")
            elif method.kind is Kind.BIDI_STREAM:
                stream.requests = queue.SimpleQueue()
                self._server.spawn(self._run_bidi, stream_id, stream)
                if end_stream:
                    stream.requests.put(None)
        elif kind == "data":
            _, stream_id, payload, end_stream = event
            stream_or_none = self._streams.get(stream_id)
            if stream_or_none is None or stream_or_none.method is None:
                return
            for message in stream_or_none.reader.feed(payload):
                if stream_or_none.requests is not None:
                    stream_or_none.requests.put(message)
                else:
                    ready.append((stream_id, stream_or_none, message))
            if end_stream and stream_or_none.requests is not None:
                stream_or_none.requests.put(None)
        elif kind == "reset":
            stream_or_none = self._streams.pop(event[1], None)
            if stream_or_none is not None:
                stream_or_none.closed = True
                stream_or_none.cancellation.cancel()  # the host gave up on the call: let it stop
                if stream_or_none.requests is not None:
                    stream_or_none.requests.put(None)
        elif kind == "goaway":
            self._alive = False

    def _decode_call(self, stream_id: int, stream: _Stream, message: bytes) -> Call | None:
        """The unary call a complete request makes; a server stream is started on a thread of its own."""
        method = stream.method
        assert method is not None
        if method.kind is not Kind.UNARY:
            self._server.spawn(self._run_server_stream, stream_id, stream, message)
            return None
        try:
            return self, stream_id, method, method.request_type.FromString(message), stream.cancellation
        except Exception:
            self.finish(stream_id, Status.INTERNAL, "malformed request message")
            return None

    # ---- running handlers ---------------------------------------------------------------------------------

    def run_unary(self, stream_id: int, method: Method, request: Any) -> None:
        try:
            payload = method.handler(request).SerializeToString()
        except CallError as exc:
            self.finish(stream_id, exc.status, str(exc))
            return
        except Exception as exc:
            log.error("gRPC handler failed", exc_info=exc)
            self.finish(stream_id, Status.INTERNAL, "internal error")
            return
        self.send(stream_id, payload, last=True)

    def _run_server_stream(self, stream_id: int, stream: _Stream, message: bytes) -> None:
        assert stream.method is not None
        try:
            for reply in stream.method.handler(stream.method.request_type.FromString(message)):
                if stream.closed or not self.send(stream_id, reply.SerializeToString(), last=False):
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

    # ---- writing (any thread) -----------------------------------------------------------------------------

    def _end_locked(self, stream_id: int, status: Status, message: str) -> None:
        stream = self._streams.pop(stream_id, None)
        block = _OK_TRAILERS if status is Status.OK and not message else _trailers(status, message)
        if stream is None or not stream.headers_sent:
            block = _RESPONSE_HEADERS + block  # a trailers-only response
        self._h2.send_headers(stream_id, block, end_stream=True)
        self._h2.close_stream(stream_id)

    def send(self, stream_id: int, payload: bytes, *, last: bool) -> bool:
        """Send one message (headers first); with `last`, end the call OK. False when the call is gone."""
        return self._send_framed(stream_id, frame(payload), last, time.monotonic() + _FLOW_CONTROL_WAIT)

    def _send_framed(self, stream_id: int, data: bytes, last: bool, deadline: float) -> bool:
        with self._lock:
            try:
                stream = self._streams.get(stream_id)
                if not self._alive or stream is None:
                    return False
                if not stream.headers_sent:
                    self._h2.send_headers(stream_id, _RESPONSE_HEADERS)
                    stream.headers_sent = True
                sent = 0
                while True:
                    sent += self._h2.send_data(stream_id, data[sent:])
                    if sent == len(data):
                        break
                    self._flush_locked()  # wait for the host to open its flow-control window
                    if self._server.on_hub():  # the hub reads the window updates: it must not wait for them
                        self._server.submit(self._send_framed, stream_id, data[sent:], last, deadline)
                        return True
                    if not self._lock.wait(deadline - time.monotonic()) and time.monotonic() >= deadline:
                        raise TimeoutError("the host did not open its flow-control window")
                    if not self._alive or stream.closed:
                        return False
                if last:
                    self._end_locked(stream_id, Status.OK, "")
                self._flush_locked()
                return True
            except (TimeoutError, OSError, ssl.SSLError) as exc:
                log.debug("could not send on stream %d: %s", stream_id, exc)
                return False

    def finish(self, stream_id: int, status: Status, message: str) -> None:
        with self._lock:
            if not self._alive or stream_id not in self._streams:
                return
            try:
                self._end_locked(stream_id, status, message)
                self._flush_locked()
            except (OSError, ssl.SSLError) as exc:
                log.debug("could not end stream %d: %s", stream_id, exc)

    def close(self) -> None:
        with self._lock:
            self._alive = False
            streams = list(self._streams.values())
            for stream in streams:
                stream.closed = True
                if stream.requests is not None:
                    stream.requests.put(None)
            self._streams.clear()
            self._lock.notify_all()
        for stream in streams:  # outside the lock: callbacks may close provider sockets
            stream.cancellation.cancel()
        with contextlib.suppress(OSError):
            self._raw.shutdown(socket.SHUT_RDWR)
        self._raw.close()


_Work = tuple[Callable[..., Any], tuple[Any, ...]]


class CallPool:
    """Threads that run calls: started when every thread is busy (up to `max_threads`), gone after
    `idle_seconds` without work.

    Lighter than `concurrent.futures.ThreadPoolExecutor` on the path of every provider call: no Future per
    call (nobody waits for one), one C-level queue put to hand a call over.
    """

    def __init__(self, max_threads: int, idle_seconds: float = IDLE_THREAD_SECONDS) -> None:
        self._max = max_threads
        self._idle_seconds = idle_seconds
        self._queue: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0  # threads waiting for work (changed under _lock)
        self._closed = False

    @property
    def threads(self) -> int:
        return self._threads

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._closed:
            return  # the process is exiting
        with self._lock:
            start = self._idle == 0 and self._threads < self._max
            if start:
                self._threads += 1
            else:
                self._idle -= 1  # claim an idle thread now, so a burst starts the threads it needs
        self._queue.put((fn, args))
        if start:
            threading.Thread(target=self._work, name=f"grpc-call-{self._threads}", daemon=True).start()

    def _work(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self._idle_seconds)
            except queue.Empty:
                with self._lock:
                    if self._idle <= 0:
                        continue  # a call was handed to this thread just now: it is on its way
                    self._idle -= 1
                    self._threads -= 1
                return
            if item is None:
                with self._lock:
                    self._threads -= 1
                return
            fn, args = item
            try:
                fn(*args)
            except Exception:
                log.exception("a call on the pool failed")
            with self._lock:
                self._idle += 1

    def close(self) -> None:
        self._closed = True
        with self._lock:
            threads = self._threads
        for _ in range(threads):
            self._queue.put(None)


class GrpcServer:
    """Accepts the host's connections on a unix socket and serves `methods` ("/pkg.Service/Method")."""

    def __init__(
        self, path: str, ctx: ssl.SSLContext, methods: dict[str, Method], workers: int = CALL_THREADS
    ) -> None:
        self.methods = methods
        self._ctx = ctx
        self._pool = CallPool(workers)
        self._hub = Hub(offload=self._pool.submit)
        self._answers_due: set[int] = set()  # connections (by fd) with a timer to answer PINGs; hub only
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
            self.spawn(self._open, _Connection(self, raw, self._ctx))

    def _open(self, conn: _Connection) -> None:
        """Handshake on a thread of its own (a slow or hostile peer holds up nobody), then join the hub."""
        calls = conn.start()
        if calls is None:
            conn.close()
            return
        self._hub.call_soon_threadsafe(self._watch, conn, calls)

    def _watch(self, conn: _Connection, calls: list[Call]) -> None:
        fd = conn.fileno()
        self._hub.watch(fd, lambda: self._on_readable(fd, conn))
        self._dispatch(calls)

    def _on_readable(self, fd: int, conn: _Connection) -> None:
        calls = conn.read_ready()
        if calls is None:
            self._hub.unwatch(fd)
            conn.close()
            return
        self._dispatch(calls)
        if conn.ping_acks_pending and fd not in self._answers_due:
            self._answers_due.add(fd)
            self._hub.call_later(_PING_ACK_DELAY, lambda: self._answer_pings(fd, conn))

    def _answer_pings(self, fd: int, conn: _Connection) -> None:
        """No reply carried the PING answers for a while: send them alone."""
        self._answers_due.discard(fd)
        conn.flush_ping_acks()

    def _dispatch(self, calls: list[Call]) -> None:
        for call in calls:
            method, request = call[2], call[3]
            try:
                on_hub = method.cooperative is not None and method.cooperative(request)
            except Exception:
                log.exception("deciding where to run %s failed; it runs on the pool", method)
                on_hub = False
            if on_hub:
                self._hub.spawn(_run_call, call)
            else:
                self.submit(_run_call, call)

    def on_hub(self) -> bool:
        return self._hub.in_hub_thread()

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        self._pool.submit(fn, *args)

    @staticmethod
    def spawn(fn: Callable[..., None], *args: Any) -> None:
        threading.Thread(target=fn, args=args, daemon=True).start()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._hub.close()
        self._pool.close()


def _run_call(call: Call) -> None:
    conn, stream_id, method, request, cancellation = call
    if cancellation.cancelled:
        return  # the host gave up while the call waited for a thread: nobody wants its answer
    with after_reply.collecting() as deferred, running(cancellation):
        conn.run_unary(stream_id, method, request)
    after_reply.run(deferred)  # the reply has left: the host is not waiting for this
