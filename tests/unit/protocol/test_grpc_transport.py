"""Our gRPC-over-h2 server and client talking to each other over mutual TLS on a unix socket."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from vaultplugin.proto import backend_pb2 as pb
from vaultplugin.transport import http2
from vaultplugin.transport.grpc_client import RpcError, UnaryClient
from vaultplugin.transport.grpc_framing import Status, frame
from vaultplugin.transport.grpc_server import CallError, GrpcServer, Kind, Method
from vaultplugin.transport.tls import client_context, generate_plugin_certificate, server_context


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


def _slow(args: pb.StorageGetArgs) -> pb.StorageGetReply:
    time.sleep(float(args.key))
    return pb.StorageGetReply(entry=pb.StorageEntry(key=args.key, value=b"slept"))


HUB_THREADS: list[str] = []  # where the cooperative calls ran


def _recording(
    handler: Callable[[pb.StorageGetArgs], pb.StorageGetReply],
) -> Callable[..., pb.StorageGetReply]:
    def recorded(args: pb.StorageGetArgs) -> pb.StorageGetReply:
        HUB_THREADS.append(threading.current_thread().name)
        return handler(args)

    return recorded


def _relay_through(client_box: list[UnaryClient]) -> Callable[[pb.StorageGetArgs], pb.StorageGetReply]:
    """A cooperative handler that makes a call of its own back to the server, as a storage call does."""

    def relay(args: pb.StorageGetArgs) -> pb.StorageGetReply:
        HUB_THREADS.append(threading.current_thread().name)
        kind, _, rest = args.key.partition(":")
        method, timeout = (
            ("/pb.Storage/Slow", 0.3 if kind == "timeout" else 5.0) if rest else ("/pb.Storage/Get", 5)
        )
        try:
            raw = client_box[0].call(method, pb.StorageGetArgs(key=rest or kind).SerializeToString(), timeout)
        except RpcError as exc:
            raise CallError(Status.DEADLINE_EXCEEDED, f"relay: {exc}") from None
        value = pb.StorageGetReply.FromString(raw).entry.value
        return pb.StorageGetReply(entry=pb.StorageEntry(key=args.key, value=b"relayed:" + value))

    return relay


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[tuple[str, ssl.SSLContext, ssl.SSLContext]]:
    host = generate_plugin_certificate()
    plugin = generate_plugin_certificate()
    path = str(tmp_path / "s.sock")
    relay_client: list[UnaryClient] = []

    def always(_request: object) -> bool:
        return True

    methods = {
        "/pb.Storage/Get": Method(Kind.UNARY, pb.StorageGetArgs, _echo),
        "/pb.Storage/Put": Method(Kind.UNARY, pb.StoragePutArgs, _put),
        "/pb.Storage/Slow": Method(Kind.UNARY, pb.StorageGetArgs, _slow),
        # Cooperative: run on the hub.
        "/pb.Storage/HubGet": Method(Kind.UNARY, pb.StorageGetArgs, _recording(_echo), always),
        "/pb.Storage/Relay": Method(Kind.UNARY, pb.StorageGetArgs, _relay_through(relay_client), always),
    }
    # Fewer workers than concurrent callers: calls queue, readers have threads of their own.
    server = GrpcServer(path, server_context(plugin, host.cert_pem.decode(), tmp_path), methods, workers=3)
    good = client_context(host, plugin.cert_pem.decode(), tmp_path)
    stranger = client_context(generate_plugin_certificate(), plugin.cert_pem.decode(), tmp_path)
    relay_client.append(_client(path, good))
    try:
        yield path, good, stranger
    finally:
        relay_client[0].close()
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


def _wrong_answers(client: UnaryClient, method: str, prefix: bytes, *, threads: int, calls: int) -> list[str]:
    """`calls` calls of `method` from each of `threads` threads at once; the keys not answered prefix+key."""
    wrong: list[str] = []

    def work(n: int) -> None:
        for i in range(calls):
            key = f"t{n}-{i}"
            try:
                if _get(client, key, method).entry.value != prefix + key.encode():
                    wrong.append(key)
            except RpcError as exc:
                wrong.append(f"{key}: {exc}")

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(30)
    return wrong


def test_round_trip(endpoint: tuple[str, ssl.SSLContext, ssl.SSLContext]) -> None:
    path, good, _ = endpoint
    client = _client(path, good)
    assert _get(client, "a/b").entry.value == b"a/b"
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
    assert _wrong_answers(client, "/pb.Storage/Get", b"", threads=8, calls=50) == []
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
        conn.raw.shutdown(socket.SHUT_RDWR)
    assert _get(client, "two").entry.value == b"two"
    client.close()


Frame = tuple[int, int, bytes]  # type, flags, payload


def _frames(
    sock: ssl.SSLSocket,
    until: Callable[[list[Frame]], bool],
    on_frame: Callable[[Frame], None] = lambda _frame: None,
) -> list[Frame]:
    """Read frames from a raw HTTP/2 connection until `until(frames)` holds; `on_frame` sees each one."""
    buf, frames = b"", []
    while not until(frames):
        buf += sock.recv(65536)
        while len(buf) >= 9 and len(buf) >= 9 + int.from_bytes(buf[:3], "big"):
            length = int.from_bytes(buf[:3], "big")
            frames.append((buf[3], buf[4], buf[9 : 9 + length]))
            on_frame(frames[-1])
            buf = buf[9 + length :]
    return frames


def _is_ack_of(payload: bytes) -> Callable[[Frame], bool]:
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


def test_cooperative_calls_run_on_the_hub_and_wait_there_for_their_own_calls(
    endpoint: tuple[str, ssl.SSLContext, ssl.SSLContext],
) -> None:
    """Each relay waits, on the hub, for a call it makes back to the server: many at once must all finish."""
    path, good, _ = endpoint
    client = _client(path, good)
    HUB_THREADS.clear()
    assert _wrong_answers(client, "/pb.Storage/Relay", b"relayed:", threads=12, calls=20) == []
    assert len(HUB_THREADS) == 240 and set(HUB_THREADS) == {"hub"}
    client.close()


def test_a_waiting_cooperative_call_holds_up_no_other_call(
    endpoint: tuple[str, ssl.SSLContext, ssl.SSLContext],
) -> None:
    path, good, _ = endpoint
    client = _client(path, good)
    slow: list[bytes] = []
    waiting = threading.Thread(
        target=lambda: slow.append(_get(client, "slow:1.0", "/pb.Storage/Relay").entry.value)
    )
    started = time.monotonic()
    waiting.start()
    time.sleep(0.1)
    for i in range(20):
        assert _get(client, f"quick{i}", "/pb.Storage/HubGet").entry.value == f"quick{i}".encode()
    assert time.monotonic() - started < 0.8  # all answered while the relay still waits
    waiting.join(10)
    assert slow == [b"relayed:slept"]
    assert time.monotonic() - started >= 1.0
    client.close()


def test_a_cooperative_call_whose_own_call_times_out_fails_alone(
    endpoint: tuple[str, ssl.SSLContext, ssl.SSLContext],
) -> None:
    path, good, _ = endpoint
    client = _client(path, good)
    started = time.monotonic()
    with pytest.raises(RpcError) as timed_out:
        _get(client, "timeout:2", "/pb.Storage/Relay")
    assert timed_out.value.status == Status.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 1.5
    assert _get(client, "after", "/pb.Storage/Relay").entry.value == b"relayed:after"
    client.close()


def test_a_reply_larger_than_the_window_leaves_the_hub_intact(
    endpoint: tuple[str, ssl.SSLContext, ssl.SSLContext],
) -> None:
    """The hub reads the window updates, so it hands the rest of a large reply to a thread."""
    path, good, _ = endpoint
    client = _client(path, good)
    replies: list[int] = []
    threads = [
        threading.Thread(
            target=lambda: replies.append(len(_get(client, "big:3000000", "/pb.Storage/HubGet").entry.value))
        )
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    assert _get(client, "meanwhile", "/pb.Storage/HubGet").entry.value == b"meanwhile"
    for t in threads:
        t.join(30)
    assert replies == [3_000_000] * 3
    client.close()


def test_a_reply_larger_than_the_host_s_window_is_finished_off_the_hub(
    endpoint: tuple[str, ssl.SSLContext, ssl.SSLContext],
) -> None:
    """grpc-go opens 64 KiB per stream: the hub, which reads the window updates, must not wait for them."""
    path, good, _ = endpoint
    HUB_THREADS.clear()
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.connect(path)
    raw.settimeout(10)
    with good.wrap_socket(raw, server_hostname="localhost") as sock:
        stream = 1
        block = http2.encode_headers([(b":method", b"POST"), (b":path", b"/pb.Storage/HubGet")])
        request = frame(pb.StorageGetArgs(key="big:300000").SerializeToString())
        sock.sendall(  # empty SETTINGS: the default 64 KiB windows
            http2.PREFACE
            + http2.encode_frame(http2.SETTINGS, 0, 0)
            + http2.encode_frame(http2.HEADERS, http2.FLAG_END_HEADERS, stream, block)
            + http2.encode_frame(http2.DATA, http2.FLAG_END_STREAM, stream, request)
        )

        def grant(f: Frame) -> None:
            if f[0] == http2.DATA and f[2]:
                size = len(f[2]).to_bytes(4, "big")
                sock.sendall(
                    http2.encode_frame(http2.WINDOW_UPDATE, 0, 0, size)
                    + http2.encode_frame(http2.WINDOW_UPDATE, 0, stream, size)
                )

        def ended(frames: list[Frame]) -> bool:
            return any(f[0] == http2.HEADERS and f[1] & http2.FLAG_END_STREAM for f in frames)

        body = b"".join(f[2] for f in _frames(sock, ended, grant) if f[0] == http2.DATA)
        reply = pb.StorageGetReply.FromString(body[5:])
        assert len(reply.entry.value) == 300_000
    assert HUB_THREADS == ["hub"]
