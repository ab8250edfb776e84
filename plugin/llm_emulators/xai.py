"""xAI Management API emulator: API keys of a team, plus the inference endpoint that uses them.

Wire contract (base ``https://management-api.x.ai`` → the server's root; ``Authorization: Bearer <management
key>``):

* ``POST /auth/teams/{teamId}/api-keys`` ``{"name" (required, not empty), "acls": [str], "qps": int,
  "qpm": int, "tpm": str, "expireTime": RFC 3339}`` -> 200 the key object with ``apiKey`` (the secret, only
  here) and ``apiKeyId``; unknown fields -> 400 (strict JSON, as a gRPC gateway); unknown team -> 404.
* ``GET /auth/teams/{teamId}/api-keys`` -> ``{"apiKeys": [...]}`` without secrets, oldest first; one page
  unless a page size is set (``set_page_size``): then ``nextPageToken``, taken back as ``pageToken``.
* ``DELETE /auth/api-keys/{apiKeyId}`` -> ``{}``; a gone key -> 404.
* ``POST /v1/chat/completions`` (the inference API, ``https://api.x.ai`` in reality) with an issued key: it
  must exist, not be disabled, not be past ``expireTime``, and its ACLs must allow the chat endpoint and the
  model. A key with no ACLs can call nothing.

Errors of the management API: ``{"code": <gRPC code>, "message": str, "details": []}`` (a gRPC gateway's
status). Errors of the inference API: ``{"code": str, "error": str}``; an unknown or deleted key gets 400
"Incorrect API key provided", as xAI answers.

Sources: the create path, the key object's fields and the list and delete paths are from xAI's REST
reference; the ACL strings and create fields from xAI's guide "Using Management API". *Unconfirmed* and
emulated as stated: ``expireTime`` as a create field, the list's shape and paging, every error body and
status of the management API (including 404 for a gone key and for an unknown team), and the inference
API's status for an expired or disabled key (403 here).
"""

from __future__ import annotations

import re
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
    UNAUTHENTICATED,
    GatewayEmulator,
    parse_rfc3339,
    status_error,
)

__all__ = ["XAIEmulator"]

_CREATE_FIELDS = frozenset({"name", "acls", "qps", "qpm", "tpm", "expireTime"})
_ACL_RE = re.compile(r"api-key:(model|endpoint):\S+")
# xAI's own message also shows the key, masked; the emulator shows none of it.
_INCORRECT_KEY = "Incorrect API key provided. You can obtain an API key from https://console.x.ai."


def _inference_error(status: int, message: str) -> httpx.Response:
    kind = "Client specified an invalid argument" if status == 400 else "The caller does not have permission"
    return json_response(status, {"code": kind, "error": message})


def _int_or_null(value: Any) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0)


