"""Fireworks: API keys minted per lease for one user (typically a service account) of one account.

Wire contract (base `https://api.fireworks.ai`, `Authorization: Bearer <an admin user's API key>`; U below is
`/v1/accounts/{account_id}/users/{user_id}`):
- create: `POST U/apiKeys` `{"apiKey": {"displayName", "expireTime": RFC 3339 UTC}}` -> the key
  `{"keyId", "displayName", "key", "createTime", "expireTime", "prefix", ...}`; key_id = `keyId`, the
  secret is `key` (shown once), scope = `accounts/{account_id}/users/{user_id}` (its resource name).
- delete: `POST U/apiKeys:delete` `{"keyId"}` -> `{}`. A 404 is "already gone" only once a list of the user
  shows the key absent (see below).
- find: `GET U/apiKeys` -> `{"apiKeys": [...], "nextPageToken", "totalSize"}`, filtered here by name prefix;
  `nextPageToken` is followed (as `pageToken`) until it is empty.
- verify: `GET U/apiKeys?pageSize=1`, which proves the admin key, the account and the user together.

Sources, and what is confirmed:
- Confirmed by Fireworks' own OpenAPI ("Gateway REST API", docs.fireworks.ai/api-reference: Create API Key,
  List API Keys, Delete API Key): the three paths, the create body wrapped in `apiKey` (not flat), its
  `displayName` and `expireTime`, the response fields, the delete body `{"keyId"}` and its empty answer, the
  list fields and its `pageSize`, `pageToken`, `filter` parameters.
- Confirmed by firectl's docs: keys can be created for a service-account user (admin only), and
  `--expire-time` sets when a key "will automatically expire".
- *Unconfirmed*, hence behind switches or checked before being relied on:
  - Paging: the reference says of `pageSize` and `pageToken` "Pagination support to be added", so no
    `pageSize` is sent when listing (`page_size=None`, the default): a server that honoured the size but not
    the token would otherwise hide keys past the first page. Tokens are followed if they come.
  - The error body (taken as a gRPC status `{"code", "message", "details"}`, or `{"error"}`) and what delete
    answers for a key that is gone: with `confirm_gone=True` (the default) a 404 or 400 counts as "already
    gone" only if listing the user no longer shows the key; else the error stands and the deletion is retried.
  - The longest expiry: the console offers at most one year; the API's limit is not documented.
  - No call changes a key's expiry, so `extend_expiry` is False and keys expire at max TTL + grace.

An API key acts as its user, and firectl creates keys "for the signed in user" with any API key: a leased key
can probably mint keys of its own user that no lease owns (the sweep deletes only keys with the mount's
prefix). Give the engine a dedicated service-account user, and keep its leases short.
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

DEFAULT_BASE_URL = "https://api.fireworks.ai"

CAPABILITIES = Capabilities(
    expiry=True,
    extend_expiry=False,
    spend_limit=False,
    models=False,
    metadata=False,
    needs_project=False,
)


def user_scope(account_id: str, user_id: str) -> str:
    """Fireworks' resource name of a user: `accounts/<account>/users/<user>`."""
    return f"accounts/{account_id}/users/{user_id}"


def split_scope(scope: str) -> tuple[str, str]:
    """(account id, user id) of a `user_scope`; ValueError for anything else."""
    parts = scope.split("/")
    if len(parts) != 4 or parts[0] != "accounts" or parts[2] != "users" or not parts[1] or not parts[3]:
        raise ValueError(f"fireworks: {scope!r} is not accounts/<account id>/users/<user id>")
    return parts[1], parts[3]


