"""The transport shared by every provider client: requests built with httpx's types and sent straight to the
transport (`transport.GuardedTransport`, or a test's mock), bearer auth, deadlines,
status-code mapping to the `errors` hierarchy, and retries through `retry.RetryPolicy`.

Wire contract of `ProviderHTTP.call`:
- one logical call (its retries included) ends by its deadline, whatever the provider does: the call
  runs under a `budget.CallBudget` that cuts every socket operation to the time left and aborts the call
  when the caller (Vault) cancels it; each attempt's timeouts are also connect 5 s, read/write 15 s;
- the connection's `bulkhead.Bulkhead` admits the call first: past its share of threads the call fails
  fast with `ProviderBusy`, never sent; the waits between attempts are not counted as the provider's
  slowness there;
- answers are read as streams and capped (`body.MAX_BODY_BYTES`; error bodies are truncated);
- 2xx -> the parsed JSON body (None when empty);
- 401/403 -> ProviderAuthError; 404 -> ProviderNotFound; 429 -> ProviderRateLimited (Retry-After);
  408/5xx -> ProviderUnavailable; other 4xx -> ProviderRejected; anything else -> ProviderError;
- connection refused / connect timeout -> ProviderUnavailable(sent=False);
- a timeout, a dropped connection or any failure after the request may have been sent ->
  ProviderUnavailable, or for a create `CreateOutcomeUnknown`; so is a create's 504 (a gateway gave
  up waiting; the provider may have done the work) and a create's unreadable or oversized 2xx body;
- a call the caller cancelled -> ProviderCallCancelled (a create already sent: CreateOutcomeUnknown).

Every message says what happened ("the provider sent its answer too slowly: no complete answer within
30 s") and is scrubbed of the connection's admin key, whatever its shape. The admin key is added to each
request as it is built, so it is in no client-level header, repr or log. Headers and bodies are never
logged.
"""

from __future__ import annotations

import email.utils
import json as jsonlib
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from vaultplugin.framework.runtime import run_blocking

from .base import SecretStr
from .body import ERROR_BODY_BYTES, MAX_BODY_BYTES, BadEncoding, BodyTooLarge, describe_size, read_body
from .budget import CallBudget, CancelSignal
from .bulkhead import MAX_WAIT, Bulkhead, Slot
from .errors import (
    CreateOutcomeUnknown,
    ProviderAuthError,
    ProviderBadResponse,
    ProviderCallCancelled,
    ProviderError,
    ProviderNotFound,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
    scrub,
)
from .retry import MIN_ATTEMPT_SECONDS, RetryPolicy
from .transport import GuardedTransport, environment_proxy, runs_here

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 15.0
VERIFY_SECONDS = 30.0
USER_AGENT = "vault-plugin-secrets-llm/0.1"

# Reads the provider's error message from an error body; None if the body is not its error shape.
ErrorParser = Callable[[bytes], str | None]

JSONObject = dict[str, Any]


def _no_signal() -> CancelSignal | None:
    return None


# Told of every logical call once it ends: (provider, op, seconds, the error or None). The mount's metrics.
CallObserver = Callable[[str, str, float, BaseException | None], None]


