"""Anthropic: the Admin API switches pre-made API keys between `active` and `inactive`; it cannot create or
delete a key. So this client serves check-out sets (`checkout_sets.py`), never roles: its capabilities say
`checkout_only=True`, and `create_key` / `delete_key` refuse.

Wire contract (base `https://api.anthropic.com`, headers `x-api-key: <admin key>` and
`anthropic-version: 2023-06-01`):
- list: `GET /v1/organizations/api_keys?limit=1000[&after_id=][&status=]` ->
  `{"data": [api_key...], "first_id", "last_id", "has_more"}`; the next page is `after_id=<last_id>`.
- get: `GET /v1/organizations/api_keys/{id}` -> one `api_key`; unknown id -> 404 `not_found_error`.
- update: `POST /v1/organizations/api_keys/{id}` `{"status": "active"|"inactive"}` -> the updated `api_key`.
  Idempotent (setting the status a key has is a no-op), so it is retried like a read. An archived or expired
  key's status cannot change (400).
- verify: the list with `limit=1` (proves the admin key).
- An `api_key` is `{"id", "name", "status": active|inactive|archived|expired, "partial_key_hint", ...}` and
  never carries the key's value.
- Errors: `{"type": "error", "error": {"type", "message"}}` (the standard `error.message` shape); 529
  `overloaded_error` is a 5xx, hence `ProviderUnavailable` and retried.

Sources: Anthropic's Admin API reference (api_keys list/retrieve/update), its errors page, and its Python
SDK (still no create or delete, 2026); see the project's provider admin API notes. *Unconfirmed*: the exact
shape of `partial_key_hint` (used only by `hint_matches`, which says "unknown" for a shape it does not
know), and whether the Admin API still requires `anthropic-version` (it is always sent).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from .base import Capabilities, IssuedKey, KeySpec, ProviderKey, SecretStr
from .errors import ProviderBadResponse, ProviderRejected
from .http import CallGuards, ProviderHTTP, as_list, as_object, opt_str, parse_time, req_str
from .retry import RetryPolicy

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
PAGE_LIMIT = 1000
# Most pages a list may take: past it the answer is taken for a loop.
MAX_PAGES = 1000
ACTIVE = "active"
INACTIVE = "inactive"
# Statuses in which a key cannot authenticate, whatever the engine does next.
UNUSABLE_STATUSES = frozenset({"inactive", "archived", "expired"})
_KEYS = "/v1/organizations/api_keys"
_NO_CREATE = (
    "anthropic: the Admin API cannot create or delete API keys; lease Anthropic keys through a check-out "
    "set (sets/<name>) of keys made in Anthropic's console"
)


@dataclass(frozen=True)
class AnthropicKey:
    """One API key as the Admin API describes it (never its value)."""

    key_id: str
    name: str
    status: str
    partial_key_hint: str
    created_at: datetime | None

    @property
    def usable(self) -> bool:
        return self.status not in UNUSABLE_STATUSES


def hint_matches(hint: str, value: str) -> bool | None:
    """Does `value` fit the key's `partial_key_hint` ("sk-ant-api03-abc...wxAA")? None when the hint has no
    shape this code knows (then nothing can be said)."""
    head, sep, tail = hint.partition("...")
    if not sep or not head or not tail or "..." in tail:
        return None
    return value.startswith(head) and value.endswith(tail) and len(value) >= len(head) + len(tail)


class AnthropicClient:
    """`ProviderClient` for Anthropic's Admin API, plus the status calls check-out sets use."""

    name = "anthropic"

    def __init__(
        self,
        *,
        admin_key: SecretStr | str,
        base_url: str | None = None,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
        guards: CallGuards | None = None,
    ) -> None:
        self._http = ProviderHTTP(
            provider=self.name,
            base_url=base_url or DEFAULT_BASE_URL,
            admin_key=admin_key,
            headers={"anthropic-version": API_VERSION},
            transport=transport,
            retry=retry,
            guards=guards,
            auth_header="x-api-key",
            auth_scheme="",
        )
        self.capabilities = Capabilities(
            expiry=False,
            extend_expiry=False,
            spend_limit=False,
            models=False,
            metadata=False,
            needs_project=False,
            checkout_only=True,
        )

    def __repr__(self) -> str:
        return f"AnthropicClient(base_url={self._http.base_url!r})"

    def close(self) -> None:
        self._http.close()

    # --- the ProviderClient protocol ----------------------------------------------------------------------

    def verify(self, *, deadline: float | None = None) -> None:
        """List one key: proves the admin key."""
        self._http.call(
            "GET",
            _KEYS,
            op="verify admin key",
            params={"limit": 1},
            deadline=deadline if deadline is not None else self._http.default_deadline(),
        )

    def create_key(self, spec: KeySpec, *, deadline: float) -> IssuedKey:
        raise ProviderRejected(self.name, _NO_CREATE)

    def delete_key(self, key_id: str, *, scope: str = "", deadline: float) -> bool:
        raise ProviderRejected(self.name, _NO_CREATE)

    def find_keys(self, name_prefix: str, *, scope: str | None = None, deadline: float) -> list[ProviderKey]:
        return [
            ProviderKey(k.key_id, k.name, k.created_at, "")
            for k in self.list_keys(deadline=deadline)
            if k.name.startswith(name_prefix)
        ]

    def extend_key(self, key_id: str, *, scope: str, expires_at: datetime, deadline: float) -> None:
        raise NotImplementedError("anthropic: keys have no expiry the Admin API can move")

    # --- key status ---------------------------------------------------------------------------------------

    def get_key(self, key_id: str, *, deadline: float) -> AnthropicKey:
        """`GET /v1/organizations/api_keys/{id}`. ProviderNotFound for an unknown id."""
        op = "get API key"
        body = self._http.call("GET", f"{_KEYS}/{quote(key_id, safe='')}", op=op, deadline=deadline)
        return self._key(body, op)

    def set_status(self, key_id: str, status: str, *, deadline: float) -> AnthropicKey:
        """`POST /v1/organizations/api_keys/{id}` `{"status": status}`: the key as it is now."""
        if status not in (ACTIVE, INACTIVE):
            raise ValueError(f"status must be {ACTIVE!r} or {INACTIVE!r}")
        op = f"update API key to {status}"
        body = self._http.call(
            "POST", f"{_KEYS}/{quote(key_id, safe='')}", op=op, json={"status": status}, deadline=deadline
        )
        key = self._key(body, op)
        if key.status != status:
            raise ProviderBadResponse(self.name, f"{self.name}: {op}: the key's status is {key.status!r}")
        return key

    def list_keys(self, *, status: str | None = None, deadline: float) -> list[AnthropicKey]:
        """Every key of the organization (with `status`: only those), walking `after_id` pages."""
        op = "list API keys"
        query: dict[str, str | int] = {"limit": PAGE_LIMIT}
        if status is not None:
            query["status"] = status
        found: dict[str, AnthropicKey] = {}
        for _ in range(MAX_PAGES):
            body = as_object(
                self._http.call("GET", _KEYS, op=op, params=query, deadline=deadline), self.name, op
            )
            items = as_list(body.get("data"), self.name, op, "data")
            for item in items:
                key = self._key(item, op)
                found.setdefault(key.key_id, key)
            last = opt_str(body, "last_id")
            if body.get("has_more") is not True or not items:
                return list(found.values())
            if not last or query.get("after_id") == last:
                raise ProviderBadResponse(self.name, f"{self.name}: {op}: has_more without a new last_id")
            query = {**query, "after_id": last}
        raise ProviderBadResponse(self.name, f"{self.name}: {op}: more than {MAX_PAGES} pages")

    def _key(self, body: Any, op: str) -> AnthropicKey:
        data = as_object(body, self.name, op)
        return AnthropicKey(
            key_id=req_str(data, "id", self.name, op),
            name=opt_str(data, "name") or "",
            status=req_str(data, "status", self.name, op),
            partial_key_hint=opt_str(data, "partial_key_hint") or "",
            created_at=parse_time(data.get("created_at")),
        )
