"""Anthropic Admin API emulator: pre-made API keys switched between active and inactive (check-out sets).

Anthropic's Admin API cannot create or delete API keys; it lists them, reads one, and updates a key's ``name``
and ``status``. This emulator serves exactly that, plus ``POST /v1/messages``, which accepts a key only while
its status is ``active``. Keys are pre-made by the test (:meth:`AnthropicEmulator.add_key`, or
``POST /_emulator/keys``), as an operator makes them in the console.

Wire contract (base ``/v1``; headers ``x-api-key: <admin key>`` and ``anthropic-version: 2023-06-01``):

* ``GET /organizations/api_keys?limit=&after_id=&before_id=&status=&workspace_id=&created_by_user_id=`` ->
  ``{"data": [api_key...], "first_id", "last_id", "has_more"}``; ``limit`` 1..1000, default 20; newest first.
* ``GET /organizations/api_keys/{api_key_id}`` -> one ``api_key``; an unknown id -> 404 ``not_found_error``.
* ``POST /organizations/api_keys/{api_key_id}`` ``{"name"?, "status"?: "active"|"inactive"|"archived"}`` ->
  the updated ``api_key``. Archiving is one-way: an archived key's status cannot change again (400).
* ``POST /messages`` with ``x-api-key: <an active key>`` -> a minimal Messages response.

An ``api_key`` object: ``{"type": "api_key", "id": "apikey_01…", "name", "status":
"active"|"inactive"|"archived"|"expired", "workspace_id": str|null, "scope": {"type": "workspace",
"workspace_id"}, "created_at": RFC 3339, "created_by": {"id", "type": "user"}, "expires_at": RFC 3339|null,
"partial_key_hint": "sk-ant-api03-abc...wxAA", "principal": null}``. It never carries the key's value.

Errors: ``{"type": "error", "error": {"type", "message"}, "request_id": "req_…"}`` with 400
``invalid_request_error``, 401 ``authentication_error``, 403 ``permission_error``, 404 ``not_found_error``,
429 ``rate_limit_error`` (with ``retry-after``), 500 ``api_error``, 529 ``overloaded_error``. Every answer
carries a ``request-id`` header.

Where each fact comes from (looked up 2026-11):

* Paths, methods, query parameters (``after_id``, ``before_id``, ``limit`` 1..1000 default 20, ``status`` with
  ``active|archived|expired|inactive``, ``workspace_id``, ``created_by_user_id``), the list envelope
  (``data``, ``first_id``, ``last_id``, ``has_more``), the update body (``name`` 1..500 characters, ``status``
  ``active|inactive|archived``) and the ``api_key`` fields: Anthropic's API reference pages
  (platform.claude.com/docs/en/api/admin/api_keys/{list,retrieve,update}, and the per-SDK pages under
  /docs/en/api/{python,cli,beta}/organization/api_keys), and a JSON Schema derived from Anthropic's
  organizations OpenAPI document (``BetaApiKey``: ``scope``, ``principal``, ``expires_at``, ``workspace_id``
  null for the default workspace and deprecated in favour of ``scope``).
* ``x-api-key`` with an ``sk-ant-admin…`` key and ``anthropic-version: 2023-06-01``: the Admin API overview
  (docs.anthropic.com/en/docs/administration/administration-api) and the reference's curl examples;
  ``../shared/docs/provider-admin-apis.md`` (archived is one-way; no create, no delete).
* The error envelope and the status/type table: docs.anthropic.com/en/api/errors; the ``request_id`` field in
  the body and the ``request-id`` header: the same page (newer revision) and real bodies quoted in public
  issues. The SDK (anthropic-sdk-python ``_client.py``) maps 529 to ``OverloadedError`` and reads
  ``retry-after`` / ``retry-after-ms``.
* Messages in bodies quoted from the real API in public issues: ``anthropic-version: header is required``
  (400), ``anthropic-version: "…" is not a valid version`` (400), ``x-api-key header is required`` (401),
  ``invalid x-api-key`` (401).

*Unconfirmed* (chosen to be no kinder than the real API; code must not depend on the exact text):

* Whether the Admin API still requires ``anthropic-version``: older reference pages mark it required, newer
  ones optional. The emulator requires it (``require_version=False`` accepts its absence); the accepted
  values are the documented versions ``2023-06-01`` and ``2023-01-01``.
* The check order (version before auth) and the wording of every message not listed above: the refusal to
  change an archived (or expired) key's status, unknown body fields ("Extra inputs are not permitted"),
  query validation, an unknown or both pagination cursors (400), an unknown path (404) or method (405).
* What a standard (non-admin) key gets on the Admin API, and what an admin key gets on ``/v1/messages``:
  both 401 ``invalid x-api-key`` here; the real API may answer 403 ``permission_error``.
* What an inactive, archived or expired key gets on ``/v1/messages``: 401 ``invalid x-api-key`` here.
* The list order (newest first, as Anthropic's other list endpoints), that ``workspace_id`` filters on the
  real workspace id (the default workspace's too), and that an expired key that is archived shows
  ``archived``.
* The ``api_key`` object of older API versions lacks ``scope``, ``principal`` and ``expires_at``: do not
  depend on them.

Test helpers beyond the shared core (faults, clock, state): :meth:`add_key`, :meth:`key_status`,
:meth:`set_status` (a console action, not counted), :meth:`status_changes`, :meth:`status_change_count`,
:meth:`inference_count`, :meth:`drop_connection`; over HTTP ``POST /_emulator/keys``,
``GET /_emulator/keys/{id}``, ``POST /_emulator/keys/{id}/status`` and ``POST /_emulator/drops``.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, cast

import httpx

from .core import (
    OPS,
    BodyError,
    DroppedResponse,
    Emulator,
    JSONDict,
    KeyRecord,
    LiveKey,
    Request,
    Route,
    bearer_token,
    gateway_page,
    json_object,
    json_response,
    route,
)

__all__ = ["AnthropicEmulator", "Drop"]

STATUSES = ("active", "inactive", "archived")
LIST_STATUSES = ("active", "archived", "expired", "inactive")
VERSIONS = frozenset({"2023-06-01", "2023-01-01"})
KEY_PREFIX = "sk-ant-api03-"
_UPDATE_FIELDS = frozenset({"name", "status"})
_LIST_PARAMS = frozenset({"limit", "after_id", "before_id", "status", "workspace_id", "created_by_user_id"})
_NOT_AN_INT = "limit: Input should be a valid integer, unable to parse string as an integer"
_MESSAGES_REQUIRED = ("model", "max_tokens", "messages")
# Anthropic's ids: a type prefix, "01", then base58-looking characters.
_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def new_id(prefix: str, nchars: int = 22) -> str:
    return prefix + "01" + "".join(secrets.choice(_ALPHABET) for _ in range(nchars))


def new_key_value() -> str:
    # Real keys are sk-ant-api03- + 95 characters ending in "AA".
    return KEY_PREFIX + secrets.token_urlsafe(72)[:93] + "AA"


def rfc3339(ts: float) -> str:
    """RFC 3339 UTC with microseconds and Z, as in the reference's examples."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _error(status: int, type_: str, message: str, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"type": "error", "error": {"type": type_, "message": message}, "request_id": new_id("req_", 22)}
    return json_response(status, body, headers)