class InFlight:
    """How many calls of one client are in progress (a context manager around each call): an old admin key
    is deleted only once the calls made with it have ended (`clients.ClientCache.retire`)."""

    __slots__ = ("_count", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0

    def __enter__(self) -> None:
        with self._lock:
            self._count += 1

    def __exit__(self, *_: object) -> None:
        with self._lock:
            self._count -= 1

    @property
    def count(self) -> int:
        return self._count


@dataclass(frozen=True)
class CallGuards:
    """What bounds each call of a client besides its deadline.

    - `bulkhead`: the connection's share of the plugin's threads (None: no limit);
    - `cancel_signal`: the running request's cancellation (None outside a request);
    - `max_body_bytes`: the largest answer the client reads;
    - `default_seconds`: the budget of a call made without a deadline (the admin-key check);
    - `in_flight`: counts the client's calls in progress.
    """

    bulkhead: Bulkhead | None = None
    cancel_signal: Callable[[], CancelSignal | None] = _no_signal
    max_body_bytes: int = MAX_BODY_BYTES
    default_seconds: float = VERIFY_SECONDS
    observe: CallObserver | None = None  # see CallObserver
    in_flight: InFlight = field(default_factory=InFlight)


def standard_error_message(body: bytes) -> str | None:
    """The provider's message from `{"error": {"message": ...}}` (OpenAI, OpenRouter, LiteLLM);
    None when the body is not that shape (an HTML page from a proxy, a framework's own 404...)."""
    try:
        parsed = jsonlib.loads(body)
    except ValueError:
        return None
    if not isinstance(parsed, dict):
        return None
    error = parsed.get("error")
    if isinstance(error, dict):
        message = error.get("message")
        if isinstance(message, str):
            return message
        return "" if message is None else str(message)
    if isinstance(error, str):
        return error
    return None


def parse_retry_after(value: str | None, *, now: Callable[[], float] = time.time) -> float | None:
    """Retry-After as seconds: delta-seconds (integer or decimal) or an HTTP-date; None if absent/bad."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - now()
    if math.isnan(seconds):
        return None
    return max(0.0, seconds)


def seconds_text(seconds: float) -> str:
    """30 -> "30 s", 29.9996 -> "30 s", 2.5 -> "2.5 s"."""
    text = f"{seconds:.0f}" if seconds >= 9.95 else f"{seconds:.1f}".removesuffix(".0")
    return text + " s"


class ProviderHTTP:
    """One provider's HTTP connection: base URL, admin key, error parser, retry policy, guards."""

    def __init__(
        self,
        *,
        provider: str,
        base_url: str,
        admin_key: SecretStr | str,
        error_parser: ErrorParser = standard_error_message,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
        guards: CallGuards | None = None,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
        auth_header: str = "Authorization",
        auth_scheme: str = "Bearer ",
    ) -> None:
        secret = admin_key if isinstance(admin_key, SecretStr) else SecretStr(admin_key)
        if not secret.reveal().strip():
            raise ValueError(provider + ": admin key is empty")
        if not base_url:
            raise ValueError(provider + ": base URL is empty")
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.retry = retry if retry is not None else RetryPolicy()
        self.guards = guards if guards is not None else CallGuards()
        self._admin_key = secret
        # Where the admin key goes: `Authorization: Bearer <key>`, or Anthropic's `x-api-key: <key>`.
        self._auth_header = auth_header
        self._auth_scheme = auth_scheme
        self._error_parser = error_parser
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        # Identity: a compressed answer could not be capped before it is inflated (body.py inflates
        # in bounded steps anyway, should a server compress regardless).
        all_headers = {"User-Agent": USER_AGENT, "Accept": "application/json", "Accept-Encoding": "identity"}
        all_headers.update(headers or {})
        self._headers = all_headers  # the admin key is added per request, never kept with these
        # Requests go to the transport directly: httpx.Client's layers (auth flow, cookies, redirects, event
        # hooks) cost more CPU than the call itself and do nothing here (no redirects are followed). The
        # guarded transport applies the environment's proxy itself.
        self._transport = (
            transport if transport is not None else GuardedTransport(proxy=environment_proxy(self.base_url))
        )
        # Straight to the provider, requests are built as bytes (transport.DirectRequests: less CPU).
        self._direct = (
            self._transport.direct_requests(self.base_url)
            if isinstance(self._transport, GuardedTransport)
            else None
        )

    def __repr__(self) -> str:
        return f"ProviderHTTP(provider={self.provider!r}, base_url={self.base_url!r})"

    def close(self) -> None:
        self._transport.close()

    def default_deadline(self, seconds: float | None = None) -> float:
        """A deadline `seconds` (default: the guards' `default_seconds`) from now on the policy's clock."""
        return self.retry.clock() + (self.guards.default_seconds if seconds is None else seconds)

    def scrub(self, text: str) -> str:
        """`errors.scrub` that also masks this connection's admin key, whatever its shape."""
        return scrub(text, secrets=(self._admin_key.reveal(),))

    def call(
        self,
        method: str,
        path: str,
        *,
        op: str,
        deadline: float,
        params: Mapping[str, str | int] | None = None,
        json: Any = None,
        create: bool = False,
    ) -> Any:
        """Send one logical request under the retry policy; return the parsed JSON body (None if empty).

        `op` names the operation in messages ("create key", "delete key"...). `create=True` marks a
        non-idempotent create: it is retried only when the failure proves it was not processed.
        """
        if not runs_here(self._transport, self.guards.bulkhead):  # on the plugin's hub, where it may not wait
            return run_blocking(
                lambda: self.call(
                    method, path, op=op, deadline=deadline, params=params, json=json, create=create
                )
            )
        observe = self.guards.observe
        if observe is None:
            return self._admitted(
                method, path, op=op, deadline=deadline, params=params, json=json, create=create
            )
        started = time.perf_counter()
        try:
            result = self._admitted(
                method, path, op=op, deadline=deadline, params=params, json=json, create=create
            )
        except BaseException as exc:
            observe(self.provider, op, time.perf_counter() - started, exc)
            raise
        observe(self.provider, op, time.perf_counter() - started, None)
        return result

    def _admitted(
        self,
        method: str,
        path: str,
        *,
        op: str,
        deadline: float,
        params: Mapping[str, str | int] | None,
        json: Any,
        create: bool,
    ) -> Any:
        what = f"{self.provider}: {op}"
        with self.guards.in_flight, self._admission(what, deadline) as slot:
            seconds = deadline - self.retry.clock()
            with CallBudget(seconds, self.guards.cancel_signal()) as budget:
                # A wait between attempts keeps the slot but is not time at the provider (bulkhead.py).
                pause = budget.pause if slot is None else slot.resting(budget.pause)
                return self.retry.call(
                    lambda: self._attempt(
                        method,
                        path,
                        op=op,
                        deadline=deadline,
                        budget=budget,
                        params=params,
                        json=json,
                        create=create,
                    ),
                    deadline=deadline,
                    create=create,
                    what=self.provider + " " + op,
                    pause=pause,
                )

    def _admission(self, what: str, deadline: float) -> AbstractContextManager[Slot | None]:
        bulkhead = self.guards.bulkhead
        if bulkhead is None:
            return nullcontext()
        wait = min(MAX_WAIT, max(0.0, deadline - self.retry.clock() - MIN_ATTEMPT_SECONDS))
        return bulkhead.slot(self.provider, what, max_wait=wait)

    # -- one attempt ---------------------------------------------------------------------------------

    def _timeout(self, op: str, deadline: float, budget: CallBudget) -> httpx.Timeout:
        remaining = deadline - self.retry.clock()
        if remaining < MIN_ATTEMPT_SECONDS or budget.remaining() < MIN_ATTEMPT_SECONDS:
            raise ProviderUnavailable(
                self.provider, f"{self.provider}: {op} not attempted: deadline reached", sent=False
            )
        connect = min(self._connect_timeout, remaining)
        read = min(self._read_timeout, remaining)
        return httpx.Timeout(connect=connect, read=read, write=read, pool=connect)

    def _attempt(
        self,
        method: str,
        path: str,
        *,
        op: str,
        deadline: float,
        budget: CallBudget,
        params: Mapping[str, str | int] | None,
        json: Any,
        create: bool,
    ) -> Any:
        if budget.cancelled():
            raise self._cancelled(op, sent=False)
        timeout = self._timeout(op, deadline, budget)
        budget.received = 0
        started = time.monotonic()
        try:
            headers = {**self._headers, self._auth_header: self._auth_scheme + self._admin_key.reveal()}
            response = None
            if self._direct is not None and not params:
                response = self._direct.send(method, path, headers, json, timeout.as_dict())
            if response is None:
                request = httpx.Request(
                    method,
                    self.base_url + "/" + path.lstrip("/"),
                    params=params,
                    json=json,
                    headers=headers,
                    extensions={"timeout": timeout.as_dict()},
                )
                response = self._transport.handle_request(request)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            if budget.cancelled():
                raise self._cancelled(op, sent=False) from None
            if budget.out_of_time() or isinstance(exc, httpx.ConnectTimeout):
                detail = f"cannot connect within {seconds_text(timeout.connect or 0.0)}"
            else:
                detail = f"cannot connect ({type(exc).__name__}: {self.scrub(str(exc))})"
            raise ProviderUnavailable(
                self.provider, f"{self.provider}: {op} failed: {detail}", sent=False
            ) from None
        except (httpx.UnsupportedProtocol, httpx.InvalidURL, httpx.LocalProtocolError) as exc:
            raise ProviderError(
                self.provider,
                f"{self.provider}: {op} failed: bad request or base URL ({type(exc).__name__}: "
                f"{self.scrub(str(exc))})",
            ) from None
        except (httpx.TransportError, OSError) as exc:
            # The request may have reached the provider: a timeout, a dropped connection...
            raise self._no_answer(op, exc, budget, timeout, create=create) from None
        try:
            body = self._read_body(response, op, budget, timeout, create=create)
        finally:
            response.close()
        log.debug(
            "provider response: provider=%s op=%s status=%d bytes=%d elapsed=%.3fs",
            self.provider,
            op,
            response.status_code,
            len(body),
            time.monotonic() - started,
        )
        if response.is_success:
            return self._decode(body, response.status_code, op=op, create=create)
        raise self._error(response, body, op=op, create=create)

    def _read_body(
        self, response: httpx.Response, op: str, budget: CallBudget, timeout: httpx.Timeout, *, create: bool
    ) -> bytes:
        status = response.status_code
        success = response.is_success
        limit = self.guards.max_body_bytes if success else ERROR_BODY_BYTES
        try:
            return read_body(response, limit, truncate=not success)
        except (BodyTooLarge, BadEncoding) as exc:
            if isinstance(exc, BodyTooLarge):
                detail = f"answer larger than {describe_size(limit)}; stopped reading it"
            else:
                detail = f"unreadable answer: {exc}"
            message = f"{self.provider}: {op}: HTTP {status}: {detail}"
            if create and success:
                raise CreateOutcomeUnknown(self.provider, message + "; the key may exist", status) from None
            raise ProviderBadResponse(self.provider, message, status) from None
        except (httpx.TransportError, OSError) as exc:
            raise self._no_answer(op, exc, budget, timeout, create=create, status=status) from None

    def _cancelled(self, op: str, *, sent: bool, create: bool = False) -> ProviderError:
        detail = "stopped: Vault cancelled the request (its client went away or its time limit passed)"
        if create and sent:
            return CreateOutcomeUnknown(self.provider, f"{self.provider}: {op}: {detail}; the key may exist")
        return ProviderCallCancelled(self.provider, f"{self.provider}: {op}: {detail}", sent=sent)

    def _no_answer(
        self,
        op: str,
        exc: BaseException,
        budget: CallBudget,
        timeout: httpx.Timeout,
        *,
        create: bool,
        status: int | None = None,
    ) -> ProviderError:
        """The error for a call that got no complete answer after its request may have been sent."""
        if budget.cancelled():
            return self._cancelled(op, sent=True, create=create)
        within = seconds_text(budget.seconds)
        if budget.out_of_time():
            if budget.received == 0:
                detail = f"the provider did not answer within {within}"
            else:
                detail = (
                    f"the provider sent its answer too slowly: no complete answer within {within} "
                    f"({budget.received} bytes received)"
                )
        elif isinstance(exc, httpx.TimeoutException):
            detail = f"the provider sent nothing for {seconds_text(timeout.read or 0.0)}"
        else:
            detail = f"no response ({type(exc).__name__}: {self.scrub(str(exc))})"
        if status is not None:
            detail = f"HTTP {status}, then {detail}"
        if create:
            return CreateOutcomeUnknown(
                self.provider, f"{self.provider}: {op}: {detail}; the key may exist", status
            )
        return ProviderUnavailable(
            self.provider, f"{self.provider}: {op} failed: {detail}", status, sent=True
        )

    def _decode(self, body: bytes, status: int, *, op: str, create: bool) -> Any:
        if not body.strip():
            return None
        try:
            return jsonlib.loads(body)
        except ValueError:
            message = f"{self.provider}: {op}: HTTP {status} with a body that is not JSON"
            if create:
                raise CreateOutcomeUnknown(self.provider, message + "; the key may exist", status) from None
            raise ProviderBadResponse(self.provider, message, status) from None

    def _error(self, response: httpx.Response, body: bytes, *, op: str, create: bool) -> ProviderError:
        status = response.status_code
        parsed = self._error_parser(body)
        api_error = parsed is not None
        if parsed is not None:
            detail = self.scrub(parsed) or "(no message)"
        else:
            text = body.decode("utf-8", "replace")
            detail = ("non-API body: " + self.scrub(text)) if text.strip() else "(empty body)"
        message = f"{self.provider}: {op} failed: HTTP {status}: {detail}"
        if status in (401, 403):
            return ProviderAuthError(self.provider, message, status, api_error=api_error)
        if status == 404:
            return ProviderNotFound(self.provider, message, status, api_error=api_error)
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            return ProviderRateLimited(
                self.provider, message, status, retry_after=retry_after, api_error=api_error
            )
        if create and status == 504:
            return CreateOutcomeUnknown(
                self.provider, message + " (gateway timeout: the key may exist)", status, api_error=api_error
            )
        if status == 408 or status >= 500:
            return ProviderUnavailable(self.provider, message, status, sent=True, api_error=api_error)
        if 400 <= status < 500:
            return ProviderRejected(self.provider, message, status, api_error=api_error)
        return ProviderError(self.provider, message, status, api_error=api_error)


# -- response parsing helpers shared by the clients ----------------------------------------------------


def bad_response(provider: str, op: str, what: str) -> ProviderBadResponse:
    return ProviderBadResponse(provider, f"{provider}: {op}: unexpected response: {what}")


def as_object(body: Any, provider: str, op: str) -> JSONObject:
    if not isinstance(body, dict):
        raise bad_response(provider, op, "expected a JSON object, got " + type(body).__name__)
    return body


def as_list(value: Any, provider: str, op: str, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise bad_response(provider, op, f"{what} is not a list")
    return value


def req_str(obj: Mapping[str, Any], field: str, provider: str, op: str) -> str:
    value = obj.get(field)
    if not isinstance(value, str) or not value:
        raise bad_response(provider, op, f"field {field!r} missing or not a string")
    return value


def opt_str(obj: Mapping[str, Any], field: str) -> str | None:
    value = obj.get(field)
    return value if isinstance(value, str) else None


def parse_time(value: Any) -> datetime | None:
    """A provider timestamp as an aware UTC datetime: unix seconds or ISO-8601 ('Z' or offset;
    naive is taken as UTC). None if absent or unreadable."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(float(value), tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    return None


def iso_utc(value: datetime) -> str:
    """ISO-8601 UTC with a 'Z' suffix and whole seconds, e.g. 2026-08-01T12:00:00Z."""
    if value.tzinfo is None:
        raise ValueError("datetime must be timezone-aware")
    return value.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
