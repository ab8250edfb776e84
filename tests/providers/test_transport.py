"""The shared transport and retry policy: status mapping, Retry-After, deadlines, create safety."""

from __future__ import annotations

import httpx
import pytest
from llmsecrets.providers import (
    CreateOutcomeUnknown,
    ProviderAuthError,
    ProviderBadResponse,
    ProviderError,
    ProviderNotFound,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
    RetryPolicy,
)
from llmsecrets.providers.http import ProviderHTTP, parse_retry_after

from .conftest import ADMIN_KEY, FakeClock, Script, error


def make(script: Script, policy: RetryPolicy) -> ProviderHTTP:
    return ProviderHTTP(
        provider="openrouter",
        base_url="https://example.test/api/v1",
        admin_key=ADMIN_KEY,
        transport=script.transport,
        retry=policy,
    )


def test_bearer_header_sent_and_path_joined(policy: RetryPolicy, clock: FakeClock) -> None:
    script = Script(httpx.Response(200, json={"ok": True}))
    http = make(script, policy)
    assert http.call("GET", "/keys", op="list", deadline=clock() + 30, params={"offset": 0}) == {"ok": True}
    request = script.requests[0]
    assert request.headers["Authorization"] == "Bearer " + ADMIN_KEY
    assert str(request.url) == "https://example.test/api/v1/keys?offset=0"
    assert ADMIN_KEY not in repr(http)
    assert ADMIN_KEY not in repr(vars(http))  # kept only as a SecretStr, added to each request as it is built


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, ProviderRejected),
        (422, ProviderRejected),
        (409, ProviderRejected),
        (401, ProviderAuthError),
        (403, ProviderAuthError),
        (404, ProviderNotFound),
    ],
)
def test_client_errors_map_to_classes_and_are_not_retried(
    status: int, cls: type[ProviderError], policy: RetryPolicy, clock: FakeClock
) -> None:
    script = Script(error(status, "went wrong"))
    with pytest.raises(cls) as info:
        make(script, policy).call("GET", "/keys", op="list keys", deadline=clock() + 30)
    assert len(script.requests) == 1
    assert clock.sleeps == []
    exc = info.value
    assert exc.status == status
    assert exc.provider == "openrouter"
    assert str(exc) == f"openrouter: list keys failed: HTTP {status}: went wrong"
    assert exc.api_error


def test_429_retry_after_is_honoured(policy: RetryPolicy, clock: FakeClock) -> None:
    script = Script(
        error(429, "slow down", {"Retry-After": "7"}),
        error(429, "slow down", {"Retry-After": "3"}),
        httpx.Response(200, json={"data": []}),
    )
    assert make(script, policy).call("GET", "/keys", op="list", deadline=clock() + 60) == {"data": []}
    assert clock.sleeps == [7.0, 3.0]
    assert len(script.requests) == 3


def test_429_never_waits_past_the_deadline(policy: RetryPolicy, clock: FakeClock) -> None:
    script = Script(error(429, "slow down", {"Retry-After": "20"}))
    with pytest.raises(ProviderRateLimited) as info:
        make(script, policy).call("GET", "/keys", op="list", deadline=clock() + 10)
    assert info.value.retry_after == 20.0
    assert clock.sleeps == []
    assert len(script.requests) == 1


def test_429_stops_when_time_runs_out(policy: RetryPolicy, clock: FakeClock) -> None:
    start = clock()
    script = Script(error(429, "slow down", {"Retry-After": "4"}))
    with pytest.raises(ProviderRateLimited):
        make(script, policy).call("GET", "/keys", op="list", deadline=start + 10)
    assert clock.sleeps == [4.0, 4.0]  # a third wait would end at +12, past the deadline
    assert clock() <= start + 10


def test_5xx_retried_with_backoff_then_gives_up(policy: RetryPolicy, clock: FakeClock) -> None:
    script = Script(error(503, "overloaded"))
    with pytest.raises(ProviderUnavailable) as info:
        make(script, policy).call("GET", "/keys", op="list", deadline=clock() + 300)
    assert info.value.status == 503
    assert len(script.requests) == 4  # max_attempts
    assert clock.sleeps == [0.5, 1.0, 2.0]  # jitter pinned to the window's top


def test_5xx_then_success(policy: RetryPolicy, clock: FakeClock) -> None:
    script = Script(error(500, "oops"), httpx.Response(200, json={"x": 1}))
    assert make(script, policy).call("GET", "/keys", op="list", deadline=clock() + 30) == {"x": 1}
    assert len(script.requests) == 2


def test_backoff_is_jittered_within_window(clock: FakeClock) -> None:
    seen: list[tuple[float, float]] = []

    def jitter(lo: float, hi: float) -> float:
        seen.append((lo, hi))
        return hi / 2

    policy = RetryPolicy(max_attempts=3, base_delay=1.0, sleep=clock.sleep, clock=clock, jitter=jitter)
    with pytest.raises(ProviderUnavailable):
        make(Script(error(502, "bad gateway")), policy).call("GET", "/k", op="x", deadline=clock() + 100)
    assert seen[:2] == [(0.0, 1.0), (0.0, 2.0)]  # wait is computed before the stop check
    assert clock.sleeps == [0.5, 1.0]


def test_401_raises_auth_error_at_once(policy: RetryPolicy, clock: FakeClock) -> None:
    script = Script(error(401, "Incorrect API key provided: " + ADMIN_KEY))
    with pytest.raises(ProviderAuthError) as info:
        make(script, policy).call("POST", "/keys", op="create key", deadline=clock() + 30, create=True)
    assert len(script.requests) == 1
    assert ADMIN_KEY not in str(info.value)
    assert ADMIN_KEY not in repr(info.value)
    assert "[redacted]" in str(info.value)


