"""One connection's share of the plugin's threads: at most `limit` of its provider calls at once, and only
`slow_limit` while its provider answers slowly.

Provider calls run on the plugin's fixed pool of threads. Without a limit, one provider that answers
slowly holds every thread until its calls' deadlines, and calls to healthy connections of the same
mount queue behind it. A connection is *slow* while its oldest call in flight has run for `stuck_after`
seconds or more, or when its last finished call took that long; it is healthy again as soon as a call
finishes sooner. A call that finds the connection
- healthy, with fewer than `limit` calls in flight: goes;
- healthy and full: waits (at most `max_wait` seconds) for a slot, so a burst against a healthy provider
  queues briefly instead of failing;
- slow, with `slow_limit` calls or more in flight: fails at once with `ProviderBusy` (never sent; a 502
  that is safe to retry). So a provider that keeps trickling holds `slow_limit` threads, not `limit`,
  once its first calls have shown it, and the connection keeps probing it with that many.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from .errors import ProviderBusy

MAX_WAIT = 1.0
STUCK_AFTER = 2.0
SLOW_LIMIT = 4


class Bulkhead:
    """Admission to one connection's provider calls (thread-safe)."""

    def __init__(
        self,
        limit: int,
        *,
        slow_limit: int = SLOW_LIMIT,
        max_wait: float = MAX_WAIT,
        stuck_after: float = STUCK_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1:
            raise ValueError("a bulkhead admits at least one call")
        self.limit = limit
        self.slow_limit = max(1, min(slow_limit, limit))
        self._max_wait = max_wait
        self._stuck_after = stuck_after
        self._clock = clock
        self._cond = threading.Condition()
        self._started: dict[int, float] = {}  # ticket -> start; insertion order, so the first is the oldest
        self._tickets = itertools.count()
        self._last_took = 0.0  # how long the last call to finish took

    @property
    def in_flight(self) -> int:
        return len(self._started)

    @contextmanager
    def slot(self, provider: str, what: str, *, max_wait: float | None = None) -> Iterator[None]:
        """Hold one of the connection's slots for a call (`what` names it in the error)."""
        ticket = self._enter(provider, what, self._max_wait if max_wait is None else max_wait)
        try:
            yield
        finally:
            with self._cond:
                self._last_took = self._clock() - self._started.pop(ticket)
                self._cond.notify()

    def _slowness(self, now: float) -> float:
        """How long the oldest call in flight (or else the last one) has taken; 0 when none."""
        oldest = now - next(iter(self._started.values())) if self._started else 0.0
        return max(oldest, self._last_took)

    def _enter(self, provider: str, what: str, max_wait: float) -> int:
        with self._cond:
            now = self._clock()
            give_up = now + max(0.0, max_wait)
            while True:
                slowness = self._slowness(now)
                slow = slowness >= self._stuck_after
                if len(self._started) < (self.slow_limit if slow else self.limit):
                    break
                if slow:
                    raise ProviderBusy(
                        provider,
                        f"{what}: not sent: the provider answers slowly (a call of this connection has "
                        f"taken {slowness:.0f} s) and {len(self._started)} calls are already waiting on it "
                        f"(at most {self.slow_limit} while it is slow); failing fast so the plugin's other "
                        "calls keep their threads",
                    )
                if now >= give_up:
                    raise ProviderBusy(
                        provider,
                        f"{what}: not sent: this connection already has {len(self._started)} calls in "
                        f"flight (at most {self.limit} at once) and none finished within {max_wait:g} s",
                    )
                self._cond.wait(min(give_up, now + self._stuck_after - slowness) - now)
                now = self._clock()
            ticket = next(self._tickets)
            self._started[ticket] = now
            return ticket
