"""The hub: calls that wait for a socket suspend without holding up the hub, and time out alone."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from vaultplugin.transport.hub import CallLock, Hub, current_hub, run_blocking, wait_readable, wait_writable


@pytest.fixture
def hub() -> Iterator[Hub]:
    running = Hub()
    try:
        yield running
    finally:
        running.close()


def on_hub(hub: Hub, fn: Callable[[], None]) -> None:
    """Spawn fn as a call on the hub, from this (test) thread."""
    hub.call_soon_threadsafe(hub.spawn, fn)


def wait_for(event: threading.Event) -> None:
    assert event.wait(5), "the hub did not get there"


def test_a_waiting_call_resumes_when_its_socket_is_readable_and_others_run_meanwhile(hub: Hub) -> None:
    mine, theirs = socket.socketpair()
    log: list[str] = []
    done = threading.Event()

    def waiter() -> None:
        log.append("waiting")
        assert wait_readable(mine, time.monotonic() + 5)
        log.append(f"got {mine.recv(10)!r} on {threading.current_thread().name}")
        done.set()

    other_ran = threading.Event()
    on_hub(hub, waiter)
    on_hub(hub, lambda: (log.append("other call"), other_ran.set()))
    wait_for(other_ran)
    theirs.send(b"ping")
    wait_for(done)
    assert log == ["waiting", "other call", "got b'ping' on hub"]
    mine.close()
    theirs.close()


def test_a_wait_times_out_alone(hub: Hub) -> None:
    mine, theirs = socket.socketpair()
    results: list[tuple[bool, float]] = []
    done = threading.Event()

    def waiter() -> None:
        started = time.monotonic()
        results.append((wait_readable(mine, started + 0.2), time.monotonic() - started))
        done.set()

    on_hub(hub, waiter)
    wait_for(done)
    readable, waited = results[0]
    assert readable is False and 0.15 < waited < 2
    # The socket can be waited on again afterwards.
    again = threading.Event()
    on_hub(hub, lambda: (wait_readable(mine, time.monotonic() + 5), again.set()))
    theirs.send(b"x")
    wait_for(again)
    mine.close()
    theirs.close()


def test_many_calls_wait_at_once(hub: Hub) -> None:
    pairs = [socket.socketpair() for _ in range(50)]
    woken: list[int] = []
    all_done = threading.Event()

    def waiter(n: int) -> Callable[[], None]:
        def run() -> None:
            assert wait_readable(pairs[n][0], time.monotonic() + 5)
            woken.append(n)
            if len(woken) == len(pairs):
                all_done.set()

        return run

    for n in range(len(pairs)):
        on_hub(hub, waiter(n))
    for n in reversed(range(len(pairs))):
        pairs[n][1].send(b"x")
    wait_for(all_done)
    assert sorted(woken) == list(range(50))
    for a, b in pairs:
        a.close()
        b.close()


def test_outside_the_hub_a_wait_is_a_plain_select() -> None:
    mine, theirs = socket.socketpair()
    assert current_hub() is None
    assert wait_readable(mine, time.monotonic() + 0.05) is False
    theirs.send(b"x")
    assert wait_readable(mine, time.monotonic() + 5) is True
    mine.close()
    theirs.close()


def test_a_failing_call_is_logged_and_the_hub_goes_on(hub: Hub, caplog: pytest.LogCaptureFixture) -> None:
    def boom() -> None:
        raise RuntimeError("boom")

    later = threading.Event()
    with caplog.at_level(logging.ERROR, logger="vaultplugin.transport.hub"):
        on_hub(hub, boom)
        on_hub(hub, later.set)
        wait_for(later)
    assert "a call on the hub failed" in caplog.text


def test_timers_run_in_order_and_cancelled_ones_do_not(hub: Hub) -> None:
    fired: list[str] = []
    done = threading.Event()

    def schedule() -> None:
        hub.call_later(0.05, lambda: fired.append("second"))
        hub.call_later(0.01, lambda: fired.append("first"))
        hub.cancel(hub.call_later(0.03, lambda: fired.append("cancelled")))
        hub.call_later(0.08, done.set)

    hub.call_soon_threadsafe(schedule)
    wait_for(done)
    assert fired == ["first", "second"]


def test_cancelled_timers_do_not_pile_up(hub: Hub) -> None:
    """Every wait for Vault sets a timer ~30 s out and cancels it: the heap must not keep them all."""
    fired: list[int] = []
    sizes: list[int] = []
    done = threading.Event()

    def schedule() -> None:
        for n in range(5000):
            timer = hub.call_later(30 + n / 1000, lambda: fired.append(-1))
            if n % 1000 == 0:
                hub.call_later(0.01 + n / 100000, lambda n=n: fired.append(n))
            hub.cancel(timer)
        sizes.append(len(hub._timers))
        hub.call_later(0.2, done.set)

    hub.call_soon_threadsafe(schedule)
    wait_for(done)
    assert sizes[0] < 2100  # rebuilt when most of it was cancelled: not 5,000 + 5
    assert fired == [0, 1000, 2000, 3000, 4000]  # the live ones still fire, in order


def test_a_call_that_blocks_the_hub_is_reported(
    hub: Hub, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A handler on the hub that blocks on something else stalls every request: the log says so."""
    monkeypatch.setattr("vaultplugin.transport.hub.SLOW_SEGMENT", 0.05)
    done = threading.Event()
    with caplog.at_level(logging.WARNING, logger="vaultplugin.transport.hub"):
        on_hub(hub, lambda: (time.sleep(0.1), done.set()))
        wait_for(done)
        quick = threading.Event()
        on_hub(hub, quick.set)
        wait_for(quick)
    assert caplog.text.count("without waiting for Vault") == 1


