"""The one place provider retry policy lives (tenacity, with explicit stop, wait and retry rules).

What is retried:
- idempotent calls (list, get, delete, update): `ProviderRateLimited` and `ProviderUnavailable`;
- creates: only failures that prove the request was not processed — `ProviderRateLimited` (429),
  `ProviderUnavailable` with a 5xx/408 response in hand, or one that was never sent (connect error).
  A create whose request may have been processed raises `CreateOutcomeUnknown` in the transport
  and is never retried here: the engine settles it by name (`find_keys`) and its WAL.

Never retried: auth errors, 4xx, bad responses, anything that is not a `ProviderError`.

Waits honour `Retry-After` when the provider sent it, else exponential backoff with full jitter.
A retry stops after `max_attempts` attempts, or as soon as the next wait would end past the deadline
(then the last error is raised as it is). The wait is the caller's `pause` (the call budget's, which
ends early when the call is aborted), else `time.sleep`; `sleep`, `clock` and `jitter` are injectable
for tests (an injected `sleep` replaces both).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt
from tenacity.stop import stop_base

from .errors import CreateOutcomeUnknown, ProviderRateLimited, ProviderUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

# Never start a retry with less than this much time left before the deadline.
MIN_ATTEMPT_SECONDS = 0.05


def retryable(exc: BaseException) -> bool:
    """Retry rule for idempotent calls."""
    if isinstance(exc, CreateOutcomeUnknown):
        return False
    return isinstance(exc, ProviderRateLimited | ProviderUnavailable)


def retryable_create(exc: BaseException) -> bool:
    """Retry rule for creates: only failures that prove the request was not processed."""
    if isinstance(exc, ProviderRateLimited):
        return True
    if isinstance(exc, ProviderUnavailable):
        # A 5xx/408 response in hand (the provider answered "not done"), or never sent at all.
        return exc.status is not None or not exc.sent
    return False


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries for one provider client.

    - `max_attempts`: attempts in all, the first included.
    - `base_delay`, `max_delay`: exponential backoff window when no Retry-After is given
      (attempt n waits uniformly in [0, min(max_delay, base_delay * 2**(n-1))]).
    - `max_retry_after`: the longest Retry-After honoured; a longer one stops retrying.
    - `sleep`, `clock`, `jitter`: injectable (`clock` must match `sleep`; the deadline is on `clock`).
      `sleep` None: real time, through the caller's `pause` when it gives one.
    """

    max_attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 60.0
    sleep: Callable[[float], None] | None = field(default=None, repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    jitter: Callable[[float, float], float] = field(default=random.uniform, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    def wait_seconds(self, retry_state: RetryCallState) -> float:
        """Seconds to wait before the next attempt: Retry-After if given, else jittered backoff."""
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, ProviderRateLimited) and exc.retry_after is not None:
            return max(0.0, exc.retry_after)
        ceiling = min(self.max_delay, self.base_delay * (2 ** max(retry_state.attempt_number - 1, 0)))
        return max(0.0, self.jitter(0.0, ceiling))

    def call(
        self,
        fn: Callable[[], T],
        *,
        deadline: float,
        create: bool = False,
        what: str = "",
        pause: Callable[[float], None] | None = None,
    ) -> T:
        """Run `fn` with this policy until it succeeds, fails for good, or the deadline would pass."""
        rule = retryable_create if create else retryable
        # The first attempt runs bare: building tenacity's machinery cost more CPU than a provider call's
        # own Python work, and almost every call succeeds at once. A failure worth retrying is replayed as
        # tenacity's first attempt, so waits, stops and logs are exactly what they always were.
        try:
            return fn()
        except Exception as exc:
            if not rule(exc):
                raise
            first: list[Exception] = [exc]

        def attempt() -> T:
            if first:
                raise first.pop()
            return fn()

        retrying = Retrying(
            retry=retry_if_exception(rule),
            stop=stop_after_attempt(self.max_attempts) | _StopBeforeDeadline(self, deadline),
            wait=self.wait_seconds,
            sleep=self.sleep or pause or time.sleep,
            before_sleep=_log_retry(what),
            reraise=True,
        )
        return retrying(attempt)


class _StopBeforeDeadline(stop_base):
    """Stop when the upcoming wait (computed just before) would end past the deadline,
    or when a Retry-After is longer than the policy is willing to honour."""

    def __init__(self, policy: RetryPolicy, deadline: float) -> None:
        self._policy = policy
        self._deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        if (
            isinstance(exc, ProviderRateLimited)
            and exc.retry_after is not None
            and exc.retry_after > self._policy.max_retry_after
        ):
            return True
        resume_at = self._policy.clock() + retry_state.upcoming_sleep
        return resume_at + MIN_ATTEMPT_SECONDS >= self._deadline


def _log_retry(what: str) -> Callable[[RetryCallState], None]:
    def before_sleep(retry_state: RetryCallState) -> None:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        log.warning(
            "provider call failed, retrying: call=%s attempt=%d error=%s status=%s wait=%.2fs",
            what,
            retry_state.attempt_number,
            type(exc).__name__,
            getattr(exc, "status", None),
            retry_state.upcoming_sleep,
        )

    return before_sleep
