"""OpenAI admin API emulator: project service accounts and their API keys.

Wire contract (base ``/v1``, ``Authorization: Bearer <admin key>``):

* ``POST /organization/projects/{project_id}/service_accounts`` ``{"name", "create_service_account_only"?,
  "expires_in_seconds"?}`` -> 200 service account with ``api_key`` (``value``, ``expires_at``); with
  ``create_service_account_only`` true the account has role ``none`` and ``api_key`` is null, and a non-null
  ``expires_in_seconds`` beside it is a 400. 400 archived project; 404 unknown project; 400 missing/invalid
  name or unknown argument.
* ``POST /organization/projects/{project_id}/service_accounts/{id}`` ``{"name"?, "role"?}`` updates one
  (role ``member`` | ``owner``).
* ``POST /organization/projects/{project_id}/service_accounts/{id}/api_keys`` ``{"name"?, "scopes"?,
  "expires_in_seconds"?}`` -> 200 ``organization.project.service_account.api_key`` (``id``, ``name``,
  ``created_at``, ``value``, ``expires_at``). Scopes are stored (see :meth:`OpenAIEmulator.key_scopes`), not
  echoed: no documented response carries them.
* ``GET /organization/projects/{project_id}/api_keys?limit=&after=&owner_project_access=`` and ``GET
  /organization/projects/{project_id}/api_keys/{id}`` -> ``organization.project.api_key`` objects (redacted
  value, owner service account, ``expires_at``). ``DELETE`` of a key that belongs to a service account is a
  400, as OpenAI documents ("an error if the key belonged to a service account"), unless the emulator is
  built with ``allow_service_account_key_delete=True``; an unknown key is a 404.
* ``GET /organization/projects/{project_id}/service_accounts?limit=&after=`` -> list (limit 1..100,
  default 20; ``first_id``/``last_id``/``has_more``).
* ``GET|DELETE /organization/projects/{project_id}/service_accounts/{id}``; DELETE of a gone account -> 404.
* ``GET /organization/projects/{project_id}`` -> project (``status`` active|archived); ``GET
  /organization/projects?limit=&after=&include_archived=`` lists projects.
* ``POST /chat/completions`` with an issued key -> minimal chat completion; dead keys -> 401 invalid_api_key.
  Each call charges ``cost_per_request`` to the key (see ``core``).
* ``GET|POST /organization/admin_api_keys`` and ``GET|DELETE /organization/admin_api_keys/{key_id}``: the
  organization's admin keys. Create ``{"name"}`` -> 200 ``organization.admin_api_key`` with ``value`` (shown
  once); list (``limit``/``after``/``order``) and get show ``redacted_value`` only; delete -> 200
  ``organization.admin_api_key.deleted``, unknown or deleted id -> 404. The emulator's own admin key is the
  first of them (made "in the dashboard"); a deleted admin key is refused at once, like any unknown key.
* ``GET /organization/usage/completions`` and ``GET /organization/costs`` ``?start_time=&end_time=
  &bucket_width=&limit=&page=&group_by[]=&api_key_ids[]=&project_ids[]=`` -> ``{"object": "page",
  "data": [buckets], "has_more", "next_page"}``; costs take ``bucket_width=1d`` only, ``limit`` 1..180
  (default 7) and group by ``project_id``, ``line_item``, ``api_key_id``. Charges show only ``usage_delay``
  seconds after the call (default 600: OpenAI reports usage late).

Errors: ``{"error": {"message", "type", "param", "code"}}``. 429 carries ``Retry-After`` in whole seconds.

``expires_in_seconds`` on service-account create is in OpenAI's SDKs since 2026-09 (the initial key's
lifetime); on api-key create it is reported by the same SDK releases but not seen in a stored spec: each is
rejected as an unrecognized argument when switched off (``accept_expires_in_seconds``,
``accept_key_expires_in_seconds``). ``key_lifetime_cap`` plays an organization policy that caps key lifetime:
an expiry is then required and at most the cap (the messages of those 400s are the emulator's own). A key past
its expiry, a key of a deleted service account, and a key whose owner has role ``none`` answer inference with
401 ``invalid_api_key``.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx

from .core import (
    BodyError,
    Emulator,
    FaultKind,
    JSONDict,
    KeyRecord,
    LiveKey,
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
_SA_FIELDS = frozenset({"name", "create_service_account_only"})
_KEY_FIELDS = frozenset({"name", "scopes"})
_SA_ROLES = ("member", "owner")
# Kinds of record: a service account (with its initial key, if any) and an extra key made for one.
_SA = "service_account"
_KEY = "api_key"


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


@dataclass
class AdminKeyRecord:
    """One organization admin key (never listed with its value)."""

    key_id: str
    name: str
    value: str = field(repr=False)
    created_at: float
    last_used_at: int | None = None
    deleted_at: float | None = None

    def redacted(self) -> str:
        return f"{self.value[:8]}...{self.value[-3:]}"


class OpenAIEmulator(Emulator):
    provider: ClassVar[str] = "openai"
    path_prefix: ClassVar[str] = "/v1"
    DEFAULT_ADMIN_KEY: ClassVar[str] = "sk-admin-emulator:default-test-key"
    DEFAULT_LIST_LIMIT: ClassVar[int] = 20
    # OpenAI's usage and costs answers lag behind the calls they count.
    DEFAULT_USAGE_DELAY: ClassVar[float] = 600.0

    def __init__(
        self,
        admin_key: str | None = None,
        *,
        clock: Callable[[], float] = time.time,
        projects: Iterable[str] = ("proj_default",),
        accept_expires_in_seconds: bool = True,
        accept_key_expires_in_seconds: bool = True,
        allow_service_account_key_delete: bool = False,
        key_lifetime_cap: int | None = None,
    ) -> None:
        self._initial_projects = tuple(projects)
        if not self._initial_projects:
            raise ValueError("at least one project is needed")
        self.accept_expires_in_seconds = accept_expires_in_seconds
        self.accept_key_expires_in_seconds = accept_key_expires_in_seconds
        self.allow_service_account_key_delete = allow_service_account_key_delete
        self.key_lifetime_cap = key_lifetime_cap
        super().__init__(admin_key, clock=clock)
        self._projects: dict[str, JSONDict] = {}
        self._admin_keys: dict[str, AdminKeyRecord] = {}
        self._reset_provider()

    # ---- projects

    def _reset_provider(self) -> None:
        self._projects = {}
        for pid in self._initial_projects:
            self.add_project(pid)
        # The admin key the emulator was built with, as if made in the dashboard: listed, deletable.
        first = AdminKeyRecord("key_" + random_id(16), "Dashboard admin key", self.admin_key, self.now())
        self._admin_keys = {first.key_id: first}

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
            extra={
                "kind": _SA,
                "api_key_id": "key_" + random_id(16),
                "role": "member",
                "key_name": "Secret Key",
            },
        )

    def _seed_extras(self, rec: KeyRecord, project_id: str | None) -> None:
        pid = project_id or self._initial_projects[0]
        if pid not in self._projects:
            raise ValueError(f"unknown project {pid!r}")
        rec.project_id = pid

    def seed_api_key(
        self,
        name: str,
        *,
        account_name: str,
        created_at: float | None = None,
        expires_at: float | None = None,
        project_id: str | None = None,
    ) -> LiveKey:
        """Plant an API key under the service account named ``account_name`` (made, role ``member``, if the
        project has none by that name), as if created earlier. Does not count as a create."""
        pid = project_id or self._initial_projects[0]
        with self._lock:
            if pid not in self._projects:
                raise ValueError(f"unknown project {pid!r}")
            owner = next(
                (
                    r
                    for r in self._records_in_order()
                    if r.project_id == pid
                    and r.extra.get("kind") == _SA
                    and r.name == account_name
                    and not r.deleted
                ),
                None,
            )
            if owner is None:
                owner = self._new_record(account_name, created_at=self.now())
                owner.project_id = pid
                owner.secret = ""
                owner.extra.update(api_key_id=None)
                self._store(owner)
            rec = KeyRecord(
                key_id="key_" + random_id(16),
                name=name,
                secret="sk-svcacct-" + random_token(48),
                created_at=self.now() if created_at is None else created_at,
                project_id=pid,
                expires_at=expires_at,
                extra={"kind": _KEY, "sa_id": owner.key_id, "scopes": []},
            )
            self._store(rec)
            return rec.snapshot(self.now())

    def key_scopes(self, key_id: str) -> list[str]:
        """The scopes an API key was created with (KeyError for an unknown key)."""
        with self._lock:
            rec = self._records[key_id]
            return list(rec.extra.get("scopes", []))

    def service_account_of(self, key_id: str) -> str | None:
        """The service account that owns an API key created through ``.../api_keys`` (None otherwise)."""
        with self._lock:
            rec = self._records.get(key_id)
            return None if rec is None else rec.extra.get("sa_id")

    def live_admin_keys(self) -> list[tuple[str, str]]:
        """(id, name) of every admin key not deleted, in creation order."""
        with self._lock:
            return [(r.key_id, r.name) for r in self._admin_keys.values() if r.deleted_at is None]

    def admin_key_works(self, value: str) -> bool:
        """Would an admin call with this key be let in (a live admin key)?"""
        with self._lock:
            return self._admin_record(value) is not None

    def _admin_record(self, token: str) -> AdminKeyRecord | None:
        for rec in self._admin_keys.values():
            if rec.deleted_at is None and secrets.compare_digest(rec.value.encode(), token.encode()):
                return rec
        return None

    def _check_admin_auth(self, req: Request, op: str) -> httpx.Response | None:
        # Any live admin key of the organization is let in, not only the one the emulator was built with.
        token = req.token
        if not token:
            return self._err_missing_auth()
        rec = self._admin_record(token)
        if rec is not None:
            if self.faults.take(FaultKind.REVOKE_ADMIN_KEY, op) is not None:
                return self._err_invalid_auth()
            rec.last_used_at = int(self.now())
            return None
        if self._lookup_secret(token) is not None:
            return self._err_issued_key_on_admin()
        return self._err_invalid_auth()

    def is_admin_token(self, token: str | None) -> bool:
        return token is not None and any(
            secrets.compare_digest(r.value.encode(), token.encode()) for r in self._admin_keys.values()
        )

    def _sa_json(self, rec: KeyRecord) -> JSONDict:
        return {
            "object": "organization.project.service_account",
            "id": rec.key_id,
            "name": rec.name,
            "role": rec.extra.get("role", "member"),
            "created_at": int(rec.created_at),
        }

    def _owner(self, rec: KeyRecord) -> KeyRecord | None:
        """The service account behind a key record (itself for a service account's initial key)."""
        if rec.extra.get("kind") == _KEY:
            return self._records.get(rec.extra["sa_id"])
        return rec

    def _key_dead(self, rec: KeyRecord) -> bool:
        owner = self._owner(rec)
        return (
            rec.deleted
            or owner is None
            or owner.deleted
            or owner.extra.get("role") == "none"
            or rec.extra.get("initial_key_deleted", False)
            or rec.expired_at(self.now())
            or self._archived(rec.project_id)
        )

    def _project_keys(self, pid: str) -> list[tuple[str, KeyRecord]]:
        """Every API key ever made in a project, in creation order: (key id, record carrying it)."""
        out: list[tuple[str, KeyRecord]] = []
        for rec in self._records_in_order():
            if rec.project_id != pid:
                continue
            if rec.extra.get("kind") == _KEY:
                out.append((rec.key_id, rec))
            elif rec.extra.get("api_key_id"):
                out.append((rec.extra["api_key_id"], rec))
        return out

    def _key_visible(self, rec: KeyRecord) -> bool:
        """Listed and readable: the key and its service account exist (expired keys are still listed)."""
        owner = self._owner(rec)
        return not (
            rec.deleted or owner is None or owner.deleted or rec.extra.get("initial_key_deleted", False)
        )

    def _project_key_json(self, key_id: str, rec: KeyRecord) -> JSONDict:
        owner = self._owner(rec)
        assert owner is not None
        secret = rec.secret
        return {
            "object": "organization.project.api_key",
            "redacted_value": f"{secret[:8]}...{secret[-4:]}",
            "name": rec.name if rec.extra.get("kind") == _KEY else rec.extra.get("key_name", "Secret Key"),
            "created_at": int(rec.created_at),
            "last_used_at": rec.extra.get("last_used_at"),
            "id": key_id,
            "expires_at": None if rec.expires_at is None else int(rec.expires_at),
            "owner_project_access": "inactive" if owner.extra.get("role") == "none" else "active",
            "owner": {"type": "service_account", "service_account": self._sa_json(owner)},
        }

    # ---- routes

    def _build_routes(self) -> list[Route]:
        sa = rf"/v1/organization/projects/(?P<project_id>{_ID})/service_accounts"
        keys = rf"/v1/organization/projects/(?P<project_id>{_ID})/api_keys"
        return [
            route("POST", sa, "create", self._create),
            route("GET", sa, "list", self._list),
            route("POST", rf"{sa}/(?P<sa_id>{_ID})/api_keys", "create", self._create_key),
            route("GET", rf"{sa}/(?P<sa_id>{_ID})", "get", self._get_sa),
            route("POST", rf"{sa}/(?P<sa_id>{_ID})", "update", self._update_sa),
            route("DELETE", rf"{sa}/(?P<sa_id>{_ID})", "delete", self._delete),
            route("GET", keys, "list", self._list_keys),
            route("GET", rf"{keys}/(?P<key_id>{_ID})", "get", self._get_key),
            route("DELETE", rf"{keys}/(?P<key_id>{_ID})", "delete", self._delete_key),
            route("GET", r"/v1/organization/projects", "list", self._list_projects),
            route("GET", rf"/v1/organization/projects/(?P<project_id>{_ID})", "get", self._get_project),
            route("GET", r"/v1/organization/usage/completions", "get", self._usage_completions),
            route("GET", r"/v1/organization/costs", "get", self._costs),
            route("GET", r"/v1/organization/admin_api_keys", "list", self._list_admin_keys),
            route("POST", r"/v1/organization/admin_api_keys", "create", self._create_admin_key),
            route("GET", rf"/v1/organization/admin_api_keys/(?P<key_id>{_ID})", "get", self._get_admin_key),
            route(
                "DELETE",
                rf"/v1/organization/admin_api_keys/(?P<key_id>{_ID})",
                "delete",
                self._delete_admin_key,
            ),
            route("POST", r"/v1/chat/completions", "inference", self._chat, kind="inference"),
        ]

    def _project_missing(self, pid: str) -> httpx.Response | None:
        if pid in self._projects:
            return None
        return _error(404, f"Project with id '{pid}' not found.")

    def _get_project(self, req: Request) -> httpx.Response:
        pid = req.params["project_id"]
        return self._project_missing(pid) or json_response(200, self._project_json(pid))

    def _body(self, req: Request, allowed: frozenset[str] | set[str]) -> JSONDict | httpx.Response:
        try:
            body = json_object(req)
        except BodyError:
            return _error(
                400,
                "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
                "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent "
                "was not valid JSON.)",
            )
        unknown = sorted(set(body) - allowed)
        if unknown:
            return _error(400, f"Unrecognized request argument supplied: {unknown[0]}")
        return body

    def _lifetime(self, body: JSONDict, *, required: bool) -> int | httpx.Response | None:
        """``expires_in_seconds``: absent, null or a positive integer, within the lifetime cap if set."""
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
        cap = self.key_lifetime_cap
        if cap is not None and required and expires_in is None:
            return _error(
                400,
                f"'expires_in_seconds' is required: a policy limits API key lifetime to {cap} seconds.",
                param="expires_in_seconds",
            )
        if cap is not None and expires_in is not None and expires_in > cap:
            return _error(
                400,
                f"Invalid 'expires_in_seconds': a policy limits API key lifetime to {cap} seconds.",
                param="expires_in_seconds",
                code="invalid_value",
            )
        return expires_in

    def _name(self, body: JSONDict, *, required: bool) -> str | httpx.Response | None:
        if "name" not in body:
            if not required:
                return None
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
        return name

    def _create(self, req: Request) -> httpx.Response:
        pid = req.params["project_id"]
        if (missing := self._project_missing(pid)) is not None:
            return missing
        allowed = set(_SA_FIELDS) | ({"expires_in_seconds"} if self.accept_expires_in_seconds else set())
        body = self._body(req, allowed)
        if isinstance(body, httpx.Response):
            return body
        name = self._name(body, required=True)
        if isinstance(name, httpx.Response):
            return name
        assert name is not None
        only = body.get("create_service_account_only")
        if only is not None and not isinstance(only, bool):
            return _error(
                400,
                f"Invalid type for 'create_service_account_only': expected a boolean, but got "
                f"{_json_type(only)} instead.",
                param="create_service_account_only",
                code="invalid_type",
            )
        if only and body.get("expires_in_seconds") is not None:
            return _error(
                400,
                "'expires_in_seconds' cannot be used when 'create_service_account_only' is true.",
                param="expires_in_seconds",
            )
        expires_in = self._lifetime(body, required=not only)
        if isinstance(expires_in, httpx.Response):
            return expires_in
        if self._archived(pid):
            return _error(400, f"Project {pid} is archived and cannot be modified.", param="project_id")
        now = self.now()
        rec = self._new_record(name, created_at=now)
        rec.project_id = pid
        if only:
            # No key and no default role: the secret is unusable and never returned.
            rec.extra.update(role="none", api_key_id=None)
            rec.secret = ""
        elif expires_in is not None:
            rec.expires_at = now + expires_in
        self._store(rec)
        body_out = self._sa_json(rec)
        body_out["api_key"] = None
        if not only:
            body_out["api_key"] = {
                "object": "organization.project.service_account.api_key",
                "value": rec.secret,
                "name": rec.extra["key_name"],
                "created_at": int(now),
                "id": rec.extra["api_key_id"],
                "expires_at": None if rec.expires_at is None else int(rec.expires_at),
            }
        return json_response(200, body_out)

    def _update_sa(self, req: Request) -> httpx.Response:
        found = self._find_sa(req)
        if isinstance(found, httpx.Response):
            return found
        body = self._body(req, {"name", "role"})
        if isinstance(body, httpx.Response):
            return body
        name = self._name(body, required=False)
        if isinstance(name, httpx.Response):
            return name
        role = body.get("role")
        if role is not None and role not in _SA_ROLES:
            return _error(
                400,
                f"Invalid value: '{role}'. Supported values are: 'member' and 'owner'.",
                param="role",
                code="invalid_value",
            )
        if name is not None:
            found.name = name
        if role is not None:
            found.extra["role"] = role
        found.updated_at = self.now()
        return json_response(200, self._sa_json(found))

    def _create_key(self, req: Request) -> httpx.Response:
        found = self._find_sa(req)
        if isinstance(found, httpx.Response):
            return found
        allowed = set(_KEY_FIELDS) | ({"expires_in_seconds"} if self.accept_key_expires_in_seconds else set())
        body = self._body(req, allowed)
        if isinstance(body, httpx.Response):
            return body
        name = self._name(body, required=False)
        if isinstance(name, httpx.Response):
            return name
        scopes = body.get("scopes")
        if scopes is not None and (
            not isinstance(scopes, list) or not all(isinstance(x, str) for x in scopes)
        ):
            return _error(
                400,
                f"Invalid type for 'scopes': expected an array of strings, but got {_json_type(scopes)} "
                "instead.",
                param="scopes",
                code="invalid_type",
            )
        expires_in = self._lifetime(body, required=True)
        if isinstance(expires_in, httpx.Response):
            return expires_in
        pid = req.params["project_id"]
        if self._archived(pid):
            return _error(400, f"Project {pid} is archived and cannot be modified.", param="project_id")
        now = self.now()
        rec = KeyRecord(
            key_id="key_" + random_id(16),
            name=name or "Secret Key",
            secret="sk-svcacct-" + random_token(48),
            created_at=now,
            project_id=pid,
            expires_at=None if expires_in is None else now + expires_in,
            extra={"kind": _KEY, "sa_id": found.key_id, "scopes": list(scopes or [])},
        )
        self._store(rec)
        return json_response(
            200,
            {
                "object": "organization.project.service_account.api_key",
                "value": rec.secret,
                "name": rec.name,
                "created_at": int(now),
                "id": rec.key_id,
                "expires_at": None if rec.expires_at is None else int(rec.expires_at),
            },
        )

    def _list(self, req: Request) -> httpx.Response:
        pid = req.params["project_id"]
        if (missing := self._project_missing(pid)) is not None:
            return missing
        in_project = [
            r for r in self._records_in_order() if r.project_id == pid and r.extra.get("kind") == _SA
        ]
        return self._page(
            req,
            [r.key_id for r in in_project],
            [(r.key_id, self._sa_json(r)) for r in in_project if not r.deleted],
        )

    def _list_keys(self, req: Request) -> httpx.Response:
        pid = req.params["project_id"]
        if (missing := self._project_missing(pid)) is not None:
            return missing
        access = req.query.get("owner_project_access")
        if access is not None and access not in ("active", "inactive", "any"):
            return _error(
                400,
                f"Invalid value: '{access}'. Supported values are: 'active', 'inactive', and 'any'.",
                param="owner_project_access",
                code="invalid_value",
            )
        keys = self._project_keys(pid)
        visible = []
        for key_id, rec in keys:
            if not self._key_visible(rec):
                continue
            item = self._project_key_json(key_id, rec)
            # Without the filter OpenAI applies its membership rules: owners without access are left out.
            if (access or "active") in ("any", item["owner_project_access"]):
                visible.append((key_id, item))
        return self._page(req, [k for k, _ in keys], visible)

    def _find_key(self, req: Request) -> tuple[str, KeyRecord] | httpx.Response:
        pid = req.params["project_id"]
        if (missing := self._project_missing(pid)) is not None:
            return missing
        wanted = req.params["key_id"]
        for key_id, rec in self._project_keys(pid):
            if key_id == wanted and self._key_visible(rec):
                return key_id, rec
        return _error(404, f"API key with id '{wanted}' not found.")

    def _get_key(self, req: Request) -> httpx.Response:
        found = self._find_key(req)
        return (
            found if isinstance(found, httpx.Response) else json_response(200, self._project_key_json(*found))
        )

    def _delete_key(self, req: Request) -> httpx.Response:
        found = self._find_key(req)
        if isinstance(found, httpx.Response):
            return found
        key_id, rec = found
        if not self.allow_service_account_key_delete:
            # Every key here has a service account for owner; OpenAI documents this delete as an error then.
            return _error(
                400,
                f"API key '{key_id}' belongs to a service account and cannot be deleted here.",
                param="api_key_id",
            )
        if rec.extra.get("kind") == _KEY:
            self._mark_deleted(rec)
        else:
            rec.extra["initial_key_deleted"] = True
            self._deleted_ids.append(key_id)
            self.delete_count += 1
        return json_response(
            200, {"object": "organization.project.api_key.deleted", "id": key_id, "deleted": True}
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
        if rec is None or rec.project_id != pid or rec.extra.get("kind") != _SA:
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
        # Its keys go with it (not counted as deletes of their own).
        for rec in self._records_in_order():
            if rec.extra.get("sa_id") == found.key_id and not rec.deleted:
                rec.deleted_at = found.deleted_at
        return json_response(
            200,
            {"object": "organization.project.service_account.deleted", "id": found.key_id, "deleted": True},
        )

    # ---- usage and costs (what the organization spent, in time buckets)

    def _usage_completions(self, req: Request) -> httpx.Response:
        return self._usage_page(req, costs=False)

    def _costs(self, req: Request) -> httpx.Response:
        return self._usage_page(req, costs=True)

    def _usage_page(self, req: Request, *, costs: bool) -> httpx.Response:
        """``GET /organization/usage/completions`` and ``GET /organization/costs``: time buckets from
        ``start_time`` (required) to ``end_time`` (default now), ``limit`` buckets a page, ``page`` the cursor
        from ``next_page``. A charge shows only once ``usage_delay`` has passed since the call."""
        q = req.query
        bucket = q.get("bucket_width", "1d")
        widths = {"1d": 86400} if costs else {"1m": 60, "1h": 3600, "1d": 86400}
        if bucket not in widths:
            allowed = "'1d'" if costs else "'1m', '1h' and '1d'"
            return _error(
                400,
                f"Invalid value: '{bucket}'. Supported values are: {allowed}.",
                param="bucket_width",
                code="invalid_value",
            )
        width = widths[bucket]
        ints: dict[str, int | None] = {}
        for name in ("start_time", "end_time", "limit"):
            raw = q.get(name)
            if raw is None:
                ints[name] = None
                continue
            try:
                ints[name] = int(raw)
            except ValueError:
                return _error(
                    400,
                    f"Invalid type for '{name}': expected an integer, but got a string instead.",
                    param=name,
                    code="invalid_type",
                )
        start = ints["start_time"]
        if start is None:
            return _error(
                400,
                "Missing required parameter: 'start_time'.",
                param="start_time",
                code="missing_required_parameter",
            )
        # By default up to now, this second included.
        end = ints["end_time"] if ints["end_time"] is not None else int(self.now()) + 1
        max_limit, default_limit = (
            (180, 7) if costs else {60: (1440, 60), 3600: (168, 24), 86400: (31, 7)}[width]
        )
        limit = ints["limit"] if ints["limit"] is not None else default_limit
        if not 1 <= limit <= max_limit:
            return _error(
                400,
                f"Invalid 'limit': expected a value between 1 and {max_limit}, but got {limit} instead.",
                param="limit",
                code="invalid_value",
            )
        groupable = (
            ("project_id", "line_item", "api_key_id") if costs else ("project_id", "api_key_id", "model")
        )
        group_by = _query_list(q, "group_by")
        for g in group_by:
            if g not in groupable:
                return _error(
                    400,
                    f"Invalid value: '{g}'. Supported values are: {', '.join(repr(x) for x in groupable)}.",
                    param="group_by",
                    code="invalid_value",
                )
        key_ids = set(_query_list(q, "api_key_ids"))
        project_ids = set(_query_list(q, "project_ids"))
        first = 0
        if (page := q.get("page")) is not None:
            if not page.startswith("page_") or not page[5:].isdigit():
                return _error(
                    400, f"Invalid 'page': '{page}' is not a cursor this endpoint returned.", param="page"
                )
            first = int(page[5:])
        visible_until = self.now() - self.usage_delay
        charges = [
            c
            for c in self._charges
            if c.at <= visible_until
            and start <= c.at < end
            and (not key_ids or c.usage_id in key_ids)
            and (not project_ids or c.project_id in project_ids)
        ]
        starts = list(range(start, end, width))
        data = []
        for b in starts[first : first + limit]:
            groups: dict[tuple[Any, ...], list[Any]] = {}
            for c in charges:
                if b <= c.at < b + width:
                    fields = {
                        "project_id": c.project_id,
                        "api_key_id": c.usage_id,
                        "model": c.model,
                        "line_item": c.model,
                    }
                    groups.setdefault(tuple(fields[g] for g in group_by), []).append(c)
            results = [
                self._usage_result(dict(zip(group_by, k, strict=True)), cs, costs=costs)
                for k, cs in groups.items()
            ]
            data.append({"object": "bucket", "start_time": b, "end_time": b + width, "results": results})
        more = first + limit < len(starts)
        return json_response(
            200,
            {
                "object": "page",
                "data": data,
                "has_more": more,
                "next_page": f"page_{first + limit}" if more else None,
            },
        )

    @staticmethod
    def _usage_result(grouped: JSONDict, charges: list[Any], *, costs: bool) -> JSONDict:
        if costs:
            return {
                "object": "organization.costs.result",
                "amount": {"value": sum(c.usd for c in charges), "currency": "usd"},
                "line_item": grouped.get("line_item"),
                "project_id": grouped.get("project_id"),
                "api_key_id": grouped.get("api_key_id"),
            }
        return {
            "object": "organization.usage.completions.result",
            "input_tokens": 8 * len(charges),
            "output_tokens": 5 * len(charges),
            "input_cached_tokens": 0,
            "input_audio_tokens": 0,
            "output_audio_tokens": 0,
            "num_model_requests": len(charges),
            "project_id": grouped.get("project_id"),
            "user_id": None,
            "api_key_id": grouped.get("api_key_id"),
            "model": grouped.get("model"),
            "batch": None,
            "service_tier": None,
        }

    # ---- admin API keys

    def _admin_key_json(self, rec: AdminKeyRecord) -> JSONDict:
        return {
            "object": "organization.admin_api_key",
            "id": rec.key_id,
            "name": rec.name,
            "redacted_value": rec.redacted(),
            "created_at": int(rec.created_at),
            "last_used_at": rec.last_used_at,
            "expires_at": None,
            "owner": {
                "type": "user",
                "object": "organization.user",
                "id": "user_emulator",
                "name": "Emulator Owner",
                "created_at": 0,
                "role": "owner",
            },
        }

    def _create_admin_key(self, req: Request) -> httpx.Response:
        body = self._body(req, {"name"})
        if isinstance(body, httpx.Response):
            return body
        name = self._name(body, required=True)
        if isinstance(name, httpx.Response):
            return name
        assert name is not None
        rec = AdminKeyRecord("key_" + random_id(16), name, "sk-admin-" + random_token(48), self.now())
        self._admin_keys[rec.key_id] = rec
        return json_response(200, {**self._admin_key_json(rec), "value": rec.value})

    def _list_admin_keys(self, req: Request) -> httpx.Response:
        order = req.query.get("order", "asc")
        if order not in ("asc", "desc"):
            return _error(
                400,
                f"Invalid value: '{order}'. Supported values are: 'asc' and 'desc'.",
                param="order",
                code="invalid_value",
            )
        records = list(self._admin_keys.values())
        if order == "desc":
            records.reverse()
        live = [(r.key_id, self._admin_key_json(r)) for r in records if r.deleted_at is None]
        return self._page(req, [r.key_id for r in records], live)

    def _live_admin_key(self, req: Request) -> AdminKeyRecord | httpx.Response:
        rec = self._admin_keys.get(req.params["key_id"])
        if rec is None or rec.deleted_at is not None:
            return _error(404, f"Admin API key with id '{req.params['key_id']}' not found.")
        return rec

    def _get_admin_key(self, req: Request) -> httpx.Response:
        found = self._live_admin_key(req)
        return found if isinstance(found, httpx.Response) else json_response(200, self._admin_key_json(found))

    def _delete_admin_key(self, req: Request) -> httpx.Response:
        found = self._live_admin_key(req)
        if isinstance(found, httpx.Response):
            return found
        found.deleted_at = self.now()  # refused from the next call on
        return json_response(
            200, {"object": "organization.admin_api_key.deleted", "id": found.key_id, "deleted": True}
        )

    # ---- inference

    def _chat(self, req: Request) -> httpx.Response:
        if not req.token:
            return self._err_missing_auth()
        rec = None if self.is_admin_token(req.token) else self._lookup_secret(req.token)
        if rec is None or self._key_dead(rec):
            return self._err_invalid_auth()
        rec.extra["last_used_at"] = int(self.now())
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
        usage_id = rec.key_id if rec.extra.get("kind") == _KEY else rec.extra.get("api_key_id")
        self._charge(rec, usage_id=usage_id, model=model)
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


def _query_list(q: httpx.QueryParams, name: str) -> list[str]:
    """An array query parameter: OpenAI's SDKs send ``name[]=a&name[]=b``; plain repeats are read too."""
    return [*q.get_list(name + "[]"), *q.get_list(name)]


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