def _invalid(message: str) -> httpx.Response:
    return _error(400, "invalid_request_error", message)


def _unauthorized(message: str = "invalid x-api-key") -> httpx.Response:
    return _error(401, "authentication_error", message)


def _quoted_choices(values: tuple[str, ...]) -> str:
    quoted = [f"'{v}'" for v in values]
    return ", ".join(quoted[:-1]) + f" or {quoted[-1]}"


@dataclass
class Drop:
    """Close the connection without an answer on a matching admin call, ``times`` times (None: forever).

    ``after=True``: the call is carried out first (an update sticks, the caller cannot know); ``after=False``:
    dropped before anything happens. ``op`` is ``list``, ``get``, ``update`` or ``all``.
    """

    op: str = "update"
    times: int | None = 1
    after: bool = True
    hits: int = 0

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"op must be one of {OPS}, got {self.op!r}")
        if self.times is not None and (isinstance(self.times, bool) or self.times < 1):
            raise ValueError("times must be a positive integer or None (forever)")

    def to_json(self) -> JSONDict:
        return {"op": self.op, "times": self.times, "after": self.after, "hits": self.hits}


class AnthropicEmulator(Emulator):
    provider: ClassVar[str] = "anthropic"
    path_prefix: ClassVar[str] = "/v1"
    # The ":" keeps it from looking like a real key, as the other emulators' defaults do.
    DEFAULT_ADMIN_KEY: ClassVar[str] = "sk-ant-admin01-emulator:default-admin-key"
    MAX_PAGE_SIZE: ClassVar[int] = 1000
    DEFAULT_LIST_LIMIT: ClassVar[int] = 20

    def __init__(
        self,
        admin_key: str | None = None,
        *,
        clock: Callable[[], float] = time.time,
        require_version: bool = True,
        default_workspace_id: str | None = None,
    ) -> None:
        self.require_version = require_version
        self.default_workspace_id = default_workspace_id or new_id("wrkspc_")
        self.creator_user_id = new_id("user_")
        self._drops: list[Drop] = []
        self._drops_lock = threading.Lock()
        self._seq = 0
        super().__init__(admin_key, clock=clock)

    # ---- records

    def _new_record(self, name: str, *, created_at: float) -> KeyRecord:
        self._seq += 1
        return KeyRecord(
            key_id=new_id("apikey_"),
            name=name,
            secret=new_key_value(),
            created_at=created_at,
            extra={
                "status": "active",
                "seq": self._seq,
                "created_by": self.creator_user_id,
                "changes": [],
                "update_calls": 0,
                "inference_calls": 0,
            },
        )

    def _seed_extras(self, rec: KeyRecord, project_id: str | None) -> None:
        # The core's seed passes a "project"; for Anthropic that is the key's workspace.
        rec.project_id = project_id or self.default_workspace_id
        rec.extra["status"] = "inactive" if rec.disabled else "active"

    def _status(self, rec: KeyRecord) -> str:
        stored = cast(str, rec.extra["status"])
        if stored != "archived" and rec.expired_at(self.now()):
            return "expired"
        return stored

    def _set_stored_status(self, rec: KeyRecord, status: str) -> None:
        rec.extra["status"] = status
        rec.disabled = status != "active"

    def _hint(self, rec: KeyRecord) -> str:
        body = rec.secret.removeprefix(KEY_PREFIX)
        prefix = KEY_PREFIX if rec.secret.startswith(KEY_PREFIX) else ""
        return f"{prefix}{body[:3]}...{body[-4:]}"

    def _key_json(self, rec: KeyRecord) -> JSONDict:
        workspace = rec.project_id or self.default_workspace_id
        return {
            "type": "api_key",
            "id": rec.key_id,
            "name": rec.name,
            "status": self._status(rec),
            "workspace_id": None if workspace == self.default_workspace_id else workspace,
            "scope": {"type": "workspace", "workspace_id": workspace},
            "created_at": rfc3339(rec.created_at),
            "created_by": {"id": rec.extra["created_by"], "type": "user"},
            "expires_at": None if rec.expires_at is None else rfc3339(rec.expires_at),
            "partial_key_hint": self._hint(rec),
            "principal": None,
        }

    # ---- test helpers

    def add_key(
        self,
        name: str = "check-out",
        *,
        key_id: str | None = None,
        value: str | None = None,
        status: str = "active",
        workspace_id: str | None = None,
        created_at: float | None = None,
        expires_at: float | None = None,
        created_by: str | None = None,
    ) -> LiveKey:
        """Pre-make a key as an operator does in the console (the snapshot's ``secret`` is its value)."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}")
        if not name or len(name) > 500:
            raise ValueError("name must be 1..500 characters")
        with self._lock:
            rec = self._new_record(name, created_at=self.now() if created_at is None else created_at)
            if key_id is not None:
                if not key_id or "/" in key_id or key_id in self._records:
                    raise ValueError(f"key id {key_id!r} is empty, has a slash or is taken")
                rec.key_id = key_id
            if value is not None:
                if not value or self._lookup_secret(value) is not None or value == self.admin_key:
                    raise ValueError("key value is empty or already used")
                rec.secret = value
            rec.project_id = workspace_id or self.default_workspace_id
            rec.expires_at = expires_at
            if created_by is not None:
                rec.extra["created_by"] = created_by
            self._set_stored_status(rec, status)
            self._store(rec)
            return rec.snapshot(self.now())

    def _record(self, key_id: str) -> KeyRecord:
        rec = self._records.get(key_id)
        if rec is None:
            raise KeyError(key_id)
        return rec

    def key_status(self, key_id: str) -> str:
        """The status the API reports now (``expired`` once past ``expires_at``). Unknown id -> KeyError."""
        with self._lock:
            return self._status(self._record(key_id))

    def set_status(self, key_id: str, status: str) -> None:
        """Change a key's status as the console does (archive it, say); not counted as an API change."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}")
        with self._lock:
            self._set_stored_status(self._record(key_id), status)

    def status_changes(self, key_id: str) -> list[tuple[str, str]]:
        """Each status change made through the API, as (before, after), in order."""
        with self._lock:
            return list(self._record(key_id).extra["changes"])

    def status_change_count(self, key_id: str | None = None) -> int:
        """How many status changes the API made, for one key or for all."""
        with self._lock:
            recs = [self._record(key_id)] if key_id is not None else list(self._records.values())
            return sum(len(r.extra["changes"]) for r in recs)

    def update_calls(self, key_id: str) -> int:
        """Successful update calls on a key, whether or not they changed anything."""
        with self._lock:
            return cast(int, self._record(key_id).extra["update_calls"])

    def inference_count(self, key_id: str) -> int:
        """Messages the key was allowed to send."""
        with self._lock:
            return cast(int, self._record(key_id).extra["inference_calls"])

    def drop_connection(self, op: str = "update", times: int | None = 1, *, after: bool = True) -> Drop:
        """Lose the answer of the next ``times`` matching admin calls (see :class:`Drop`)."""
        drop = Drop(op=op, times=times, after=after)
        with self._drops_lock:
            self._drops.append(drop)
        return drop

    def _take_drop(self, op: str, *, after: bool) -> bool:
        with self._drops_lock:
            for drop in self._drops:
                if drop.after is after and drop.op in ("all", op):
                    drop.hits += 1
                    if drop.times is not None:
                        drop.times -= 1
                        if drop.times == 0:
                            self._drops.remove(drop)
                    return True
        return False

    def _reset_provider(self) -> None:
        with self._drops_lock:
            self._drops.clear()

    def _provider_state(self) -> JSONDict:
        with self._drops_lock:
            drops = [d.to_json() for d in self._drops]
        keys = [
            {**self._key_json(r), "status_changes": len(r.extra["changes"])} for r in self._records.values()
        ]
        return {"anthropic_keys": keys, "drops": drops, "default_workspace_id": self.default_workspace_id}

    # ---- request pipeline: x-api-key instead of Bearer, anthropic-version first

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.startswith("/_emulator/") or path == "/_emulator":
            return self._control(request)
        response = self._route(request)
        response.headers["request-id"] = new_id("req_", 22)
        return response

    def _route(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        matched_path = False
        for rt in self._routes:
            m = rt.pattern.fullmatch(path)
            if m is None:
                continue
            matched_path = True
            if rt.method != request.method:
                continue
            if (bad := self._check_version(request)) is not None:
                return bad
            token = request.headers.get("x-api-key", "").strip() or None
            req = Request(request, request.method, path, m.groupdict(), token)
            if rt.kind == "inference":
                with self._lock:
                    return rt.handler(req)
            return self._admin_call(rt, req)
        return self._not_found(request.method, path, method_mismatch=matched_path)

    def _check_version(self, request: httpx.Request) -> httpx.Response | None:
        version = request.headers.get("anthropic-version")
        if version is None:
            return _invalid("anthropic-version: header is required") if self.require_version else None
        if version.strip() not in VERSIONS:
            return _invalid(f'anthropic-version: "{version}" is not a valid version')
        return None

    def _answer(self, route: Route, req: Request, op: str) -> httpx.Response:
        if self._take_drop(op, after=False):
            raise DroppedResponse("Server disconnected without sending a response.", request=req.raw)
        response = super()._answer(route, req, op)
        if 200 <= response.status_code < 300 and self._take_drop(op, after=True):
            raise DroppedResponse("Server disconnected without sending a response.", request=req.raw)
        return response

    # ---- admin routes

    def _build_routes(self) -> list[Route]:
        keys = r"/v1/organizations/api_keys"
        one = keys + r"/(?P<api_key_id>[^/]+)"
        return [
            route("GET", keys, "list", self._list),
            route("GET", one, "get", self._get),
            route("POST", one, "update", self._update),
            route("POST", r"/v1/messages", "inference", self._messages, kind="inference"),
        ]

    def _list(self, req: Request) -> httpx.Response:
        q = req.query
        unknown = sorted(
            set(q) - {"limit", "after_id", "before_id", "status", "workspace_id", "created_by_user_id"}
        )
        if unknown:
            return _invalid(f"{unknown[0]}: Extra inputs are not permitted")
        limit = self.DEFAULT_LIST_LIMIT
        if "limit" in q:
            raw = q["limit"]
            if not re.fullmatch(r"[+-]?\d+", raw.strip()):
                return _invalid(
                    "limit: Input should be a valid integer, unable to parse string as an integer"
                )
            limit = int(raw)
            if limit < 1:
                return _invalid("limit: Input should be greater than or equal to 1")
            if limit > self.MAX_PAGE_SIZE:
                return _invalid(f"limit: Input should be less than or equal to {self.MAX_PAGE_SIZE}")
        status = q.get("status")
        if status is not None and status not in LIST_STATUSES:
            return _invalid(f"status: Input should be {_quoted_choices(LIST_STATUSES)}")
        after, before = q.get("after_id"), q.get("before_id")
        if after is not None and before is not None:
            return _invalid("Only one of before_id and after_id may be given")
        # Newest first; the position in the full order anchors a cursor even if the key left the filter.
        ordered = sorted(self._records.values(), key=lambda r: (r.created_at, r.extra["seq"]), reverse=True)
        position = {r.key_id: i for i, r in enumerate(ordered)}
        cursor = after if after is not None else before
        if cursor is not None and cursor not in position:
            name = "after_id" if after is not None else "before_id"
            return _invalid(f"{name}: no API key with this id")
        workspace, creator = q.get("workspace_id"), q.get("created_by_user_id")
        matching = [
            r
            for r in ordered
            if (status is None or self._status(r) == status)
            and (workspace is None or (r.project_id or self.default_workspace_id) == workspace)
            and (creator is None or r.extra["created_by"] == creator)
        ]
        size = self._page_cap(limit)
        if after is not None:
            rest = [r for r in matching if position[r.key_id] > position[after]]
            page, has_more = rest[:size], len(rest) > size
        elif before is not None:
            rest = [r for r in matching if position[r.key_id] < position[before]]
            page, has_more = rest[-size:], len(rest) > size
        else:
            page, has_more = matching[:size], len(matching) > size
        return json_response(
            200,
            {
                "data": [self._key_json(r) for r in page],
                "first_id": page[0].key_id if page else None,
                "last_id": page[-1].key_id if page else None,
                "has_more": has_more,
            },
        )

    def _find(self, req: Request) -> KeyRecord | httpx.Response:
        rec = self._records.get(req.params["api_key_id"])
        if rec is None:
            return _error(404, "not_found_error", "The requested resource could not be found.")
        return rec

    def _get(self, req: Request) -> httpx.Response:
        found = self._find(req)
        return found if isinstance(found, httpx.Response) else json_response(200, self._key_json(found))

    def _update(self, req: Request) -> httpx.Response:
        found = self._find(req)
        if isinstance(found, httpx.Response):
            return found
        try:
            body = json_object(req)
        except BodyError:
            return _invalid("There was an issue with the request body: it must be a JSON object")
        unknown = sorted(set(body) - _UPDATE_FIELDS)
        if unknown:
            return _invalid(f"{unknown[0]}: Extra inputs are not permitted")
        name, status = body.get("name"), body.get("status")
        if name is not None:
            if not isinstance(name, str):
                return _invalid("name: Input should be a valid string")
            if len(name) < 1:
                return _invalid("name: String should have at least 1 character")
            if len(name) > 500:
                return _invalid("name: String should have at most 500 characters")
        if status is not None and status not in STATUSES:
            return _invalid(f"status: Input should be {_quoted_choices(STATUSES)}")
        current = self._status(found)
        if status is not None and status != current:
            if current == "archived":
                return _invalid("Cannot change the status of an archived API key.")
            if current == "expired":
                return _invalid("Cannot change the status of an expired API key.")
        if name is not None:
            found.name = name
        if status is not None and status != current:
            found.extra["changes"].append((current, status))
            self._set_stored_status(found, status)
        found.extra["update_calls"] += 1
        found.updated_at = self.now()
        return json_response(200, self._key_json(found))

    # ---- inference

    def _messages(self, req: Request) -> httpx.Response:
        if not req.token:
            return _unauthorized("x-api-key header is required")
        rec = self._lookup_secret(req.token)
        if rec is None or self._status(rec) != "active":
            return _unauthorized()
        try:
            body = json_object(req)
        except BodyError:
            return _invalid("There was an issue with the request body: it must be a JSON object")
        for field in _MESSAGES_REQUIRED:
            if field not in body:
                return _invalid(f"{field}: Field required")
        if not isinstance(body["model"], str) or not body["model"]:
            return _invalid("model: Input should be a valid string")
        max_tokens = body["max_tokens"]
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
            return _invalid("max_tokens: Input should be a valid integer greater than or equal to 1")
        if not isinstance(body["messages"], list) or not body["messages"]:
            return _invalid("messages: at least one message is required")
        rec.extra["inference_calls"] += 1
        rec.usage += self.cost_per_request
        return json_response(
            200,
            {
                "id": new_id("msg_", 22),
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": [{"type": "text", "text": "Hello from the emulator."}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": 8, "output_tokens": 6},
            },
        )

    # ---- errors

    def _err_missing_auth(self) -> httpx.Response:
        return _unauthorized("x-api-key header is required")

    def _err_invalid_auth(self) -> httpx.Response:
        return _unauthorized()

    def _err_issued_key_on_admin(self) -> httpx.Response:
        return _unauthorized()

    def _err_rate_limited(self, retry_after: float) -> httpx.Response:
        return _error(429, "rate_limit_error", "Number of requests has exceeded your rate limit.")

    def _err_server(self, status: int) -> httpx.Response:
        if status == 529:
            return _error(529, "overloaded_error", "Overloaded")
        if status == 502:
            return gateway_page(status)
        return _error(status, "api_error", "Internal server error")

    def _not_found(self, method: str, path: str, *, method_mismatch: bool) -> httpx.Response:
        if method_mismatch:
            return _error(405, "invalid_request_error", f"Method {method} is not allowed for {path}")
        return _error(404, "not_found_error", "Not Found")

    def _err_echo_admin_key(self, status: int, token: str) -> httpx.Response:
        return _error(status, "authentication_error", f"invalid x-api-key: {token}")

    # ---- control endpoints beyond the core's

    def _control(self, request: httpx.Request) -> httpx.Response:
        name = request.url.path.removeprefix("/_emulator").strip("/")
        method = request.method
        try:
            if name == "faults" and method == "DELETE":
                with self._drops_lock:
                    self._drops.clear()
            elif name == "drops" and method == "POST":
                body = _control_body(request)
                drop = self.drop_connection(
                    str(body.get("op", "update")),
                    _opt_int(body.get("times", 1)),
                    after=bool(body.get("after", True)),
                )
                return json_response(200, drop.to_json())
            elif name == "keys" and method == "POST":
                return self._control_add_key(_control_body(request))
            elif name.startswith("keys/"):
                return self._control_key(name.removeprefix("keys/"), method, request)
        except (ValueError, TypeError) as exc:
            return json_response(400, {"error": f"bad control request: {exc}"})
        except KeyError as exc:
            return json_response(404, {"error": f"no key {exc}"})
        return super()._control(request)

    def _control_add_key(self, body: JSONDict) -> httpx.Response:
        generated = body.get("value") is None
        key = self.add_key(
            str(body.get("name", "check-out")),
            key_id=_opt_str(body.get("id")),
            value=_opt_str(body.get("value")),
            status=str(body.get("status", "active")),
            workspace_id=_opt_str(body.get("workspace_id")),
            created_at=_opt_float(body.get("created_at")),
            expires_at=_opt_float(body.get("expires_at")),
        )
        with self._lock:
            answer = self._key_json(self._record(key.key_id))
        if generated:  # the caller needs the value it did not choose; a chosen one is never echoed
            answer["value"] = key.secret
        return json_response(201, answer)

    def _control_key(self, rest: str, method: str, request: httpx.Request) -> httpx.Response:
        key_id, _, action = rest.partition("/")
        if action == "status" and method == "POST":
            self.set_status(key_id, str(_control_body(request).get("status")))
        elif action or method != "GET":
            return json_response(404, {"error": f"no control endpoint {method} /_emulator/keys/{rest}"})
        with self._lock:
            rec = self._record(key_id)
            return json_response(
                200,
                {
                    **self._key_json(rec),
                    "status_changes": [list(c) for c in rec.extra["changes"]],
                    "update_calls": rec.extra["update_calls"],
                    "inference_calls": rec.extra["inference_calls"],
                },
            )


def _control_body(request: httpx.Request) -> JSONDict:
    fake = Request(request, request.method, request.url.path, {}, bearer_token(request))
    if not request.content.strip():
        return {}
    try:
        return json_object(fake)
    except BodyError as exc:
        raise ValueError(str(exc)) from None


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)