class XAIEmulator(GatewayEmulator):
    provider: ClassVar[str] = "xai"
    path_prefix: ClassVar[str] = ""
    DEFAULT_ADMIN_KEY: ClassVar[str] = "xai-mgmt-emulator-default-management-key"
    DEFAULT_TEAM: ClassVar[str] = "team-emulator"
    USER_ID: ClassVar[str] = "user-emulator"

    def __init__(
        self, admin_key: str | None = None, *, teams: Iterable[str] = (DEFAULT_TEAM,), **kwargs: Any
    ):
        self.teams = tuple(teams)
        if not self.teams:
            raise ValueError("an xAI emulator needs at least one team")
        super().__init__(admin_key, **kwargs)

    # ---- records

    def _new_record(self, name: str, *, created_at: float) -> KeyRecord:
        secret = "xai-" + random_id(80)
        return KeyRecord(
            key_id=str(uuid.uuid4()),
            name=name,
            secret=secret,
            created_at=created_at,
            extra={"team": self.teams[0], "acls": [], "qps": None, "qpm": None, "tpm": None},
        )

    def _seed_extras(self, rec: KeyRecord, project_id: str | None) -> None:
        # Seeded keys may name their team; they get every ACL, like a key made in the console.
        if project_id is not None:
            if project_id not in self.teams:
                raise ValueError(f"unknown team {project_id!r}")
            rec.extra["team"] = project_id
        rec.extra["acls"] = ["api-key:model:*", "api-key:endpoint:*"]

    def _view(self, rec: KeyRecord, *, secret: bool = False) -> JSONDict:
        data: JSONDict = {
            "redactedApiKey": rec.secret[:6] + "*" * 8 + rec.secret[-4:],
            "userId": self.USER_ID,
            "name": rec.name,
            "createTime": iso_z(rec.created_at),
            "modifyTime": iso_z(rec.updated_at if rec.updated_at is not None else rec.created_at),
            "teamId": rec.extra["team"],
            "apiKeyId": rec.key_id,
            "disabled": rec.disabled,
            "aclStrings": list(rec.extra["acls"]),
        }
        if secret:
            data["apiKey"] = rec.secret
        if rec.expires_at is not None:
            data["expireTime"] = iso_z(rec.expires_at)
        for name in ("qps", "qpm", "tpm"):
            if rec.extra[name] is not None:
                data[name] = rec.extra[name]
        return data

    # ---- routes

    def _build_routes(self) -> list[Route]:
        keys = r"/auth/teams/(?P<team>[^/]+)/api-keys"
        return [
            route("POST", keys, "create", self._create),
            route("GET", keys, "list", self._list),
            route("DELETE", r"/auth/api-keys/(?P<key_id>[^/]+)", "delete", self._delete),
            route("POST", r"/v1/chat/completions", "inference", self._chat, kind="inference"),
        ]

    def _team(self, req: Request) -> str | httpx.Response:
        team = req.params["team"]
        return team if team in self.teams else status_error(404, NOT_FOUND, f"team {team} not found")

    def _create(self, req: Request) -> httpx.Response:
        team = self._team(req)
        if isinstance(team, httpx.Response):
            return team
        try:
            body = json_object(req)
        except BodyError:
            return status_error(400, INVALID_ARGUMENT, "invalid JSON in request body")
        unknown = sorted(set(body) - _CREATE_FIELDS)
        if unknown:
            return status_error(400, INVALID_ARGUMENT, f'unknown field "{unknown[0]}"')
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            return status_error(400, INVALID_ARGUMENT, "name: should not be empty")
        acls = body.get("acls", [])
        if not isinstance(acls, list) or not all(isinstance(a, str) and _ACL_RE.fullmatch(a) for a in acls):
            return status_error(
                400, INVALID_ARGUMENT, "acls: each ACL must be api-key:model:<m> or api-key:endpoint:<e>"
            )
        for field in ("qps", "qpm"):
            if not _int_or_null(body.get(field)):
                return status_error(400, INVALID_ARGUMENT, f"{field}: expected a non-negative integer")
        tpm = body.get("tpm")
        if tpm is not None and not (isinstance(tpm, str) and tpm.isdigit()):
            return status_error(400, INVALID_ARGUMENT, "tpm: expected an integer string")
        expires_at: float | None = None
        if body.get("expireTime") is not None:
            expires_at = parse_rfc3339(body["expireTime"])
            if expires_at is None:
                return status_error(400, INVALID_ARGUMENT, "expireTime: expected an RFC 3339 timestamp")
        rec = self._new_record(name, created_at=self.now())
        rec.expires_at = expires_at
        rec.extra.update(team=team, acls=list(acls), qps=body.get("qps"), qpm=body.get("qpm"), tpm=tpm)
        self._store(rec)
        return json_response(200, self._view(rec, secret=True))

    def _list(self, req: Request) -> httpx.Response:
        team = self._team(req)
        if isinstance(team, httpx.Response):
            return team
        keys = [r for r in self._records_in_order() if not r.deleted and r.extra["team"] == team]
        start = 0
        if "pageToken" in req.query:
            token = req.query["pageToken"]
            if not token.isdigit():
                return status_error(400, INVALID_ARGUMENT, "invalid page token")
            start = int(token)
        size = self._page_cap(len(keys) or 1)
        page = keys[start : start + size]
        body: JSONDict = {"apiKeys": [self._view(r) for r in page]}
        if start + size < len(keys):
            body["nextPageToken"] = str(start + size)
        return json_response(200, body)

    def _delete(self, req: Request) -> httpx.Response:
        rec = self._get_live(req.params["key_id"])
        if rec is None:
            return status_error(404, NOT_FOUND, "api key not found")
        self._mark_deleted(rec)
        return json_response(200, {})

    # ---- inference

    def _chat(self, req: Request) -> httpx.Response:
        rec = self._lookup_secret(req.token) if req.token else None
        if rec is None or rec.deleted:
            return _inference_error(400, _INCORRECT_KEY)
        if rec.disabled:
            return _inference_error(403, "The API key is disabled.")
        if rec.expired_at(self.now()):
            return _inference_error(403, "The API key has expired.")
        try:
            body = json_object(req)
        except BodyError:
            return _inference_error(400, "Failed to deserialize the JSON body.")
        model = body.get("model")
        if not isinstance(model, str) or not isinstance(body.get("messages"), list) or not body["messages"]:
            return _inference_error(400, "model and messages are required")
        acls = set(rec.extra["acls"])
        if not acls & {"api-key:endpoint:*", "api-key:endpoint:chat"}:
            return _inference_error(403, "The API key does not have permission to use the chat endpoint.")
        if not acls & {"api-key:model:*", f"api-key:model:{model}"}:
            return _inference_error(403, f"The API key does not have permission to use the model {model}.")
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
                        "message": {
                            "role": "assistant",
                            "content": "Hello from the emulator.",
                            "refusal": None,
                        },
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 8, "completion_tokens": 5, "total_tokens": 13},
                "system_fingerprint": "fp_" + secrets.token_hex(5),
            },
        )

    # ---- errors

    def _err_missing_auth(self) -> httpx.Response:
        return status_error(401, UNAUTHENTICATED, "missing bearer token")

    def _err_invalid_auth(self) -> httpx.Response:
        return status_error(401, UNAUTHENTICATED, "invalid management key")

    def _err_issued_key_on_admin(self) -> httpx.Response:
        # An API key is not a management key.
        return status_error(401, UNAUTHENTICATED, "invalid management key")
