"""The transport shared by every provider client: one `httpx.Client`, bearer auth, deadlines,
status-code mapping to the `errors` hierarchy, and retries through `retry.RetryPolicy`.

Wire contract of `ProviderHTTP.call`:
- every attempt's timeouts are connect 5 s, read/write 15 s, pool 5 s, each cut to the time left
  before the deadline; no attempt starts once the deadline is (nearly) reached;
- 2xx -> the parsed JSON body (None when empty);
- 401/403 -> ProviderAuthError; 404 -> ProviderNotFound; 429 -> ProviderRateLimited (Retry-After);
  408/5xx -> ProviderUnavailable; other 4xx -> ProviderRejected; anything else -> ProviderError;
- connection refused / connect timeout -> ProviderUnavailable(sent=False);
- a read timeout, a dropped connection or any failure after the request may have been sent ->
  ProviderUnavailable, or for a create `CreateOutcomeUnknown`; so is a create's 504 (a gateway gave
  up waiting; the provider may have done the work) and a create's unreadable 2xx body.

The admin key is added per request by `_BearerAuth`, so it is in no client-level header, repr or log.
Headers and bodies are never logged.
"""

from __future__ import annotations

import email.utils
import logging
import math
import time
from collections.abc import Callable, Generator, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from .base import SecretStr
from .errors import (
    CreateOutcomeUnknown,
    ProviderAuthError,
    ProviderBadResponse,
    ProviderError,
    ProviderNotFound,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
    scrub,
)
from .retry import MIN_ATTEMPT_SECONDS, RetryPolicy

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 15.0
VERIFY_SECONDS = 30.0
USER_AGENT = "vault-plugin-secrets-llm/0.1"

# Reads the provider's error message from an error response; None if the body is not its error shape.
ErrorParser = Callable[[httpx.Response], str | None]

JSONObject = dict[str, Any]


def standard_error_message(response: httpx.Response) -> str | None:
    """The provider's message from `{"error": {"message": ...}}` (OpenAI, OpenRouter, LiteLLM);
    None when the body is not that shape (an HTML page from a proxy, a framework's own 404...)."""
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    error = body.get("error")
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


class _BearerAuth(httpx.Auth):
    """Adds `Authorization: Bearer <admin key>` to each request; holds the key as a SecretStr."""

    def __init__(self, admin_key: SecretStr) -> None:
        self._admin_key = admin_key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = "Bearer " + self._admin_key.reveal()
        yield request

    def __repr__(self) -> str:
        return "_BearerAuth(admin_key=SecretStr('**********'))"


class ProviderHTTP:
    """One provider's HTTP connection: base URL, admin key, error parser, retry policy."""

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
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
    ) -> None:
        secret = admin_key if isinstance(admin_key, SecretStr) else SecretStr(admin_key)
        if not secret.reveal().strip():
            raise ValueError(provider + ": admin key is empty")
        if not base_url:
            raise ValueError(provider + ": base URL is empty")
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.retry = retry if retry is not None else RetryPolicy()
        self._error_parser = error_parser
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        all_headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        all_headers.update(headers or {})
        self._client = httpx.Client(
            base_url=self.base_url + "/",
            auth=_BearerAuth(secret),
            headers=all_headers,
            transport=transport,
            follow_redirects=False,
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout, pool=connect_timeout),
        )

    def __repr__(self) -> str:
        return f"ProviderHTTP(provider={self.provider!r}, base_url={self.base_url!r})"

    def close(self) -> None:
        self._client.close()

    def default_deadline(self, seconds: float = VERIFY_SECONDS) -> float:
        """A deadline `seconds` from now on the policy's clock (for calls made without one)."""
        return self.retry.clock() + seconds

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
        return self.retry.call(
            lambda: self._attempt(
                method, path, op=op, deadline=deadline, params=params, json=json, create=create
            ),
            deadline=deadline,
            create=create,
            what=self.provider + " " + op,
        )

    # -- one attempt ---------------------------------------------------------------------------------

    def _timeout(self, op: str, deadline: float) -> httpx.Timeout:
        remaining = deadline - self.retry.clock()
        if remaining < MIN_ATTEMPT_SECONDS:
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
        params: Mapping[str, str | int] | None,
        json: Any,
        create: bool,
    ) -> Any:
        timeout = self._timeout(op, deadline)
        started = time.monotonic()
        try:
            response = self._client.request(
                method, path.lstrip("/"), params=params, json=json, timeout=timeout
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise ProviderUnavailable(
                self.provider,
                f"{self.provider}: {op} failed: cannot connect ({type(exc).__name__}: {scrub(str(exc))})",
                sent=False,
            ) from None
        except (httpx.UnsupportedProtocol, httpx.InvalidURL, httpx.LocalProtocolError) as exc:
            raise ProviderError(
                self.provider,
                f"{self.provider}: {op} failed: bad request or base URL ({type(exc).__name__}: "
                f"{scrub(str(exc))})",
            ) from None
        except (httpx.TransportError, OSError) as exc:
            # The request may have reached the provider: a read timeout, a dropped connection...
            detail = f"{type(exc).__name__}: {scrub(str(exc))}"
            if create:
                raise CreateOutcomeUnknown(
                    self.provider,
                    f"{self.provider}: {op}: no response after the request was sent ({detail}); "
                    "the key may exist",
                ) from None
            raise ProviderUnavailable(
                self.provider, f"{self.provider}: {op} failed: no response ({detail})", sent=True
            ) from None
        log.debug(
            "provider response: provider=%s op=%s status=%d elapsed=%.3fs",
            self.provider,
            op,
            response.status_code,
            time.monotonic() - started,
        )
        if response.is_success:
            return self._decode(response, op=op, create=create)
        raise self._error(response, op=op, create=create)

    def _decode(self, response: httpx.Response, *, op: str, create: bool) -> Any:
        if not response.content.strip():
            return None
        try:
            return response.json()
        except ValueError:
            message = f"{self.provider}: {op}: HTTP {response.status_code} with a body that is not JSON"
            if create:
                raise CreateOutcomeUnknown(
                    self.provider, message + "; the key may exist", response.status_code
                ) from None
            raise ProviderBadResponse(self.provider, message, response.status_code) from None

    def _error(self, response: httpx.Response, *, op: str, create: bool) -> ProviderError:
        status = response.status_code
        parsed = self._error_parser(response)
        api_error = parsed is not None
        if parsed is not None:
            detail = scrub(parsed) or "(no message)"
        else:
            text = response.text if response.content else ""
            detail = ("non-API body: " + scrub(text)) if text.strip() else "(empty body)"
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