def test_a_call_waits_on_the_hub_until_its_socket_is_writable(hub: Hub) -> None:
    mine, theirs = socket.socketpair()
    mine.setblocking(False)
    while True:  # fill the send buffer: the socket is no longer writable
        try:
            mine.send(b"x" * 65536)
        except BlockingIOError:
            break
    results: list[tuple[bool, str]] = []
    done = threading.Event()

    def waiter() -> None:
        results.append((wait_writable(mine, time.monotonic() + 0.1), threading.current_thread().name))
        results.append((wait_writable(mine, time.monotonic() + 5), threading.current_thread().name))
        done.set()

    other_ran = threading.Event()
    on_hub(hub, waiter)
    on_hub(hub, other_ran.set)
    wait_for(other_ran)
    time.sleep(0.3)
    theirs.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        while theirs.recv(1 << 20):  # drain: writable again
            pass
    wait_for(done)
    assert results == [(False, "hub"), (True, "hub")]
    mine.close()
    theirs.close()


def test_blocking_work_with_a_deadline_stops_being_waited_for(hub: Hub) -> None:
    """What no timeout of its own bounds (a DNS lookup) is waited for until the call's deadline only."""
    release = threading.Event()
    outcome: list[str] = []
    done = threading.Event()

    def call() -> None:
        started = time.monotonic()
        try:
            run_blocking(lambda: release.wait(10), deadline=time.monotonic() + 0.2)
        except TimeoutError:
            outcome.append(f"timed out after {time.monotonic() - started:.1f} s")
        outcome.append(run_blocking(lambda: "quick", deadline=time.monotonic() + 5))
        done.set()

    on_hub(hub, call)
    wait_for(done)
    release.set()
    assert outcome == ["timed out after 0.2 s", "quick"]
    # The same bound on any other thread.
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        run_blocking(lambda: time.sleep(2), deadline=time.monotonic() + 0.2)
    assert time.monotonic() - started < 1.0
    assert run_blocking(lambda: 42, deadline=time.monotonic() + 1) == 42
    with pytest.raises(ValueError, match="inside"):
        run_blocking(_raise_inside, deadline=time.monotonic() + 1)


def _raise_inside() -> None:
    raise ValueError("raised inside")


def test_outside_the_hub_waits_take_descriptors_past_select_s_limit() -> None:
    mine, theirs = socket.socketpair()
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard != resource.RLIM_INFINITY and hard < 1100:
            pytest.skip("this process may not open 1,100 descriptors")
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1100), hard))
        high = socket.socket(fileno=os.dup2(mine.fileno(), 1050))
        assert high.fileno() >= 1024
        theirs.send(b"x")
        assert wait_readable(high, time.monotonic() + 1)
        assert wait_writable(high, time.monotonic() + 1)
        high.close()
    finally:
        mine.close()
        theirs.close()


def test_a_call_lock_held_across_a_wait_suspends_the_next_call_instead_of_the_hub(hub: Hub) -> None:
    """Two calls on the hub take one lock, the first holding it across a wait (as across a storage call):
    the second is suspended until the lock is handed to it, and other calls run meanwhile. A threading.Lock
    here would block the hub's thread for good."""
    lock = CallLock()
    mine, theirs = socket.socketpair()
    log: list[str] = []
    done = threading.Event()
    other_ran = threading.Event()

    def holder() -> None:
        with lock:
            log.append("holder has it")
            assert wait_readable(mine, time.monotonic() + 5)
            log.append("holder releases")

    def second() -> None:
        with lock:
            log.append("second has it")
        done.set()

    on_hub(hub, holder)
    on_hub(hub, second)
    on_hub(hub, lambda: (log.append("other call"), other_ran.set()))
    wait_for(other_ran)
    theirs.send(b"x")
    wait_for(done)
    assert log == ["holder has it", "other call", "holder releases", "second has it"]
    mine.close()
    theirs.close()


def test_a_call_lock_is_shared_by_calls_on_the_hub_and_threads_in_arrival_order(hub: Hub) -> None:
    lock = CallLock()
    order: list[str] = []
    lock.acquire()  # held by this (test) thread
    on_hub_waiting = threading.Event()
    done = threading.Event()

    def on_the_hub() -> None:
        on_hub_waiting.set()
        with lock:
            order.append("hub call")
        done.set()

    on_hub(hub, on_the_hub)
    wait_for(on_hub_waiting)
    thread = threading.Thread(target=lambda: (lock.acquire(), order.append("thread"), lock.release()))
    time.sleep(0.05)  # the hub call asked first
    thread.start()
    order.append("test thread releases")
    lock.release()
    wait_for(done)
    thread.join(5)
    assert order == ["test thread releases", "hub call", "thread"]
    with pytest.raises(RuntimeError):
        lock.release()
