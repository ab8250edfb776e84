"""One exception hierarchy for every provider, so callers can tell the cases apart.

    ProviderError                 anything a provider call raised (status: HTTP status or None)
    ├── ProviderAuthError         401/403: the admin key is wrong, revoked or not an admin key — fix config
    ├── ProviderRateLimited       429: `retry_after` seconds when the provider said so
    ├── ProviderUnavailable       5xx, 408, timeouts, connection errors, deadline passed
    │   └── ProviderBusy          not sent: the connection's calls already fill its share of threads
    ├── ProviderNotFound          404 that does not mean "already gone" (unknown project, wrong base URL)
    ├── ProviderRejected          400/422 and other 4xx: the request was refused; provider's message included
    ├── ProviderBadResponse       a 2xx whose body is not the documented shape, or too large
    ├── ProviderCallCancelled     the caller (Vault) gave up on the request, so the call was stopped
    └── CreateOutcomeUnknown      a create may have reached the provider but no usable answer came back:
                                  the key may exist and its secret is not in hand. Settle it by name
                                  (`find_keys`), never by repeating the create.

Messages name the provider and the operation and carry the provider's own message, truncated and
scrubbed by `scrub()` of the connection's own secrets (whatever their shape) and of key-shaped strings:
`str()` of these exceptions never holds a secret.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MAX_DETAIL_CHARS = 200
# Text past this is never shown, so it is dropped before scrubbing (bounds the work on a huge message).
_SCRUB_INPUT_CHARS = 4096
# A run of at least this many characters of a known secret is masked (a key echoed in part, or cut).
MIN_SECRET_FRAGMENT = 12

_REDACTED = "[redacted]"

# (pattern, replacement) pairs applied in order.
_SCRUB_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    # "Bearer <token>" / "Basic <credentials>" anywhere.
    (re.compile(r"(?i)\b(bearer|basic)\s+[^\s\"',;]+"), r"\1 " + _REDACTED),
    # API keys: sk-…, sk-or-v1-…, sk-admin-…, sk-proj-…, sk-ant-…, rk-…, pk-…
    (re.compile(r"\b(?:sk|rk|pk)[-_][A-Za-z0-9_\-\.]{4,}"), _REDACTED),
    # Long hex (hashes, token ids) and long base64 / url-safe runs.
    (re.compile(r"\b[0-9a-fA-F]{32,}\b"), _REDACTED),
    (re.compile(r"[A-Za-z0-9+/_\-]{40,}={0,2}"), _REDACTED),
    # key=value / "key": "value" pairs whose name says secret.
    (
        re.compile(
            r"(?i)([\"']?\b(?:api[_-]?key|key|token|secret|password|authorization)[\"']?\s*[:=]\s*[\"']?)"
            r"[^\s\"',;}]+"
        ),
        r"\1" + _REDACTED,
    ),
)


def scrub(text: str, limit: int = MAX_DETAIL_CHARS, *, secrets: Iterable[str] = ()) -> str:
    """Mask `secrets` (known values: the connection's admin key...) and key-shaped strings in `text`,
    flatten whitespace and truncate to `limit` characters.

    A secret is masked whole and wherever `MIN_SECRET_FRAGMENT` or more of its characters appear in a row,
    whatever its shape. Masking runs before truncation, so a key cut in half by the limit is never
    half-shown.
    """
    out = text[:_SCRUB_INPUT_CHARS]
    for secret in secrets:
        out = _mask_secret(out, secret)
    for pattern, replacement in _SCRUB_RULES:
        out = pattern.sub(replacement, out)
    out = " ".join(out.split())
    if len(out) > limit:
        out = out[: max(limit - 1, 0)].rstrip() + "…"
    return out


def _mask_secret(text: str, secret: str) -> str:
    if not secret.strip():
        return text
    if len(secret) <= MIN_SECRET_FRAGMENT:
        return text.replace(secret, _REDACTED)
    size = MIN_SECRET_FRAGMENT
    grams = {secret[i : i + size] for i in range(len(secret) - size + 1)}
    pieces: list[str] = []
    start = i = 0
    while i <= len(text) - size:
        if text[i : i + size] not in grams:
            i += 1
            continue
        end = i + size
        while end < len(text) and text[i : end + 1] in secret:
            end += 1
        pieces += [text[start:i], _REDACTED]
        start = i = end
    pieces.append(text[start:])
    return "".join(pieces)


class ProviderError(Exception):
    """Base of every provider failure. `provider` names the provider; `status` is the HTTP status or None.

    `api_error` is True when the body was the provider's own JSON error shape (so a 404 is the
    provider saying "no such thing", not a proxy or a wrong base URL).
    """

    def __init__(
        self,
        provider: str,
        message: str,
        status: int | None = None,
        *,
        api_error: bool = False,
    ) -> None:
        super().__init__(message)
        self.provider = provider
        self.message = message
        self.status = status
        self.api_error = api_error

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(provider={self.provider!r}, status={self.status!r}, "
            f"message={self.message!r})"
        )


class ProviderAuthError(ProviderError):
    """401/403: the admin key is wrong, revoked or lacks the right (e.g. not a management key)."""


class ProviderRateLimited(ProviderError):
    """429. `retry_after` is the provider's Retry-After in seconds, or None."""

    def __init__(
        self,
        provider: str,
        message: str,
        status: int | None = 429,
        *,
        retry_after: float | None = None,
        api_error: bool = False,
    ) -> None:
        super().__init__(provider, message, status, api_error=api_error)
        self.retry_after = retry_after


class ProviderUnavailable(ProviderError):
    """5xx, 408, timeouts, connection errors, or the deadline passed.

    `sent` is False when the request provably never reached the provider (connect error,
    deadline passed before sending), True when it may have.
    """

    def __init__(
        self,
        provider: str,
        message: str,
        status: int | None = None,
        *,
        sent: bool = True,
        api_error: bool = False,
    ) -> None:
        super().__init__(provider, message, status, api_error=api_error)
        self.sent = sent


class ProviderBusy(ProviderUnavailable):
    """Not sent: the connection already has as many calls in flight as its bulkhead admits."""

    def __init__(self, provider: str, message: str) -> None:
        super().__init__(provider, message, sent=False)


class ProviderCallCancelled(ProviderError):
    """The caller gave up on the request (Vault cancelled the plugin call), so the call was stopped.

    `sent` as for `ProviderUnavailable`. Never retried: nobody is waiting for the answer.
    """

    def __init__(self, provider: str, message: str, *, sent: bool) -> None:
        super().__init__(provider, message)
        self.sent = sent


class ProviderNotFound(ProviderError):
    """404 where it does not mean "already gone" (unknown project, wrong base URL)."""


class ProviderRejected(ProviderError):
    """400/422 and other 4xx: the provider refused the request; its (scrubbed) message is included."""


class ProviderBadResponse(ProviderError):
    """A success status whose body is not the documented shape."""


class CreateOutcomeUnknown(ProviderError):
    """A create may have reached the provider but no usable answer came back.

    The key may exist and its secret is not in hand: settle it with `find_keys(name)` and the WAL.
    Never retried.
    """
