"""What the xAI and Fireworks clients share: both management APIs are gRPC gateways, with the same error
body and page-token lists, and neither says plainly whether a key it refuses to delete is already gone."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .base import ProviderKey
from .errors import CreateOutcomeUnknown, ProviderBadResponse, ProviderError, ProviderNotFound
from .http import as_object, req_str

# The most pages a list may take: past it, the answer is taken for a loop.
MAX_PAGES = 10_000

# What a client reads from one page of a list: the page's keys, and the next page's token with the query
# that asks for it (None when the list is complete).
Page = tuple[list[ProviderKey], str | None, dict[str, str | int]]


def error_message(body: bytes) -> str | None:
    """The message of a gRPC status `{"code", "message"}` or of `{"error": str | {"message"}}`; None when the
    body is neither (a proxy's page)."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    if not isinstance(parsed, dict):
        return None
    error = parsed.get("error")
    if isinstance(error, str):
        return error
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    message = parsed.get("message")
    if isinstance(message, str) and "code" in parsed:
        return message
    return None


def with_hint(exc: ProviderNotFound, provider: str, hint: str) -> ProviderNotFound:
    """A create's 404, saying which connection field names the missing team or user."""
    return ProviderNotFound(provider, f"{exc.message} ({hint})", exc.status, api_error=exc.api_error)


def created(
    body: Any, provider: str, op: str, *, id_field: str, value_field: str
) -> tuple[dict[str, Any], str, str]:
    """(the answer, the key's id, its secret) of a create; an answer without them means the key may exist
    with its secret lost, so the create's outcome is unknown (the WAL rollback settles it by name)."""
    try:
        data = as_object(body, provider, op)
        return data, req_str(data, id_field, provider, op), req_str(data, value_field, provider, op)
    except ProviderBadResponse as exc:
        raise CreateOutcomeUnknown(
            provider, exc.message + "; the key may exist without its secret in hand"
        ) from None


def confirmed_gone(list_keys: Callable[[], list[ProviderKey]], key_id: str, cause: ProviderError) -> bool:
    """Whether a fresh list shows the key absent, after a delete was refused with a 400 or 404 (which alone
    does not prove the key is gone); a list that fails raises the delete's own error instead."""
    try:
        keys = list_keys()
    except ProviderError:
        raise cause from None
    return all(key.key_id != key_id for key in keys)


def token_paged_keys(
    provider: str,
    op: str,
    fetch: Callable[[dict[str, str | int]], Any],
    read_page: Callable[[Any, int, dict[str, str | int]], Page],
    first_query: dict[str, str | int],
) -> list[ProviderKey]:
    """Every key of a page-token list, each once: `fetch(query)` answers one page, `read_page(answer, keys
    found so far, query)` reads it. A page token seen before, or more than MAX_PAGES pages, is a bad
    response rather than an endless walk."""
    found: dict[str, ProviderKey] = {}
    query = first_query
    seen_tokens: set[str] = set()
    for _ in range(MAX_PAGES):
        keys, token, next_query = read_page(fetch(query), len(found), query)
        for key in keys:
            found.setdefault(key.key_id, key)
        if not keys or token is None:
            return list(found.values())
        if token in seen_tokens:
            raise ProviderBadResponse(provider, f"{provider}: {op}: the same page token came back")
        seen_tokens.add(token)
        query = next_query
    raise ProviderBadResponse(provider, f"{provider}: {op}: more than {MAX_PAGES} pages")
