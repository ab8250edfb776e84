"""OpenAI: keys made through the organization admin API, in one of two modes (`KEY_MODES`).

Wire contract (base `https://api.openai.com/v1`, `Authorization: Bearer <admin key>`,
optional `OpenAI-Organization`):

Mode "service_account_per_lease" (the default): one project service account per key.
- create: `POST /organization/projects/{project_id}/service_accounts` `{"name", "expires_in_seconds"}`
  -> 200 with the service account; the secret is `api_key.value` (shown once), its expiry
  `api_key.expires_at`. key_id = service account `id`, scope = project_id.
  With scopes (only an extra key takes them): create the account with `create_service_account_only`
  (role `none`, no key), `POST .../service_accounts/{id}` `{"role": "member"}`, then one key as below.
- delete: `DELETE /organization/projects/{project_id}/service_accounts/{id}` -> 200 (its keys go with
  it); 404 = already gone.

Mode "key_per_lease": one API key per lease under ONE service account per role.
- the role's account: found by exact name in `GET .../service_accounts` (all pages) or made with
  `create_service_account_only` and given role `member`; its name must contain ":" (`role_account_name`),
  which no key name rendered by the engine does, so `find_keys` never reports it as an orphan.
- create: `POST /organization/projects/{project_id}/service_accounts/{sa_id}/api_keys`
  `{"name", "scopes", "expires_in_seconds"}` -> 200 `{"id": "key_…", "value", "expires_at", …}`.
  key_id = key id, scope = "<project_id>/api_keys".
- delete: `DELETE /organization/projects/{project_id}/api_keys/{key_id}`. OpenAI documents this as an error
  for a key that belongs to a service account: then the key is read back (`GET …/api_keys/{key_id}`) and
  counts as gone only if OpenAI says so (404, or an `expires_at` it reports as past); otherwise the delete
  fails with `ProviderRejected`, and the key dies at its expiry.

Both modes:
- find: service accounts (`GET …/service_accounts`) and project keys (`GET …/api_keys
  ?owner_project_access=any`), all pages, filtered here by name prefix; a key is left out when its owner
  account has the same name (a per-lease account, reported itself).
- verify: `GET /organization/projects?limit=1`.

Admin keys (`config/<name>/rotate`, `base.AdminKeyRotation`): `POST /organization/admin_api_keys` `{"name"}`
-> 200 `organization.admin_api_key` with `value` (shown once); `DELETE /organization/admin_api_keys/{id}` ->
`organization.admin_api_key.deleted` (404: already gone); `GET /organization/admin_api_keys` (cursor pages)
shows each key's `redacted_value` ("sk-admin...def"): the client's own key is the one listed key whose
visible start and end are its own (`own_admin_key_id`; none or several: unknown).

Expiry: `expires_in_seconds` on service-account create is in OpenAI's SDKs (2026-09, "the initial API key
lifetime"; it cannot be combined with `create_service_account_only`); on `…/api_keys` create it is reported
by the same SDK releases but not seen in a stored spec. `send_expiry=False` turns both off. No per-key
spend cap, model list or metadata (those are project-level at OpenAI).
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from .base import SPEND_LATE, SPEND_NONE, Capabilities, IssuedKey, KeySpec, ProviderKey, SecretStr
from .errors import (
    CreateOutcomeUnknown,
    ProviderBadResponse,
    ProviderError,
    ProviderNotFound,
    ProviderRejected,
)
from .http import CallGuards, ProviderHTTP, as_list, as_object, opt_str, parse_time, req_str
from .retry import RetryPolicy
from .usage import usd_of

DEFAULT_BASE_URL = "https://api.openai.com/v1"
PAGE_LIMIT = 100
# Guard against a server that keeps answering has_more=true with the same cursor.
MAX_PAGES = 10_000
# The costs API: buckets (days) a page, at most 180; pages walked at most.
COSTS_PAGE_BUCKETS = 180
MAX_COSTS_PAGES = 100

SERVICE_ACCOUNT_PER_LEASE = "service_account_per_lease"
KEY_PER_LEASE = "key_per_lease"
KEY_MODES = (SERVICE_ACCOUNT_PER_LEASE, KEY_PER_LEASE)
# Marks a key's scope as a project API key (delete through `…/api_keys/{id}`), not a service account.
KEY_SCOPE_SUFFIX = "/api_keys"
# Role accounts carry it in their names; the engine's rendered key names never contain it.
ROLE_ACCOUNT_MARK = ":"


def role_account_name(mount_prefix: str, role: str) -> str:
    """The shared service account of a role in "key_per_lease" mode: `vault-<8hex>-role:<role>`."""
    return f"{mount_prefix}role{ROLE_ACCOUNT_MARK}{role}"


def _seg(value: str) -> str:
    """Quote one path segment (ids come from config and storage, not from the network only)."""
    return quote(value, safe="")


def _split_scope(scope: str) -> tuple[str, bool]:
    """(project id, whether the key is a project API key rather than a service account)."""
    if scope.endswith(KEY_SCOPE_SUFFIX):
        return scope[: -len(KEY_SCOPE_SUFFIX)], True
    return scope, False


def _redaction_of(redacted: Any, value: str) -> bool:
    """Is `redacted` ("sk-admin...def") a redaction of `value`: its visible start and end are `value`'s,
    with something hidden between?"""
    if not isinstance(redacted, str) or redacted.count("...") != 1:
        return False
    start, end = redacted.split("...")
    return (
        bool(start)
        and bool(end)
        and len(start) + len(end) < len(value)
        and value.startswith(start)
        and value.endswith(end)
    )


def _is_gone(exc: ProviderNotFound) -> bool:
    # OpenAI answers an unknown route with a JSON 404 too ("Invalid URL (…)"): that is a misconfigured
    # base URL, not a deleted object.
    return exc.api_error and "Invalid URL" not in exc.message


class OpenAIClient:
    """`ProviderClient` for OpenAI project service accounts and their API keys."""

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
        send_expiry: bool = True,
        key_mode: str = SERVICE_ACCOUNT_PER_LEASE,
        page_limit: int = PAGE_LIMIT,
    ) -> None:
        if key_mode not in KEY_MODES:
            raise ValueError(f"openai: key_mode must be one of {', '.join(KEY_MODES)}")
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
        self._admin_key = admin_key if isinstance(admin_key, SecretStr) else SecretStr(admin_key)
        self._send_expiry = send_expiry
        self.key_mode = key_mode
        self._page_limit = max(1, min(page_limit, PAGE_LIMIT))
        # (project id, account name) -> id of a role's shared service account ("key_per_lease").
        self._role_accounts: dict[tuple[str, str], str] = {}
        self._role_lock = threading.Lock()
        self.capabilities = Capabilities(
            expiry=send_expiry,
            extend_expiry=False,
            spend_limit=False,
            models=False,
            metadata=False,
            needs_project=True,
            scopes=True,
        )

    def __repr__(self) -> str:
        return f"OpenAIClient(base_url={self._http.base_url!r}, key_mode={self.key_mode!r})"

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

    # ---- admin keys

    def create_admin_key(self, name: str, *, deadline: float) -> IssuedKey:
        op = "create admin key"
        body = self._http.call(
            "POST", "/organization/admin_api_keys", op=op, json={"name": name}, deadline=deadline, create=True
        )
        try:
            key = as_object(body, self.name, op)
            key_id = req_str(key, "id", self.name, op)
            secret = req_str(key, "value", self.name, op)
        except ProviderBadResponse as exc:
            raise CreateOutcomeUnknown(self.name, exc.message + "; the admin key may exist") from None
        return IssuedKey(
            key_id=key_id,
            key_name=opt_str(key, "name") or name,
            api_key=SecretStr(secret),
            expires_at=parse_time(key.get("expires_at")),
            scope="",
            created_at=parse_time(key.get("created_at")) or datetime.now(UTC),
        )

    def delete_admin_key(self, key_id: str, *, deadline: float) -> bool:
        try:
            self._http.call(
                "DELETE",
                f"/organization/admin_api_keys/{_seg(key_id)}",
                op="delete admin key",
                deadline=deadline,
            )
        except ProviderNotFound as exc:
            if _is_gone(exc):
                return False
            raise
        return True

    def find_admin_keys(self, name: str, *, deadline: float) -> list[ProviderKey]:
        op = "list admin keys"
        return [
            ProviderKey(
                key_id=req_str(key, "id", self.name, op),
                name=name,
                created_at=parse_time(key.get("created_at")),
                scope="",
            )
            for key in self._walk("/organization/admin_api_keys", op=op, deadline=deadline)
            if key.get("name") == name
        ]

    def own_admin_key_id(self, *, deadline: float) -> str | None:
        value = self._admin_key.reveal()
        matches = [
            key.get("id")
            for key in self._walk("/organization/admin_api_keys", op="list admin keys", deadline=deadline)
            if _redaction_of(key.get("redacted_value"), value)
        ]
        return matches[0] if len(matches) == 1 and isinstance(matches[0], str) else None

    # ---- create

    def _lifetime(self, spec: KeySpec) -> int | None:
        if not self._send_expiry or spec.expires_at is None:
            return None
        return max(1, math.ceil((spec.expires_at - datetime.now(UTC)).total_seconds()))

    def _expiry(self, reported: Any, spec: KeySpec) -> datetime | None:
        if not self._send_expiry or spec.expires_at is None:
            return None
        return parse_time(reported) or spec.expires_at

    def create_key(self, spec: KeySpec, *, deadline: float) -> IssuedKey:
        if not spec.project_id:
            raise ValueError("openai: KeySpec.project_id is required")
        mode = spec.key_mode or self.key_mode
        if mode == KEY_PER_LEASE:
            return self._create_role_key(spec, spec.project_id, deadline=deadline)
        if mode != SERVICE_ACCOUNT_PER_LEASE:
            raise ValueError(f"openai: key_mode must be one of {', '.join(KEY_MODES)}")
        if spec.scopes:
            return self._create_scoped_account(spec, spec.project_id, deadline=deadline)
        op = "create service account"
        payload: dict[str, Any] = {"name": spec.name}
        if (seconds := self._lifetime(spec)) is not None:
            payload["expires_in_seconds"] = seconds
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
        return IssuedKey(
            key_id=key_id,
            key_name=opt_str(account, "name") or spec.name,
            api_key=SecretStr(secret),
            expires_at=self._expiry(api_key.get("expires_at"), spec),
            scope=spec.project_id,
            created_at=parse_time(account.get("created_at")) or datetime.now(UTC),
        )

    def _create_bare_account(self, name: str, project_id: str, *, op: str, deadline: float) -> dict[str, Any]:
        """A service account without a key (`create_service_account_only`), then given role `member`
        (an account without a role gives its keys no access to the project)."""
        body = self._http.call(
            "POST",
            f"/organization/projects/{_seg(project_id)}/service_accounts",
            op=op,
            json={"name": name, "create_service_account_only": True},
            deadline=deadline,
            create=True,
        )
        try:
            account = as_object(body, self.name, op)
            req_str(account, "id", self.name, op)
        except ProviderBadResponse as exc:
            raise CreateOutcomeUnknown(self.name, exc.message + "; the service account may exist") from None
        return account

    def _make_member(self, project_id: str, account_id: str, *, deadline: float) -> None:
        self._http.call(
            "POST",
            f"/organization/projects/{_seg(project_id)}/service_accounts/{_seg(account_id)}",
            op="give the service account role member",
            json={"role": "member"},
            deadline=deadline,
        )

    def _post_key(
        self, spec: KeySpec, project_id: str, account_id: str, *, deadline: float
    ) -> dict[str, Any]:
        op = "create service account api key"
        payload: dict[str, Any] = {"name": spec.name}
        if spec.scopes:
            payload["scopes"] = list(spec.scopes)
        if (seconds := self._lifetime(spec)) is not None:
            payload["expires_in_seconds"] = seconds
        body = self._http.call(
            "POST",
            f"/organization/projects/{_seg(project_id)}/service_accounts/{_seg(account_id)}/api_keys",
            op=op,
            json=payload,
            deadline=deadline,
            create=True,
        )
        try:
            key = as_object(body, self.name, op)
            req_str(key, "id", self.name, op)
            req_str(key, "value", self.name, op)
        except ProviderBadResponse as exc:
            raise CreateOutcomeUnknown(
                self.name, exc.message + "; the key may exist without its value"
            ) from None
        return key

    def _create_scoped_account(self, spec: KeySpec, project_id: str, *, deadline: float) -> IssuedKey:
        """A per-lease account with a scoped key: the account (named like the key, so a rollback by name
        finds it and its deletion takes the key along), its role, then the key."""
        account = self._create_bare_account(
            spec.name, project_id, op="create service account", deadline=deadline
        )
        account_id = req_str(account, "id", self.name, "create service account")
        try:
            self._make_member(project_id, account_id, deadline=deadline)
            key = self._post_key(spec, project_id, account_id, deadline=deadline)
        except CreateOutcomeUnknown:
            raise  # the rollback finds the account by name
        except ProviderError:
            self._discard_account(project_id, account_id, deadline=deadline)
            raise
        return IssuedKey(
            key_id=account_id,
            key_name=opt_str(account, "name") or spec.name,
            api_key=SecretStr(str(key["value"])),
            expires_at=self._expiry(key.get("expires_at"), spec),
            scope=project_id,
            created_at=parse_time(key.get("created_at")) or datetime.now(UTC),
        )

    def _discard_account(self, project_id: str, account_id: str, *, deadline: float) -> None:
        """Best effort: an account left behind holds no key (so grants nothing)."""
        with contextlib.suppress(ProviderError):
            self.delete_key(account_id, scope=project_id, deadline=deadline)

    def _create_role_key(self, spec: KeySpec, project_id: str, *, deadline: float) -> IssuedKey:
        account_name = spec.service_account_name
        if not account_name:
            raise ValueError("openai: key_per_lease mode needs KeySpec.service_account_name")
        if ROLE_ACCOUNT_MARK not in account_name:
            raise ValueError(f"openai: a role's service account name must contain {ROLE_ACCOUNT_MARK!r}")
        account_id = self._role_account(project_id, account_name, deadline=deadline)
        try:
            key = self._post_key(spec, project_id, account_id, deadline=deadline)
        except ProviderNotFound as exc:
            if not _is_gone(exc):
                raise
            # The role's account was deleted behind our back: nothing was created; find or make it again.
            with self._role_lock:
                self._role_accounts.pop((project_id, account_name), None)
            account_id = self._role_account(project_id, account_name, deadline=deadline)
            key = self._post_key(spec, project_id, account_id, deadline=deadline)
        return IssuedKey(
            key_id=str(key["id"]),
            key_name=opt_str(key, "name") or spec.name,
            api_key=SecretStr(str(key["value"])),
            expires_at=self._expiry(key.get("expires_at"), spec),
            scope=project_id + KEY_SCOPE_SUFFIX,
            created_at=parse_time(key.get("created_at")) or datetime.now(UTC),
        )

    def _role_account(self, project_id: str, account_name: str, *, deadline: float) -> str:
        """The id of the role's service account, found by exact name or created (once per client)."""
        with self._role_lock:
            cached = self._role_accounts.get((project_id, account_name))
        if cached is not None:
            return cached
        account = self._named_account(project_id, account_name, deadline=deadline)
        if account is None:
            created = self._create_bare_account(
                account_name, project_id, op="create the role's service account", deadline=deadline
            )
            created_id = req_str(created, "id", self.name, "create the role's service account")
            # Another node may have made one at the same moment: everyone keeps the first listed.
            account = self._named_account(project_id, account_name, deadline=deadline) or created
            if account.get("id") != created_id:
                self._discard_account(project_id, created_id, deadline=deadline)
        account_id = req_str(account, "id", self.name, "list service accounts")
        if account.get("role") == "none":
            self._make_member(project_id, account_id, deadline=deadline)
        with self._role_lock:
            self._role_accounts[(project_id, account_name)] = account_id
        return account_id

    def _named_account(self, project_id: str, account_name: str, *, deadline: float) -> dict[str, Any] | None:
        path = f"/organization/projects/{_seg(project_id)}/service_accounts"
        for account in self._walk(path, op="list service accounts", deadline=deadline):
            if account.get("name") == account_name:
                return account
        return None

    # ---- delete

    def delete_key(self, key_id: str, *, scope: str, deadline: float) -> bool:
        """Delete the key (a per-lease service account with its keys, or one project API key). False if
        it was already gone."""
        if not scope:
            raise ValueError("openai: delete_key needs scope = the project id")
        project_id, is_key = _split_scope(scope)
        if is_key:
            return self._delete_project_key(key_id, project_id, deadline=deadline)
        try:
            self._http.call(
                "DELETE",
                f"/organization/projects/{_seg(project_id)}/service_accounts/{_seg(key_id)}",
                op="delete service account",
                deadline=deadline,
            )
        except ProviderNotFound as exc:
            if _is_gone(exc):
                return False
            raise
        return True

    def _delete_project_key(self, key_id: str, project_id: str, *, deadline: float) -> bool:
        path = f"/organization/projects/{_seg(project_id)}/api_keys/{_seg(key_id)}"
        try:
            self._http.call("DELETE", path, op="delete api key", deadline=deadline)
        except ProviderNotFound as exc:
            if _is_gone(exc):
                return False
            raise
        except ProviderRejected as refused:
            # OpenAI documents this delete as an error for a service account's key. Gone only if OpenAI
            # says so: the key is unknown now, or its own expiry has passed.
            try:
                key = as_object(
                    self._http.call("GET", path, op="get api key", deadline=deadline),
                    self.name,
                    "get api key",
                )
            except ProviderNotFound as exc:
                if _is_gone(exc):
                    return False
                raise
            expires_at = parse_time(key.get("expires_at"))
            if expires_at is not None and expires_at <= datetime.now(UTC):
                return False
            until = f"it expires at {expires_at.isoformat()}" if expires_at else "it has no expiry"
            raise ProviderRejected(
                self.name,
                f"{refused.message} (the key is still live at {self.name}; {until})",
                refused.status,
                api_error=refused.api_error,
            ) from None
        return True

    # ---- find

    def find_keys(self, name_prefix: str, *, scope: str | None, deadline: float) -> list[ProviderKey]:
        """Service accounts and project API keys whose name starts with `name_prefix` (all pages), in
        project `scope`, or in every active project of the organization when `scope` is None."""
        if scope:
            return self._find_in_project(name_prefix, _split_scope(scope)[0], deadline=deadline)
        found: list[ProviderKey] = []
        for project in self._walk("/organization/projects", op="list projects", deadline=deadline):
            project_id = req_str(project, "id", self.name, "list projects")
            found.extend(self._find_in_project(name_prefix, project_id, deadline=deadline))
        return found

    def _find_in_project(self, name_prefix: str, project_id: str, *, deadline: float) -> list[ProviderKey]:
        op = "list service accounts"
        found: list[ProviderKey] = []
        base = f"/organization/projects/{_seg(project_id)}"
        for account in self._walk(base + "/service_accounts", op=op, deadline=deadline):
            name = opt_str(account, "name") or ""
            # A role's shared account is not a key: deleting it would take every lease's key with it.
            if name.startswith(name_prefix) and ROLE_ACCOUNT_MARK not in name[len(name_prefix) :]:
                found.append(
                    ProviderKey(
                        key_id=req_str(account, "id", self.name, op),
                        name=name,
                        created_at=parse_time(account.get("created_at")),
                        scope=project_id,
                    )
                )
        op = "list api keys"
        keys = self._walk(
            base + "/api_keys", op=op, deadline=deadline, params={"owner_project_access": "any"}
        )
        for key in keys:
            name = opt_str(key, "name") or ""
            if not name.startswith(name_prefix):
                continue
            owner = key.get("owner")
            owner_account = owner.get("service_account") if isinstance(owner, dict) else None
            if isinstance(owner_account, dict) and owner_account.get("name") == name:
                continue  # the key of a per-lease account, which is reported (and deleted) itself
            found.append(
                ProviderKey(
                    key_id=req_str(key, "id", self.name, op),
                    name=name,
                    created_at=parse_time(key.get("created_at")),
                    scope=project_id + KEY_SCOPE_SUFFIX,
                )
            )
        return found

    def _walk(
        self, path: str, *, op: str, deadline: float, params: dict[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """Every object of a cursor-paged list (`limit`, `after`, until `has_more` is false)."""
        out: list[dict[str, Any]] = []
        after: str | None = None
        for _ in range(MAX_PAGES):
            query: dict[str, str | int] = {**(params or {}), "limit": self._page_limit}
            if after is not None:
                query["after"] = after
            body = as_object(
                self._http.call("GET", path, op=op, params=query, deadline=deadline), self.name, op
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
        raise NotImplementedError("openai: keys cannot be extended")

    # ---- spend (base.SpendReporting)

    def spend_kind(self, scope: str) -> str:
        # The costs API groups by API key id: a key per lease has it as its key_id; a service account per
        # lease does not (the engine keeps the account's id, and the account's key goes with it).
        return SPEND_LATE if _split_scope(scope)[1] else SPEND_NONE

    def key_spend(self, key_id: str, *, scope: str, deadline: float) -> float:
        raise NotImplementedError("openai: spend arrives late, through the costs API (keys_spend)")

    def keys_spend(
        self, key_ids: Sequence[str], *, scope: str, since: datetime, deadline: float
    ) -> dict[str, float]:
        """`GET /organization/costs?start_time=<day of since>&bucket_width=1d&group_by[]=api_key_id
        &api_key_ids[]=…&limit=180` (pages by `next_page`): USD per key; OpenAI reports costs late, so a
        key without a result yet counts 0.0."""
        op = "read costs"
        wanted = list(dict.fromkeys(key_ids))
        spent = dict.fromkeys(wanted, 0.0)
        if not wanted:
            return spent
        start = int(since.timestamp()) // 86400 * 86400
        query: list[tuple[str, str | int]] = [
            ("start_time", start),
            ("bucket_width", "1d"),
            ("limit", COSTS_PAGE_BUCKETS),
            ("group_by[]", "api_key_id"),
            *(("api_key_ids[]", key_id) for key_id in wanted),
        ]
        page: str | None = None
        for _ in range(MAX_COSTS_PAGES):
            path = "/organization/costs?" + urlencode(query + ([("page", page)] if page else []))
            body = as_object(self._http.call("GET", path, op=op, deadline=deadline), self.name, op)
            for bucket in as_list(body.get("data"), self.name, op, "data"):
                results = as_object(bucket, self.name, op).get("results")
                for item in as_list(results, self.name, op, "results"):
                    result = as_object(item, self.name, op)
                    key_id = opt_str(result, "api_key_id")
                    if key_id not in spent:
                        continue
                    amount = as_object(result.get("amount"), self.name, op)
                    currency = amount.get("currency")
                    if not isinstance(currency, str) or currency.lower() != "usd":
                        raise ProviderBadResponse(self.name, f"{self.name}: {op}: a cost not in USD")
                    spent[key_id] += usd_of(amount.get("value"), self.name, op)
            next_page = opt_str(body, "next_page")
            if not body.get("has_more") or not next_page:
                return spent
            if next_page == page:
                raise ProviderBadResponse(self.name, f"{self.name}: {op}: has_more without a new page")
            page = next_page
        raise ProviderBadResponse(self.name, f"{self.name}: {op}: more than {MAX_COSTS_PAGES} pages")
