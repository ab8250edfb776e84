"""Issuing a key: what a `creds/<role>` read does (path_creds.py declares the path).

The order of work is what makes an interrupted read safe:
1. WAL entry naming the key-to-be (connection, provider, scope, name, role, time);
2. the provider create;
3. the index entry `keys/<connection>/<key id>` (ids and names, never the key);
4. the response (lease internal data: what revoke needs, never the key); after the reply has been sent,
   the WAL entry is deleted.
A create whose outcome is unknown leaves its WAL entry: the rollback finds the key by its exact name and
deletes it, unless the index holds it (rollback.py): an indexed key got as far as the reply, so a lease may
own it; if none does, the sweep deletes it after the lease max.

Storage calls per read: WAL put, index put, WAL delete (records and clients are cached). In an HA cluster
each is a Raft commit (~7 ms on loopback here) and OpenBao writes the lease after the reply; deleting the WAL
entry after the reply takes one commit off the read's path.

Where it runs: on the plugin's hub, as every handler does: its storage calls and the provider's create
suspend it without holding a thread (the provider HTTP client waits through the hub: providers/http11.py;
a call that cannot, through a proxy or when the connection's bulkhead is nearly full, moves to a pool thread
by itself: providers/transport.py `runs_here`). Each thread hand-off costs more than a read's Python work.

On an HA standby (which serves reads itself, with read-only storage) a read fails first of all with
Vault's read-only error, which the host answers by forwarding the read to the active node: no provider
call, no key. Were that check to miss, step 1 would fail the same way, still before the create.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from vaultplugin.framework import BadRequest, Request, delete_wal, put_json, put_wal
from vaultplugin.framework.runtime import defer

from llmsecrets import connections, errors, roles
from llmsecrets.connections import UnusableConnection
from llmsecrets.identity import request_identity
from llmsecrets.models import ConnectionConfig, IssuedKeyRecord, LeaseRef, PendingCreate, Role, WalKind
from llmsecrets.naming import IssueContext, key_name, render_metadata, template_needs
from llmsecrets.providers import openai
from llmsecrets.providers.base import IssuedKey, KeySpec, ProviderClient
from llmsecrets.providers.errors import CreateOutcomeUnknown, ProviderError
from llmsecrets.roles import InvalidRole

if TYPE_CHECKING:
    from llmsecrets.backend import LLMBackend

log = logging.getLogger(__name__)

# Used only when the host reports no lease TTLs at all (never in a real Vault).
FALLBACK_MAX_TTL = 86400
FALLBACK_TTL = 3600


@dataclass(frozen=True)
class Issued:
    """A key minted for a lease: what the response shows, what revoke needs, and the lease's TTLs."""

    data: dict[str, Any]
    internal: dict[str, Any]
    ttl: int
    max_ttl: int


def lease_ttls(b: LLMBackend, role: Role) -> tuple[int, int]:
    """(ttl, max_ttl) in seconds: the role's, defaulting to and capped by the mount's.

    The mount's values cost two calls to Vault, so they are asked for only when the role leaves a TTL
    unset. A role's max_ttl was checked against the mount's on write; if the mount was tuned lower since,
    Vault caps the lease itself, and the provider-side backstop merely ends later than the lease.
    """
    if role.ttl and role.max_ttl:
        return min(role.ttl, role.max_ttl), role.max_ttl
    mount_default = int(b.system.default_lease_ttl())
    mount_max = int(b.system.max_lease_ttl())
    max_ttl = role.max_ttl or mount_max
    if mount_max > 0:
        max_ttl = min(max_ttl, mount_max)
    if max_ttl <= 0:
        max_ttl = FALLBACK_MAX_TTL
    ttl = role.ttl or mount_default or FALLBACK_TTL
    return min(ttl, max_ttl), max_ttl


