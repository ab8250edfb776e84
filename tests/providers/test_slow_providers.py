"""Slow and misbehaving providers, on real loopback sockets: every call ends by its deadline whatever the
provider does, a stuck connection cannot take every thread, a cancelled call stops, answers are capped,
and no message carries the connection's admin key.

The deadlines here are about a second; SLACK is what the assertions allow past them (a watchdog tick and
a slow CI machine), far below the per-read timeout (15 s) that used to restart with every byte.
"""

from __future__ import annotations

import gzip
import re
import socket
import threading
import time
import tracemalloc
from collections.abc import Iterator

import httpx
import pytest
from devkit.waiting import wait_for
from llm_emulators import Fault, LiteLLMEmulator, OpenAIEmulator, OpenRouterEmulator
from llm_emulators.core import Emulator, EmulatorServer
from llmsecrets.providers import (
    Bulkhead,
    CallGuards,
    CreateOutcomeUnknown,
    KeySpec,
    ProviderAuthError,
    ProviderBadResponse,
    ProviderBusy,
    ProviderCallCancelled,
    ProviderClient,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    RetryPolicy,
    make_client,
    scrub,
)
from llmsecrets.providers.body import MAX_BODY_BYTES
from llmsecrets.providers.budget import Abort, CallBudget
from llmsecrets.providers.http import ProviderHTTP
from llmsecrets.providers.transport import environment_proxy
from vaultplugin.transport.cancellation import Cancellation

from .slow_support import FullBacklog, RecordingProxy, SilentServer, timed

pytestmark = pytest.mark.timeout(60)

ADMIN = "adm-openrouter-0123456789abcdef0123"
DEADLINE = 1.0
SLACK = 0.5
SPEC = KeySpec(name="vault-0badc0de-slow")


@pytest.fixture
def emu() -> OpenRouterEmulator:
    return OpenRouterEmulator(ADMIN)


@pytest.fixture
def server(emu: OpenRouterEmulator) -> Iterator[EmulatorServer]:
    srv = emu.serve()
    yield srv
    srv.stop()


def client_for(
    srv: EmulatorServer, *, guards: CallGuards | None = None, retry: RetryPolicy | None = None
) -> ProviderClient:
    return make_client(
        srv.emulator.provider,
        admin_key=srv.emulator.admin_key,
        base_url=srv.base_url,
        guards=guards,
        retry=retry,
    )


def soon(seconds: float = DEADLINE) -> float:
    return time.monotonic() + seconds


def gave_up_within(emu: Emulator, seconds: float) -> None:
    """The emulator saw the client close the misbehaving connection within `seconds` of its start."""
    wait_for(lambda: len(emu.wire_log) > 0, timeout=5, what="the wire fault to end")
    event = emu.wire_log[-1]
    assert event.client_closed, event
    assert event.seconds < seconds, event


# --- every call ends by its deadline -----------------------------------------------------------------


TOO_SLOWLY = r"sent its answer too slowly: no complete answer within (1|0\.\d+) s"


@pytest.mark.parametrize(
    ("fault", "words"),
    [
        # The time named is what the call had left when it asked (up to 1 s: less on a busy machine).
        (Fault.trickle(seconds=0.2), TOO_SLOWLY),
        (Fault.slow_headers(seconds=0.2), TOO_SLOWLY),
        (Fault.stall(), TOO_SLOWLY),
        (Fault.hang(), r"the provider did not answer within (1|0\.\d+) s"),
    ],
    ids=lambda v: v.kind.value if isinstance(v, Fault) else "",
)
@pytest.mark.parametrize("create", [True, False], ids=["create", "list"])
def test_a_misbehaving_answer_ends_by_the_deadline(
    emu: OpenRouterEmulator, server: EmulatorServer, fault: Fault, words: str, create: bool
) -> None:
    emu.set_faults(fault)
    client = client_for(server)
    expected = CreateOutcomeUnknown if create else ProviderUnavailable
    with timed() as elapsed, pytest.raises(expected) as info:
        if create:
            client.create_key(SPEC, deadline=soon())
        else:
            client.find_keys("vault-", scope=None, deadline=soon())
    assert elapsed() < DEADLINE + SLACK
    assert re.search(words, str(info.value)), str(info.value)
    assert str(info.value).startswith("openrouter: ")
    gave_up_within(emu, DEADLINE + SLACK)


