"""One thread that runs the host's connections and the plugin's cheap calls: epoll for readiness, greenlets
for waiting.

Why: on these hosts a thread hand-off costs more than the Python work of a whole call. Measured with the
e2e test backend's leased read at 4 clients, a reader thread that passed each call to a worker pool used
0.47 ms of plugin CPU and 8.5 context switches per read; one thread doing everything used 0.32 ms and 1.5.
A single thread that simply blocked on its storage calls, though, would queue every request behind
Vault's storage. Greenlets keep the one thread without that queue: a call that waits for Vault suspends,
and the hub reads the connection and runs other calls meanwhile.

The calls the protocol layer puts here (every handler of the engine) block on nothing but waits of this
module: a call on the hub waits through `wait_readable` / `wait_writable`, which the gRPC client uses for
every reply from Vault and the provider HTTP client for every socket operation; on any other thread they
are a plain poll(). Anything else that blocks (DNS, a library without such waits) goes through
`run_blocking`, which runs it on a pool thread while the call is suspended. A call that holds the hub anyway
is logged (`SLOW_SEGMENT`).
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import heapq
import itertools
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

import greenlet

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_local = threading.local()
_MAX_IDLE_RUNNERS = 64
_COMPACT_AFTER = 1024  # cancelled timers in the heap before it may be rebuilt
SLOW_SEGMENT = 0.5  # seconds a call may run on the hub between waits before a warning is logged


class _Timer:
    __slots__ = ("cancelled", "fn", "when")

    def __init__(self, when: float, fn: Callable[[], None]) -> None:
        self.when, self.fn, self.cancelled = when, fn, False


class Hub:
    def __init__(self, offload: Callable[[Callable[[], None]], None] | None = None) -> None:
        # Runs blocking work for a call on the hub (`run_blocking`): the gRPC server's thread pool.
        self._offload = offload
        self._epoll = select.epoll()
        self._watchers: dict[int, Callable[[], None]] = {}  # fd -> run on the hub each time it is readable
        self._waiting: dict[int, greenlet.greenlet] = {}  # fd -> the call suspended until it is readable
        # (when, seq, timer). Every wait for Vault sets a timer (its deadline, ~30 s out) and cancels it: a
        # cancelled timer stays in the heap until it comes due, so under load the heap held ~30 s of them
        # (tens of thousands); `cancel` rebuilds it once they are most of it.
        self._timers: list[tuple[float, int, _Timer]] = []
        self._cancelled_timers = 0  # in the heap, not yet dropped
        self._seq = itertools.count()
        self._from_threads: collections.deque[tuple[Callable[..., None], tuple[Any, ...]]]
        self._from_threads = collections.deque()
        self._wake_read, self._wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._epoll.register(self._wake_read, select.EPOLLIN)
        self._main: greenlet.greenlet | None = None
        self._idle_runners: list[greenlet.greenlet] = []
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="hub", daemon=True)
        self._thread.start()

    # ---- from any thread ----------------------------------------------------------------------------------

    def call_soon_threadsafe(self, fn: Callable[..., None], *args: Any) -> None:
        self._from_threads.append((fn, args))
        with contextlib.suppress(BlockingIOError):  # a full pipe already wakes the hub
            os.write(self._wake_write, b"\0")

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_write, b"\0")

    def in_hub_thread(self) -> bool:
        return threading.get_ident() == self._thread.ident

    # ---- on the hub thread --------------------------------------------------------------------------------

    def watch(self, fd: int, on_readable: Callable[[], None]) -> None:
        self._watchers[fd] = on_readable
        self._epoll.register(fd, select.EPOLLIN)

    def unwatch(self, fd: int) -> None:
        if self._watchers.pop(fd, None) is not None:
            with contextlib.suppress(OSError, ValueError):
                self._epoll.unregister(fd)

    def spawn(self, fn: Callable[..., None], *args: Any) -> None:
        """Run fn(*args) now, as a call of its own: until it returns or first waits."""
        # Greenlets are reused: a new one costs an mmap'd Python data stack (16 KiB), freed when it ends.
        if self._idle_runners:
            self._run_segment(self._idle_runners.pop(), fn, args)
        else:
            self._run_segment(greenlet.greenlet(self._runner, self._main), fn, args)

    def _run_segment(self, runner: greenlet.greenlet, *args: Any) -> None:
        """Switch into a call until it waits or ends; say so when it held the hub too long."""
        started = time.monotonic()
        runner.switch(*args)
        held = time.monotonic() - started
        if held > SLOW_SEGMENT:
            log.warning(
                "a call on the hub ran %.1f s without waiting for Vault: every other request waited. A "
                "handler is blocking on something else (an HTTP API, a sleep, a lock) instead of going "
                "through vaultplugin.framework.runtime",
                held,
            )

    def _runner(self, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
        assert self._main is not None
        while True:
            _guarded(fn, args)
            if len(self._idle_runners) >= _MAX_IDLE_RUNNERS:
                return
            self._idle_runners.append(greenlet.getcurrent())
            fn, args = self._main.switch()

    def run_on_thread(self, fn: Callable[[], _T], deadline: float | None = None) -> _T:
        """Run `fn` on a thread of the pool while the calling call waits, suspended; return what it returns
        (or raise what it raises). Its context (the call's cancellation) goes with it. With a `deadline`
        the call stops waiting then (TimeoutError); what `fn` does later is dropped."""
        current = greenlet.getcurrent()
        assert self._main is not None and current is not self._main, "the hub itself cannot wait"
        context = contextvars.copy_context()
        outcome: list[tuple[bool, Any]] = []
        suspended = False  # read and written on the hub thread only
        expired = False

        def work() -> None:
            try:
                outcome.append((True, context.run(fn)))
            except BaseException as exc:  # handed to the waiting call, which raises it
                outcome.append((False, exc))
            self.call_soon_threadsafe(resume)

        def resume() -> None:
            # Only a call still suspended here: one whose result came before it suspended has moved on, maybe
            # into a wait for Vault, and a switch into that wait would end it as if its deadline had passed.
            if suspended:
                self._run_segment(current)

        def expire() -> None:
            nonlocal expired
            expired = True
            resume()

        if self._offload is not None:
            self._offload(work)
        else:
            threading.Thread(target=work, name="hub-offload", daemon=True).start()
        timer = None if deadline is None else self.call_later(deadline - time.monotonic(), expire)
        try:
            while not outcome and not expired:
                suspended = True
                try:
                    self._main.switch()
                finally:
                    suspended = False
        finally:
            if timer is not None:
                self.cancel(timer)
        if not outcome:
            raise TimeoutError("the blocking work did not finish in time")
        ok, value = outcome[0]
        if ok:
            return cast("_T", value)
        raise value

    def cancel(self, timer: _Timer) -> None:
        """Cancel a timer of `call_later` (on the hub thread). The heap is rebuilt once most of it is
        cancelled timers, which are otherwise dropped only when they come due."""
        if timer.cancelled:
            return
        timer.cancelled = True
        self._cancelled_timers += 1
        if self._cancelled_timers > _COMPACT_AFTER and self._cancelled_timers * 2 > len(self._timers):
            self._timers = [entry for entry in self._timers if not entry[2].cancelled]
            heapq.heapify(self._timers)
            self._cancelled_timers = 0

    def call_later(self, delay: float, fn: Callable[[], None]) -> _Timer:
        timer = _Timer(time.monotonic() + delay, fn)
        heapq.heappush(self._timers, (timer.when, next(self._seq), timer))
        return timer

    def wait_readable(self, fd: int, deadline: float) -> bool:
        """Suspend the calling greenlet until fd is readable (True) or the deadline passes (False)."""
        return self._wait(fd, select.EPOLLIN, deadline)

    def wait_writable(self, fd: int, deadline: float) -> bool:
        """Suspend the calling greenlet until fd is writable (True) or the deadline passes (False)."""
        return self._wait(fd, select.EPOLLOUT, deadline)

    def _wait(self, fd: int, events: int, deadline: float) -> bool:
        current = greenlet.getcurrent()
        assert self._main is not None and current is not self._main, "the hub itself cannot wait"
        self._waiting[fd] = current
        self._epoll.register(fd, events | select.EPOLLONESHOT)
        timer = self.call_later(deadline - time.monotonic(), lambda: self._resume(fd, False))
        try:
            return bool(self._main.switch())
        finally:
            self.cancel(timer)
            self._waiting.pop(fd, None)
            with contextlib.suppress(OSError, ValueError):
                self._epoll.unregister(fd)

    def _resume(self, fd: int, readable: bool) -> None:
        waiter = self._waiting.pop(fd, None)
        if waiter is not None:
            self._run_segment(waiter, readable)

    def _run(self) -> None:
        self._main = greenlet.getcurrent()
        _local.hub = self
        while not self._closed:
            timeout = -1.0
            while self._timers and self._timers[0][2].cancelled:
                heapq.heappop(self._timers)
                self._cancelled_timers -= 1
            if self._timers:
                timeout = max(0.0, self._timers[0][0] - time.monotonic())
            try:
                events = self._epoll.poll(timeout)
            except InterruptedError:
                continue
            for fd, _mask in events:
                if fd == self._wake_read:
                    with contextlib.suppress(BlockingIOError):
                        while os.read(self._wake_read, 4096):
                            pass
                elif fd in self._waiting:
                    self._resume(fd, True)
                elif (watcher := self._watchers.get(fd)) is not None:
                    _guarded(watcher, ())
            while self._from_threads:
                fn, args = self._from_threads.popleft()
                _guarded(fn, args)
            now = time.monotonic()
            while self._timers and (self._timers[0][2].cancelled or self._timers[0][0] <= now):
                timer = heapq.heappop(self._timers)[2]
                if timer.cancelled:
                    self._cancelled_timers -= 1
                else:
                    timer.cancelled = True  # done: a late cancel() must not count it
                    _guarded(timer.fn, ())


class CallLock:
    """A mutex that a call may hold across its waits for Vault (a storage call).

    A `threading.Lock` held across such a wait deadlocks the hub: the holder is suspended on the hub's
    thread, and the next call on the hub that asks for the lock blocks that thread, so the holder never
    resumes. Here a call on the hub that finds the lock held is suspended until the lock is handed to it;
    elsewhere (a pool thread) the caller blocks as with `threading.Lock`. Handed over in arrival order.
    No timeout: hold it only around memory and calls to Vault, never around a provider call.
    """

    __slots__ = ("_held", "_state", "_waiters")

    def __init__(self) -> None:
        self._state = threading.Lock()
        self._held = False
        self._waiters: collections.deque[Callable[[], None]] = collections.deque()

    def acquire(self) -> None:
        hub = current_hub()
        event: threading.Event | None = None
        with self._state:
            if not self._held:
                self._held = True
                return
            if hub is None:
                event = threading.Event()
                self._waiters.append(event.set)
            else:
                waiter = greenlet.getcurrent()
                self._waiters.append(lambda: hub.call_soon_threadsafe(hub._run_segment, waiter))
        # Resumed only by `release`, which hands the lock over (it stays held). The hand-over is run by the
        # hub's loop, so it cannot reach this call before the call has suspended.
        if event is not None:
            event.wait()
        else:
            assert hub is not None and hub._main is not None
            hub._main.switch()

    def release(self) -> None:
        with self._state:
            if not self._held:
                raise RuntimeError("release of a CallLock that is not held")
            if not self._waiters:
                self._held = False
                return
            hand_over = self._waiters.popleft()
        hand_over()

    def __enter__(self) -> CallLock:
        self.acquire()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()


def _guarded(fn: Callable[..., None], args: tuple[Any, ...]) -> None:
    try:
        fn(*args)
    except Exception:
        log.exception("a call on the hub failed")


def current_hub() -> Hub | None:
    """The hub whose call is running, or None (another thread, or the hub's own loop)."""
    hub: Hub | None = getattr(_local, "hub", None)
    if hub is None or greenlet.getcurrent() is hub._main:
        return None
    return hub


def run_blocking(fn: Callable[[], _T], deadline: float | None = None) -> _T:
    """`fn()`, which may block on something other than this module's waits: from a call on the hub it runs
    on a thread while the call is suspended, so a handler on the hub can still make such a call; anywhere
    else it runs right here. With a `deadline` (time.monotonic) the caller stops waiting then, on the hub or
    not (TimeoutError; `fn` is left to finish on its thread): for work no timeout of its own bounds, such as
    a DNS lookup."""
    hub = current_hub()
    if hub is not None:
        return hub.run_on_thread(fn, deadline)
    if deadline is None:
        return fn()
    return _on_thread_until(fn, deadline)


def _on_thread_until(fn: Callable[[], _T], deadline: float) -> _T:
    context = contextvars.copy_context()
    outcome: list[tuple[bool, Any]] = []
    done = threading.Event()

    def work() -> None:
        try:
            outcome.append((True, context.run(fn)))
        except BaseException as exc:  # handed to the waiting caller, which raises it
            outcome.append((False, exc))
        done.set()

    threading.Thread(target=work, name="blocking-with-deadline", daemon=True).start()
    if not done.wait(max(0.0, deadline - time.monotonic())):
        raise TimeoutError("the blocking work did not finish in time")
    ok, value = outcome[0]
    if ok:
        return cast("_T", value)
    raise value


def wait_readable(sock: socket.socket, deadline: float) -> bool:
    """Until `sock` is readable (True) or the deadline passes (False); on the hub the call is suspended."""
    hub = current_hub()
    if hub is not None:
        return hub.wait_readable(sock.fileno(), deadline)
    return _poll(sock, select.POLLIN, deadline)


def wait_writable(sock: socket.socket, deadline: float) -> bool:
    """Until `sock` is writable (True) or the deadline passes (False); on the hub the call is suspended."""
    hub = current_hub()
    if hub is not None:
        return hub.wait_writable(sock.fileno(), deadline)
    return _poll(sock, select.POLLOUT, deadline)


def _poll(sock: socket.socket, events: int, deadline: float) -> bool:
    # poll(), not select(): a busy process has descriptors past select()'s 1024.
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return False
    poller = select.poll()
    poller.register(sock, events)
    return bool(poller.poll(remaining * 1000))
