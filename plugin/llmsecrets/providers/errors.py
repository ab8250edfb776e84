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

import html
import json
import re
from collections.abc import Callable, Iterable
from urllib.parse import quote, quote_plus

MAX_DETAIL_CHARS = 200
# Text past this is never shown, so it is dropped before scrubbing (bounds the work on a huge message).
_SCRUB_INPUT_CHARS = 4096
# A run of at least this many characters of a known secret is masked (a key echoed in part, or cut).
MIN_SECRET_FRAGMENT = 12

_REDACTED = "[redacted]"
# What a message becomes if a known secret would still be in it after masking (an adversarial echo).
_WITHHELD = "[message withheld: it held a secret]"

# A word of prose: letters, perhaps joined by an apostrophe or ending in a few digits (v1, sha256), with at
# most two changes from lower to upper case ("ProviderAuthError"; random letters have many more).
_WORD = re.compile(r"[A-Za-z]+(?:['\u2019][A-Za-z]+)*\d{0,3}")
_LONGEST_WORD = 30
_CASE_CHANGE = re.compile(r"[a-z][A-Z]")
# A number, perhaps with a short unit: 404, 30s, 10%, 5xx, 1,000.
_NUMBER = re.compile(r"\d+(?:,\d+)*(?:[A-Za-z]{1,3}|%)?")
# Prose joins words and numbers with these: not_sent, gpt-4o-mini, 1.5s, api.openai.com, and/or, key:value.
_JOINERS = re.compile(r"[-_./+=:]")
# Punctuation around a word in prose: "(none).", "'missing',".
_SURROUNDING = ".,:;!?()[]{}<>\"'`*"


def _ordinary(value: str) -> bool:
    """True for what prose is made of (words and numbers, perhaps joined by - _ . / + = :); False for a mix
    of letters, digits and symbols no word or number has, which is what keys and tokens look like."""
    for part in _JOINERS.split(value.strip(_SURROUNDING)):
        if part == "" or _NUMBER.fullmatch(part):
            continue
        if len(part) > _LONGEST_WORD or not _WORD.fullmatch(part) or len(_CASE_CHANGE.findall(part)) > 2:
            return False
    return True


def _mask_value(match: re.Match[str]) -> str:
    """Group 1 is the name ("Bearer ", "api_key="), kept; group 2 its value, masked unless prose."""
    return match.group(0) if _ordinary(match.group(2)) else match.group(1) + _REDACTED


def _mask_run(match: re.Match[str]) -> str:
    return match.group(0) if _ordinary(match.group(0)) else _REDACTED


# Applied in order. The rules that key on a name mask what follows it only when that is not prose:
# "Bearer token expired" and "create key: not sent" stay as they are, "Bearer x9Fq..." and "token=a1b2..."
# do not. The generic rules cannot know every secret: the connection's own admin key is masked by value.
_SCRUB_RULES: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    # "Bearer <token>" / "Basic <credentials>" anywhere.
    (re.compile(r"(?i)(\b(?:bearer|basic)\s+)([^\s\"',;]+)"), _mask_value),
    # API keys: sk-…, sk-or-v1-…, sk-admin-…, sk-proj-…, sk-ant-…, rk-…, pk-…
    (re.compile(r"\b(?:sk|rk|pk)[-_][A-Za-z0-9_\-\.]{4,}"), _REDACTED),
    # Long hex (hashes, token ids), and long base64 / url-safe / JWT runs that are not a path of words.
    (re.compile(r"\b[0-9a-fA-F]{32,}\b"), _REDACTED),
    (re.compile(r"[A-Za-z0-9+/_.\-]{40,}={0,2}"), _mask_run),
    # key=value / "key": "value" pairs whose name says secret.
    (
        re.compile(
            r"(?i)([\"']?\b(?:[a-z0-9]+[_-])*(?:api[_-]?key|key|token|secret|password|passwd|authorization"
            r"|credentials?)[\"']?\s*[:=]\s*[\"']?)([^\s\"',;}]+)"
        ),
        _mask_value,
    ),
)


def scrub(text: str, limit: int = MAX_DETAIL_CHARS, *, secrets: Iterable[str] = ()) -> str:
    """Mask `secrets` (known values: the connection's admin key...) and key-shaped strings in `text`,
    flatten whitespace and truncate to `limit` characters. Ordinary prose passes unchanged.

    A secret is masked whole and wherever `MIN_SECRET_FRAGMENT` or more of its characters appear in a row,
    whatever its shape, also as it reads JSON-, HTML- or URL-escaped. Masking runs before truncation, so a
    key cut in half by the limit is never half-shown; should a secret still be in the result (a key that
    overlaps the mask text itself), the whole message is withheld.
    """
    out = text[:_SCRUB_INPUT_CHARS]
    known = [secret for secret in secrets if secret.strip()]
    shapes = [shape for secret in known for shape in _shapes(secret)]
    for shape in shapes:  # whole echoes first, so no shape's fragment pass cuts another's echo short
        out = out.replace(shape, _REDACTED)
    for shape in shapes:
        out = _mask_secret(out, shape)
    for pattern, replacement in _SCRUB_RULES:
        out = pattern.sub(replacement, out)
    out = " ".join(out.split())
    if len(out) > limit:
        out = out[: max(limit - 1, 0)].rstrip() + "…"
    if any(_holds(out, shape) for shape in shapes):
        return "" if any(_holds(_WITHHELD, shape) for shape in shapes) else _WITHHELD
    return out


def _shapes(secret: str) -> list[str]:
    """The secret as it may be echoed: itself, and JSON-, HTML- and URL-escaped; longest first."""
    as_json = json.dumps(secret)[1:-1]
    shapes = {
        secret,
        as_json,
        as_json.replace("/", "\\/"),
        html.escape(secret),
        html.escape(secret, quote=False),
        quote(secret, safe=""),
        quote_plus(secret, safe=""),
    }
    return sorted(shapes, key=len, reverse=True)


def _holds(text: str, secret: str) -> bool:
    return _mask_secret(text, secret) != text


def _mask_secret(text: str, secret: str) -> str:
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
