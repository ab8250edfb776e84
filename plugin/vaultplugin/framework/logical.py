"""The request, response and secret types a backend sees: Python twins of Vault's `logical` package.

Durations are plain seconds (float) here; the wire layer converts to int64 nanoseconds.
JSON-like data is `dict[str, Any]`.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol


class Operation(StrEnum):
    CREATE = "create"
    READ = "read"
    UPDATE = "update"
    PATCH = "patch"
    DELETE = "delete"
    LIST = "list"
    HELP = "help"
    ALIAS_LOOKAHEAD = "alias-lookahead"
    RESOLVE_ROLE = "resolve-role"
    HEADER = "header"
    RENEW = "renew"
    REVOKE = "revoke"
    ROLLBACK = "rollback"
    RESOLVE_PATH = "resolve-path"  # sent before every client request (OpenBao 2.7)


class Storage(Protocol):
    """Vault's barrier storage for one mount. Keys are '/'-separated; values are opaque bytes."""

    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, value: bytes) -> None: ...

    def delete(self, key: str) -> None: ...

    def list(self, prefix: str) -> list[str]:
        """Direct children of `prefix`: leaf names, and sub-folders with a trailing '/'."""
        ...


# Bits of the host's `consts.ReplicationState` (sdk/helper/consts/replication.go). An HA standby that serves
# requests itself (OpenBao's standby reads, Vault's performance standbys) reports PERFORMANCE_STANDBY.
REPLICATION_PERFORMANCE_SECONDARY = 1 << 6
REPLICATION_PERFORMANCE_STANDBY = 1 << 14


@dataclass(frozen=True)
class Alias:
    """One of an entity's logins: the name it has at one auth mount (Vault's `logical.Alias`)."""

    id: str
    mount_accessor: str  # e.g. auth_userpass_1a2b3c4d
    mount_type: str  # e.g. userpass
    name: str  # the name at that auth method: the userpass user, the approle role id, ...
    metadata: Mapping[str, str] = field(default_factory=dict)  # set by the auth method
    custom_metadata: Mapping[str, str] = field(default_factory=dict)  # set by an operator
    namespace_id: str = ""
    local: bool = False


@dataclass(frozen=True)
class Entity:
    """The identity behind a request's token (Vault's `logical.Entity`): only aliases of the mount's
    namespace are included."""

    id: str
    name: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    disabled: bool = False
    namespace_id: str = ""  # OpenBao 2.7 leaves it empty here
    aliases: tuple[Alias, ...] = ()


@dataclass(frozen=True)
class Group:
    """An identity group the entity belongs to, directly or through a parent group."""

    id: str
    name: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    namespace_id: str = ""


class SystemView(Protocol):
    """What the host tells a backend about its mount, and about a request's identity.

    An identity call the host cannot answer raises `VaultError` (a 500 whose message names the call).
    """

    def default_lease_ttl(self) -> float: ...

    def max_lease_ttl(self) -> float: ...

    def replication_state(self) -> int:
        """This node's `REPLICATION_*` bits (0 on a server without HA or replication)."""
        ...

    def entity_info(self, entity_id: str) -> Entity | None:
        """The entity `entity_id` (a request's `entity_id`), or None: no id (a root or token-store token
        has none), or no such entity (deleted since the token was made)."""
        ...

    def groups_for_entity(self, entity_id: str) -> tuple[Group, ...]:
        """The groups of the entity, direct and inherited; () when there is no id or no such entity."""
        ...


class StorageError(Exception):
    """Storage reported a failure (in-band `err` from the host, or a transport fault)."""


@dataclass
class LeaseInfo:
    """What Vault sends back with a renew or revoke: the secret as it was last stored."""

    internal_data: dict[str, Any]
    ttl: float = 0.0
    max_ttl: float = 0.0
    increment: float = 0.0
    renewable: bool = False
    issue_time: datetime | None = None
    lease_id: str = ""


@dataclass
class Request:
    operation: str
    path: str
    data: dict[str, Any] = field(default_factory=dict)
    storage: Storage | None = None
    secret: LeaseInfo | None = None
    id: str = ""
    mount_point: str = ""
    mount_type: str = ""
    client_token: str = ""  # a per-mount salted hash, never the real token
    display_name: str = ""
    entity_id: str = ""
    unauthenticated: bool = False
    headers: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Secret:
    """A leased secret in a response. `internal_data` must hold what revoke needs, never the secret."""

    internal_data: dict[str, Any]
    ttl: float = 0.0  # 0 = the mount default
    max_ttl: float = 0.0  # 0 = the mount max
    renewable: bool = True
    increment: float = 0.0
    issue_time: datetime | None = None  # filled in by the wire layer if unset (Vault requires it)


@dataclass
class Response:
    data: dict[str, Any] = field(default_factory=dict)
    secret: Secret | None = None
    warnings: list[str] = field(default_factory=list)
    headers: dict[str, list[str]] = field(default_factory=dict)


# Response data keys that make the host answer with a body of the backend's own instead of its JSON envelope
# (the Go SDK's `logical.HTTPStatusCode` & co.; the host checks for the status code key).
HTTP_STATUS_CODE = "http_status_code"
HTTP_CONTENT_TYPE = "http_content_type"
HTTP_RAW_BODY = "http_raw_body"
HTTP_CACHE_CONTROL = "http_raw_cache_control"


def raw_response(
    body: bytes, *, content_type: str, status: int = 200, cache_control: str | None = None
) -> Response:
    """A response the host sends as it is: `status`, `Content-Type: content_type` and `body` (e.g. a
    Prometheus scrape). It carries no secret, and the host drops its warnings.

    The body travels base64-encoded, as a Go plugin's `[]byte` would: the host decodes a string body as
    base64 when it can and takes it verbatim otherwise, so plain text that happens to be valid base64 would
    be mangled."""
    data: dict[str, Any] = {
        HTTP_STATUS_CODE: status,
        HTTP_CONTENT_TYPE: content_type,
        HTTP_RAW_BODY: base64.b64encode(body).decode("ascii"),
    }
    if cache_control is not None:
        data[HTTP_CACHE_CONTROL] = cache_control
    return Response(data=data)


@dataclass(frozen=True)
class SpecialPaths:
    root: tuple[str, ...] = ()
    unauthenticated: tuple[str, ...] = ()
    local_storage: tuple[str, ...] = ()
    seal_wrap_storage: tuple[str, ...] = ()
