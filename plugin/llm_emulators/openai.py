"""OpenAI admin API emulator: one project service account (with its API key) per lease.

Wire contract (base ``/v1``, ``Authorization: Bearer <admin key>``):

* ``POST /organization/projects/{project_id}/service_accounts`` ``{"name"}`` -> 200 service account with
  ``api_key.value``; 400 archived project; 404 unknown project; 400 missing/invalid name or unknown argument.
* ``GET /organization/projects/{project_id}/service_accounts?limit=&after=`` -> list (limit 1..100,
  default 20; ``first_id``/``last_id``/``has_more``).
* ``GET|DELETE /organization/projects/{project_id}/service_accounts/{id}``; DELETE of a gone account -> 404.
* ``GET /organization/projects/{project_id}`` -> project (``status`` active|archived); ``GET
  /organization/projects?limit=&after=&include_archived=`` lists projects.
* ``POST /chat/completions`` with an issued key -> minimal chat completion; dead keys -> 401 invalid_api_key.

Errors: ``{"error": {"message", "type", "param", "code"}}``. 429 carries ``Retry-After`` in whole seconds.
``expires_in_seconds`` on create is *unconfirmed* for the real API: it is rejected as an unrecognized argument
unless the emulator is built with ``accept_expires_in_seconds=True``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
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
    json_object,
    json_response,
    random_id,
    random_token,
    route,
)

__all__ = ["OpenAIEmulator"]

_ID = r"[^/]+"
_SA_FIELDS = frozenset({"name"})


def _error(
    status: int,
    message: str,
    *,
    type_: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return json_response(status, body, headers)


class OpenAIEmulator(Emulator):
    provider: ClassVar[str] = "openai"
    path_prefix: ClassVar[str] = "/v1"
    DEFAULT_ADMIN_KEY: ClassVar[str] = "sk-admin-emulator:default-test-key"
    DEFAULT_LIST_LIMIT: ClassVar[int] = 20

    def __init__(
        self,
        admin_key: str | None = None,
        *,
        clock: Callable[[], float] = time.time,
        projects: Iterable[str] = ("proj_default",),
        accept_expires_in_seconds: bool = False,
    ) -> None:
        self._initial_projects = tuple(projects)
        if not self._initial_projects:
            raise ValueError("at least one project is needed")
        self.accept_expires_in_seconds = accept_expires_in_seconds
        super().__init__(admin_key, clock=clock)
        self._projects: dict[str, JSONDict] = {}
        self._reset_provider()

    # ---- projects

    def _reset_provider(self) -> None:
        self._projects = {}
        for pid in self._initial_projects:
            self.add_project(pid)

    def add_project(self, project_id: str, name: str | None = None) -> None:
        with self._lock:
            self._projects[project_id] = {
                "name": name or project_id,
                "created_at": int(self.now()),
                "archived_at": None,
            }

    def archive_project(self, project_id: str) -> None:
        """Archive a project: creates in it get 400 and its keys stop working. Unknown id -> KeyError."""
        with self._lock:
            self._projects[project_id]["archived_at"] = int(self.now())

    def _provider_state(self) -> JSONDict:
        return {"projects": {pid: self._project_json(pid) for pid in self._projects}}

    def _project_json(self, pid: str) -> JSONDict:
        proj = self._projects[pid]
        return {
            "object": "organization.project",
            "id": pid,
            "name": proj["name"],
            "created_at": proj["created_at"],
            "archived_at": proj["archived_at"],
            "status": "archived" if proj["archived_at"] is not None else "active",
        }

    def _archived(self, pid: str | None) -> bool:
        return pid is None or pid not in self._projects or self._projects[pid]["archived_at"] is not None

    # ---- records

    def _new_record(self, name: str, *, created_at: float) -> KeyRecord:
        return KeyRecord(
            key_id="svc_acct_" + random_id(24),
            name=name,
            secret="sk-svcacct-" + random_token(48),
            created_at=created_at,
            extra={"api_key_id": "key_" + random_id(16)},
        )

    def _seed_extras(self, rec: KeyRecord, project_id: str | None) -> None:
        pid = project_id or self._initial_projects[0]
        if pid not in self._projects:
            raise ValueError(f"unknown project {pid!r}")
        rec.project_id = pid

    def _sa_json(self, rec: KeyRecord) -> JSONDict:
        return {
            "object": "organization.project.service_account",
            "id": rec.key_id,
            "name": rec.name,
            "role": "member",
            "created_at": int(rec.created_at),
        }

    # ---- routes

    def _build_routes(self) -> list[Route]:
        sa = rf"/v1/organization/projects/(?P<project_id>{_ID})/service_accounts"
        return [
            route("POST", sa, "create", self._create),
            route("GET", sa, "list", self._list),
            route("GET", rf"{sa}/(?P<sa_id>{_ID})", "get", self._get_sa),
            route("DELETE", rf"{sa}/(?P<sa_id>{_ID})", "delete", self._delete),
            route("GET", r"/v1/organization/projects", "list", self._list_projects),
            route("GET", rf"/v1/organization/projects/(?P<project_id>{_ID})", "get", self._get_project),
            route("POST", r"/v1/chat/completions", "inference", self._chat, kind="inference"),
        ]

    def _project_missing(self, pid: str) -> httpx.Response | None:
        if pid in self._projects:
            return None
        return _error(404, f"Project with id '{pid}' not found.")

    def _get_project(self, req: Request) -> httpx.Response:
        pid = req.params["project_id"]
        return self._project_missing(pid) or json_response(200, self._project_json(pid))

    def _create(self, req: Request) -> httpx.Response:
        pid = req.params["project_id"]
        if (missing := self._project_missing(pid)) is not None:
            return missing
        try:
            body = json_object(req)
        except BodyError:
            return _error(
                400,
                "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
                "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent "
                "was not valid JSON.)",
            )
        allowed = _SA_FIELDS | ({"expires_in_seconds"} if self.accept_expires_in_seconds else set())
        unknown = sorted(set(body) - allowed)
        if unknown:
            return _error(400, f"Unrecognized request argument supplied: {unknown[0]}")
        if "name" not in body:
            return _error(
                400, "Missing required parameter: 'name'.", param="name", code="missing_required_parameter"
            )
        name = body["name"]
        if not isinstance(name, str):
            return _error(
                400,
                f"Invalid type for 'name': expected a string, but got {_json_type(name)} instead.",
                param="name",
                code="invalid_type",
            )
        if not name:
            return _error(
                400,
                "Invalid 'name': empty string. Expected a string with minimum length 1, but got an empty "
                "string instead.",
                param="name",
                code="empty_string",
            )
        expires_in = body.get("expires_in_seconds")
        if expires_in is not None and (
            isinstance(expires_in, bool) or not isinstance(expires_in, int) or expires_in < 1
        ):
            return _error(
                400,
                "Invalid 'expires_in_seconds': expected a positive integer.",
                param="expires_in_seconds",
                code="invalid_value",
            )
        if self._archived(pid):
            return _error(400, f"Project {pid} is archived and cannot be modified.", param="project_id")
        now = self.now()
        rec = self._new_record(name, created_at=now)
        rec.project_id = pid
        if expires_in is not None:
            rec.expires_at = now + expires_in
        self._store(rec)
        body_out = self._sa_json(rec)
        body_out["api_key"] = {
            "object": "organization.project.service_account.api_key",
            "value": rec.secret,
            "name": "Secret Key",
            "created_at": int(now),
            "id": rec.extra["api_key_id"],
        }
        return json_response(200, body_out)

    def _list(self, req: Request) -> httpx.Response:
        pid = req.params["project_id"]
        if (missing := self._project_missing(pid)) is not None:
            return missing
        in_project = [r for r in self._records_in_order() if r.project_id == pid]
        return self._page(
            req,
            [r.key_id for r in in_project],
            [(r.key_id, self._sa_json(r)) for r in in_project if not r.deleted],
        )

    def _list_projects(self, req: Request) -> httpx.Response:
        raw = req.query.get("include_archived", "false")
        if raw not in ("true", "false"):
            return _error(400, "Invalid 'include_archived': expected a boolean.", param="include_archived")
        visible = [
            (pid, self._project_json(pid))
            for pid in self._projects
            if raw == "true" or self._projects[pid]["archived_at"] is None
        ]
        return self._page(req, list(self._projects), visible)

    def _page(self, req: Request, all_ids: list[str], visible: list[tuple[str, JSONDict]]) -> httpx.Response:
        """One page of an OpenAI list: ``limit`` 1..100 (default 20) and an ``after`` cursor.

        ``all_ids`` is every id ever listed in this collection, in order, so a cursor whose object has since
        been deleted still marks a position; an id never seen is a 400.
        """
        raw_limit = req.query.get("limit")
        limit = self.DEFAULT_LIST_LIMIT
        if raw_limit is not None:
            try:
                limit = int(raw_limit)
            except ValueError:
                return _error(
                    400,
                    "Invalid type for 'limit': expected an integer, but got a string instead.",
                    param="limit",
                    code="invalid_type",
                )
            if limit < 1:
                return _error(
                    400,
                    f"Invalid 'limit': integer below minimum value. Expected a value >= 1, but got {limit} "
                    "instead.",
                    param="limit",
                    code="integer_below_min_value",
                )
            if limit > 100:
                return _error(
                    400,
                    f"Invalid 'limit': integer above maximum value. Expected a value <= 100, but got {limit} "
                    "instead.",
                    param="limit",
                    code="integer_above_max_value",
                )
        limit = self._page_cap(limit)
        after = req.query.get("after")
        if after is not None:
            if after not in all_ids:
                return _error(400, f"Invalid 'after': no object with id '{after}'.", param="after")
            position = {oid: i for i, oid in enumerate(all_ids)}
            visible = [(oid, item) for oid, item in visible if position[oid] > position[after]]
        data = [item for _, item in visible[:limit]]
        return json_response(
            200,
            {
                "object": "list",
                "data": data,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
                "has_more": len(visible) > limit,
            },
        )

    def _find_sa(self, req: Request) -> KeyRecord | httpx.Response:
        pid = req.params["project_id"]
        if (missing := self._project_missing(pid)) is not None:
            return missing
        rec = self._get_live(req.params["sa_id"])
        if rec is None or rec.project_id != pid:
            return _error(404, f"Service account with id '{req.params['sa_id']}' not found.")
        return rec

    def _get_sa(self, req: Request) -> httpx.Response:
        found = self._find_sa(req)
        return found if isinstance(found, httpx.Response) else json_response(200, self._sa_json(found))

    def _delete(self, req: Request) -> httpx.Response:
        found = self._find_sa(req)
        if isinstance(found, httpx.Response):
            return found
        self._mark_deleted(found)
        return json_response(
            200,
            {"object": "organization.project.service_account.deleted", "id": found.key_id, "deleted": True},
        )

    # ---- inference

    def _chat(self, req: Request) -> httpx.Response:
        if not req.token:
            return self._err_missing_auth()
        rec = None if self.is_admin_token(req.token) else self._lookup_secret(req.token)
        if rec is None or rec.deleted or rec.expired_at(self.now()) or self._archived(rec.project_id):
            return self._err_invalid_auth()
        try:
            body = json_object(req)
        except BodyError:
            return _error(400, "We could not parse the JSON body of your request.")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return _error(400, "you must provide a model parameter")
        messages = body.get("messages")
        if messages is None:
            return _error(
                400,
                "Missing required parameter: 'messages'.",
                param="messages",
                code="missing_required_parameter",
            )
        if not isinstance(messages, list) or not messages:
            return _error(
                400,
                "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty "
                "array instead.",
                param="messages",
                code="empty_array",
            )
        rec.usage += self.cost_per_request
        return json_response(200, _completion(model, self.now()))

    # ---- errors

    def _err_missing_auth(self) -> httpx.Response:
        return _error(
            401,
            "You didn't provide an API key. You need to provide your API key in an Authorization header "
            "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY). You can obtain an API key from "
            "https://platform.openai.com/account/api-keys.",
        )

    def _err_invalid_auth(self) -> httpx.Response:
        # The real message echoes a masked key; the emulator echoes none of it.
        return _error(
            401,
            "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
            code="invalid_api_key",
        )

    def _err_issued_key_on_admin(self) -> httpx.Response:
        return _error(
            401,
            "You have insufficient permissions for this operation. Missing scopes: api.management.read. "
            "Check that you have the correct role in your organization (Owner), and if you're using a "
            "restricted API key, that it has the necessary scopes.",
        )

    def _err_rate_limited(self, retry_after: float) -> httpx.Response:
        return _error(
            429,
            f"Rate limit reached for requests. Please try again in {retry_after:g}s.",
            type_="requests",
            code="rate_limit_exceeded",
        )

    def _err_server(self, status: int) -> httpx.Response:
        if status == 502:
            return gateway_page(status)
        if status == 503:
            return _error(503, "The server is overloaded or not ready yet.", type_="server_error")
        return _error(
            status,
            "The server had an error while processing your request. Sorry about that!",
            type_="server_error",
        )

    def _not_found(self, method: str, path: str, *, method_mismatch: bool) -> httpx.Response:
        return _error(404, f"Invalid URL ({method} {path})")


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number" if isinstance(value, float) else "an integer"
    if value is None:
        return "null"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _completion(model: str, now: float) -> JSONDict:
    return {
        "id": "chatcmpl-" + random_id(29),
        "object": "chat.completion",
        "created": int(now),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello from the emulator.", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 8, "completion_tokens": 5, "total_tokens": 13},
        "service_tier": "default",
        "system_fingerprint": None,
    }
