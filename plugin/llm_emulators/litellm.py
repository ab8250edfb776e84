"""LiteLLM proxy key-management emulator (virtual keys).

Wire contract (the proxy's own URL, no prefix; ``Authorization: Bearer <master key>``), following
``litellm/proxy/management_endpoints/key_management_endpoints.py``:

* ``POST /key/generate`` ``{"key_alias", "duration": "30s"|"15m"|"1h"|"7d"|…, "max_budget", "models",
  "metadata", "rpm_limit", "tpm_limit", "team_id", "user_id"}`` -> 200 ``{"key", "key_name", "token_id"
  (sha256 hex of the key), "expires", …}``; duplicate ``key_alias`` -> 400.
* ``POST /key/update`` ``{"key": key or token_id, "duration", …}`` -> ``{"key", <changed fields>}``;
  unknown key -> 404 (with LiteLLM's odd "Team not found" message).
* ``POST /key/delete`` ``{"keys": [...]}`` or ``{"key_aliases": [...]}`` -> ``{"deleted_keys": <as passed>}``;
  nothing matched -> 404 "No keys found"; neither list given -> 500 (as the proxy does).
* ``GET /key/info?key=`` -> ``{"key", "info"}``; ``GET /key/list?page=&size=&key_alias=&key_hash=&
  return_full_object=`` -> ``{"keys": [token ids], "total_count", "current_page", "total_pages"}``
  (size 1..100, default 10; newest first).
* ``POST /key/block`` / ``/key/unblock`` ``{"key"}``.
* ``POST /chat/completions`` and ``/v1/chat/completions`` with a virtual key.

Errors: ``{"error": {"message", "type", "param", "code": "<status as string>"}}``; request validation
errors are FastAPI's 422 ``{"detail": [...]}``.

Admin keys: besides the master key, a virtual key whose ``user_id`` names a user with the ``proxy_admin`` role
(``add_user``, as ``/user/new`` would make one) is let into the management routes; other virtual keys are
refused there (the real proxy lets an internal user manage its own keys: the emulator is stricter). A deleted,
blocked or expired key is refused at once. ``GET /key/info`` without ``key`` answers for the calling key
(404 for the master key, which the proxy does not store).
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from typing import Any, ClassVar

import httpx

from .core import (
    BodyError,
    Emulator,
    FaultKind,
    JSONDict,
    KeyRecord,
    Request,
    Route,
    gateway_page,
    iso_offset,
    json_object,
    json_response,
    random_id,
    route,
    secret_digest,
)

__all__ = ["LiteLLMEmulator", "duration_in_seconds"]

_DURATION = re.compile(r"^(\d+)(mo|s|m|h|d|w)$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "mo": 30 * 86400}
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def duration_in_seconds(duration: str) -> int:
    """LiteLLM's duration strings: <int><s|m|h|d|w|mo>. ``mo`` is taken as 30 days here."""
    m = _DURATION.match(duration)
    if m is None:
        raise ValueError(f"Unsupported duration unit, passed duration: {duration}")
    return int(m.group(1)) * _UNIT_SECONDS[m.group(2)]


def _error(status: int, message: str, type_: str, param: str | None = "None") -> httpx.Response:
    body = {"error": {"message": message, "type": type_, "param": param, "code": str(status)}}
    return json_response(status, body)


def _http_exc(status: int, detail: Any, type_: str = "auth_error") -> httpx.Response:
    """An ``HTTPException(detail=…)`` re-raised as ProxyException: the message is ``str(detail)``."""
    return _error(status, str(detail), type_)


def _validation(loc: list[str | int], type_: str, msg: str, value: Any) -> httpx.Response:
    return json_response(422, {"detail": [{"type": type_, "loc": loc, "msg": msg, "input": value}]})


def hash_if_needed(token: str) -> str:
    return secret_digest(token) if token.startswith("sk-") else token