@pytest.mark.parametrize("make_emulator", [OpenAIEmulator, LiteLLMEmulator], ids=["openai", "litellm"])
def test_every_provider_is_bounded(make_emulator: type[Emulator]) -> None:
    emulator = make_emulator(ADMIN)
    emulator.set_faults(Fault.trickle(seconds=0.3))
    with emulator.serve() as srv:
        client = client_for(srv)
        spec = KeySpec(name="vault-0badc0de-slow", project_id="proj_default")
        with timed() as elapsed, pytest.raises(CreateOutcomeUnknown, match="too slowly"):
            client.create_key(spec, deadline=soon())
        assert elapsed() < DEADLINE + SLACK


def test_a_connect_that_hangs_ends_by_the_deadline() -> None:
    backlog = FullBacklog()
    try:
        http = ProviderHTTP(provider="litellm", base_url=f"http://127.0.0.1:{backlog.port}", admin_key=ADMIN)
        with timed() as elapsed, pytest.raises(ProviderUnavailable) as info:
            http.call("POST", "/key/generate", op="create key", deadline=soon(), create=True)
        assert elapsed() < DEADLINE + SLACK
        assert info.value.sent is False  # never sent: safe to retry, nothing to clean up
        assert "cannot connect within 1 s" in str(info.value)
    finally:
        backlog.close()


def test_a_tls_handshake_that_stalls_ends_by_the_deadline() -> None:
    silent = SilentServer()
    try:
        http = ProviderHTTP(
            provider="openai", base_url=f"https://127.0.0.1:{silent.port}/v1", admin_key=ADMIN
        )
        started = time.monotonic()
        with timed() as elapsed, pytest.raises(ProviderUnavailable) as info:
            http.call("GET", "/organization/projects", op="verify admin key", deadline=soon())
        assert elapsed() < DEADLINE + SLACK
        assert info.value.sent is False
        assert "cannot connect within" in str(info.value)
        wait_for(lambda: silent.closed_by_client, timeout=2, what="the client to close the socket")
        assert silent.closed_by_client[0] - started < DEADLINE + SLACK
    finally:
        silent.close()


def test_the_watchdog_ends_a_read_no_timeout_bounds() -> None:
    """A socket read the budget never cut (no timeout at all) still ends just after the deadline."""
    ours, theirs = socket.socketpair()
    try:
        with timed() as elapsed, CallBudget(0.3) as budget:
            budget.attach(ours)
            data = ours.recv(10)  # blocks: the peer never writes
        assert data == b""
        assert budget.aborted is Abort.DEADLINE
        assert elapsed() < 0.3 + SLACK + 0.25
    finally:
        ours.close()
        theirs.close()


def test_the_watchdog_wakes_for_a_call_whose_deadline_comes_first() -> None:
    """The watchdog sleeps until the earliest deadline it knows: a later call with an earlier deadline must
    still be aborted on time, and a call with time left must not be."""
    ours, theirs = socket.socketpair()
    try:
        with CallBudget(30.0) as long_call:  # the watchdog now sleeps until ~30 s from now
            with timed() as elapsed, CallBudget(0.3) as short_call:
                short_call.attach(ours)
                data = ours.recv(10)
            assert data == b"" and short_call.aborted is Abort.DEADLINE
            assert elapsed() < 0.3 + SLACK + 0.25
            assert long_call.aborted is None
    finally:
        ours.close()
        theirs.close()


