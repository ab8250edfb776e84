"""OpenRouter: API keys minted with a management key.

Wire contract (base `https://openrouter.ai/api/v1`, `Authorization: Bearer <management key>`):
- create: `POST /keys` `{"name", "limit"?: USD, "expires_at"?: ISO-8601 UTC "…Z"}` -> 201
  `{"data": {"hash", "name", "created_at", "expires_at", ...}, "key": "sk-or-v1-…"}`;
  key_id = `data.hash`, the secret is the top-level `key`.
- delete: `DELETE /keys/{hash}` -> `{"deleted": true}`; 404 = already gone.
- find: `GET /keys?offset=N&include_disabled=true` -> `{"data": [...]}` (at most 100 a page); pages
  are walked until an empty page, so a smaller server page size cannot end the walk early.
- verify: `GET /keys?offset=0` (management keys only: 403 "Only management keys…" -> ProviderAuthError).

Expiry cannot be moved after create (`PATCH /keys/{hash}` takes no `expires_at`), so
`extend_expiry` is False. Model limits (guardrails) are out of scope.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from .base import SPEND_LIVE, Capabilities, IssuedKey, KeySpec, ProviderKey, SecretStr
from .errors import CreateOutcomeUnknown, ProviderBadResponse, ProviderNotFound
from .http import CallGuards, ProviderHTTP, as_list, as_object, iso_utc, opt_str, parse_time, req_str
from .retry import RetryPolicy
from .usage import usd_of

DEFAULT_BASE_URL = "https://openrouter.ai/api/v1"
MAX_PAGES = 10_000

CAPABILITIES = Capabilities(
    expiry=True,
    extend_expiry=False,
    spend_limit=True,
    models=False,
    metadata=False,
    needs_project=False,
)


class OpenRouterClient:
    """`ProviderClient` for OpenRouter keys."""

    name = "openrouter"
    capabilities = CAPABILITIES

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
            transport=transport,
            retry=retry,
            guards=guards,
        )

    def __repr__(self) -> str:
        return f"OpenRouterClient(base_url={self._http.base_url!r})"

    def close(self) -> None:
        self._http.close()

    def verify(self, *, deadline: float | None = None) -> None:
        """`GET /keys?offset=0`: only a management key may list keys."""
        self._http.call(
            "GET",
            "/keys",
            op="verify management key",
            params={"offset": 0},
            deadline=deadline if deadline is not None else self._http.default_deadline(),
        )

    def create_key(self, spec: KeySpec, *, deadline: float) -> IssuedKey:
        op = "create key"
        payload: dict[str, Any] = {"name": spec.name}
        if spec.spend_limit is not None:
            payload["limit"] = spec.spend_limit
        if spec.expires_at is not None:
            payload["expires_at"] = iso_utc(spec.expires_at)
        body = self._http.call("POST", "/keys", op=op, json=payload, deadline=deadline, create=True)
        try:
            top = as_object(body, self.name, op)
            data = as_object(top.get("data"), self.name, op + " (data)")
            key_hash = req_str(data, "hash", self.name, op)
            secret = req_str(top, "key", self.name, op)
        except ProviderBadResponse as exc:
            raise CreateOutcomeUnknown(
                self.name, exc.message + "; the key may exist without its secret in hand"
            ) from None
        return IssuedKey(
            key_id=key_hash,
            key_name=opt_str(data, "name") or spec.name,
            api_key=SecretStr(secret),
            expires_at=parse_time(data.get("expires_at")) or spec.expires_at,
            scope="",
            created_at=parse_time(data.get("created_at")) or datetime.now(UTC),
        )

    def delete_key(self, key_id: str, *, scope: str = "", deadline: float) -> bool:
        """`DELETE /keys/{hash}`: True if deleted, False if already gone (404)."""
        try:
            self._http.call("DELETE", f"/keys/{quote(key_id, safe='')}", op="delete key", deadline=deadline)
        except ProviderNotFound as exc:
            if exc.api_error:
                return False
            raise
        return True

    def find_keys(self, name_prefix: str, *, scope: str | None = None, deadline: float) -> list[ProviderKey]:
        """Every key (disabled included) whose name starts with `name_prefix`."""
        op = "list keys"
        found: list[ProviderKey] = []
        seen: set[str] = set()  # offset paging can repeat a key when others are created meanwhile
        offset = 0
        for _ in range(MAX_PAGES):
            body = as_object(
                self._http.call(
                    "GET",
                    "/keys",
                    op=op,
                    params={"offset": offset, "include_disabled": "true"},
                    deadline=deadline,
                ),
                self.name,
                op,
            )
            items = as_list(body.get("data"), self.name, op, "data")
            if not items:
                return found
            for item in items:
                key = as_object(item, self.name, op)
                name = opt_str(key, "name") or ""
                key_hash = req_str(key, "hash", self.name, op)
                if name.startswith(name_prefix) and key_hash not in seen:
                    seen.add(key_hash)
                    found.append(
                        ProviderKey(
                            key_id=key_hash,
                            name=name,
                            created_at=parse_time(key.get("created_at")),
                            scope="",
                        )
                    )
            offset += len(items)
        raise ProviderBadResponse(self.name, f"{self.name}: {op}: more than {MAX_PAGES} pages")

    def extend_key(self, key_id: str, *, scope: str, expires_at: datetime, deadline: float) -> None:
        raise NotImplementedError("openrouter: expires_at cannot be changed after create")

    # ---- spend (base.SpendReporting)

    def spend_kind(self, scope: str) -> str:
        return SPEND_LIVE

    def key_spend(self, key_id: str, *, scope: str = "", deadline: float) -> float:
        """`GET /keys/{hash}` -> `data.usage` (USD, all time); 404 once deleted."""
        op = "read key usage"
        body = as_object(
            self._http.call("GET", f"/keys/{quote(key_id, safe='')}", op=op, deadline=deadline),
            self.name,
            op,
        )
        return usd_of(as_object(body.get("data"), self.name, op).get("usage"), self.name, op)

    def keys_spend(
        self, key_ids: Sequence[str], *, scope: str, since: datetime, deadline: float
    ) -> dict[str, float]:
        raise NotImplementedError("openrouter: spend is read from the key itself (key_spend)")
