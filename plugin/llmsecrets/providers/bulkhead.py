"""One connection's share of the plugin's threads: at most `limit` of its provider calls at once, and only
`slow_limit` while its provider answers slowly.

Provider calls run on the plugin's fixed pool of threads. Without a limit, one provider that answers
slowly holds every thread until its calls' deadlines, and calls to healthy connections of the same
mount queue behind it. A connection is *slow* while its oldest attempt in flight has run for
`stuck_after` seconds or more, or when its last finished attempt took that long; it is healthy again as
soon as an attempt finishes sooner. Only time at the provider is an attempt: a call resting between two
attempts (a 429's Retry-After, a backoff: `Slot.resting`) keeps its slot, because its thread is still
taken, but its rest is no slowness, so a burst of rate limits from a provider that answers promptly turns
away no healthy call. A call that finds the connection
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


class Slot:
    """One admitted call: at the provider from admission on, except while it rests (`resting`)."""

    __slots__ = ("_bulkhead", "_ticket")

    def __init__(self, bulkhead: Bulkhead, ticket: int) -> None:
        self._bulkhead = bulkhead
        self._ticket = ticket

    def resting(self, sleep: Callable[[float], None]) -> Callable[[float], None]:
        """`sleep` (a wait between two attempts) that ends the attempt before it and starts the next after."""

        def rest(seconds: float) -> None:
            self._bulkhead._rest(self._ticket)
            try:
                sleep(seconds)
            finally:
                self._bulkhead._resume(self._ticket)

        return rest


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
        self._calls = 0  # admitted and not yet finished, resting ones included
        # ticket -> start of its running attempt; insertion order, so the first is the oldest. A resting
        # call is not here.
        self._attempts: dict[int, float] = {}
        self._tickets = itertools.count()
        self._last_took = 0.0  # how long the last attempt to finish took
        self._last_end = 0.0  # when it finished (on `clock`)

    @property
    def in_flight(self) -> int:
        return self._calls

    def forgettable(self, memory: float) -> bool:
        """True when a new bulkhead would do the same: no call in flight, and the last attempt was prompt
        or, if slow, ended `memory` seconds ago or more (so a slow provider is remembered that long)."""
        with self._cond:
            if self._calls:
                return False
            return self._last_took < self._stuck_after or self._clock() - self._last_end >= memory

    @contextmanager
    def slot(self, provider: str, what: str, *, max_wait: float | None = None) -> Iterator[Slot]:
        """Hold one of the connection's slots for a call (`what` names it in the error)."""
        ticket = self._enter(provider, what, self._max_wait if max_wait is None else max_wait)
        try:
            yield Slot(self, ticket)
        finally:
            with self._cond:
                self._end_attempt(ticket)
                self._calls -= 1
                self._cond.notify()

    def _end_attempt(self, ticket: int) -> None:
        started = self._attempts.pop(ticket, None)
        if started is not None:
            self._last_end = self._clock()
            self._last_took = self._last_end - started

    def _rest(self, ticket: int) -> None:
        with self._cond:
            self._end_attempt(ticket)

    def _resume(self, ticket: int) -> None:
        with self._cond:
            self._attempts[ticket] = self._clock()

    def _slowness(self, now: float) -> float:
        """How long the oldest attempt in flight (or else the last one) has taken; 0 when none."""
        oldest = now - next(iter(self._attempts.values())) if self._attempts else 0.0
        return max(oldest, self._last_took)

    def _enter(self, provider: str, what: str, max_wait: float) -> int:
        with self._cond:
            now = self._clock()
            give_up = now + max(0.0, max_wait)
            while True:
                slowness = self._slowness(now)
                slow = slowness >= self._stuck_after
                if self._calls < (self.slow_limit if slow else self.limit):
                    break
                if slow:
                    raise ProviderBusy(
                        provider,
                        f"{what}: not sent: the provider answers slowly (a request of this connection has "
                        f"taken {slowness:.0f} s) and {self._calls} calls are already waiting on it "
                        f"(at most {self.slow_limit} while it is slow); failing fast so the plugin's other "
                        "calls keep their threads",
                    )
                if now >= give_up:
                    raise ProviderBusy(
                        provider,
                        f"{what}: not sent: this connection already has {self._calls} calls in "
                        f"flight (at most {self.limit} at once) and none finished within {max_wait:g} s",
                    )
                self._cond.wait(min(give_up, now + self._stuck_after - slowness) - now)
                now = self._clock()
            ticket = next(self._tickets)
            self._calls += 1
            self._attempts[ticket] = now
            return ticket
