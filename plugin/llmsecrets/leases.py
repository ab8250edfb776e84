"""A lease's key after issue: renew (extends provider-side expiry where it can) and revoke.

secret_api_key.py declares the secret type `llm_api_key` whose handlers these are.

Revoke contract (Vault retries a failed revoke 5 times, ~10 minutes in all, then marks the lease
irrevocable; AT ONCE for bad request / unsupported path / invalid request / unrecoverable):
- deletes the key at the provider; "already gone" (404) is success;
- works on a key created a millisecond ago (it needs only the lease's internal data and the connection);
- removes the key from the index after the provider delete (after the reply: see `revoke`);
- when the delete fails, the key goes into the deletion queue (deletions.py) BEFORE the answer, and the
  engine retries it every few seconds until it is gone. Then:
  * a lease whose TTL has run out (Vault's expiry, or a revoke that came after it) is answered "revoked":
    Vault's part is over, the key is the engine's to delete. So no expiring lease is ever left to Vault's
    retries, and none becomes irrevocable, however long the provider is down;
  * a lease still running (`bao lease revoke`, revoke-prefix, a revoked token) is answered with a
    retryable error (502 for provider faults, 500 with the fix for a missing connection) that says the
    deletion is queued: a synchronous revoke never reports success while the key is still live. Vault's
    next try (async revokes, or the lease's expiry) finds the key deleted (a tombstone) and succeeds;
- a key whose deletion is queued or done cannot be renewed.

Where renew and revoke run: on the plugin's hub (as every handler does), like a creds read: the
provider's delete or extend waits through the hub too (see issuing.py). Vault revokes a sync
revoke-prefix one lease at a time, so what counts there is each revoke's latency: on a pool thread, each of
its storage calls cost two thread hand-offs.

When the lease's TTL ran out: from its issue time (or the engine's last renewal, kept in the internal
data as `renewed_at`) plus the TTL Vault sends with the revoke. Vault computes its own expiry a moment
after either, so the engine's estimate is never later than Vault's.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from vaultplugin.framework import (
    BadRequest,
    LeaseInfo,
    Request,
    Response,
    UpstreamError,
    VaultError,
    get_json,
)
from vaultplugin.framework.runtime import defer

from llmsecrets import connections, errors, spend
from llmsecrets.connections import Unusable, UnusableConnection
from llmsecrets.deletions import connection_wide, describe
from llmsecrets.models import ConnectionConfig, DeletionReason, IssuedKeyRecord, LeaseRef, RecordError
from llmsecrets.providers.base import ProviderClient
from llmsecrets.providers.errors import ProviderError

if TYPE_CHECKING:
    from vaultplugin.framework import Storage

    from llmsecrets.backend import LLMBackend

log = logging.getLogger(__name__)

# Internal-data key: when the engine last renewed the lease (unix seconds).
RENEWED_AT = "renewed_at"


def renew(b: LLMBackend, req: Request) -> Response:
    """Renew a lease: extend the provider-side expiry where the provider can; refuse keys being deleted."""
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
    if b.deletions.lookup(storage, ref.connection, ref.key_id) is not None:
        raise BadRequest(
            f"key {ref.key_id} of role {ref.role!r} is being deleted (its lease was revoked); "
            "read creds again"
        )
    now = b.clock()
    remaining = _lease_end(lease, record) - now
    if remaining <= 0:
        raise BadRequest("the lease has reached its max TTL; read creds again for a new key")
    new_ttl = min(float(lease.increment or record.ttl), remaining)
    if record.provider_expires_at is not None:
        _extend(b, storage, ref, record, until=now + new_ttl)
    # Vault replaces the internal data with the renew response's: revoke learns when the TTL restarted.
    lease.internal_data = {**lease.internal_data, RENEWED_AT: now}
    b.metrics.renewed(ref.provider, ref.role)
    return b.api_key.renew_response(req, ttl=new_ttl)


def revoke(b: LLMBackend, req: Request) -> None:
    """Revoke a lease: delete its key at the provider, or queue the deletion (see the module's docstring)."""
    lease = req.secret
    if lease is None:
        raise VaultError("revoke request carries no lease")
    ref = _lease_ref(lease.internal_data)
    storage = b.storage_of(req)
    queued = b.deletions.lookup(storage, ref.connection, ref.key_id)
    if queued is not None and queued.done_at is not None:
        # The tombstone has done its job: Vault drops the lease now and will not ask again. Clearing it
        # can wait for the reply (the index entry went with the deletion; a tombstone left behind is
        # purged after a day), so a revoke-prefix after `revoke-keys` is one storage read a lease.
        defer(lambda: _clear_tombstone(b, storage, ref))
        log.info(
            "revoked key (deleted earlier by the deletion queue): connection=%s role=%s key_id=%s",
            ref.connection,
            ref.role,
            ref.key_id,
        )
        b.metrics.revoked(ref.provider, ref.role)
        return
    ended = lease_ended(lease, b.clock())
    if ended and b.deletions.connection_failing(ref.connection):
        # The provider is failing right now: queue without waiting for yet another failed call.
        _queue(b, storage, ref, ended=True, error="not tried: the connection is failing", attempted=False)
        b.spend.keep(storage, ref, lease, b.spend.not_read(storage, "the connection is failing"))
        b.metrics.revoked(ref.provider, ref.role)
        return
    reading: spend.Reading | None = None
    try:
        client = _client_for(b, storage, ref, action="revoke")
        reading = b.spend.read(storage, client, ref)  # first: a deleted key reports nothing
        existed = client.delete_key(ref.key_id, scope=ref.scope, deadline=b.deadline())
    except (ProviderError, VaultError) as exc:
        if isinstance(exc, ProviderError) and connection_wide(exc):
            b.deletions.note_failure(ref.connection, exc)
        _queue(b, storage, ref, ended=ended, error=describe(exc, _connection_or_none(b, storage, ref)))
        b.spend.keep(storage, ref, lease, reading)
        if ended:
            b.metrics.revoked(ref.provider, ref.role)
            return
        b.metrics.failed(ref.provider, ref.role, "revoke")
        raise _still_live(exc, ref, req.mount_point) from None
    b.deletions.note_success(ref.connection)
    # The key is gone: its index entry can wait for the reply (a process killed first leaves an entry the
    # sweep clears after the lease max, its delete answered "already gone").
    defer(lambda: storage.delete(IssuedKeyRecord.storage_key(ref.connection, ref.key_id)))
    if queued is not None:
        b.deletions.discard(storage, ref.connection, ref.key_id)
    log.info(
        "revoked key: connection=%s role=%s key_id=%s name=%s already_gone=%s",
        ref.connection,
        ref.role,
        ref.key_id,
        ref.key_name,
        not existed,
    )
    b.spend.keep(storage, ref, lease, reading)
    b.metrics.revoked(ref.provider, ref.role)


def _clear_tombstone(b: LLMBackend, storage: Storage, ref: LeaseRef) -> None:
    storage.delete(IssuedKeyRecord.storage_key(ref.connection, ref.key_id))
    b.deletions.discard(storage, ref.connection, ref.key_id)


def _lease_end(lease: LeaseInfo, record: IssuedKeyRecord) -> float:
    """The latest a lease can last: Vault's issue time + max TTL, as Vault caps it. The index record's own
    estimate starts when the creds read began, up to a create's duration earlier: capping a renewal there
    could end the lease before an earlier renewal had."""
    if lease.issue_time is not None and lease.max_ttl > 0:
        return lease.issue_time.timestamp() + lease.max_ttl
    return record.lease_expires_at


def lease_ended(lease: LeaseInfo, now: float) -> bool:
    """Has the lease's TTL run out (so this revoke is Vault's expiry, or came after it)?

    Unknown (no TTL or start time) counts as "still running": the answer that can never report a live key
    as revoked.
    """
    if lease.ttl <= 0:
        return False
    renewed = lease.internal_data.get(RENEWED_AT)
    if isinstance(renewed, int | float) and not isinstance(renewed, bool):
        start = float(renewed)
    elif lease.issue_time is not None:
        start = lease.issue_time.timestamp()
    else:
        return False
    return now >= start + lease.ttl


def _queue(
    b: LLMBackend, storage: Storage, ref: LeaseRef, *, ended: bool, error: str, attempted: bool = True
) -> None:
    """Put the lease's key into the deletion queue; a storage failure becomes a retryable error."""
    record = _index_record_or_none(storage, ref)
    expires_by: float | None = None
    if record is not None and record.provider_expires_at is not None:
        # Renewals move a provider's expiry, never past the lease max + grace.
        expires_by = max(record.provider_expires_at, record.lease_expires_at + b.provider_expiry_grace)
    try:
        b.deletions.enqueue(
            storage,
            connection=ref.connection,
            provider=ref.provider,
            key_id=ref.key_id,
            scope=ref.scope,
            key_name=ref.key_name,
            role=ref.role,
            reason=DeletionReason.LEASE_ENDED if ended else DeletionReason.REVOKE,
            expires_by=expires_by,
            vault_waiting=not ended,
            error=error,
            attempted=attempted,
        )
    except Exception as exc:
        log.error("could not queue the deletion of key %s: %s", ref.key_id, type(exc).__name__)
        raise VaultError(
            f"revoking key {ref.key_id} failed ({error}) and its deletion could not be queued "
            f"(storage: {type(exc).__name__}); Vault will retry"
        ) from None
    if ended:
        log.warning(
            "revoke of an ended lease: the provider failed, the key is queued for deletion and Vault is told "
            "the lease is revoked: connection=%s role=%s key_id=%s error=%s",
            ref.connection,
            ref.role,
            ref.key_id,
            error,
        )
    else:
        log.warning(
            "revoke failed, the key is still live and queued for deletion; Vault will retry: connection=%s "
            "role=%s key_id=%s error=%s",
            ref.connection,
            ref.role,
            ref.key_id,
            error,
        )


def _still_live(exc: Exception, ref: LeaseRef, mount_point: str) -> VaultError:
    """The error of a revoke that failed on a running lease: the key is live, its deletion queued."""
    where = f"{mount_point.rstrip('/')}/deletions" if mount_point else "deletions (under this mount)"
    note = (
        f". The key is still live; its deletion is queued and retried by the engine every few seconds "
        f"(bao list -detailed {where}). Revoke again once it is gone; Vault also retries at the lease's "
        "expiry"
    )
    if isinstance(exc, ProviderError):
        err = errors.for_revoke(exc, connection=ref.connection)
        return UpstreamError(err.message + note)
    if isinstance(exc, VaultError):
        return VaultError(exc.message + note)  # same type: a missing connection is a 500 that says the fix
    return VaultError(str(exc) + note)


def _connection_or_none(b: LLMBackend, storage: Storage, ref: LeaseRef) -> ConnectionConfig | None:
    try:
        return b.connection(storage, ref.connection)
    except Exception:
        return None


def _index_record_or_none(storage: Storage, ref: LeaseRef) -> IssuedKeyRecord | None:
    try:
        return _index_record(storage, ref)
    except Exception:
        return None


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
    try:
        return connections.client_for_keys(b, storage, ref.connection, ref.provider)[1]
    except UnusableConnection as exc:
        if exc.why is Unusable.MISSING:
            raise VaultError(
                f"cannot {action} key {ref.key_id} ({ref.provider}): connection {ref.connection!r} no longer "
                f"exists. Write config/{ref.connection} again with the {ref.provider} admin key so Vault's "
                "retries can delete the key, or delete it at the provider and force-revoke the lease"
            ) from None
        if exc.why is Unusable.PROVIDER_CHANGED:
            raise VaultError(
                f"cannot {action} key {ref.key_id}: connection {ref.connection!r} is now {exc.provider}, "
                f"but the key was issued by {ref.provider}"
            ) from None
        raise VaultError(
            f"cannot {action} key {ref.key_id}: connection {ref.connection!r}: {exc.reason}"
        ) from None


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
        b.metrics.failed(ref.provider, ref.role, "renew")
        raise errors.for_request(
            exc, connection=ref.connection, action="extending the key's expiry"
        ) from None
