"""A burst of 429s is not a slow provider, end to end through a real OpenBao (issue 8).

The connection's bulkhead turns calls away while its provider answers slowly (more than 2 s). It used to
count the Retry-After waits between a call's attempts as the provider's slowness, so while a few creds
reads waited out a 3 s Retry-After, a creds read of the same connection got a 502 "saturated" although the
provider answered every request at once.
"""

from __future__ import annotations

import threading
import time

import pytest
from devkit.waiting import wait_for
from llm_emulators import Fault
from slow_provider_support import BUDGET_SECONDS, Answer, SlowServer, mount

pytestmark = pytest.mark.timeout(120)

# The bulkhead's defaults (providers/bulkhead.py): slow past 2 s, then at most 4 calls in flight.
SLOW_LIMIT = 4
RETRY_AFTER = 3  # longer than the 2 s that mark a provider slow; within the 4 s budget


def test_reads_waiting_out_a_retry_after_do_not_make_the_connection_refuse_others(
    slow_server: SlowServer,
) -> None:
    assert RETRY_AFTER + 0.5 < BUDGET_SECONDS
    with mount(slow_server, "ratelimit") as m:
        emulator = m.connect("limited")
        limited = Fault.rate_limit(times=SLOW_LIMIT, retry_after=RETRY_AFTER, op="create")
        emulator.set_faults(limited)
        answers: list[Answer] = []
        threads = [
            threading.Thread(target=lambda: answers.append(m.creds("limited"))) for _ in range(SLOW_LIMIT)
        ]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        wait_for(
            lambda: limited.hits == SLOW_LIMIT, timeout=RETRY_AFTER, what="every read to be rate limited"
        )
        time.sleep(max(0.0, 2.5 - (time.monotonic() - started)))  # they have rested longer than 2 s

        other = m.creds("limited")
        assert other.status == 200, other  # before: 502 "the connection is saturated"
        assert other.seconds < 1.0, other.seconds

        for thread in threads:
            thread.join()
        assert [a.status for a in answers] == [200] * SLOW_LIMIT, answers
        assert all(a.seconds >= RETRY_AFTER - 0.5 for a in answers)  # each did wait out the Retry-After
        assert len(emulator.live_keys()) == SLOW_LIMIT + 1
        print(
            f"\n{SLOW_LIMIT} creds reads resting in a {RETRY_AFTER} s Retry-After: another read of the "
            f"connection answered {other.status} in {other.seconds * 1000:.0f} ms"
        )
