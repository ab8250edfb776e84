"""Shared fixtures for the provider-client tests: a fake clock whose sleep advances it, and a
scripted `httpx.MockTransport` that records every request."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import pytest
from llmsecrets.providers import RetryPolicy

ADMIN_KEY = "sk-admin-TESTADMINKEY0123456789abcdef"


@dataclass
class FakeClock:
    """Monotonic clock for retry tests: `sleep` records the wait and moves time forward."""

    now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def policy(clock: FakeClock) -> RetryPolicy:
    # jitter returns the top of the window so backoff waits are predictable.
    return RetryPolicy(max_attempts=4, sleep=clock.sleep, clock=clock, jitter=lambda lo, hi: hi)


Responder = Callable[[httpx.Request], httpx.Response]


class Script:
    """A MockTransport handler that answers from a list (the last answer repeats) and keeps requests."""

    def __init__(self, *answers: httpx.Response | Exception | Responder) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, httpx.Response):
            return answer
        return answer(request)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


def error(status: int, message: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(
        status, json={"error": {"message": message, "type": "x", "code": None}}, headers=headers
    )
