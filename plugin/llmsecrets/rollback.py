"""WAL rollback: settle creates that were interrupted (`WalKind.CREATE_KEY`; an interrupted admin-key
rotation, `WalKind.ROTATE_ADMIN_KEY`, is settled by `rotation.settle`).

A `PendingCreate` WAL entry outlives its creds read only when the create's outcome is unknown (the
provider may have made the key, but its secret never reached us) or the process died mid-read. The
framework hands entries older than its minimum age (10 minutes) to `rollback`, which looks the key up
at the provider by its exact, unique name and deletes every match the index does not hold. An indexed key
got as far as the reply (issuing.py indexes a key just before it and deletes the WAL entry just after), so
a lease may own it: it is left to its lease's revoke, or to the sweep after the lease max when no lease
came to own it. A provider failure raises, so the framework keeps the entry for the next rollback run.

Only the active node rolls back: on an HA standby `LLMBackend.handle_request` answers the whole rollback
operation (periodic work and WAL rollback) with nothing, through `provider_actions_allowed`. A standby's
copy of the WAL may lag, and two nodes must never race to delete the same key.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from vaultplugin.framework import Request, WalRollback

from llmsecrets import connections, rotation
from llmsecrets.checkout_sets import rollback_wal as rollback_checkout
from llmsecrets.connections import Unusable, UnusableConnection
from llmsecrets.models import IssuedKeyRecord, PendingAdminKey, PendingCreate, WalKind

if TYPE_CHECKING:
    from vaultplugin.framework import Storage

    from llmsecrets.backend import LLMBackend

log = logging.getLogger(__name__)


class RollbackError(Exception):
    """A pending create could not be settled now; the WAL entry is kept and retried."""


def make_rollback(b: LLMBackend) -> WalRollback:
    def rollback(req: Request, kind: str, data: dict[str, Any]) -> None:
        if kind == WalKind.ROTATE_ADMIN_KEY:
            rotation.settle(b, b.storage_of(req), PendingAdminKey.from_wal(data))
            return
        if kind == WalKind.CHECKOUT_KEY:  # an interrupted check-out: deactivate its key (checkout_sets.py)
            rollback_checkout(b, b.storage_of(req), data)
            return
        if kind != WalKind.CREATE_KEY:
            raise RollbackError(f"unknown WAL kind {kind!r}")
        settle(b, b.storage_of(req), PendingCreate.from_wal(data))

    return rollback


def settle(b: LLMBackend, storage: Storage, pending: PendingCreate) -> list[str]:
    """Delete every key named `pending.key_name` at the provider; return the deleted key ids.

    Raises (ProviderError, RollbackError) when it cannot finish, so the entry is kept.
    """
    try:
        _, client = connections.client_for_keys(b, storage, pending.connection, pending.provider)
    except UnusableConnection as exc:
        if exc.why is Unusable.MISSING:
            raise RollbackError(
                f"connection {pending.connection!r} no longer exists: cannot look for key "
                f"{pending.key_name!r} at {pending.provider}; write config/{pending.connection} again to let "
                "the rollback finish"
            ) from None
        if exc.why is Unusable.PROVIDER_CHANGED:
            raise RollbackError(
                f"connection {pending.connection!r} is no longer a {pending.provider} connection"
            ) from None
        raise RollbackError(f"{exc}; cannot look for key {pending.key_name!r}") from None
    found = client.find_keys(pending.key_name, scope=pending.scope or None, deadline=b.deadline())
    deleted: list[str] = []
    kept = 0
    for key in found:
        if key.name != pending.key_name:
            continue  # a longer name that merely starts with this one
        if storage.get(IssuedKeyRecord.storage_key(pending.connection, key.key_id)) is not None:
            kept += 1
            continue
        client.delete_key(key.key_id, scope=key.scope or pending.scope, deadline=b.deadline())
        deleted.append(key.key_id)
    log.info(
        "rolled back an interrupted create: connection=%s name=%s deleted=%d kept_indexed=%d",
        pending.connection,
        pending.key_name,
        len(deleted),
        kept,
    )
    return deleted