@pytest.mark.timeout(30)
def test_a_budget_of_absurd_length_does_not_stop_the_watchdog() -> None:
    """A budget whose deadline is past what a thread wait takes (OverflowError in Condition.wait) once killed
    the watchdog thread, and no later call was cut at its deadline."""
    ours, theirs = socket.socketpair()
    try:
        with CallBudget(1e300):
            time.sleep(0.1)  # the watchdog now plans its next look for that deadline
        with timed() as elapsed, CallBudget(0.3) as short_call:
            short_call.attach(ours)
            data = ours.recv(10)
        assert data == b"" and short_call.aborted is Abort.DEADLINE
        assert elapsed() < 0.3 + SLACK + 0.25
    finally:
        ours.close()
        theirs.close()


# --- bulkheads ----------------------------------------------------------------------------------------


def hold(bulkhead: Bulkhead, seconds: float, count: int) -> list[threading.Thread]:
    def run() -> None:
        with bulkhead.slot("openrouter", "openrouter: hold"):
            time.sleep(seconds)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    wait_for(lambda: bulkhead.in_flight == count, timeout=2, what="the slots to be taken")
    return threads


def test_a_full_bulkhead_waits_while_calls_finish() -> None:
    bulkhead = Bulkhead(2, max_wait=2.0, stuck_after=5.0)
    threads = hold(bulkhead, 0.3, 2)
    with timed() as elapsed, bulkhead.slot("openrouter", "openrouter: list keys"):
        assert 0.2 < elapsed() < 0.3 + SLACK  # admitted as soon as a slot was given back
    for thread in threads:
        thread.join()


def test_a_stuck_connection_fails_fast() -> None:
    bulkhead = Bulkhead(2, max_wait=0.3, stuck_after=0.5)
    threads = hold(bulkhead, 1.5, 2)
    # Not stuck yet: waits up to max_wait, then gives up.
    with (
        timed() as elapsed,
        pytest.raises(ProviderBusy, match=r"none finished within 0\.3 s"),
        bulkhead.slot("openrouter", "openrouter: create key"),
    ):
        pass
    assert 0.25 < elapsed() < 0.3 + SLACK
    time.sleep(0.3)  # now the oldest call has run for more than stuck_after
    with (
        timed() as elapsed,
        pytest.raises(ProviderBusy) as info,
        bulkhead.slot("openrouter", "openrouter: create key"),
    ):
        pass
    assert elapsed() < 0.05
    assert info.value.sent is False
    assert "the provider answers slowly" in str(info.value)
    assert "2 calls are already waiting on it" in str(info.value)
    for thread in threads:
        thread.join()
    with bulkhead.slot("openrouter", "openrouter: create key"):
        assert bulkhead.in_flight == 1


def test_a_connection_that_answered_slowly_gets_few_threads_until_it_answers_fast() -> None:
    bulkhead = Bulkhead(4, slow_limit=1, max_wait=0.2, stuck_after=0.2)
    with bulkhead.slot("openrouter", "openrouter: create key"):
        time.sleep(0.3)  # a call that took longer than stuck_after
    threads = hold(bulkhead, 0.4, 1)
    with (
        timed() as elapsed,
        pytest.raises(ProviderBusy, match="at most 1 while it is slow"),
        bulkhead.slot("openrouter", "openrouter: create key"),
    ):
        pass
    assert elapsed() < 0.05  # no waiting on a slow provider
    for thread in threads:
        thread.join()
    with bulkhead.slot("openrouter", "openrouter: list keys"):
        pass  # a prompt answer: the connection is healthy again
    # Four calls at once are admitted again. They start together (a barrier) and hold their slots until
    # released: were one to start 0.2 s after another, the first would look stuck (stuck_after).
    start, release = threading.Barrier(4), threading.Event()
    admitted: list[bool] = []

    def call() -> None:
        start.wait(timeout=10)
        with bulkhead.slot("openrouter", "openrouter: list keys"):
            admitted.append(True)
            release.wait(timeout=10)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(admitted) == 4, timeout=5, what="four calls admitted")
    release.set()
    for thread in threads:
        thread.join()


