"""Our gRPC-over-h2 server and client talking to each other over mutual TLS on a unix socket."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from vaultplugin import http2
from vaultplugin.grpc_client import RpcError, UnaryClient
from vaultplugin.grpc_framing import Status, frame
from vaultplugin.grpc_server import CallError, GrpcServer, Kind, Method
from vaultplugin.proto import backend_pb2 as pb
from vaultplugin.tls import client_context, generate_plugin_certificate, server_context


def _echo(args: pb.StorageGetArgs) -> pb.StorageGetReply:
    if args.key == "fail":
        raise CallError(Status.UNAVAILABLE, "try again: later")
    if args.key == "crash":
        raise RuntimeError("boom with a secret sk-abcdefghijklmnopqrstuvwxyz")
    if args.key.startswith("big:"):
        return pb.StorageGetReply(entry=pb.StorageEntry(key=args.key, value=b"v" * int(args.key[4:])))
    return pb.StorageGetReply(entry=pb.StorageEntry(key=args.key, value=args.key.encode()))


def _put(args: pb.StoragePutArgs) -> pb.StoragePutReply:
    return pb.StoragePutReply(err=str(len(args.entry.value)))


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[tuple[str, ssl.SSLContext, ssl.SSLContext]]:
    host = generate_plugin_certificate()
    plugin = generate_plugin_certificate()
    path = str(tmp_path / "s.sock")
    methods = {
        "/pb.Storage/Get": Method(Kind.UNARY, pb.StorageGetArgs, _echo),
        "/pb.Storage/Put": Method(Kind.UNARY, pb.StoragePutArgs, _put),
        "/pb.Storage/Inline": Method(Kind.UNARY, pb.StorageGetArgs, _echo, inline=lambda _r: True),
    }
    # Fewer workers than concurrent callers: calls queue, readers have threads of their own.
    server = GrpcServer(path, server_context(plugin, host.cert_pem.decode(), tmp_path), methods, workers=3)
    good = client_context(host, plugin.cert_pem.decode(), tmp_path)
    stranger = client_context(generate_plugin_certificate(), plugin.cert_pem.decode(), tmp_path)
    try:
        yield path, good, stranger
    finally:
        server.close()


def _client(path: str, ctx: ssl.SSLContext) -> UnaryClient:
    def connect() -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        return sock

    return UnaryClient(connect, ctx)


def _get(client: UnaryClient, key: str, method: str = "/pb.Storage/Get") -> pb.StorageGetReply:
    raw = client.call(method, pb.StorageGetArgs(key=key).SerializeToString(), timeout=10)
    return pb.StorageGetReply.FromString(raw)


def test_round_trip_on_worker_and_inline(endpoint: tuple[str, ssl.SSLContext, ssl.SSLContext]) -> None:
    path, good, _ = endpoint
    client = _client(path, good)
    assert _get(client, "a/b").entry.value == b"a/b"
    assert _get(client, "c", "/pb.Storage/Inline").entry.value == b"c"
    client.close()


def test_payloads_larger_than_the_flow_control_window_both_ways(
    endpoint: tuple[str, ssl.SSLContext, ssl.SSLContext],
) -> None:
    path, good, _ = endpoint
    client = _client(path, good)
    assert len(_get(client, "big:3000000").entry.value) == 3_000_000
    big = pb.StoragePutArgs(entry=pb.StorageEntry(key="k", value=b"x" * 2_500_000)).SerializeToString()
    assert pb.StoragePutReply.FromString(client.call("/pb.Storage/Put", big, timeout=10)).err == "2500000"
    client.close()


def test_concurrent_callers_get_their_own_answers(
    endpoint: tuple[str, ssl.SSLContext, ssl.SSLContext],
) -> None:
    path, good, _ = endpoint
    client = _client(path, good)
    errors: list[str] = []

    def work(n: int) -> None:
        for i in range(50):
            key = f"t{n}-{i}"
            try:
                if _get(client, key).entry.value != key.encode():
                    errors.append(key)
            except RpcError as exc:
                errors.append(f"{key}: {exc}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    client.close()


def test_error_statuses_reach_the_caller_without_internal_details(
    endpoint: tuple[str, ssl.SSLContext, ssl.SSLContext],
) -> None:
    path, good, _ = endpoint
    client = _client(path, good)
    with pytest.raises(RpcError) as unavailable:
        _get(client, "fail")
    assert unavailable.value.status == Status.UNAVAILABLE and unavailable.value.transient
    assert "try again: later" in str(unavailable.value)
    with pytest.raises(RpcError) as crashed:
        _get(client, "crash")
    assert crashed.value.status == Status.INTERNAL
    assert "sk-" not in str(crashed.value) and "boom" not in str(crashed.value)
    with pytest.raises(RpcError) as unknown:
        _get(client, "x", "/pb.Storage/Nope")
    assert unknown.value.status == Status.UNIMPLEMENTED
    # The connection survives answered errors.
    assert _get(client, "after").entry.value == b"after"
    client.close()


def test_a_client_without_the_trusted_certificate_is_refused(
    endpoint: tuple[str, ssl.SSLContext, ssl.SSLContext],
) -> None:
    path, _, stranger = endpoint
    client = _client(path, stranger)
    with pytest.raises(RpcError):
        _get(client, "a")


def test_a_pooled_connection_closed_by_the_peer_is_replaced(
    endpoint: tuple[str, ssl.SSLContext, ssl.SSLContext],
) -> None:
    path, good, _ = endpoint
    client = _client(path, good)
    assert _get(client, "one").entry.value == b"one"
    for conn in client._idle:  # simulate the host dropping an idle connection
        conn.sock.shutdown(socket.SHUT_RDWR)
    assert _get(client, "two").entry.value == b"two"
    client.close()


def _frames(
    sock: ssl.SSLSocket, until: Callable[[list[tuple[int, int, bytes]]], bool]
) -> list[tuple[int, int, bytes]]:
    """Read (type, flags, payload) frames from a raw HTTP/2 connection until `until(frames)` holds."""
    buf, frames = b"", []
    while not until(frames):
        buf += sock.recv(65536)
        while len(buf) >= 9 and len(buf) >= 9 + int.from_bytes(buf[:3], "big"):
            length = int.from_bytes(buf[:3], "big")
            frames.append((buf[3], buf[4], buf[9 : 9 + length]))
            buf = buf[9 + length :]
    return frames


def _is_ack_of(payload: bytes) -> Callable[[tuple[int, int, bytes]], bool]:
    return lambda f: f[0] == http2.PING and f[1] & http2.FLAG_ACK != 0 and f[2] == payload


def test_a_ping_is_answered_with_the_next_reply_or_soon_after(
    endpoint: tuple[str, ssl.SSLContext, ssl.SSLContext],
) -> None:
    """grpc-go pings after each reply it reads; answers ride on our next reply (after its frames), or go
    alone once the connection has been quiet for a moment."""
    path, good, _ = endpoint
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.connect(path)
    raw.settimeout(5)
    with good.wrap_socket(raw, server_hostname="localhost") as sock:
        h2 = http2.Connection(client_side=True)
        sock.sendall(h2.take_output() + http2.encode_frame(http2.PING, 0, 0, b"idle-one"))
        started = time.monotonic()
        _frames(sock, lambda fs: any(map(_is_ack_of(b"idle-one"), fs)))
        assert time.monotonic() - started < 1.0

        # A ping followed by a call: the reply's frames come first, then the answer.
        stream = h2.new_stream()
        h2.send_headers(stream, http2.encode_headers([(b":method", b"POST"), (b":path", b"/pb.Storage/Get")]))
        h2.send_data(stream, frame(pb.StorageGetArgs(key="k").SerializeToString()), end_stream=True)
        sock.sendall(http2.encode_frame(http2.PING, 0, 0, b"busy-two") + h2.take_output())
        frames = _frames(sock, lambda fs: any(map(_is_ack_of(b"busy-two"), fs)))
        ack_at = next(i for i, f in enumerate(frames) if _is_ack_of(b"busy-two")(f))
        trailers_at = max(i for i, f in enumerate(frames) if f[0] == http2.HEADERS)
        assert trailers_at < ack_at, frames
