"""Every provider call ends by its deadline, whatever the provider does, and stops when its caller is gone.

httpx's timeouts are per operation: a provider that sends one byte every 2 s never trips a 15 s read
timeout, so nothing bounded the whole call. A `CallBudget` is one logical call's wall-clock deadline (its
retries included) and its abort switch:
- the socket layer (`transport.GuardedBackend`) cuts every connect, TLS handshake, read and write timeout
  to the time the running call's budget has left, so a trickling answer runs out of time, and registers
  the socket in use with the budget;
- `abort()` shuts those sockets down, which ends a read blocked inside httpcore at once. The caller's
  cancellation (Vault gave up on the request) aborts at once; the watchdog aborts a call that is still
  running just after its deadline (a backstop for what a cut timeout cannot bound, e.g. a TLS handshake
  whose bytes trickle in);
- retry waits end early on abort (`pause`).
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import socket
import threading
import time
from collections.abc import Callable
from enum import Enum
from types import TracebackType
from typing import Protocol

from vaultplugin.framework import runtime

# The watchdog's longest sleep: Condition.wait refuses a timeout past the platform's time_t (OverflowError),
# so a budget of absurd length must not reach it; the loop looks again after this anyway.
WATCHDOG_MAX_SLEEP = 3600.0
# The watchdog aborts a budget this long after its deadline (cut timeouts normally end the call first).
WATCHDOG_GRACE = 0.2


class Abort(Enum):
    DEADLINE = "deadline"
    CANCELLED = "cancelled"


class CancelSignal(Protocol):
    """The caller's cancellation (vaultplugin.framework.runtime.Cancellation satisfies it)."""

    @property
    def cancelled(self) -> bool: ...

    def on_cancel(self, callback: Callable[[], None]) -> Callable[[], None]: ...


_current: contextvars.ContextVar[CallBudget | None] = contextvars.ContextVar("provider_call", default=None)


def current() -> CallBudget | None:
    """The budget of the provider call running here, or None."""
    return _current.get()


class CallBudget:
    """One logical provider call's deadline (`seconds` from now) and abort switch; a context manager that
    makes it the current budget, watched by the watchdog and by `signal`."""

    def __init__(self, seconds: float, signal: CancelSignal | None = None) -> None:
        self.seconds = seconds
        self.started = time.monotonic()
        self.deadline = self.started + seconds
        self.received = 0  # bytes read from the provider, for messages
        self._signal = signal
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._aborted: Abort | None = None
        self._finished = False
        self._wake: threading.Event | None = None  # made by the first pause: most calls never retry
        self._token: contextvars.Token[CallBudget | None] | None = None
        self._unsubscribe: Callable[[], None] | None = None

    # --- state

    @property
    def aborted(self) -> Abort | None:
        return self._aborted

    def cancelled(self) -> bool:
        """True once the caller's cancellation aborted the call."""
        return self._aborted is Abort.CANCELLED

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def out_of_time(self) -> bool:
        return self._aborted is Abort.DEADLINE or self.remaining() <= 0

    def cut(self, timeout: float | None) -> float:
        """`timeout` cut to the time left; raises `TimeoutError` when nothing is left or the call was
        aborted, so no new socket operation starts."""
        if self._aborted is not None:
            raise TimeoutError(f"provider call aborted: {self._aborted.value}")
        left = self.remaining()
        if left <= 0:
            raise TimeoutError("provider call deadline reached")
        return left if timeout is None else min(timeout, left)

    # --- sockets and aborting

    def attach(self, sock: socket.socket | None) -> None:
        """Register the socket this call is using (idempotent)."""
        if sock is None or sock in self._sockets:
            return
        with self._lock:
            if self._finished:
                return
            self._sockets.add(sock)
            aborted = self._aborted is not None
        if aborted:
            _shutdown(sock)

    def abort(self, reason: Abort) -> None:
        """Stop the call: later socket operations fail, blocked ones end now. The first reason wins."""
        with self._lock:
            if self._finished or self._aborted is not None:
                return
            self._aborted = reason
            sockets = list(self._sockets)
            wake = self._wake
        if wake is not None:
            wake.set()
        for sock in sockets:
            _shutdown(sock)

    def pause(self, seconds: float) -> None:
        """Sleep `seconds` (a retry's backoff), or less if the call is aborted meanwhile. On the plugin's hub
        the wait runs on a pool thread while the call is suspended (retries are rare: no hub timer)."""
        with self._lock:
            if self._aborted is not None:
                return
            if self._wake is None:
                self._wake = threading.Event()
            wake = self._wake
        runtime.run_blocking(lambda: wake.wait(seconds))

    # --- context

    def __enter__(self) -> CallBudget:
        self._token = _current.set(self)
        if self._signal is not None:
            self._unsubscribe = self._signal.on_cancel(lambda: self.abort(Abort.CANCELLED))
        _watchdog.watch(self)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        with self._lock:
            self._finished = True
            self._sockets.clear()
        _watchdog.forget(self)
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._token is not None:
            _current.reset(self._token)


def _shutdown(sock: socket.socket) -> None:
    # The plain socket's shutdown, also for an SSLSocket (whose own shutdown would drop its TLS state
    # under the thread still reading it): the blocked recv returns, the call fails and closes it.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Watchdog:
    """One daemon thread that aborts running calls just past their deadline.

    It sleeps until the earliest deadline (+ grace) it knows of, and indefinitely while no call runs. A new
    call wakes it only when its deadline comes before that wake-up: in a stream of calls with the same
    budget (the usual case) the thread wakes about once a budget, not once a call, so it takes no GIL
    hand-off from the calls themselves (measured: each wake-up cost the hub a context switch).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._running: set[CallBudget] = set()
        self._thread: threading.Thread | None = None
        self._wakes_at = math.inf  # when the thread will look next (monotonic); inf: when notified

    def watch(self, budget: CallBudget) -> None:
        with self._cond:
            self._running.add(budget)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="provider-watchdog", daemon=True)
                self._thread.start()
            elif budget.deadline + WATCHDOG_GRACE < self._wakes_at:
                self._wakes_at = budget.deadline + WATCHDOG_GRACE
                self._cond.notify()

    def forget(self, budget: CallBudget) -> None:
        with self._cond:
            self._running.discard(budget)

    def _run(self) -> None:
        while True:
            with self._cond:
                now = time.monotonic()
                late = [b for b in self._running if now >= b.deadline + WATCHDOG_GRACE]
                for budget in late:
                    self._running.discard(budget)  # aborted once; `forget` comes when the call ends
                self._wakes_at = min((b.deadline + WATCHDOG_GRACE for b in self._running), default=math.inf)
                if not late:
                    if self._wakes_at == math.inf:
                        self._cond.wait()
                    else:
                        self._cond.wait(min(WATCHDOG_MAX_SLEEP, max(0.0, self._wakes_at - now)))
                    continue
            for budget in late:
                budget.abort(Abort.DEADLINE)


_watchdog = _Watchdog()
