"""LiteLLM proxy: virtual keys minted with the proxy's master key.

Wire contract (base = the proxy's URL, `Authorization: Bearer <master key>`):
- create: `POST /key/generate` `{"key_alias": name, "duration": "<n>s"?, "models"?, "max_budget"?,
  "metadata"?}` -> `{"key": "sk-…", "token_id": sha256-hex of the key, "expires", "key_alias", ...}`;
  key_id = `token_id` (falling back to `token`, then to sha256(key), which is how LiteLLM derives it).
- delete: `POST /key/delete` `{"keys": [token_id]}` -> `{"deleted_keys": [...]}`; a 404 in LiteLLM's error
  shape ("No keys found") = already gone.
- extend: `POST /key/update` `{"key": token_id, "duration": "<n>s"}` (LiteLLM sets expires = now + duration).
- find: `GET /key/list?page=N&size=100&return_full_object=true` -> `{"keys": [...], "total_count",
  "current_page", "total_pages"}`, walked until `total_pages` (or an empty page when it is absent).
  The parser is tolerant because the list shape has changed across LiteLLM releases: each item may be
  a full key object (`token`/`token_id`, `key_alias`, `created_at`) or a bare token hash, in which
  case `GET /key/info?key=<hash>` fills in the alias.
- verify: `GET /key/list?page=1&size=1`.

Admin keys (`config/<name>/rotate`, `base.AdminKeyRotation`): a virtual key acts as an admin key when its user
has the `proxy_admin` role. `GET /key/info` (no `key`: the calling key) -> `{"info": {"user_id", ...}}`; 404
for the master key, which is set in the proxy's config, not stored, so the API cannot delete it
(`own_admin_key_id` is then None). A new admin key is `POST /key/generate` `{"key_alias", "user_id": the
calling key's user}`; it is deleted by `token_id` through `/key/delete` and found by alias in `/key/list`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import httpx

from .base import SPEND_LIVE, Capabilities, IssuedKey, KeySpec, ProviderKey, SecretStr
from .errors import CreateOutcomeUnknown, ProviderBadResponse, ProviderNotFound, ProviderRejected
from .http import CallGuards, ProviderHTTP, as_list, as_object, opt_str, parse_time, req_str
from .retry import RetryPolicy
from .usage import usd_of

PAGE_SIZE = 100
MAX_PAGES = 10_000

CAPABILITIES = Capabilities(
    expiry=True,
    extend_expiry=True,
    spend_limit=True,
    models=True,
    metadata=True,
    needs_project=False,
)


def duration_until(expires_at: datetime, *, now: datetime | None = None) -> str:
    """LiteLLM `duration` for an absolute expiry: whole seconds, rounded up, at least 1 ("905s")."""
    current = now if now is not None else datetime.now(UTC)
    seconds = math.ceil((expires_at - current).total_seconds())
    return f"{max(1, seconds)}s"


class LiteLLMClient:
    """`ProviderClient` for a LiteLLM proxy's virtual keys."""

    name = "litellm"
    capabilities = CAPABILITIES

    def __init__(
        self,
        *,
        admin_key: SecretStr | str,
        base_url: str,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
        guards: CallGuards | None = None,
        page_size: int = PAGE_SIZE,
    ) -> None:
        if not base_url:
            raise ValueError("litellm: base_url is required (the proxy's URL)")
        self._http = ProviderHTTP(
            provider=self.name,
            base_url=base_url,
            admin_key=admin_key,
            transport=transport,
            retry=retry,
            guards=guards,
        )
        self._page_size = max(1, min(page_size, PAGE_SIZE))
        self._admin_key = admin_key if isinstance(admin_key, SecretStr) else SecretStr(admin_key)

    def __repr__(self) -> str:
        return f"LiteLLMClient(base_url={self._http.base_url!r})"

    def close(self) -> None:
        self._http.close()

    def verify(self, *, deadline: float | None = None) -> None:
        """`GET /key/list?page=1&size=1`: needs the master key (or an admin key)."""
        self._http.call(
            "GET",
            "/key/list",
            op="verify master key",
            params={"page": 1, "size": 1},
            deadline=deadline if deadline is not None else self._http.default_deadline(),
        )

    # ---- admin keys

    def _own_info(self, *, deadline: float) -> dict[str, Any] | None:
        """`/key/info` of the calling key; None if the proxy does not store it (the master key)."""
        op = "read the admin key's info"
        try:
            body = as_object(self._http.call("GET", "/key/info", op=op, deadline=deadline), self.name, op)
        except ProviderNotFound as exc:
            if exc.api_error:
                return None
            raise
        info = body.get("info")
        return info if isinstance(info, dict) else {}

    def own_admin_key_id(self, *, deadline: float) -> str | None:
        if self._own_info(deadline=deadline) is None:
            return None
        return hashlib.sha256(self._admin_key.reveal().encode()).hexdigest()  # LiteLLM's token_id

    def create_admin_key(self, name: str, *, deadline: float) -> IssuedKey:
        info = self._own_info(deadline=deadline)
        user_id = opt_str(info, "user_id") if info is not None else None
        if not user_id:
            raise ProviderRejected(
                self.name,
                f"{self.name}: the admin key is not a virtual key of a proxy_admin user (the master key, or "
                "a key without a user), so no admin key can be made in its user's name",
                400,
            )
        op = "generate admin key"
        body = self._http.call(
            "POST",
            "/key/generate",
            op=op,
            json={"key_alias": name, "user_id": user_id},
            deadline=deadline,
            create=True,
        )
        try:
            data = as_object(body, self.name, op)
            secret = req_str(data, "key", self.name, op)
        except ProviderBadResponse as exc:
            raise CreateOutcomeUnknown(self.name, exc.message + "; the admin key may exist") from None
        return IssuedKey(
            key_id=opt_str(data, "token_id") or hashlib.sha256(secret.encode()).hexdigest(),
            key_name=opt_str(data, "key_alias") or name,
            api_key=SecretStr(secret),
            expires_at=parse_time(data.get("expires")),
            scope="",
            created_at=parse_time(data.get("created_at")) or datetime.now(UTC),
        )

    def delete_admin_key(self, key_id: str, *, deadline: float) -> bool:
        return self.delete_key(key_id, deadline=deadline)

    def find_admin_keys(self, name: str, *, deadline: float) -> list[ProviderKey]:
        return [key for key in self.find_keys(name, deadline=deadline) if key.name == name]

    def create_key(self, spec: KeySpec, *, deadline: float) -> IssuedKey:
        op = "generate key"
        payload: dict[str, Any] = {"key_alias": spec.name}
        if spec.expires_at is not None:
            payload["duration"] = duration_until(spec.expires_at)
        if spec.models:
            payload["models"] = list(spec.models)
        if spec.spend_limit is not None:
            payload["max_budget"] = spec.spend_limit
        if spec.metadata:
            payload["metadata"] = dict(spec.metadata)
        body = self._http.call("POST", "/key/generate", op=op, json=payload, deadline=deadline, create=True)
        try:
            data = as_object(body, self.name, op)
            secret = req_str(data, "key", self.name, op)
        except ProviderBadResponse as exc:
            raise CreateOutcomeUnknown(
                self.name, exc.message + "; the key may exist without its secret in hand"
            ) from None
        token_id = (
            opt_str(data, "token_id") or opt_str(data, "token") or hashlib.sha256(secret.encode()).hexdigest()
        )
        return IssuedKey(
            key_id=token_id,
            key_name=opt_str(data, "key_alias") or spec.name,
            api_key=SecretStr(secret),
            expires_at=parse_time(data.get("expires")) or spec.expires_at,
            scope="",
            created_at=parse_time(data.get("created_at")) or datetime.now(UTC),
        )

    def delete_key(self, key_id: str, *, scope: str = "", deadline: float) -> bool:
        """`POST /key/delete {"keys": [token_id]}`: True if deleted, False if no such key (404)."""
        try:
            self._http.call(
                "POST", "/key/delete", op="delete key", json={"keys": [key_id]}, deadline=deadline
            )
        except ProviderNotFound as exc:
            if exc.api_error:
                return False
            raise
        return True

    def extend_key(self, key_id: str, *, scope: str = "", expires_at: datetime, deadline: float) -> None:
        """`POST /key/update {"key": token_id, "duration": "<n>s"}`."""
        self._http.call(
            "POST",
            "/key/update",
            op="extend key",
            json={"key": key_id, "duration": duration_until(expires_at)},
            deadline=deadline,
        )

    def find_keys(self, name_prefix: str, *, scope: str | None = None, deadline: float) -> list[ProviderKey]:
        """Every key whose alias starts with `name_prefix`, walking every page of `/key/list`."""
        op = "list keys"
        found: list[ProviderKey] = []
        seen: set[str] = set()  # page paging (newest first) repeats keys when others are created meanwhile
        page = 1
        for _ in range(MAX_PAGES):
            body = as_object(
                self._http.call(
                    "GET",
                    "/key/list",
                    op=op,
                    params={"page": page, "size": self._page_size, "return_full_object": "true"},
                    deadline=deadline,
                ),
                self.name,
                op,
            )
            items = as_list(body.get("keys"), self.name, op, "keys")
            for item in items:
                key = self._list_item(item, op=op, deadline=deadline)
                if key is not None and key.name.startswith(name_prefix) and key.key_id not in seen:
                    seen.add(key.key_id)
                    found.append(key)
            total_pages = body.get("total_pages")
            if not items:
                return found
            if isinstance(total_pages, int) and not isinstance(total_pages, bool) and page >= total_pages:
                return found
            page += 1
        raise ProviderBadResponse(self.name, f"{self.name}: {op}: more than {MAX_PAGES} pages")

    def _list_item(self, item: Any, *, op: str, deadline: float) -> ProviderKey | None:
        if isinstance(item, str):
            return self._key_info(item, deadline=deadline)
        key = as_object(item, self.name, op)
        token = opt_str(key, "token") or opt_str(key, "token_id")
        if token is None:
            raise ProviderBadResponse(self.name, f"{self.name}: {op}: a listed key has no token")
        return ProviderKey(
            key_id=token,
            name=opt_str(key, "key_alias") or "",
            created_at=parse_time(key.get("created_at")),
            scope="",
        )

    def _key_info(self, token: str, *, deadline: float) -> ProviderKey | None:
        op = "key info"
        try:
            body = as_object(
                self._http.call("GET", "/key/info", op=op, params={"key": token}, deadline=deadline),
                self.name,
                op,
            )
        except ProviderNotFound:
            return None  # deleted between the list and this call
        info = body.get("info")
        info_obj = info if isinstance(info, dict) else {}
        return ProviderKey(
            key_id=token,
            name=opt_str(info_obj, "key_alias") or "",
            created_at=parse_time(info_obj.get("created_at")),
            scope="",
        )

    # ---- spend (base.SpendReporting)

    def spend_kind(self, scope: str) -> str:
        return SPEND_LIVE

    def key_spend(self, key_id: str, *, scope: str = "", deadline: float) -> float:
        """`GET /key/info?key=<token_id>` -> `info.spend` (USD); 404 once deleted."""
        op = "read key spend"
        body = as_object(
            self._http.call("GET", "/key/info", op=op, params={"key": key_id}, deadline=deadline),
            self.name,
            op,
        )
        info = as_object(body.get("info"), self.name, op)
        return usd_of(info.get("spend"), self.name, op)

    def keys_spend(
        self, key_ids: Sequence[str], *, scope: str, since: datetime, deadline: float
    ) -> dict[str, float]:
        raise NotImplementedError("litellm: spend is read from the key itself (key_spend)")
