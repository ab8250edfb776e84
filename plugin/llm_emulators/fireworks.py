"""Fireworks API-key emulator: the keys of the users of one account, plus the inference endpoint.

Wire contract (base ``https://api.fireworks.ai`` → the server's root; ``Authorization: Bearer <API key of an
admin user>``; U is ``/v1/accounts/{account_id}/users/{user_id}``):

* ``POST U/apiKeys`` ``{"apiKey": {"displayName", "expireTime": RFC 3339, "annotations": {}}}`` -> 200
  ``{"keyId", "displayName" ("default" when not given), "key" (the secret, only here), "createTime", "secure",
  "email", "prefix", "expireTime"}``; unknown fields -> 400; ``expireTime`` not in the future, or more than a
  year ahead -> 400.
* ``GET U/apiKeys?pageSize=&pageToken=`` -> ``{"apiKeys": [...], "nextPageToken", "totalSize"}`` without
  secrets, oldest first; ``pageToken`` is a page number (as firectl describes it); one page unless
  ``pageSize`` or a page size cap (``set_page_size``) is set.
* ``POST U/apiKeys:delete`` ``{"keyId"}`` -> ``{}``; a gone key -> 404.
* Another account -> 403; an unknown user of the account -> 404.
* An issued key acts as its user: it may list, create and delete that user's keys (firectl creates keys "for
  the signed in user" with any API key), and gets 403 for any other user.
* ``POST /inference/v1/chat/completions`` with an issued key that exists and is not past ``expireTime``.

Errors of the management API: ``{"code": <gRPC code>, "message": str, "details": []}`` (a gRPC gateway's
status); of the inference API: ``{"error": {"object": "error", "type", "message"}}``.

Sources: the paths, the create body wrapped in ``apiKey``, the key fields, the delete body and the list fields
and parameters are from Fireworks' OpenAPI ("Gateway REST API"); a page token being a page number is from
firectl's docs; the one-year limit from the console. *Unconfirmed* and emulated as stated: every error body
and status (including 404 for a gone key), paging actually working, the one-year limit in the API, and
whether a service account's key may manage its own keys as a human user's may (it may, here: the worse case).
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterable
from typing import Any, ClassVar

import httpx

from .core import (
    BodyError,
    JSONDict,
    KeyRecord,
    Request,
    Route,
    iso_z,
    json_object,
    json_response,
    random_id,
    route,
)
from .grpc_gateway import (
    INVALID_ARGUMENT,
    NOT_FOUND,
    PERMISSION_DENIED,
    UNAUTHENTICATED,
    GatewayEmulator,
    parse_rfc3339,
    status_error,
)

__all__ = ["FireworksEmulator"]

_BODY_FIELDS = frozenset({"apiKey"})
_KEY_FIELDS = frozenset({"displayName", "expireTime", "annotations"})
# Output-only fields a client may send back; a gRPC gateway accepts and ignores them.
_OUTPUT_FIELDS = frozenset({"keyId", "key", "createTime", "secure", "email", "prefix", "lastUsed"})
MAX_EXPIRY_SECONDS = 365 * 24 * 3600


def _inference_error(status: int, message: str) -> httpx.Response:
    return json_response(
        status, {"error": {"object": "error", "type": "invalid_request_error", "message": message}}
    )


class FireworksEmulator(GatewayEmulator):
    provider: ClassVar[str] = "fireworks"
    path_prefix: ClassVar[str] = ""
    DEFAULT_ADMIN_KEY: ClassVar[str] = "fw_emulator_default_admin_key"
    DEFAULT_ACCOUNT: ClassVar[str] = "emulator-account"
    DEFAULT_USER: ClassVar[str] = "vault-service-account"

    def __init__(
        self,
        admin_key: str | None = None,
        *,
        account: str = DEFAULT_ACCOUNT,
        users: Iterable[str] = (DEFAULT_USER,),
        **kwargs: Any,
    ) -> None:
        self.account = account
        self.users = tuple(users)
        if not self.users:
            raise ValueError("a Fireworks emulator needs at least one user")
        super().__init__(admin_key, **kwargs)

    # ---- records

    def _new_record(self, name: str, *, created_at: float) -> KeyRecord:
        secret = "fw_" + random_id(24)
        return KeyRecord(
            key_id=random_id(20).lower(),
            name=name,
            secret=secret,
            created_at=created_at,
            extra={"user": self.users[0], "annotations": {}},
        )

    def _seed_extras(self, rec: KeyRecord, project_id: str | None) -> None:
        # A seeded key may name its user (the emulator's "project" of a key).
        if project_id is not None:
            if project_id not in self.users:
                raise ValueError(f"unknown user {project_id!r}")
            rec.extra["user"] = project_id

    def _view(self, rec: KeyRecord, *, secret: bool = False) -> JSONDict:
        user = rec.extra["user"]
        data: JSONDict = {
            "keyId": rec.key_id,
            "displayName": rec.name,
            "createTime": iso_z(rec.created_at),
            "secure": False,
            "email": f"{user}@{self.account}.iam.fireworks.ai",
            "prefix": rec.secret[:7],
            "annotations": dict(rec.extra["annotations"]),
        }
        if secret:
            data["key"] = rec.secret
        if rec.expires_at is not None:
            data["expireTime"] = iso_z(rec.expires_at)
        return data

    # ---- routes

    def _build_routes(self) -> list[Route]:
        keys = r"/v1/accounts/(?P<account>[^/]+)/users/(?P<user>[^/:]+)/apiKeys"
        return [
            route("POST", keys, "create", self._create),
            route("GET", keys, "list", self._list),
            route("POST", keys + ":delete", "delete", self._delete),
            route("POST", r"/inference/v1/chat/completions", "inference", self._chat, kind="inference"),
        ]

    def _user(self, req: Request) -> str | httpx.Response:
        account, user = req.params["account"], req.params["user"]
        if account != self.account:
            return status_error(403, PERMISSION_DENIED, f"permission denied on account {account}")
        if user not in self.users:
            return status_error(404, NOT_FOUND, f"user accounts/{account}/users/{user} not found")
        return user

    def _create(self, req: Request) -> httpx.Response:
        user = self._user(req)
        if isinstance(user, httpx.Response):
            return user
        try:
            body = json_object(req)
        except BodyError:
            return status_error(400, INVALID_ARGUMENT, "invalid JSON in request body")
        unknown = sorted(set(body) - _BODY_FIELDS)
        if unknown:
            return status_error(400, INVALID_ARGUMENT, f'unknown field "{unknown[0]}"')
        api_key = body.get("apiKey")
        if not isinstance(api_key, dict):
            return status_error(400, INVALID_ARGUMENT, "apiKey is required")
        unknown = sorted(set(api_key) - _KEY_FIELDS - _OUTPUT_FIELDS)
        if unknown:
            return status_error(400, INVALID_ARGUMENT, f'unknown field "{unknown[0]}" in apiKey')
        name = api_key.get("displayName") or "default"
        if not isinstance(name, str):
            return status_error(400, INVALID_ARGUMENT, "apiKey.displayName: expected a string")
        annotations = api_key.get("annotations") or {}
        if not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
            return status_error(400, INVALID_ARGUMENT, "apiKey.annotations: expected a map of strings")
        now = self.now()
        expires_at: float | None = None
        if api_key.get("expireTime") is not None:
            expires_at = parse_rfc3339(api_key["expireTime"])
            if expires_at is None:
                return status_error(
                    400, INVALID_ARGUMENT, "apiKey.expireTime: expected an RFC 3339 timestamp"
                )
            if expires_at <= now:
                return status_error(400, INVALID_ARGUMENT, "expire time must be in the future")
            if expires_at > now + MAX_EXPIRY_SECONDS:
                return status_error(400, INVALID_ARGUMENT, "expire time must be at most one year from now")
        rec = self._new_record(name, created_at=now)
        rec.expires_at = expires_at
        rec.extra.update(user=user, annotations=dict(annotations))
        self._store(rec)
        return json_response(200, self._view(rec, secret=True))

    def _list(self, req: Request) -> httpx.Response:
        user = self._user(req)
        if isinstance(user, httpx.Response):
            return user
        keys = [r for r in self._records_in_order() if not r.deleted and r.extra["user"] == user]
        raw_size, raw_page = req.query.get("pageSize", "0"), req.query.get("pageToken", "0") or "0"
        if not raw_size.isdigit() or not raw_page.isdigit():
            return status_error(400, INVALID_ARGUMENT, "pageSize and pageToken must be non-negative integers")
        size = self._page_cap(int(raw_size) or len(keys) or 1)
        page_no = int(raw_page)
        page = keys[page_no * size : (page_no + 1) * size]
        more = (page_no + 1) * size < len(keys)
        body: JSONDict = {"nextPageToken": str(page_no + 1) if more else "", "totalSize": len(keys)}
        if page:  # proto3 JSON leaves an empty list out
            body["apiKeys"] = [self._view(r) for r in page]
        return json_response(200, body)

    def _delete(self, req: Request) -> httpx.Response:
        user = self._user(req)
        if isinstance(user, httpx.Response):
            return user
        try:
            body = json_object(req)
        except BodyError:
            return status_error(400, INVALID_ARGUMENT, "invalid JSON in request body")
        key_id = body.get("keyId")
        if not isinstance(key_id, str) or not key_id:
            return status_error(400, INVALID_ARGUMENT, "keyId is required")
        rec = self._get_live(key_id)
        if rec is None or rec.extra["user"] != user:
            return status_error(404, NOT_FOUND, f"API key {key_id} not found")
        self._mark_deleted(rec)
        return json_response(200, {})

    # ---- inference

    def _chat(self, req: Request) -> httpx.Response:
        rec = self._lookup_secret(req.token) if req.token else None
        if rec is None or rec.deleted or rec.expired_at(self.now()):
            return _inference_error(401, "The API key you provided is invalid.")
        try:
            body = json_object(req)
        except BodyError:
            return _inference_error(400, "Invalid JSON body")
        model = body.get("model")
        if not isinstance(model, str) or not isinstance(body.get("messages"), list) or not body["messages"]:
            return _inference_error(400, "model and messages are required")
        self._charge(rec, model=model)
        return json_response(
            200,
            {
                "id": str(uuid.uuid4()),
                "object": "chat.completion",
                "created": int(self.now()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "Hello from the emulator."},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 8, "completion_tokens": 5, "total_tokens": 13},
                "system_fingerprint": "fp_" + secrets.token_hex(5),
            },
        )

    # ---- auth

    def _check_admin_auth(self, req: Request, op: str) -> httpx.Response | None:
        rec = self._lookup_secret(req.token) if req.token else None
        if rec is None or self.is_admin_token(req.token):
            return super()._check_admin_auth(req, op)
        # An API key acts as its user, who may manage their own keys (firectl: "creates an API key for the
        # signed in user"): a leased key can list, make and delete keys of its own user, nothing else.
        if rec.deleted or rec.expired_at(self.now()):
            return self._err_invalid_auth()
        if req.params.get("account") == self.account and req.params.get("user") == rec.extra["user"]:
            return None
        return self._err_issued_key_on_admin()

    # ---- errors

    def _err_missing_auth(self) -> httpx.Response:
        return status_error(401, UNAUTHENTICATED, "missing API key")

    def _err_invalid_auth(self) -> httpx.Response:
        return status_error(401, UNAUTHENTICATED, "invalid API key")

    def _err_issued_key_on_admin(self) -> httpx.Response:
        return status_error(403, PERMISSION_DENIED, "permission denied")
