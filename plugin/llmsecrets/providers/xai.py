"""xAI: API keys minted per lease through the Management API, with a management key, in one team.

Wire contract (base `https://management-api.x.ai`, `Authorization: Bearer <management key>`):
- create: `POST /auth/teams/{teamId}/api-keys` `{"name", "acls": [...], "expireTime"?: RFC 3339 UTC}` ->
  the key object `{"apiKey", "apiKeyId", "name", "createTime", "expireTime", "teamId", "aclStrings", ...}`;
  key_id = `apiKeyId`, the secret is `apiKey` (shown once), scope = the team id.
- delete: `DELETE /auth/api-keys/{apiKeyId}`. A 404 is "already gone" only once a list of the team shows
  the key absent (see below).
- find: `GET /auth/teams/{teamId}/api-keys` -> `{"apiKeys": [...]}`, filtered here by name prefix; a page
  token in the answer (`nextPageToken` or `paginationToken`) is followed until there is none.
- verify: the same list, so the check proves the management key and the team id together.
- models: the role's models become ACLs `api-key:model:<model>` (with `api-key:endpoint:*`); no models means
  `api-key:model:*`. A key with no ACL can call nothing, so ACLs are always sent.

Sources, and what is confirmed:
- Confirmed by xAI's own REST reference (docs.x.ai, Management API > Accounts and Authorization): the create
  path, its required `name`, the response fields (`apiKey` only set on create, `apiKeyId`, `createTime`,
  `expireTime` "if set and in the past, the key is rejected", `aclStrings`: "by default API keys don't have
  any permissions"); the list path; `DELETE /auth/api-keys/{apiKeyId}`; `PUT /auth/api-keys/{api_key_id}`.
- Confirmed by xAI's guide "Using Management API" (docs.x.ai): base URL, management keys, create body fields
  `name`, `acls`, `qps`, `qpm`, `tpm`, and the ACL strings `api-key:model:*`, `api-key:endpoint:*`,
  `api-key:model:<name>`.
- *Unconfirmed*, hence behind switches or checked before being relied on:
  - `expireTime` as a create field (the reference lists it on the key object, a third-party client sends it):
    sent only with `send_expiry=True` (the default); the expiry reported is the one xAI echoes back, so a
    provider that ignores the field yields `expires_at=None`, never a made-up expiry.
  - The list's shape and paging: parsed leniently (`apiKeys`, `api_keys` or `data`; either token name).
  - What DELETE answers for a key that is gone, and xAI's error body (taken as `{"code", "message"}` or
    `{"error"}`): with `confirm_gone=True` (the default) a 404 or 400 on delete counts as "already gone"
    only if listing the team no longer shows the key; else the error stands and the deletion is retried.
  - Changing a key's expiry (`PUT /auth/api-keys/{id}`: body undocumented): not used, so
    `extend_expiry` is False and keys are created to expire at max TTL + grace.
  - Timestamps: RFC 3339 strings, or unix seconds as a string (as xAI's inference API shows them).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from . import gateway
from .base import Capabilities, IssuedKey, KeySpec, ProviderKey, SecretStr
from .errors import (
    ProviderBadResponse,
    ProviderNotFound,
    ProviderRejected,
)
from .http import CallGuards, ProviderHTTP, as_list, as_object, iso_utc, opt_str, parse_time, req_str
from .retry import RetryPolicy

DEFAULT_BASE_URL = "https://management-api.x.ai"
ALL_MODELS = "api-key:model:*"
ALL_ENDPOINTS = "api-key:endpoint:*"
_LIST_FIELDS = ("apiKeys", "api_keys", "data")
# Answer field -> query parameter of the next page (both unconfirmed).
_PAGE_TOKENS = (("nextPageToken", "pageToken"), ("paginationToken", "paginationToken"))


def _seg(value: str) -> str:
    return quote(value, safe="")


def provider_time(value: Any) -> datetime | None:
    """`parse_time`, plus unix seconds written as a string ("1710000000")."""
    if isinstance(value, str) and value.strip().isdigit():
        return parse_time(int(value.strip()))
    return parse_time(value)


def model_acls(models: tuple[str, ...]) -> list[str]:
    """The ACLs of a key limited to `models` (every model when empty), on every endpoint."""
    if not models:
        return [ALL_MODELS, ALL_ENDPOINTS]
    return [f"api-key:model:{m}" for m in models] + [ALL_ENDPOINTS]


class XAIClient:
    """`ProviderClient` for xAI API keys of one team."""

    name = "xai"

    def __init__(
        self,
        *,
        admin_key: SecretStr | str,
        team_id: str,
        base_url: str | None = None,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
        guards: CallGuards | None = None,
        send_expiry: bool = True,
        confirm_gone: bool = True,
    ) -> None:
        if not team_id or not team_id.strip():
            raise ValueError("xai: team_id is required (the team whose API keys the engine manages)")
        self._team_id = team_id.strip()
        self._http = ProviderHTTP(
            provider=self.name,
            base_url=base_url or DEFAULT_BASE_URL,
            admin_key=admin_key,
            error_parser=gateway.error_message,
            transport=transport,
            retry=retry,
            guards=guards,
        )
        self._send_expiry = send_expiry
        self._confirm_gone = confirm_gone
        self.capabilities = Capabilities(
            expiry=send_expiry,
            extend_expiry=False,
            spend_limit=False,
            models=True,
            metadata=False,
            needs_project=False,
        )

    def __repr__(self) -> str:
        return f"XAIClient(base_url={self._http.base_url!r}, team_id={self._team_id!r})"

    @property
    def team_id(self) -> str:
        return self._team_id

    def close(self) -> None:
        self._http.close()

    def _keys_path(self, team: str) -> str:
        return f"/auth/teams/{_seg(team)}/api-keys"

    def verify(self, *, deadline: float | None = None) -> None:
        """List the team's keys: proves the management key and that it may manage this team's keys."""
        self._http.call(
            "GET",
            self._keys_path(self._team_id),
            op="verify management key",
            deadline=deadline if deadline is not None else self._http.default_deadline(),
        )

    def create_key(self, spec: KeySpec, *, deadline: float) -> IssuedKey:
        op = "create API key"
        payload: dict[str, Any] = {"name": spec.name, "acls": model_acls(spec.models)}
        if self._send_expiry and spec.expires_at is not None:
            payload["expireTime"] = iso_utc(spec.expires_at)
        try:
            body = self._http.call(
                "POST", self._keys_path(self._team_id), op=op, json=payload, deadline=deadline, create=True
            )
        except ProviderNotFound as exc:
            raise gateway.with_hint(
                exc, self.name, f"check the connection's team_id {self._team_id!r}"
            ) from None
        data, key_id, secret = gateway.created(body, self.name, op, id_field="apiKeyId", value_field="apiKey")
        return IssuedKey(
            key_id=key_id,
            key_name=opt_str(data, "name") or spec.name,
            api_key=SecretStr(secret),
            # Only the expiry xAI reports: if it ignored the field, there is none to promise.
            expires_at=provider_time(data.get("expireTime")) if self._send_expiry else None,
            scope=self._team_id,
            created_at=provider_time(data.get("createTime")) or datetime.now(UTC),
        )

    def delete_key(self, key_id: str, *, scope: str = "", deadline: float) -> bool:
        """`DELETE /auth/api-keys/{id}`: True if deleted, False if the key is provably gone."""
        try:
            self._http.call(
                "DELETE", f"/auth/api-keys/{_seg(key_id)}", op="delete API key", deadline=deadline
            )
        except (ProviderNotFound, ProviderRejected) as exc:
            if (
                self._confirm_gone
                and exc.status in (400, 404)
                and gateway.confirmed_gone(
                    lambda: self._list(scope or self._team_id, deadline=deadline), key_id, exc
                )
            ):
                return False
            raise
        return True

    def find_keys(self, name_prefix: str, *, scope: str | None = None, deadline: float) -> list[ProviderKey]:
        """Keys of the team (`scope`, else the connection's) whose name starts with `name_prefix`."""
        return [
            k for k in self._list(scope or self._team_id, deadline=deadline) if k.name.startswith(name_prefix)
        ]

    def _list(self, team: str, *, deadline: float) -> list[ProviderKey]:
        op = "list API keys"

        def read_page(answer: Any, found: int, query: dict[str, str | int]) -> gateway.Page:
            body = as_object(answer, self.name, op)
            field = next((f for f in _LIST_FIELDS if f in body), None)
            if field is None and set(body) - {f for f, _ in _PAGE_TOKENS}:
                # Not an empty list (proto3 JSON leaves [] out) but a shape we do not know: finding nothing
                # in it could make a live key look deleted.
                raise ProviderBadResponse(
                    self.name, f"{self.name}: {op}: unexpected response: no apiKeys in {sorted(body)[:5]}"
                )
            keys = []
            for item in as_list(body.get(field), self.name, op, "apiKeys") if field else []:
                key = as_object(item, self.name, op)
                keys.append(
                    ProviderKey(
                        key_id=req_str(key, "apiKeyId", self.name, op),
                        name=opt_str(key, "name") or "",
                        created_at=provider_time(key.get("createTime")),
                        scope=team,
                    )
                )
            token, param = next(((body[f], p) for f, p in _PAGE_TOKENS if body.get(f)), (None, ""))
            if not isinstance(token, str):
                return keys, None, query
            return keys, token, {param: token}

        return gateway.token_paged_keys(
            self.name,
            op,
            lambda query: self._http.call(
                "GET", self._keys_path(team), op=op, params=query, deadline=deadline
            ),
            read_page,
            {},
        )

    def extend_key(self, key_id: str, *, scope: str, expires_at: datetime, deadline: float) -> None:
        raise NotImplementedError("xai: the update call's body is undocumented; expiry is fixed at create")