class FireworksClient:
    """`ProviderClient` for the API keys of one Fireworks user."""

    name = "fireworks"
    capabilities = CAPABILITIES

    def __init__(
        self,
        *,
        admin_key: SecretStr | str,
        account_id: str,
        user_id: str,
        base_url: str | None = None,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
        guards: CallGuards | None = None,
        page_size: int | None = None,
        confirm_gone: bool = True,
    ) -> None:
        if not account_id or not user_id:
            raise ValueError("fireworks: account_id and user_id are required (whose API keys are minted)")
        self._scope = user_scope(account_id, user_id)
        split_scope(self._scope)  # rejects ids with a "/" in them
        self._http = ProviderHTTP(
            provider=self.name,
            base_url=base_url or DEFAULT_BASE_URL,
            admin_key=admin_key,
            error_parser=gateway.error_message,
            transport=transport,
            retry=retry,
            guards=guards,
        )
        self._page_size = page_size
        self._confirm_gone = confirm_gone

    def __repr__(self) -> str:
        return f"FireworksClient(base_url={self._http.base_url!r}, scope={self._scope!r})"

    @property
    def scope(self) -> str:
        return self._scope

    def close(self) -> None:
        self._http.close()

    @staticmethod
    def _keys_path(scope: str) -> str:
        account, user = split_scope(scope)
        return f"/v1/accounts/{quote(account, safe='')}/users/{quote(user, safe='')}/apiKeys"

    def verify(self, *, deadline: float | None = None) -> None:
        """List one key of the user: proves the admin key may manage this user's keys."""
        self._http.call(
            "GET",
            self._keys_path(self._scope),
            op="verify admin key",
            params={"pageSize": 1},
            deadline=deadline if deadline is not None else self._http.default_deadline(),
        )

    def create_key(self, spec: KeySpec, *, deadline: float) -> IssuedKey:
        op = "create API key"
        api_key: dict[str, Any] = {"displayName": spec.name}
        if spec.expires_at is not None:
            api_key["expireTime"] = iso_utc(spec.expires_at)
        try:
            body = self._http.call(
                "POST",
                self._keys_path(self._scope),
                op=op,
                json={"apiKey": api_key},
                deadline=deadline,
                create=True,
            )
        except ProviderNotFound as exc:
            raise gateway.with_hint(
                exc, self.name, f"check the connection's account_id and user_id: {self._scope}"
            ) from None
        data, key_id, secret = gateway.created(body, self.name, op, id_field="keyId", value_field="key")
        return IssuedKey(
            key_id=key_id,
            key_name=opt_str(data, "displayName") or spec.name,
            api_key=SecretStr(secret),
            expires_at=parse_time(data.get("expireTime")),  # only what Fireworks reports
            scope=self._scope,
            created_at=parse_time(data.get("createTime")) or datetime.now(UTC),
        )

    def delete_key(self, key_id: str, *, scope: str = "", deadline: float) -> bool:
        """`POST …/apiKeys:delete {"keyId"}`: True if deleted, False if the key is provably gone."""
        owner = scope or self._scope
        try:
            self._http.call(
                "POST",
                self._keys_path(owner) + ":delete",
                op="delete API key",
                json={"keyId": key_id},
                deadline=deadline,
            )
        except (ProviderNotFound, ProviderRejected) as exc:
            if (
                self._confirm_gone
                and exc.status in (400, 404)
                and gateway.confirmed_gone(lambda: self._list(owner, deadline=deadline), key_id, exc)
            ):
                return False
            raise
        return True

    def find_keys(self, name_prefix: str, *, scope: str | None = None, deadline: float) -> list[ProviderKey]:
        """Keys of the user (`scope`, else the connection's) whose display name starts with `name_prefix`."""
        return [
            k for k in self._list(scope or self._scope, deadline=deadline) if k.name.startswith(name_prefix)
        ]

    def _list(self, scope: str, *, deadline: float) -> list[ProviderKey]:
        op = "list API keys"

        def read_page(answer: Any, found: int, query: dict[str, str | int]) -> gateway.Page:
            body = as_object(answer, self.name, op)
            # An empty list may be left out of the answer entirely (proto3 JSON omits empty fields).
            items = as_list(body.get("apiKeys", []), self.name, op, "apiKeys")
            total = body.get("totalSize")
            if not items and not found and isinstance(total, int) and total > 0:
                # Keys exist but none came back: finding nothing could make a live key look deleted.
                raise ProviderBadResponse(self.name, f"{self.name}: {op}: totalSize {total} but no apiKeys")
            keys = []
            for item in items:
                key = as_object(item, self.name, op)
                keys.append(
                    ProviderKey(
                        key_id=req_str(key, "keyId", self.name, op),
                        name=opt_str(key, "displayName") or "",
                        created_at=parse_time(key.get("createTime")),
                        scope=scope,
                    )
                )
            token = body.get("nextPageToken")
            if not isinstance(token, str) or not token:
                return keys, None, query
            return keys, token, {**query, "pageToken": token}

        return gateway.token_paged_keys(
            self.name,
            op,
            lambda query: self._http.call(
                "GET", self._keys_path(scope), op=op, params=query, deadline=deadline
            ),
            read_page,
            {} if self._page_size is None else {"pageSize": self._page_size},
        )

    def extend_key(self, key_id: str, *, scope: str, expires_at: datetime, deadline: float) -> None:
        raise NotImplementedError("fireworks: no call changes a key's expiry")