def test_a_trickling_connection_does_not_slow_another(
    server: EmulatorServer, emu: OpenRouterEmulator
) -> None:
    emu.set_faults(Fault.trickle(seconds=0.5))
    slow = client_for(server, guards=CallGuards(bulkhead=Bulkhead(3, max_wait=0.2, stuck_after=0.3)))
    failures: list[BaseException] = []

    def stuck_call() -> None:
        try:
            slow.find_keys("vault-", scope=None, deadline=soon(3.0))
        except ProviderError as exc:
            failures.append(exc)

    threads = [threading.Thread(target=stuck_call) for _ in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    with timed() as elapsed, pytest.raises(ProviderBusy):
        slow.find_keys("vault-", scope=None, deadline=soon(3.0))
    assert elapsed() < 0.05
    healthy_emu = OpenRouterEmulator(ADMIN)
    with healthy_emu.serve() as healthy_srv:
        healthy = client_for(healthy_srv, guards=CallGuards(bulkhead=Bulkhead(3)))
        with timed() as elapsed:
            healthy.create_key(SPEC, deadline=soon(3.0))
        assert elapsed() < 0.5
    for thread in threads:
        thread.join()
    assert len(failures) == 3 and all(isinstance(f, ProviderUnavailable) for f in failures)


# --- cancellation -------------------------------------------------------------------------------------


def cancel_after(seconds: float) -> Cancellation:
    cancellation = Cancellation()
    threading.Timer(seconds, cancellation.cancel).start()
    return cancellation


def test_a_cancelled_create_stops_at_once(server: EmulatorServer, emu: OpenRouterEmulator) -> None:
    emu.set_faults(Fault.trickle(seconds=0.2))
    cancellation = cancel_after(0.5)
    client = client_for(server, guards=CallGuards(cancel_signal=lambda: cancellation))
    with timed() as elapsed, pytest.raises(CreateOutcomeUnknown) as info:
        client.create_key(SPEC, deadline=soon(10.0))
    assert elapsed() < 0.5 + SLACK
    assert "Vault cancelled the request" in str(info.value)
    assert "the key may exist" in str(info.value)  # it was sent: the WAL settles it
    gave_up_within(emu, 0.5 + SLACK)


def test_a_cancelled_list_is_not_retried(server: EmulatorServer, emu: OpenRouterEmulator) -> None:
    emu.set_faults(Fault.hang())
    cancellation = cancel_after(0.3)
    client = client_for(server, guards=CallGuards(cancel_signal=lambda: cancellation))
    with timed() as elapsed, pytest.raises(ProviderCallCancelled) as info:
        client.find_keys("vault-", scope=None, deadline=soon(10.0))
    assert elapsed() < 0.3 + SLACK
    assert info.value.sent is True
    time.sleep(0.3)
    assert len(emu.wire_log) == 1  # one attempt, no retry


def test_a_call_cancelled_before_it_starts_sends_nothing(
    server: EmulatorServer, emu: OpenRouterEmulator
) -> None:
    cancellation = Cancellation()
    cancellation.cancel()
    client = client_for(server, guards=CallGuards(cancel_signal=lambda: cancellation))
    with pytest.raises(ProviderCallCancelled) as info:
        client.create_key(SPEC, deadline=soon(10.0))
    assert info.value.sent is False
    assert emu.create_count == 0 and emu.live_keys() == []


def test_a_cancel_cuts_a_retry_wait_short(server: EmulatorServer, emu: OpenRouterEmulator) -> None:
    emu.set_faults(Fault.server_error(times=None, status=503))
    cancellation = cancel_after(0.3)
    retry = RetryPolicy(max_attempts=5, base_delay=4.0, max_delay=4.0, jitter=lambda lo, hi: hi)
    client = client_for(server, retry=retry, guards=CallGuards(cancel_signal=lambda: cancellation))
    with timed() as elapsed, pytest.raises(ProviderCallCancelled):
        client.find_keys("vault-", scope=None, deadline=soon(20.0))
    assert elapsed() < 0.3 + SLACK


# --- bounded answers ----------------------------------------------------------------------------------


@pytest.mark.parametrize("create", [True, False], ids=["create", "list"])
def test_a_huge_answer_is_refused_without_reading_it(
    emu: OpenRouterEmulator, server: EmulatorServer, create: bool
) -> None:
    emu.set_faults(Fault.huge_body(size=64 * 1024 * 1024))
    client = client_for(server)
    expected = CreateOutcomeUnknown if create else ProviderBadResponse
    with timed() as elapsed, pytest.raises(expected) as info:
        if create:
            client.create_key(SPEC, deadline=soon(10.0))
        else:
            client.find_keys("vault-", scope=None, deadline=soon(10.0))
    assert elapsed() < 1.0
    assert "answer larger than 4 MB; stopped reading it" in str(info.value)
    gave_up_within(emu, 1.0)


def streamed(chunks: Iterator[bytes], headers: dict[str, str] | None = None) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=headers, content=chunks)

    return httpx.MockTransport(handler)


