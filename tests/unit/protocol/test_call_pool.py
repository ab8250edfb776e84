"""The pool that runs the plugin's non-cooperative calls, blocking work handed to it from the hub, and work
deferred until after a call's reply."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from vaultplugin.proto import backend_pb2 as pb
from vaultplugin.transport import after_reply
from vaultplugin.transport.grpc_client import UnaryClient
from vaultplugin.transport.grpc_server import CallPool, GrpcServer, Kind, Method
from vaultplugin.transport.hub import Hub, run_blocking
from vaultplugin.transport.tls import client_context, generate_plugin_certificate, server_context

pytestmark = pytest.mark.timeout(60)


def wait_for(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def test_a_burst_gets_a_thread_per_call_up_to_the_bound() -> None:
    pool = CallPool(max_threads=64, idle_seconds=5)
    # 50 calls that each wait for all the others: they only finish if all run at the same time.
    barrier = threading.Barrier(50, timeout=10)
    done: list[int] = []
    for i in range(50):
        pool.submit(lambda i=i: (barrier.wait(), done.append(i)))
    wait_for(lambda: len(done) == 50)
    assert pool.threads == 50
    pool.close()


def test_past_the_bound_calls_wait_for_a_thread_and_all_run() -> None:
    pool = CallPool(max_threads=4, idle_seconds=5)
    running = 0
    most = 0
    lock = threading.Lock()
    done: list[int] = []

    def call(i: int) -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.02)
        with lock:
            running -= 1
        done.append(i)

    for i in range(40):
        pool.submit(call, i)
    wait_for(lambda: len(done) == 40)
    assert most == 4 and pool.threads == 4
    pool.close()


def test_idle_threads_leave_and_come_back_when_needed() -> None:
    pool = CallPool(max_threads=16, idle_seconds=0.2)
    done: list[int] = []
    for i in range(8):
        pool.submit(lambda i=i: (time.sleep(0.05), done.append(i)))
    wait_for(lambda: len(done) == 8)
    wait_for(lambda: pool.threads == 0, timeout=5)
    pool.submit(done.append, 99)
    wait_for(lambda: 99 in done)
    pool.close()


def test_a_failing_call_leaves_the_pool_working(caplog: pytest.LogCaptureFixture) -> None:
    pool = CallPool(max_threads=1, idle_seconds=5)
    done: list[int] = []

    def boom() -> None:
        raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR):
        pool.submit(boom)
        pool.submit(done.append, 1)
        wait_for(lambda: done == [1])
    assert "a call on the pool failed" in caplog.text
    pool.close()


def test_deferred_work_runs_at_once_outside_a_call() -> None:
    ran: list[str] = []
    after_reply.defer(lambda: ran.append("now"))
    assert ran == ["now"]


def test_deferred_work_runs_after_in_order_and_survives_a_failure(caplog: pytest.LogCaptureFixture) -> None:
    ran: list[str] = []

    def fail() -> None:
        raise RuntimeError("nope")

    with after_reply.collecting() as pending:
        after_reply.defer(lambda: ran.append("a"))
        after_reply.defer(fail)
        after_reply.defer(lambda: ran.append("b"))
        assert ran == []
    with caplog.at_level(logging.ERROR):
        after_reply.run(pending)
    assert ran == ["a", "b"]
    assert "deferred until after a reply failed" in caplog.text


@pytest.fixture
def deferring_server(tmp_path: Path) -> Iterator[tuple[UnaryClient, threading.Event, list[str]]]:
    host, plugin = generate_plugin_certificate(), generate_plugin_certificate()
    path = str(tmp_path / "s.sock")
    release = threading.Event()
    events: list[str] = []

    def handler(args: pb.StorageGetArgs) -> pb.StorageGetReply:
        def later() -> None:
            release.wait(10)  # holds the thread, not the reply
            events.append("deferred work done")

        after_reply.defer(later)
        return pb.StorageGetReply(entry=pb.StorageEntry(key=args.key, value=b"ok"))

    server = GrpcServer(
        path,
        server_context(plugin, host.cert_pem.decode(), tmp_path),
        {"/pb.Storage/Get": Method(Kind.UNARY, pb.StorageGetArgs, handler)},
    )

    def connect() -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        return sock

    ctx: ssl.SSLContext = client_context(host, plugin.cert_pem.decode(), tmp_path)
    client = UnaryClient(connect, ctx)
    try:
        yield client, release, events
    finally:
        release.set()
        client.close()
        server.close()


def test_the_reply_does_not_wait_for_deferred_work(
    deferring_server: tuple[UnaryClient, threading.Event, list[str]],
) -> None:
    client, release, events = deferring_server
    raw = client.call("/pb.Storage/Get", pb.StorageGetArgs(key="k").SerializeToString(), timeout=5)
    assert pb.StorageGetReply.FromString(raw).entry.value == b"ok"
    assert events == []  # answered while the deferred work still waits
    release.set()
    wait_for(lambda: events == ["deferred work done"])


@pytest.fixture
def offloading_server(tmp_path: Path) -> Iterator[UnaryClient]:
    """A cooperative method (run on the hub) that makes a blocking call through `run_blocking`."""
    host, plugin = generate_plugin_certificate(), generate_plugin_certificate()
    path = str(tmp_path / "s.sock")

    def handler(args: pb.StorageGetArgs) -> pb.StorageGetReply:
        caller = threading.current_thread().name

        def blocking() -> str:
            if args.key == "fail":
                raise ValueError("the blocking call failed")
            time.sleep(0.3)  # what a provider call does to its thread
            return threading.current_thread().name

        try:
            ran_on = run_blocking(blocking)
        except ValueError as exc:
            ran_on = f"raised {exc}"
        return pb.StorageGetReply(entry=pb.StorageEntry(key=caller, value=ran_on.encode()))

    def always(_request: object) -> bool:
        return True

    server = GrpcServer(
        path,
        server_context(plugin, host.cert_pem.decode(), tmp_path),
        {"/pb.Storage/Get": Method(Kind.UNARY, pb.StorageGetArgs, handler, always)},
    )

    def connect() -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        return sock

    client = UnaryClient(connect, client_context(host, plugin.cert_pem.decode(), tmp_path))
    try:
        yield client
    finally:
        client.close()
        server.close()


def test_a_blocking_call_from_the_hub_runs_on_a_thread_and_holds_up_no_one(
    offloading_server: UnaryClient,
) -> None:
    replies: list[pb.StorageGetReply] = []

    def call(key: str) -> None:
        raw = offloading_server.call("/pb.Storage/Get", pb.StorageGetArgs(key=key).SerializeToString(), 10)
        replies.append(pb.StorageGetReply.FromString(raw))

    started = time.monotonic()
    threads = [threading.Thread(target=call, args=(f"k{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    took = time.monotonic() - started
    assert len(replies) == 8
    assert {r.entry.key for r in replies} == {"hub"}  # the handlers ran on the hub...
    assert all(r.entry.value.startswith(b"grpc-call") for r in replies)  # ...their blocking calls did not
    assert took < 8 * 0.3 / 2  # in parallel, not one after the other on the hub

    call("fail")
    assert replies[-1].entry.value == b"raised the blocking call failed"


def test_run_blocking_off_the_hub_runs_in_place() -> None:
    assert run_blocking(lambda: threading.current_thread().name) == threading.current_thread().name


def test_a_result_that_comes_before_the_call_suspends_does_not_wake_its_next_wait() -> None:
    """The blocking work finishes before the calling greenlet even suspends (here: it runs inline); the
    call then waits for a socket. That wait must end when the socket is readable, not at once: a stray
    resume for the finished work used to end it as if its deadline had passed (storage calls failed with
    TimeoutError under load)."""
    hub = Hub(offload=lambda work: work())
    ours, theirs = socket.socketpair()
    waited: list[tuple[bool, float]] = []

    def call() -> None:
        assert hub.run_on_thread(lambda: 42) == 42
        started = time.monotonic()
        readable = hub.wait_readable(ours.fileno(), started + 5.0)
        waited.append((readable, time.monotonic() - started))

    try:
        hub.call_soon_threadsafe(hub.spawn, call)
        time.sleep(0.3)
        theirs.send(b"x")
        wait_for(lambda: waited)
        readable, seconds = waited[0]
        assert readable and seconds >= 0.25
    finally:
        hub.close()
        ours.close()
        theirs.close()
