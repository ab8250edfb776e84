"""OpenRouter key-management API emulator.

Wire contract (base ``/api/v1``, ``Authorization: Bearer <management key>``):

* ``POST /keys`` ``{"name" (required), "limit", "limit_reset", "include_byok_in_limit", "expires_at"}`` ->
  **201** ``{"data": {...}, "key": "sk-or-v1-…"}``; ``expires_at`` must be a future ISO-8601 UTC time.
* ``GET /keys?offset=&include_disabled=`` -> ``{"data": [...]}``, at most 100 a page, newest first.
* ``GET|PATCH|DELETE /keys/{hash}``; PATCH takes any of ``name``, ``disabled``, ``limit``, ``limit_reset``,
  ``include_byok_in_limit``; DELETE -> ``{"deleted": true}``; a gone key -> 404.
* ``POST /chat/completions`` with an issued key -> minimal chat completion.

Errors: ``{"error": {"code": int, "message": str}}``. An issued (non-management) key on a management endpoint
gets 403 "Only management keys can perform this operation".
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import httpx

from .core import (
    BodyError,
    Emulator,
    JSONDict,
    KeyRecord,
    Request,
    Route,
    gateway_page,
    iso_z,
    json_object,
    json_response,
    random_id,
    route,
    secret_digest,
)

__all__ = ["OpenRouterEmulator"]

_LIMIT_RESETS = (None, "daily", "weekly", "monthly")


def _error(status: int, message: str) -> httpx.Response:
    return json_response(status, {"error": {"code": status, "message": message}})


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class OpenRouterEmulator(Emulator):
    provider: ClassVar[str] = "openrouter"
    path_prefix: ClassVar[str] = "/api/v1"
    DEFAULT_ADMIN_KEY: ClassVar[str] = "sk-or-v1-emulator:default-management-key"

    # ---- records

    def _new_record(self, name: str, *, created_at: float) -> KeyRecord:
        secret = "sk-or-v1-" + secrets.token_hex(32)
        body = secret.removeprefix("sk-or-v1-")
        return KeyRecord(
            key_id=secret_digest(secret),
            name=name,
            secret=secret,
            created_at=created_at,
            extra={"label": f"sk-or-v1-{body[:3]}...{body[-4:]}", "limit_reset": None, "byok": False},
        )

    def _usage_since(self, rec: KeyRecord, start: datetime) -> float:
        since, until = start.timestamp(), self.now() - self.usage_delay
        return sum(c.usd for c in self._charges if c.key_id == rec.key_id and since <= c.at <= until)

    def _data(self, rec: KeyRecord) -> JSONDict:
        usage = self._reported_usage(rec)
        day = datetime.fromtimestamp(self.now(), UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return {
            "hash": rec.key_id,
            "name": rec.name,
            "label": rec.extra["label"],
            "disabled": rec.disabled,
            "limit": rec.limit,
            "limit_remaining": None if rec.limit is None else max(0.0, rec.limit - usage),
            "limit_reset": rec.extra["limit_reset"],
            "include_byok_in_limit": rec.extra["byok"],
            "usage": usage,
            # The current UTC day, week (from Monday) and month, as OpenRouter documents them.
            "usage_daily": self._usage_since(rec, day),
            "usage_weekly": self._usage_since(rec, day - timedelta(days=day.weekday())),
            "usage_monthly": self._usage_since(rec, day.replace(day=1)),
            "byok_usage": 0,
            "created_at": iso_z(rec.created_at),
            "updated_at": None if rec.updated_at is None else iso_z(rec.updated_at),
            "expires_at": None if rec.expires_at is None else iso_z(rec.expires_at),
        }

    # ---- routes

    def _build_routes(self) -> list[Route]:
        one = r"/api/v1/keys/(?P<hash>[^/]+)"
        return [
            route("POST", r"/api/v1/keys", "create", self._create),
            route("GET", r"/api/v1/keys", "list", self._list),
            route("GET", one, "get", self._get),
            route("PATCH", one, "update", self._update),
            route("DELETE", one, "delete", self._delete),
            route("POST", r"/api/v1/chat/completions", "inference", self._chat, kind="inference"),
        ]

    def _validate_common(self, body: JSONDict) -> httpx.Response | None:
        limit = body.get("limit")
        if limit is not None and (not _is_number(limit) or limit < 0):
            return _error(400, "limit: Expected a non-negative number or null")
        if "limit_reset" in body and body["limit_reset"] not in _LIMIT_RESETS:
            return _error(400, "limit_reset: Invalid enum value. Expected 'daily' | 'weekly' | 'monthly'")
        if "include_byok_in_limit" in body and not isinstance(body["include_byok_in_limit"], bool):
            return _error(400, "include_byok_in_limit: Expected boolean")
        if "name" in body and not isinstance(body["name"], str):
            return _error(400, "name: Expected string")
        return None

    def _create(self, req: Request) -> httpx.Response:
        try:
            body = json_object(req)
        except BodyError:
            return _error(400, "Invalid JSON body")
        if (bad := self._validate_common(body)) is not None:
            return bad
        name = body.get("name")
        if not isinstance(name, str) or not name:
            return _error(400, "name: Required")
        expires_at: float | None = None
        if body.get("expires_at") is not None:
            parsed = _parse_utc(body["expires_at"])
            if parsed is None:
                return _error(400, "expires_at: Expected an ISO-8601 UTC timestamp")
            if parsed <= self.now():
                return _error(400, "expires_at: Expiration time must be in the future")
            expires_at = parsed
        rec = self._new_record(name, created_at=self.now())
        rec.limit = float(body["limit"]) if body.get("limit") is not None else None
        rec.extra["limit_reset"] = body.get("limit_reset")
        rec.extra["byok"] = bool(body.get("include_byok_in_limit", False))
        rec.expires_at = expires_at
        self._store(rec)
        return json_response(201, {"data": self._data(rec), "key": rec.secret})

    def _list(self, req: Request) -> httpx.Response:
        raw_offset = req.query.get("offset", "0")
        try:
            offset = int(raw_offset)
        except ValueError:
            return _error(400, "offset: Expected number, received string")
        if offset < 0:
            return _error(400, "offset: Number must be greater than or equal to 0")
        raw_disabled = req.query.get("include_disabled", "false")
        if raw_disabled not in ("true", "false"):
            return _error(400, "include_disabled: Expected 'true' | 'false'")
        include_disabled = raw_disabled == "true"
        keys = [
            r
            for r in reversed(self._records_in_order())
            if not r.deleted and (include_disabled or not r.disabled)
        ]
        page = keys[offset : offset + self._page_cap(self.MAX_PAGE_SIZE)]
        return json_response(200, {"data": [self._data(r) for r in page]})

    def _find(self, req: Request) -> KeyRecord | httpx.Response:
        rec = self._get_live(req.params["hash"])
        return _error(404, "Key not found") if rec is None else rec

    def _get(self, req: Request) -> httpx.Response:
        found = self._find(req)
        return found if isinstance(found, httpx.Response) else json_response(200, {"data": self._data(found)})

    def _update(self, req: Request) -> httpx.Response:
        found = self._find(req)
        if isinstance(found, httpx.Response):
            return found
        try:
            body = json_object(req)
        except BodyError:
            return _error(400, "Invalid JSON body")
        if (bad := self._validate_common(body)) is not None:
            return bad
        if "disabled" in body and not isinstance(body["disabled"], bool):
            return _error(400, "disabled: Expected boolean")
        if "name" in body:
            found.name = body["name"]
        if "disabled" in body:
            found.disabled = body["disabled"]
        if "limit" in body:
            found.limit = None if body["limit"] is None else float(body["limit"])
        if "limit_reset" in body:
            found.extra["limit_reset"] = body["limit_reset"]
        if "include_byok_in_limit" in body:
            found.extra["byok"] = body["include_byok_in_limit"]
        # Other fields (expires_at among them) are not updatable: silently dropped, as schema validation does.
        found.updated_at = self.now()
        return json_response(200, {"data": self._data(found)})

    def _delete(self, req: Request) -> httpx.Response:
        found = self._find(req)
        if isinstance(found, httpx.Response):
            return found
        self._mark_deleted(found)
        return json_response(200, {"deleted": True})

    # ---- inference

    def _chat(self, req: Request) -> httpx.Response:
        if not req.token:
            return self._err_missing_auth()
        if self.is_admin_token(req.token):
            return _error(401, "Management keys cannot be used for inference")
        rec = self._lookup_secret(req.token)
        if rec is None or rec.deleted:
            return _error(401, "User not found.")
        if rec.disabled:
            return _error(401, "API key is disabled")
        if rec.expired_at(self.now()):
            return _error(401, "API key has expired")
        if rec.limit is not None and rec.usage >= rec.limit:
            return _error(402, "Key limit exceeded. Raise the key's limit to continue.")
        try:
            body = json_object(req)
        except BodyError:
            return _error(400, "Invalid JSON body")
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            return _error(400, 'Input required: specify "prompt" or "messages"')
        model = body.get("model") if isinstance(body.get("model"), str) else "openrouter/auto"
        self._charge(rec, model=str(model))
        return json_response(
            200,
            {
                "id": "gen-" + random_id(24),
                "provider": "Emulator",
                "model": model,
                "object": "chat.completion",
                "created": int(self.now()),
                "choices": [
                    {
                        "logprobs": None,
                        "finish_reason": "stop",
                        "native_finish_reason": "stop",
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": "Hello from the emulator.",
                            "refusal": None,
                            "reasoning": None,
                        },
                    }
                ],
                "usage": {"prompt_tokens": 8, "completion_tokens": 5, "total_tokens": 13},
            },
        )

    # ---- errors

    def _err_missing_auth(self) -> httpx.Response:
        return _error(401, "No auth credentials found")

    def _err_invalid_auth(self) -> httpx.Response:
        return _error(401, "User not found.")

    def _err_issued_key_on_admin(self) -> httpx.Response:
        return _error(403, "Only management keys can perform this operation")

    def _err_rate_limited(self, retry_after: float) -> httpx.Response:
        return _error(429, "Rate limit exceeded")

    def _err_server(self, status: int) -> httpx.Response:
        if status == 502:
            return gateway_page(status)
        return _error(status, "Service Unavailable" if status == 503 else "Internal Server Error")

    def _not_found(self, method: str, path: str, *, method_mismatch: bool) -> httpx.Response:
        return _error(404, "Not Found")


def _parse_utc(value: Any) -> float | None:
    """An ISO-8601 time with an explicit UTC offset (Z or +00:00) as epoch seconds; None if it is not one."""
    if not isinstance(value, str):
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    if dt.tzinfo is None or dt.utcoffset() != timedelta(0):
        return None
    return dt.astimezone(UTC).timestamp()