def test_an_answer_without_a_length_is_cut_at_the_cap() -> None:
    sent = 0

    def endless() -> Iterator[bytes]:
        nonlocal sent
        while True:
            sent += 65536
            yield b" " * 65536

    http = ProviderHTTP(
        provider="openrouter", base_url="http://x.test", admin_key=ADMIN, transport=streamed(endless())
    )
    with pytest.raises(ProviderBadResponse, match="larger than 4 MB"):
        http.call("GET", "/keys", op="list keys", deadline=soon(5.0))
    assert sent <= MAX_BODY_BYTES + 65536


def test_a_compressed_bomb_is_inflated_only_up_to_the_cap() -> None:
    bomb = gzip.compress(b"\0" * (256 * 1024 * 1024), compresslevel=9)  # ~250 KB on the wire
    transport = streamed(iter([bomb]), headers={"Content-Encoding": "gzip"})
    http = ProviderHTTP(provider="openrouter", base_url="http://x.test", admin_key=ADMIN, transport=transport)
    tracemalloc.start()
    try:
        with pytest.raises(ProviderBadResponse, match="larger than 4 MB"):
            http.call("GET", "/keys", op="list keys", deadline=soon(5.0))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * MAX_BODY_BYTES


def test_a_gzip_answer_within_the_cap_is_read() -> None:
    transport = streamed(iter([gzip.compress(b'{"data": [1, 2]}')]), headers={"Content-Encoding": "gzip"})
    http = ProviderHTTP(provider="openrouter", base_url="http://x.test", admin_key=ADMIN, transport=transport)
    assert http.call("GET", "/keys", op="list keys", deadline=soon(5.0)) == {"data": [1, 2]}


def test_the_cap_is_exact() -> None:
    body = b'{"data": "' + b"x" * 980 + b'"}'  # 992 bytes
    transport = streamed(iter([body]))
    http = ProviderHTTP(
        provider="openrouter",
        base_url="http://x.test",
        admin_key=ADMIN,
        transport=transport,
        guards=CallGuards(max_body_bytes=len(body)),
    )
    assert http.call("GET", "/keys", op="list keys", deadline=soon(5.0)) == {"data": "x" * 980}
    small = ProviderHTTP(
        provider="openrouter",
        base_url="http://x.test",
        admin_key=ADMIN,
        transport=streamed(iter([body])),
        guards=CallGuards(max_body_bytes=len(body) - 1),
    )
    with pytest.raises(ProviderBadResponse, match="larger than 991 bytes"):
        small.call("GET", "/keys", op="list keys", deadline=soon(5.0))


