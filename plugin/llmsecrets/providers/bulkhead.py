"""One connection's share of the plugin's threads: at most `limit` of its provider calls at once.

Provider calls run on the plugin's fixed pool of threads. Without a limit, one provider that answers
slowly holds every thread until its calls' deadlines, and calls to healthy connections of the same
mount queue behind it. With a bulkhead per connection, a call beyond the limit:
- waits (at most `max_wait` seconds) while the connection's calls are moving: a burst against a healthy
  provider queues briefly instead of failing;
- fails at once with `ProviderBusy` (never sent; a 502 that is safe to retry) when the connection is
  stuck, that is when its oldest call in flight has run for `stuck_after` seconds or more.
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


class Bulkhead:
    """Admission to one connection's provider calls (thread-safe)."""

    def __init__(
        self,
        limit: int,
        *,
        max_wait: float = MAX_WAIT,
        stuck_after: float = STUCK_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 1:
            raise ValueError("a bulkhead admits at least one call")
        self.limit = limit
        self._max_wait = max_wait
        self._stuck_after = stuck_after
        self._clock = clock
        self._cond = threading.Condition()
        self._started: dict[int, float] = {}  # ticket -> start; insertion order, so the first is the oldest
        self._tickets = itertools.count()

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
                del self._started[ticket]
                self._cond.notify()

    def _enter(self, provider: str, what: str, max_wait: float) -> int:
        with self._cond:
            now = self._clock()
            give_up = now + max(0.0, max_wait)
            while len(self._started) >= self.limit:
                oldest = now - next(iter(self._started.values()))
                if oldest >= self._stuck_after:
                    raise ProviderBusy(
                        provider,
                        f"{what}: not sent: {len(self._started)} calls of this connection are already "
                        f"waiting on the provider, the oldest for {oldest:.0f} s (at most {self.limit} at "
                        "once); failing fast so the plugin's other calls keep their threads",
                    )
                if now >= give_up:
                    raise ProviderBusy(
                        provider,
                        f"{what}: not sent: this connection already has {len(self._started)} calls in "
                        f"flight (at most {self.limit} at once) and none finished within {max_wait:g} s",
                    )
                self._cond.wait(min(give_up, now + self._stuck_after - oldest) - now)
                now = self._clock()
            ticket = next(self._tickets)
            self._started[ticket] = now
            return ticket
