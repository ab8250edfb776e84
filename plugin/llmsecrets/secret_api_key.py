"""The leased secret `llm_api_key`: renew (extends provider-side expiry where it can) and revoke.

Revoke contract (Vault retries a failed revoke with backoff, ~10 minutes in all, and marks the lease
irrevocable AT ONCE for bad request / unsupported path / invalid request / unrecoverable):
- deletes the key at the provider; "already gone" (404) is success;
- every failure is retryable: provider faults (429, 5xx, timeouts, auth) are 502 `UpstreamError`,
  missing config is a 500 `VaultError` that says how to fix it;
- works on a key created a millisecond ago (it needs only the lease's internal data and the connection);
- removes the key from the index after the provider delete.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from vaultplugin.framework import (
    BadRequest,
    Field,
    FieldData,
    FieldType,
    Request,
    Response,
    SecretType,
    VaultError,
    get_json,
)

from llmsecrets import errors
from llmsecrets.models import ConnectionConfig, IssuedKeyRecord, LeaseRef, RecordError
from llmsecrets.providers.base import ProviderClient
from llmsecrets.providers.errors import ProviderError

if TYPE_CHECKING:
    from vaultplugin.framework import Storage

    from llmsecrets.backend import LLMBackend

log = logging.getLogger(__name__)

SECRET_TYPE = "llm_api_key"  # noqa: S105 - a type name, not a password

RESPONSE_FIELDS: dict[str, Field] = {
    "api_key": Field(FieldType.STRING, "The provider API key. Shown once; never stored.", sensitive=True),
    "key_id": Field(FieldType.STRING, "The provider's id of the key (what revoke deletes)."),
    "key_name": Field(FieldType.STRING, "The key's name at the provider."),
    "provider": Field(FieldType.STRING, "openai, openrouter or litellm."),
    "role": Field(FieldType.STRING, "The role the key was issued for."),
    "connection": Field(FieldType.STRING, "The connection the key was minted through."),
    "expires_at": Field(
        FieldType.STRING,
        "When the provider itself expires the key (ISO-8601 UTC); only where the provider enforces expiry.",
    ),
}


def api_key_secret(b: LLMBackend) -> SecretType:
    def renew(req: Request, d: FieldData) -> Response:
        lease = req.secret
        if lease is None:
            raise VaultError("renew request carries no lease")
        ref = _lease_ref(lease.internal_data)
        storage = b.storage_of(req)
        record = _index_record(storage, ref)
        if record is None:
            raise BadRequest(
                f"key {ref.key_id} of role {ref.role!r} is no longer live (revoked or deleted by the sweep); "
                "read creds again"
            )
        now = b.clock()
        remaining = record.lease_expires_at - now
        if remaining <= 0:
            raise BadRequest("the lease has reached its max TTL; read creds again for a new key")
        new_ttl = min(float(lease.increment or record.ttl), remaining)
        if record.provider_expires_at is not None:
            _extend(b, storage, ref, record, until=now + new_ttl)
        return b.api_key.renew_response(req, ttl=new_ttl)

    def revoke(req: Request, d: FieldData) -> None:
        lease = req.secret
        if lease is None:
            raise VaultError("revoke request carries no lease")
        ref = _lease_ref(lease.internal_data)
        storage = b.storage_of(req)
        client = _client_for(b, storage, ref, action="revoke")
        try:
            existed = client.delete_key(ref.key_id, scope=ref.scope, deadline=b.deadline())
        except ProviderError as exc:
            log.warning(
                "revoke failed, Vault will retry: connection=%s key_id=%s error=%s",
                ref.connection,
                ref.key_id,
                type(exc).__name__,
            )
            raise errors.for_revoke(exc, connection=ref.connection) from None
        storage.delete(IssuedKeyRecord.storage_key(ref.connection, ref.key_id))
        log.info(
            "revoked key: connection=%s role=%s key_id=%s name=%s already_gone=%s",
            ref.connection,
            ref.role,
            ref.key_id,
            ref.key_name,
            not existed,
        )

    return SecretType(name=SECRET_TYPE, fields=RESPONSE_FIELDS, renew=renew, revoke=revoke)


def _lease_ref(internal: dict[str, object]) -> LeaseRef:
    try:
        return LeaseRef.from_internal(internal)
    except RecordError as exc:
        # Retryable on purpose: an operator can still `bao lease revoke -force` it.
        raise VaultError(f"this lease's internal data is not what the engine wrote: {exc}") from None


def _index_record(storage: Storage, ref: LeaseRef) -> IssuedKeyRecord | None:
    raw = get_json(storage, IssuedKeyRecord.storage_key(ref.connection, ref.key_id))
    if raw is None:
        return None
    try:
        return IssuedKeyRecord.from_storage(raw)
    except RecordError as exc:
        log.error("index record of key %s is unreadable: %s", ref.key_id, exc)
        raise VaultError("the index record of this key is unreadable; see the plugin's log") from None


def _client_for(b: LLMBackend, storage: Storage, ref: LeaseRef, *, action: str) -> ProviderClient:
    """The client of the lease's connection; retryable errors that explain what is missing."""
    conn: ConnectionConfig | None = b.connection(storage, ref.connection)
    if conn is None:
        raise VaultError(
            f"cannot {action} key {ref.key_id} ({ref.provider}): connection {ref.connection!r} no longer "
            f"exists. Write config/{ref.connection} again with the {ref.provider} admin key so Vault's "
            "retries can delete the key, or delete it at the provider and force-revoke the lease"
        )
    if conn.provider != ref.provider:
        raise VaultError(
            f"cannot {action} key {ref.key_id}: connection {ref.connection!r} is now {conn.provider}, "
            f"but the key was issued by {ref.provider}"
        )
    try:
        return b.clients.get(conn)
    except ValueError as exc:
        raise VaultError(f"cannot {action} key {ref.key_id}: connection {ref.connection!r}: {exc}") from None


def _extend(b: LLMBackend, storage: Storage, ref: LeaseRef, record: IssuedKeyRecord, *, until: float) -> None:
    """Push the provider-side expiry to the new lease end + grace, never past max TTL + grace."""
    client = _client_for(b, storage, ref, action="renew")
    if not client.capabilities.extend_expiry:
        return  # created with expiry = max TTL + grace: nothing to move
    grace = b.provider_expiry_grace
    target = min(until + grace, record.lease_expires_at + grace)
    try:
        client.extend_key(
            ref.key_id,
            scope=ref.scope,
            expires_at=datetime.fromtimestamp(target, UTC),
            deadline=b.deadline(),
        )
    except ProviderError as exc:
        raise errors.for_request(
            exc, connection=ref.connection, action="extending the key's expiry"
        ) from None