def test_a_huge_error_page_is_truncated_not_refused() -> None:
    page = b"<html>" + b"upstream failure " * 100_000 + b"</html>"  # 1.7 MB
    transport = httpx.MockTransport(lambda request: httpx.Response(503, content=iter([page])))
    http = ProviderHTTP(
        provider="openrouter",
        base_url="http://x.test",
        admin_key=ADMIN,
        transport=transport,
        retry=RetryPolicy(max_attempts=1),
    )
    with pytest.raises(ProviderUnavailable) as info:
        http.call("GET", "/keys", op="list keys", deadline=soon(5.0))
    assert info.value.status == 503
    assert "non-API body: <html>upstream failure" in str(info.value)


# --- the admin key never in a message -----------------------------------------------------------------

ODD_KEYS = [
    "mgmt~7Gq2Lp9Xw4Zr8Tn3hh",  # no sk- prefix, too short for the generic rules
    "Zm9vYmFy.b2theS1kb2tleQ",  # base64-ish with a dot
    "p@ss:w0rd/with spaces+=",  # anything an operator might paste
    "abc123XYZ",  # short: masked whole
]


@pytest.mark.parametrize("admin_key", ODD_KEYS)
@pytest.mark.parametrize("status", [401, 400, 502])
def test_an_echoed_admin_key_is_scrubbed(admin_key: str, status: int) -> None:
    emulator = OpenRouterEmulator(admin_key)
    emulator.set_faults(Fault.echo_admin_key(status=status))
    expected: type[ProviderError] = {401: ProviderAuthError, 400: ProviderRejected, 502: ProviderUnavailable}[
        status
    ]
    with emulator.serve() as srv:
        client = client_for(srv, retry=RetryPolicy(max_attempts=1))
        with pytest.raises(expected) as info:
            client.create_key(SPEC, deadline=soon(5.0))
    text = str(info.value) + repr(info.value)
    assert admin_key not in text
    assert admin_key[-8:] not in text or len(admin_key) <= 12
    assert "[redacted]" in text


def test_scrub_masks_a_secret_whole_and_in_part() -> None:
    key = "mgmt~7Gq2Lp9Xw4Zr8Tn3hh"
    text = f"key {key}, again {key}; its start {key[:14]}, its end {key[-13:]}, a bit {key[:6]}"
    out = scrub(text, secrets=[key])
    assert key[:12] not in out and key[-12:] not in out
    assert out.count("[redacted]") == 4
    assert out.endswith(f"a bit {key[:6]}")  # fewer than 12 characters: not a usable secret
    assert scrub("nothing secret here", secrets=[key]) == "nothing secret here"
    assert scrub("short abc123XYZ and abc123", secrets=["abc123XYZ"]) == "short [redacted] and abc123"


# --- proxies from the environment ---------------------------------------------------------------------


def test_environment_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    assert environment_proxy("https://openrouter.ai/api/v1") is None
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "litellm.internal")
    assert environment_proxy("https://openrouter.ai/api/v1") == "http://proxy.internal:3128"
    assert environment_proxy("https://litellm.internal/") is None
    assert environment_proxy("http://openrouter.ai/") is None
    monkeypatch.setenv("ALL_PROXY", "socks5://proxy.internal:1080")
    with pytest.raises(ValueError, match="must be http"):
        environment_proxy("http://openrouter.ai/")


def test_calls_go_through_the_environment_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = RecordingProxy()
    try:
        for name in ("https_proxy", "all_proxy", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
            monkeypatch.delenv(name.upper(), raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        client = make_client("openrouter", admin_key=ADMIN, base_url="http://provider.test/api/v1")
        assert client.find_keys("vault-", scope=None, deadline=soon(5.0)) == []
        assert proxy.request_lines[0].startswith("GET http://provider.test/api/v1/keys?offset=0")
    finally:
        proxy.close()