def test_error_detail_truncated_and_scrubbed(policy: RetryPolicy, clock: FakeClock) -> None:
    issued = "sk-or-v1-" + "ab12" * 16
    long_message = "bad thing " * 100 + issued
    script = Script(error(400, "Bearer " + issued + " " + long_message))
    with pytest.raises(ProviderRejected) as info:
        make(script, policy).call("GET", "/keys", op="list", deadline=clock() + 30)
    text = str(info.value)
    assert issued not in text
    assert "ab12ab12" not in text
    assert len(text) < 300


def test_non_json_error_body_is_not_an_api_error(policy: RetryPolicy, clock: FakeClock) -> None:
    script = Script(httpx.Response(404, text="<html>nginx: not found</html>"))
    with pytest.raises(ProviderNotFound) as info:
        make(script, policy).call("DELETE", "/keys/x", op="delete", deadline=clock() + 30)
    assert not info.value.api_error
    assert "non-API body" in str(info.value)


def test_create_not_repeated_after_read_timeout(policy: RetryPolicy, clock: FakeClock) -> None:
    script = Script(httpx.ReadTimeout("timed out"), httpx.Response(201, json={}))
    with pytest.raises(CreateOutcomeUnknown):
        make(script, policy).call("POST", "/keys", op="create key", deadline=clock() + 30, create=True)
    assert len(script.requests) == 1


@pytest.mark.parametrize(
    "exc",
    [
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ReadError("connection reset"),
        httpx.WriteError("broken pipe"),
        ConnectionResetError("reset by peer"),
    ],
)
def test_create_not_repeated_after_dropped_connection(
    exc: Exception, policy: RetryPolicy, clock: FakeClock
) -> None:
    script = Script(exc, httpx.Response(201, json={}))
    with pytest.raises(CreateOutcomeUnknown):
        make(script, policy).call("POST", "/keys", op="create key", deadline=clock() + 30, create=True)
    assert len(script.requests) == 1


def test_idempotent_call_retried_after_dropped_connection(policy: RetryPolicy, clock: FakeClock) -> None:
    script = Script(httpx.ReadTimeout("timed out"), httpx.Response(200, json={"deleted": True}))
    assert make(script, policy).call("DELETE", "/keys/h", op="delete", deadline=clock() + 30) == {
        "deleted": True
    }
    assert len(script.requests) == 2


def test_create_retried_after_connect_error_5xx_and_429(policy: RetryPolicy, clock: FakeClock) -> None:
    script = Script(
        httpx.ConnectError("connection refused"),
        error(500, "internal"),
        error(429, "slow", {"Retry-After": "1"}),
        httpx.Response(201, json={"key": "k"}),
    )
    body = make(script, policy).call("POST", "/keys", op="create", deadline=clock() + 60, create=True)
    assert body == {"key": "k"}
    assert len(script.requests) == 4


def test_create_gateway_timeout_is_unknown(policy: RetryPolicy, clock: FakeClock) -> None:
    script = Script(httpx.Response(504, text="upstream timed out"))
    with pytest.raises(CreateOutcomeUnknown):
        make(script, policy).call("POST", "/keys", op="create", deadline=clock() + 60, create=True)
    assert len(script.requests) == 1


def test_create_unreadable_success_body_is_unknown(policy: RetryPolicy, clock: FakeClock) -> None:
    script = Script(httpx.Response(201, text="<html>"))
    with pytest.raises(CreateOutcomeUnknown):
        make(script, policy).call("POST", "/keys", op="create", deadline=clock() + 60, create=True)
    with pytest.raises(ProviderBadResponse):
        make(script, policy).call("GET", "/keys", op="list", deadline=clock() + 60)


def test_timeouts_are_cut_to_the_deadline(policy: RetryPolicy, clock: FakeClock) -> None:
    script = Script(httpx.Response(200, json={}))
    http = make(script, policy)
    http.call("GET", "/keys", op="list", deadline=clock() + 2.5)
    http.call("GET", "/keys", op="list", deadline=clock() + 100)
    short, long = (r.extensions["timeout"] for r in script.requests)
    assert short == {"connect": 2.5, "read": 2.5, "write": 2.5, "pool": 2.5}
    assert long == {"connect": 5.0, "read": 15.0, "write": 15.0, "pool": 5.0}


def test_no_attempt_once_deadline_passed(policy: RetryPolicy, clock: FakeClock) -> None:
    script = Script(httpx.Response(200, json={}))
    with pytest.raises(ProviderUnavailable) as info:
        make(script, policy).call("POST", "/keys", op="create", deadline=clock() - 1, create=True)
    assert script.requests == []
    assert info.value.sent is False
    assert "deadline" in str(info.value)


def test_real_timeout_respected() -> None:
    """A server that never answers: the call gives up by the deadline, not after 15 s."""
    import socket
    import threading
    import time

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                accepted.append(conn)  # read nothing, answer nothing
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        port = server.getsockname()[1]
        http = ProviderHTTP(provider="litellm", base_url=f"http://127.0.0.1:{port}", admin_key=ADMIN_KEY)
        started = time.monotonic()
        with pytest.raises(CreateOutcomeUnknown):
            http.call("POST", "/key/generate", op="generate key", deadline=started + 0.6, create=True)
        assert time.monotonic() - started < 2.0
        started = time.monotonic()
        with pytest.raises(ProviderUnavailable):
            http.call("GET", "/key/list", op="list", deadline=started + 0.6)
        assert time.monotonic() - started < 2.0
        http.close()
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        server.close()


@pytest.mark.parametrize(
    ("value", "expected"),
    [("5", 5.0), ("0.5", 0.5), (" 2 ", 2.0), ("-3", 0.0), ("soon", None), (None, None), ("nan", None)],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now=lambda: 1445412500.0) == 10.0
