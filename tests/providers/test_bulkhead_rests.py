"""A connection's bulkhead measures the provider's slowness by the time its requests take, not by the waits
between retries: a burst of 429s with Retry-After from a provider that answers at once must not turn away
the connection's healthy calls as if the provider were stuck (issue 8, found while proving item 5).

Real loopback HTTP against the OpenRouter emulator, whose 429 carries Retry-After in whole seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from devkit.waiting import wait_for
from llm_emulators import Fault, OpenRouterEmulator
from llm_emulators.core import EmulatorServer
from llmsecrets.providers import Bulkhead, CallGuards, KeySpec, ProviderBusy, ProviderClient, make_client

from .slow_support import timed

pytestmark = pytest.mark.timeout(60)

ADMIN = "adm-openrouter-bulkhead-0123456789ab"


@pytest.fixture
def emu() -> OpenRouterEmulator:
    return OpenRouterEmulator(ADMIN)


@pytest.fixture
def server(emu: OpenRouterEmulator) -> Iterator[EmulatorServer]:
    srv = emu.serve()
    yield srv
    srv.stop()


def client(srv: EmulatorServer, bulkhead: Bulkhead) -> ProviderClient:
    return make_client(
        "openrouter", admin_key=ADMIN, base_url=srv.base_url, guards=CallGuards(bulkhead=bulkhead)
    )


def spec(n: int) -> KeySpec:
    return KeySpec(name=f"vault-0badc0de-rest-{n}")


def test_calls_waiting_out_a_retry_after_leave_healthy_calls_admitted(
    server: EmulatorServer, emu: OpenRouterEmulator
) -> None:
    # Strict on purpose: a request that takes 0.5 s marks the connection slow, and then only one call may go.
    bulkhead = Bulkhead(4, slow_limit=1, max_wait=0.2, stuck_after=0.5)
    api = client(server, bulkhead)
    limited = Fault.rate_limit(times=2, retry_after=1, op="create")
    emu.set_faults(limited)
    done: list[str] = []
    failed: list[BaseException] = []

    def create(n: int) -> None:
        try:
            done.append(api.create_key(spec(n), deadline=time.monotonic() + 10).key_id)
        except BaseException as exc:
            failed.append(exc)

    threads = [threading.Thread(target=create, args=(n,)) for n in (1, 2)]
    with timed() as elapsed:
        for thread in threads:
            thread.start()
        wait_for(lambda: limited.hits == 2, timeout=5, what="both creates to be rate limited")
        time.sleep(max(0.0, 0.7 - elapsed()))  # both now rest in their Retry-After longer than stuck_after
        assert bulkhead.in_flight == 2
        # Neither is at the provider: this call is admitted and answered, as on any healthy connection.
        created = api.create_key(spec(3), deadline=time.monotonic() + 10)
        assert elapsed() < 1.0  # it did not wait for the rate-limited ones
    for thread in threads:
        thread.join()
    assert failed == []
    assert len(done) == 2 and created.key_id not in done

    # Each of those calls took about a second, but each of its requests was answered at once: the
    # connection is still healthy, so calls beyond the slow limit go.
    with bulkhead.slot("openrouter", "openrouter: held"):
        api.create_key(spec(4), deadline=time.monotonic() + 10)
    assert len(emu.live_keys()) == 4


@dataclass
class Clock:
    now: float = 100.0

    def __call__(self) -> float:
        return self.now


def test_only_time_at_the_provider_counts_as_slow() -> None:
    clock = Clock()
    bulkhead = Bulkhead(4, slow_limit=1, max_wait=0.0, stuck_after=2.0, clock=clock)
    seen: list[str] = []

    def try_another() -> str:
        try:
            with bulkhead.slot("openrouter", "openrouter: another"):
                return "admitted"
        except ProviderBusy as exc:
            return str(exc)

    def wait_and_look(seconds: float) -> None:
        clock.now += seconds
        seen.append(try_another())

    with bulkhead.slot("openrouter", "openrouter: create key") as slot:
        clock.now += 0.5  # the first attempt: a prompt 429
        slot.resting(wait_and_look)(5.0)  # its Retry-After: longer than stuck_after, yet not slowness
        assert seen == ["admitted"]
        clock.now += 3.0  # the second attempt is slow at the provider
        assert "the provider answers slowly (a request of this connection has taken 3 s)" in try_another()
    # It has finished, and its last attempt took 3 s: slow until an attempt finishes sooner.
    with bulkhead.slot("openrouter", "openrouter: probe"):
        assert "at most 1 while it is slow" in try_another()
    with bulkhead.slot("openrouter", "openrouter: prompt"):
        assert try_another() == "admitted"
    assert bulkhead.in_flight == 0