def issue(b: LLMBackend, req: Request, role_name: str) -> Issued:
    """Mint a key for `role_name` (see the module's docstring for the order of work)."""
    b.require_active()
    storage = b.storage_of(req)
    role = b.role(storage, role_name)
    if role is None:
        raise BadRequest(f'unknown role {role_name!r} (field "role"): write roles/{role_name} first')
    conn = b.connection(storage, role.connection)
    if conn is None:
        raise BadRequest(
            f"role {role.name!r} uses connection {role.connection!r}, which does not exist: "
            f"write config/{role.connection} or point the role at another connection"
        )
    if not conn.allows(role.name):
        raise BadRequest(
            f"role {role.name!r} is not in the allowed_roles of connection {conn.name!r}; add it there "
            f"(config/{conn.name} allowed_roles) to let this role issue keys"
        )
    try:
        client = connections.client(b, conn)
        roles.check_capabilities(role, conn, client.capabilities)
    except (UnusableConnection, InvalidRole) as exc:
        raise BadRequest(str(exc)) from None
    ttl, max_ttl = lease_ttls(b, role)
    now = b.clock()
    spec = _key_spec(b, req, role, conn, client, ttl=ttl, max_ttl=max_ttl, now=now)

    pending = PendingCreate(
        connection=conn.name,
        provider=conn.provider,
        scope=role.project_id or "",
        key_name=spec.name,
        role=role.name,
        created_at=now,
    )
    wal_id = put_wal(storage, WalKind.CREATE_KEY, pending.to_wal(), created_at=now)
    try:
        issued = client.create_key(spec, deadline=b.deadline())
    except CreateOutcomeUnknown as exc:
        # The key may exist: the WAL entry stays, and rollback finds and deletes it by name.
        log.warning(
            "create outcome unknown, left for WAL rollback: connection=%s role=%s name=%s",
            conn.name,
            role.name,
            spec.name,
        )
        b.metrics.failed(conn.provider, role.name, "issue")
        raise errors.for_request(exc, connection=conn.name, action="creating a key") from None
    except ProviderError as exc:
        b.metrics.failed(conn.provider, role.name, "issue")
        delete_wal(storage, wal_id)  # a definitive failure: nothing was created
        raise errors.for_request(exc, connection=conn.name, action="creating a key") from None

    ref = LeaseRef(
        connection=conn.name,
        provider=conn.provider,
        key_id=issued.key_id,
        scope=issued.scope,
        role=role.name,
        key_name=issued.key_name,
    )
    record = IssuedKeyRecord.for_lease(
        ref,
        issued_at=now,
        ttl=ttl,
        lease_expires_at=now + max_ttl,
        provider_expires_at=issued.expires_at.timestamp() if spec.expires_at and issued.expires_at else None,
    )
    try:
        put_json(storage, record.key, record.to_storage())
    except Exception:
        # No lease will own the key: delete it now. If that fails too, the WAL entry covers it.
        b.metrics.failed(conn.provider, role.name, "issue")
        _discard(b, client, issued)
        raise
    result = Issued(_data(issued, ref, spec), ref.to_internal(), ttl, max_ttl)
    defer(lambda: delete_wal(storage, wal_id))
    log.info(
        "issued key: connection=%s role=%s key_id=%s name=%s ttl=%d max_ttl=%d",
        conn.name,
        role.name,
        issued.key_id,
        issued.key_name,
        ttl,
        max_ttl,
    )
    b.metrics.issued(conn.provider, role.name)
    return result


def _key_spec(
    b: LLMBackend,
    req: Request,
    role: Role,
    conn: ConnectionConfig,
    client: ProviderClient,
    *,
    ttl: int,
    max_ttl: int,
    now: float,
) -> KeySpec:
    caps = client.capabilities
    expires_at: datetime | None = None
    if caps.expiry:
        # Extendable: expire shortly after the current lease end (renew pushes it). Otherwise shortly
        # after the longest the lease can last.
        horizon = ttl if caps.extend_expiry else max_ttl
        expires_at = datetime.fromtimestamp(now + horizon + b.provider_expiry_grace, UTC)
    # The entity and its groups cost a call to Vault each: asked for only when a template shows them.
    identity = request_identity(req, b.system, template_needs(role.name_template, *role.metadata.values()))
    ctx = IssueContext(role=role.name, connection=conn.name, unix_time=now, identity=identity)
    key_per_lease = role.openai_key_mode == openai.KEY_PER_LEASE
    return KeySpec(
        name=key_name(b.mount_prefix, role.name_template, ctx),
        expires_at=expires_at,
        spend_limit=role.spend_limit,
        models=role.models,
        metadata={key: render_metadata(value, ctx) for key, value in role.metadata.items()},
        project_id=role.project_id,
        scopes=role.scopes,
        key_mode=role.openai_key_mode or None,
        service_account_name=openai.role_account_name(b.mount_prefix, role.name) if key_per_lease else None,
    )


def _data(issued: IssuedKey, ref: LeaseRef, spec: KeySpec) -> dict[str, Any]:
    data: dict[str, Any] = {
        "api_key": issued.api_key.reveal(),
        "key_id": ref.key_id,
        "key_name": ref.key_name,
        "provider": ref.provider,
        "role": ref.role,
        "connection": ref.connection,
    }
    if spec.expires_at is not None:
        expires = issued.expires_at or spec.expires_at
        data["expires_at"] = expires.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return data


def _discard(b: LLMBackend, client: ProviderClient, issued: IssuedKey) -> None:
    try:
        client.delete_key(issued.key_id, scope=issued.scope, deadline=b.deadline())
    except Exception:
        log.exception(
            "could not delete key %s after a storage failure; WAL rollback will retry", issued.key_id
        )