_FIELD_TYPES: dict[str, tuple[type | tuple[type, ...], str, str]] = {
    "key_alias": (str, "string_type", "Input should be a valid string"),
    "duration": (str, "string_type", "Input should be a valid string"),
    "team_id": (str, "string_type", "Input should be a valid string"),
    "user_id": (str, "string_type", "Input should be a valid string"),
    "max_budget": ((int, float), "float_type", "Input should be a valid number"),
    "rpm_limit": (int, "int_type", "Input should be a valid integer"),
    "tpm_limit": (int, "int_type", "Input should be a valid integer"),
    "models": (list, "list_type", "Input should be a valid list"),
    "metadata": (dict, "dict_type", "Input should be a valid dictionary"),
    "blocked": (bool, "bool_type", "Input should be a valid boolean"),
    "key": (str, "string_type", "Input should be a valid string"),
    "keys": (list, "list_type", "Input should be a valid list"),
    "key_aliases": (list, "list_type", "Input should be a valid list"),
}


class LiteLLMEmulator(Emulator):
    provider: ClassVar[str] = "litellm"
    path_prefix: ClassVar[str] = ""
    DEFAULT_ADMIN_KEY: ClassVar[str] = "sk-emulator:default-master-key"
    DEFAULT_LIST_SIZE: ClassVar[int] = 10

    def __init__(self, admin_key: str | None = None, *, clock: Callable[[], float] = time.time) -> None:
        super().__init__(admin_key, clock=clock)
        self._users: dict[str, str] = {}  # user id -> user_role

    # ---- users and admin keys

    def add_user(self, user_id: str, role: str = "proxy_admin") -> None:
        """A user of the proxy with `role` (``proxy_admin``, ``internal_user``...), as ``/user/new`` makes."""
        with self._lock:
            self._users[user_id] = role

    def admin_key_works(self, value: str) -> bool:
        """Would a management call with this key be let in: the master key, or a live proxy_admin key?"""
        with self._lock:
            return self.is_admin_token(value) or self._admin_virtual_key(value) is not None

    def _admin_virtual_key(self, token: str) -> KeyRecord | None:
        rec = self._lookup_secret(token)
        if rec is None or rec.deleted or rec.disabled or rec.expired_at(self.now()):
            return None
        return rec if self._users.get(rec.extra.get("user_id") or "") == "proxy_admin" else None

    def _check_admin_auth(self, req: Request, op: str) -> httpx.Response | None:
        token = req.token
        if not token:
            return self._err_missing_auth()
        if self.is_admin_token(token) or self._admin_virtual_key(token) is not None:
            if self.faults.take(FaultKind.REVOKE_ADMIN_KEY, op) is not None:
                return self._err_invalid_auth()
            return None
        rec = self._lookup_secret(token)
        if rec is not None and not rec.deleted:
            return self._err_issued_key_on_admin()
        return self._err_invalid_auth()

    # ---- records

    def _new_record(self, name: str, *, created_at: float) -> KeyRecord:
        secret = "sk-" + secrets.token_urlsafe(16)
        return KeyRecord(
            key_id=secret_digest(secret),
            name=name,
            secret=secret,
            created_at=created_at,
            extra={
                "key_name": f"sk-...{secret[-4:]}",
                "team_id": None,
                "user_id": None,
                "rpm": None,
                "tpm": None,
            },
        )

    def _info(self, rec: KeyRecord) -> JSONDict:
        return {
            "key_name": rec.extra["key_name"],
            "key_alias": rec.name or None,
            "spend": self._reported_usage(rec),
            "expires": None if rec.expires_at is None else iso_offset(rec.expires_at),
            "models": list(rec.models),
            "aliases": {},
            "config": {},
            "user_id": rec.extra["user_id"],
            "team_id": rec.extra["team_id"],
            "max_parallel_requests": None,
            "metadata": dict(rec.metadata),
            "tpm_limit": rec.extra["tpm"],
            "rpm_limit": rec.extra["rpm"],
            "max_budget": rec.max_budget,
            "budget_duration": None,
            "budget_reset_at": None,
            "allowed_cache_controls": [],
            "permissions": {},
            "model_spend": {},
            "model_max_budget": {},
            "blocked": rec.disabled or None,
            "created_at": iso_offset(rec.created_at),
            "updated_at": iso_offset(rec.updated_at if rec.updated_at is not None else rec.created_at),
        }

    def _alias_taken(self, alias: str, owner: KeyRecord | None = None) -> httpx.Response | None:
        if not any(r.name == alias and r is not owner for r in self._records.values() if not r.deleted):
            return None
        return _error(
            400,
            f"Key with alias '{alias}' already exists. Unique key aliases across all keys are required.",
            "bad_request_error",
            "key_alias",
        )

    def _find_token(self, key: str) -> KeyRecord | None:
        return self._get_live(hash_if_needed(key))

    # ---- routes

    def _build_routes(self) -> list[Route]:
        return [
            route("POST", r"/key/generate", "create", self._generate),
            route("POST", r"/key/update", "update", self._update),
            route("POST", r"/key/block", "update", self._block),
            route("POST", r"/key/unblock", "update", self._unblock),
            route("POST", r"/key/delete", "delete", self._delete),
            route("GET", r"/key/info", "get", self._info_route),
            route("GET", r"/key/list", "list", self._list),
            route("POST", r"/chat/completions", "inference", self._chat, kind="inference"),
            route("POST", r"/v1/chat/completions", "inference", self._chat, kind="inference"),
        ]

    def _body(self, req: Request) -> JSONDict | httpx.Response:
        """Parse and type-check a body the way FastAPI + pydantic would (422 on failure)."""
        if not req.body.strip():
            return _validation(["body"], "missing", "Field required", None)
        try:
            body = json_object(req)
        except BodyError:
            return _validation(["body", 0], "json_invalid", "JSON decode error", {})
        for name, value in body.items():
            spec = _FIELD_TYPES.get(name)
            if spec is None or value is None:
                continue
            types, err_type, msg = spec
            if isinstance(value, bool) and types is not bool:
                return _validation(["body", name], err_type, msg, value)
            if not isinstance(value, types):
                return _validation(["body", name], err_type, msg, value)
            if isinstance(value, list):
                for i, item in enumerate(value):
                    if not isinstance(item, str):
                        return _validation(
                            ["body", name, i], "string_type", "Input should be a valid string", item
                        )
        return body

    def _generate(self, req: Request) -> httpx.Response:
        body = self._body(req)
        if isinstance(body, httpx.Response):
            return body
        max_budget = body.get("max_budget")
        if max_budget is not None and max_budget < 0:
            return _http_exc(400, {"error": f"max_budget cannot be negative. Received: {max_budget}"})
        now = self.now()
        expires_at: float | None = None
        duration = body.get("duration")
        if duration is not None:
            try:
                expires_at = now + duration_in_seconds(duration)
            except ValueError as exc:
                return _error(400, f"Authentication Error, {exc}", "auth_error")
        alias = body.get("key_alias")
        if alias is not None and (taken := self._alias_taken(alias)) is not None:
            return taken
        rec = self._new_record(alias or "", created_at=now)
        rec.expires_at = expires_at
        rec.models = list(body.get("models") or [])
        rec.max_budget = None if max_budget is None else float(max_budget)
        rec.metadata = dict(body.get("metadata") or {})
        rec.extra.update(
            team_id=body.get("team_id"),
            user_id=body.get("user_id"),
            rpm=body.get("rpm_limit"),
            tpm=body.get("tpm_limit"),
        )
        self._store(rec)
        return json_response(
            200,
            {
                "key": rec.secret,
                "key_name": rec.extra["key_name"],
                "token_id": rec.key_id,
                "expires": None if expires_at is None else iso_offset(expires_at),
                "key_alias": alias,
                "duration": duration,
                "models": list(rec.models),
                "spend": 0.0,
                "max_budget": rec.max_budget,
                "metadata": dict(rec.metadata),
                "user_id": rec.extra["user_id"],
                "team_id": rec.extra["team_id"],
                "tpm_limit": rec.extra["tpm"],
                "rpm_limit": rec.extra["rpm"],
                "blocked": None,
                "created_at": iso_offset(now),
                "updated_at": iso_offset(now),
            },
        )

    def _keyed_body(self, req: Request) -> tuple[JSONDict, str] | httpx.Response:
        body = self._body(req)
        if isinstance(body, httpx.Response):
            return body
        key = body.get("key")
        if key is None:
            return _validation(["body", "key"], "missing", "Field required", body)
        return body, key

    def _update(self, req: Request) -> httpx.Response:
        parsed = self._keyed_body(req)
        if isinstance(parsed, httpx.Response):
            return parsed
        body, key = parsed
        max_budget = body.get("max_budget")
        if max_budget is not None and max_budget < 0:
            return _http_exc(400, {"error": f"max_budget cannot be negative. Received: {max_budget}"})
        rec = self._find_token(key)
        if rec is None:
            return _http_exc(404, {"error": f"Team not found, passed team_id={body.get('team_id')}"})
        changes: JSONDict = {}
        duration = body.get("duration")
        if duration is not None:
            if duration == "-1":
                rec.expires_at = None
            else:
                try:
                    rec.expires_at = self.now() + duration_in_seconds(duration)
                except ValueError as exc:
                    return _error(400, f"Authentication Error, {exc}", "auth_error")
            changes["expires"] = None if rec.expires_at is None else iso_offset(rec.expires_at)
        alias = body.get("key_alias")
        if alias is not None:
            if (taken := self._alias_taken(alias, rec)) is not None:
                return taken
            rec.name = changes["key_alias"] = alias
        if body.get("models") is not None:
            rec.models = list(body["models"])
            changes["models"] = list(rec.models)
        if max_budget is not None:
            rec.max_budget = changes["max_budget"] = float(max_budget)
        if body.get("metadata") is not None:
            rec.metadata = dict(body["metadata"])
            changes["metadata"] = dict(rec.metadata)
        if body.get("blocked") is not None:
            rec.disabled = changes["blocked"] = bool(body["blocked"])
        rec.updated_at = self.now()
        return json_response(200, {"key": key, **changes})

    def _set_blocked(self, req: Request, blocked: bool) -> httpx.Response:
        parsed = self._keyed_body(req)
        if isinstance(parsed, httpx.Response):
            return parsed
        _, key = parsed
        rec = self._find_token(key)
        if rec is None:
            return _error(404, "Key not found in database", "not_found_error", "key")
        rec.disabled = blocked
        rec.updated_at = self.now()
        return json_response(200, {"token": rec.key_id, **self._info(rec)})

    def _block(self, req: Request) -> httpx.Response:
        return self._set_blocked(req, True)

    def _unblock(self, req: Request) -> httpx.Response:
        return self._set_blocked(req, False)

    def _delete(self, req: Request) -> httpx.Response:
        body = self._body(req)
        if isinstance(body, httpx.Response):
            return body
        keys: list[str] | None = body.get("keys")
        aliases: list[str] | None = body.get("key_aliases")
        live = [r for r in self._records.values() if not r.deleted]
        if keys:
            wanted = {hash_if_needed(k) for k in keys}
            matched = [r for r in live if r.key_id in wanted]
            deleted_keys = keys
        elif aliases:
            matched = [r for r in live if r.name and r.name in aliases]
            deleted_keys = aliases
        else:
            return _error(500, "Invalid request type", "internal_server_error")
        if not matched:
            return _http_exc(404, {"error": "No keys found"}, "internal_server_error")
        for rec in matched:
            self._mark_deleted(rec)
        return json_response(200, {"deleted_keys": deleted_keys})

    def _info_route(self, req: Request) -> httpx.Response:
        key = req.query.get("key") or req.token or ""
        rec = self._find_token(key)
        if rec is None:
            return _error(404, "Key not found in database", "not_found_error", "key")
        return json_response(200, {"key": key, "info": self._info(rec)})

    def _list(self, req: Request) -> httpx.Response:
        bounds = {"page": (1, None, 1), "size": (1, 100, self.DEFAULT_LIST_SIZE)}
        values: dict[str, int] = {}
        for name, (low, high, default) in bounds.items():
            raw = req.query.get(name)
            if raw is None:
                values[name] = default
                continue
            try:
                value = int(raw)
            except ValueError:
                return _validation(
                    ["query", name],
                    "int_parsing",
                    "Input should be a valid integer, unable to parse string as an integer",
                    raw,
                )
            if value < low:
                return _validation(
                    ["query", name],
                    "greater_than_equal",
                    f"Input should be greater than or equal to {low}",
                    raw,
                )
            if high is not None and value > high:
                return _validation(
                    ["query", name], "less_than_equal", f"Input should be less than or equal to {high}", raw
                )
            values[name] = value
        raw_full = req.query.get("return_full_object", "false").lower()
        if raw_full not in _TRUE | _FALSE:
            return _validation(
                ["query", "return_full_object"],
                "bool_parsing",
                "Input should be a valid boolean, unable to interpret input",
                raw_full,
            )
        page, size = values["page"], self._page_cap(values["size"])
        alias, key_hash = req.query.get("key_alias"), req.query.get("key_hash")
        keys = [
            r
            for r in reversed(self._records_in_order())
            if not r.deleted
            and (alias is None or r.name == alias)
            and (key_hash is None or r.key_id == key_hash)
        ]
        chunk = keys[(page - 1) * size : page * size]
        items: list[Any] = (
            [{"token": r.key_id, **self._info(r)} for r in chunk]
            if raw_full in _TRUE
            else [r.key_id for r in chunk]
        )
        total = len(keys)
        return json_response(
            200, {"keys": items, "total_count": total, "current_page": page, "total_pages": -(-total // size)}
        )

    # ---- inference

    def _chat(self, req: Request) -> httpx.Response:
        if not req.token:
            return self._err_missing_auth()
        if self.is_admin_token(req.token):
            # The real proxy lets its master key call models; the emulator is stricter on purpose.
            return _error(
                401, "Authentication Error, master key is not accepted for inference here", "auth_error"
            )
        rec = self._lookup_secret(req.token)
        if rec is None or rec.deleted:
            return self._err_invalid_auth()
        now = self.now()
        if rec.disabled:
            return _error(
                401,
                "Authentication Error, Key is blocked. Update via `/key/unblock` if you're admin.",
                "auth_error",
            )
        if rec.expires_at is not None and now >= rec.expires_at:
            return _error(
                400,
                f"Authentication Error - Expired Key. Key Expiry time {iso_offset(rec.expires_at)} "
                f"and current time {iso_offset(now)}",
                "expired_key",
                rec.extra["key_name"],
            )
        if rec.max_budget is not None and rec.usage >= rec.max_budget:
            return _error(
                400,
                f"Budget has been exceeded! Current cost: {rec.usage}, Max budget: {rec.max_budget}",
                "budget_exceeded",
                None,
            )
        try:
            body = json_object(req)
        except BodyError:
            return _error(400, "Invalid JSON payload", "bad_request_error")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return _error(400, f"Invalid model name passed in model={model}", "bad_request_error", "model")
        if rec.models and model not in rec.models and "all-proxy-models" not in rec.models:
            return _error(
                401,
                f"key not allowed to access model. This key can only access models={rec.models}. "
                f"Tried to access {model}",
                "key_model_access_denied",
                "model",
            )
        self._charge(rec, model=model)
        return json_response(
            200,
            {
                "id": "chatcmpl-" + random_id(29),
                "created": int(now),
                "model": model,
                "object": "chat.completion",
                "system_fingerprint": None,
                "choices": [
                    {
                        "finish_reason": "stop",
                        "index": 0,
                        "message": {
                            "content": "Hello from the emulator.",
                            "role": "assistant",
                            "tool_calls": None,
                            "function_call": None,
                        },
                    }
                ],
                "usage": {"prompt_tokens": 8, "completion_tokens": 5, "total_tokens": 13},
            },
        )

    # ---- errors

    def _err_missing_auth(self) -> httpx.Response:
        return _error(401, "Authentication Error, No api key passed in.", "auth_error")

    def _err_invalid_auth(self) -> httpx.Response:
        return _error(
            401,
            "Authentication Error, Invalid proxy server token passed. Unable to find token in cache or "
            "`LiteLLM_VerificationTokenTable`",
            "token_not_found_in_db",
            "key",
        )

    def _err_issued_key_on_admin(self) -> httpx.Response:
        return _error(
            401,
            "Authentication Error, Only proxy admin can be used to generate, delete, update info for new "
            "keys/users/teams. Your role=None. Your user_id=None",
            "auth_error",
        )

    def _err_rate_limited(self, retry_after: float) -> httpx.Response:
        return _error(429, "Rate limit exceeded. Try again later.", "throttling_error")

    def _err_server(self, status: int) -> httpx.Response:
        if status == 502:
            return gateway_page(status)
        return _error(
            status,
            "Internal Server Error" if status != 503 else "Service Unavailable",
            "internal_server_error",
        )

    def _not_found(self, method: str, path: str, *, method_mismatch: bool) -> httpx.Response:
        if method_mismatch:
            return json_response(405, {"detail": "Method Not Allowed"})
        return json_response(404, {"detail": "Not Found"})
