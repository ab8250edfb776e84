"""OpenAI: one project service account per key, through the organization admin API.

Wire contract (base `https://api.openai.com/v1`, `Authorization: Bearer <admin key>`,
optional `OpenAI-Organization`):
- create: `POST /organization/projects/{project_id}/service_accounts` `{"name"}` -> 200 with the
  service account; the secret is `api_key.value` (shown once). key_id = service account `id`,
  scope = project_id. 400 archived project, 404 unknown project.
- delete: `DELETE /organization/projects/{project_id}/service_accounts/{id}` -> 200; 404 = already gone.
- find: `GET /organization/projects/{project_id}/service_accounts?limit=100&after=<id>` until
  `has_more` is false; filtered here by name prefix.
- verify: `GET /organization/projects?limit=1`.

Per-key expiry (`expires_in_seconds` on create) is *unconfirmed*: it is sent only when the client
is built with `send_expiry=True`, and `capabilities.expiry` says so. No per-key spend cap, model
list or metadata (those are project-level at OpenAI).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from .base import Capabilities, IssuedKey, KeySpec, ProviderKey, SecretStr
from .errors import CreateOutcomeUnknown, ProviderBadResponse, ProviderNotFound, ProviderRejected
from .http import CallGuards, ProviderHTTP, as_list, as_object, opt_str, parse_time, req_str
from .retry import RetryPolicy

DEFAULT_BASE_URL = "https://api.openai.com/v1"
PAGE_LIMIT = 100
# Guard against a server that keeps answering has_more=true with the same cursor.
MAX_PAGES = 10_000


def _seg(value: str) -> str:
    """Quote one path segment (ids come from config and storage, not from the network only)."""
    return quote(value, safe="")


class OpenAIClient:
    """`ProviderClient` for OpenAI project service accounts."""

    name = "openai"

    def __init__(
        self,
        *,
        admin_key: SecretStr | str,
        base_url: str | None = None,
        organization_id: str | None = None,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
        guards: CallGuards | None = None,
        send_expiry: bool = False,
        page_limit: int = PAGE_LIMIT,
    ) -> None:
        headers = {"OpenAI-Organization": organization_id} if organization_id else None
        self._http = ProviderHTTP(
            provider=self.name,
            base_url=base_url or DEFAULT_BASE_URL,
            admin_key=admin_key,
            headers=headers,
            transport=transport,
            retry=retry,
            guards=guards,
        )
        self._send_expiry = send_expiry
        self._page_limit = max(1, min(page_limit, PAGE_LIMIT))
        self.capabilities = Capabilities(
            expiry=send_expiry,
            extend_expiry=False,
            spend_limit=False,
            models=False,
            metadata=False,
            needs_project=True,
        )

    def __repr__(self) -> str:
        return f"OpenAIClient(base_url={self._http.base_url!r})"

    def close(self) -> None:
        self._http.close()

    def verify(self, *, deadline: float | None = None) -> None:
        """`GET /organization/projects?limit=1`: proves the admin key is valid and an admin key."""
        self._http.call(
            "GET",
            "/organization/projects",
            op="verify admin key",
            params={"limit": 1},
            deadline=deadline if deadline is not None else self._http.default_deadline(),
        )

    def verify_project(self, project_id: str, *, deadline: float) -> None:
        """`GET /organization/projects/{id}`: the project exists and is not archived."""
        body = as_object(
            self._http.call(
                "GET", f"/organization/projects/{_seg(project_id)}", op="get project", deadline=deadline
            ),
            self.name,
            "get project",
        )
        if body.get("status") == "archived" or body.get("archived_at"):
            raise ProviderRejected(self.name, f"{self.name}: project {project_id!r} is archived", 400)

    def create_key(self, spec: KeySpec, *, deadline: float) -> IssuedKey:
        op = "create service account"
        if not spec.project_id:
            raise ValueError("openai: KeySpec.project_id is required")
        payload: dict[str, Any] = {"name": spec.name}
        if self._send_expiry and spec.expires_at is not None:
            seconds = math.ceil((spec.expires_at - datetime.now(UTC)).total_seconds())
            payload["expires_in_seconds"] = max(1, seconds)
        body = self._http.call(
            "POST",
            f"/organization/projects/{_seg(spec.project_id)}/service_accounts",
            op=op,
            json=payload,
            deadline=deadline,
            create=True,
        )
        try:
            account = as_object(body, self.name, op)
            key_id = req_str(account, "id", self.name, op)
            api_key = as_object(account.get("api_key"), self.name, op + " (api_key)")
            secret = req_str(api_key, "value", self.name, op + " (api_key)")
        except ProviderBadResponse as exc:
            raise CreateOutcomeUnknown(
                self.name, exc.message + "; the service account may exist without its key in hand"
            ) from None
        expires_at = parse_time(api_key.get("expires_at")) if self._send_expiry else None
        if expires_at is None and self._send_expiry:
            expires_at = spec.expires_at
        return IssuedKey(
            key_id=key_id,
            key_name=opt_str(account, "name") or spec.name,
            api_key=SecretStr(secret),
            expires_at=expires_at,
            scope=spec.project_id,
            created_at=parse_time(account.get("created_at")) or datetime.now(UTC),
        )

    def delete_key(self, key_id: str, *, scope: str, deadline: float) -> bool:
        """Delete the service account (and so its key). False if it was already gone (404)."""
        if not scope:
            raise ValueError("openai: delete_key needs scope = the project id")
        try:
            self._http.call(
                "DELETE",
                f"/organization/projects/{_seg(scope)}/service_accounts/{_seg(key_id)}",
                op="delete service account",
                deadline=deadline,
            )
        except ProviderNotFound as exc:
            # OpenAI answers an unknown route with a JSON 404 too ("Invalid URL (…)"): that is a
            # misconfigured base URL, not a deleted service account.
            if exc.api_error and "Invalid URL" not in exc.message:
                return False
            raise
        return True

    def find_keys(self, name_prefix: str, *, scope: str | None, deadline: float) -> list[ProviderKey]:
        """Service accounts whose name starts with `name_prefix` (all pages), in project `scope`,
        or in every active project of the organization when `scope` is None."""
        if scope:
            return self._find_in_project(name_prefix, scope, deadline=deadline)
        found: list[ProviderKey] = []
        for project in self._walk("/organization/projects", op="list projects", deadline=deadline):
            project_id = req_str(project, "id", self.name, "list projects")
            found.extend(self._find_in_project(name_prefix, project_id, deadline=deadline))
        return found

    def _find_in_project(self, name_prefix: str, project_id: str, *, deadline: float) -> list[ProviderKey]:
        op = "list service accounts"
        found: list[ProviderKey] = []
        path = f"/organization/projects/{_seg(project_id)}/service_accounts"
        for account in self._walk(path, op=op, deadline=deadline):
            name = opt_str(account, "name") or ""
            if name.startswith(name_prefix):
                found.append(
                    ProviderKey(
                        key_id=req_str(account, "id", self.name, op),
                        name=name,
                        created_at=parse_time(account.get("created_at")),
                        scope=project_id,
                    )
                )
        return found

    def _walk(self, path: str, *, op: str, deadline: float) -> list[dict[str, Any]]:
        """Every object of a cursor-paged list (`limit`, `after`, until `has_more` is false)."""
        out: list[dict[str, Any]] = []
        after: str | None = None
        for _ in range(MAX_PAGES):
            params: dict[str, str | int] = {"limit": self._page_limit}
            if after is not None:
                params["after"] = after
            body = as_object(
                self._http.call("GET", path, op=op, params=params, deadline=deadline), self.name, op
            )
            items = [
                as_object(item, self.name, op) for item in as_list(body.get("data"), self.name, op, "data")
            ]
            out.extend(items)
            if not body.get("has_more") or not items:
                return out
            next_after = opt_str(body, "last_id") or opt_str(items[-1], "id")
            if not next_after or next_after == after:
                raise ProviderBadResponse(self.name, f"{self.name}: {op}: has_more without a new cursor")
            after = next_after
        raise ProviderBadResponse(self.name, f"{self.name}: {op}: more than {MAX_PAGES} pages")

    def extend_key(self, key_id: str, *, scope: str, expires_at: datetime, deadline: float) -> None:
        raise NotImplementedError("openai: service-account keys cannot be extended")
