"""The host cancelling a call (HTTP/2 RST_STREAM, as grpc-go sends when Vault's request context ends): the
running handler sees `vaultplugin.transport.cancellation.current()` cancelled at once, and a call still
waiting for a thread never runs."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from vaultplugin.proto import backend_pb2 as pb
from vaultplugin.transport import cancellation, http2
from vaultplugin.transport.grpc_framing import frame
from vaultplugin.transport.grpc_server import GrpcServer, Kind, Method
from vaultplugin.transport.tls import client_context, generate_plugin_certificate, server_context

CANCEL = 8  # the HTTP/2 error code grpc-go resets a cancelled call's stream with


@dataclass
class Seen:
    """What the handlers saw: the keys they started with, and how long each waited for its cancel."""

    started: list[str] = field(default_factory=list)
    cancelled_after: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def waiting_handler(seen: Seen) -> Method:
    def handle(args: pb.StorageGetArgs) -> pb.StorageGetReply:
        with seen.lock:
            seen.started.append(args.key)
        current = cancellation.current()
        assert current is not None
        done = threading.Event()
        current.on_cancel(done.set)
        started = time.monotonic()
        if done.wait(float(args.key.split(":")[1])):
            seen.cancelled_after[args.key] = time.monotonic() - started
        return pb.StorageGetReply()

    return Method(Kind.UNARY, pb.StorageGetArgs, handle)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, ssl.SSLContext, Seen]]:
    host = generate_plugin_certificate()
    plugin = generate_plugin_certificate()
    path = str(tmp_path / "c.sock")
    seen = Seen()
    # One worker: a second call waits in the queue while the first runs.
    grpc = GrpcServer(
        path, server_context(plugin, host.cert_pem.decode(), tmp_path), {"/t/Wait": waiting_handler(seen)}, 1
    )
    try:
        yield path, client_context(host, plugin.cert_pem.decode(), tmp_path), seen
    finally:
        grpc.close()


def start_call(h2: http2.Connection, key: str) -> tuple[int, bytes]:
    stream = h2.new_stream()
    h2.send_headers(stream, http2.encode_headers([(b":method", b"POST"), (b":path", b"/t/Wait")]))
    h2.send_data(stream, frame(pb.StorageGetArgs(key=key).SerializeToString()), end_stream=True)
    return stream, h2.take_output()


def reset(stream: int) -> bytes:
    return http2.encode_frame(http2.RST_STREAM, 0, stream, CANCEL.to_bytes(4, "big"))


def test_a_running_call_sees_its_cancellation_at_once(server: tuple[str, ssl.SSLContext, Seen]) -> None:
    path, ctx, seen = server
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.connect(path)
    with ctx.wrap_socket(raw, server_hostname="localhost") as sock:
        h2 = http2.Connection(client_side=True)
        stream, out = start_call(h2, "first:5")
        sock.sendall(h2.take_output() + out)
        time.sleep(0.3)
        sock.sendall(reset(stream))
        deadline = time.monotonic() + 2
        while "first:5" not in seen.cancelled_after and time.monotonic() < deadline:
            time.sleep(0.02)
    assert seen.cancelled_after["first:5"] < 0.3 + 0.3


def test_a_call_cancelled_while_it_waits_for_a_thread_never_runs(
    server: tuple[str, ssl.SSLContext, Seen],
) -> None:
    path, ctx, seen = server
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.connect(path)
    with ctx.wrap_socket(raw, server_hostname="localhost") as sock:
        h2 = http2.Connection(client_side=True)
        _, first = start_call(h2, "busy:0.5")
        queued, second = start_call(h2, "queued:0.1")
        sock.sendall(h2.take_output() + first + second)
        time.sleep(0.1)  # the first holds the only worker; the second waits in the queue
        sock.sendall(reset(queued))
        time.sleep(0.8)  # the first is done: a queued call would have run by now
    assert seen.started == ["busy:0.5"]
