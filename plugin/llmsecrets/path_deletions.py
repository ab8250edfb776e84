"""`LIST deletions` (read-only): the keys the engine still has to delete at their provider (the queue).

Shows ids, names and the retrier's progress; never a key value (the engine never stores one).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from vaultplugin.framework import FieldData, Operation, OperationSpec, Path, Request, Response

from llmsecrets.models import PendingDeletion

if TYPE_CHECKING:
    from llmsecrets.backend import LLMBackend

DELETIONS_HELP = """\
Lists the keys this mount still has to delete at their provider, and those it deleted recently for a
revoke that Vault will retry.

A key lands here when deleting it failed: a revoke during a provider outage, a refused admin key, a
missing connection, or a failed sweep. The engine retries each entry itself every few seconds (one probe
call per connection while the provider keeps failing) until the key is deleted, found already gone, or
has expired at the provider by itself. Entries are kept in the mount's storage, so a plugin restart or a
lease Vault gave up on (irrevocable, revoke-force) changes nothing.

Each entry (key_info) shows: connection, provider, key_id, key_name, role, reason (revoke: a revoke of a
running lease failed and Vault was told so; lease_ended: Vault revoked an ended lease and was told it is
done, the engine deletes the key; sweep), state (pending or deleted), queued_at, attempts, last_error,
last_attempt_at, next_attempt_at, expires_by (when the provider expires the key by itself, if it does).

Example:
    bao list -detailed llm/deletions
"""


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def entry_info(rec: PendingDeletion) -> dict[str, Any]:
    """What an operator sees of one entry (no secret is ever in a record)."""
    return {
        "connection": rec.connection,
        "provider": rec.provider,
        "key_id": rec.key_id,
        "key_name": rec.key_name,
        "role": rec.role,
        "reason": rec.reason,
        "state": "pending" if rec.done_at is None else "deleted",
        "queued_at": _iso(rec.queued_at),
        "attempts": rec.attempts,
        "last_error": rec.last_error,
        "last_attempt_at": _iso(rec.last_attempt_at),
        "next_attempt_at": _iso(rec.next_attempt_at) if rec.done_at is None else None,
        "deleted_at": _iso(rec.done_at),
        "expires_by": _iso(rec.expires_by),
    }


def paths(b: LLMBackend) -> list[Path]:
    def list_deletions(req: Request, d: FieldData) -> Response:
        records = b.deletions.listing(b.storage_of(req))
        keys = [f"{r.connection}/{r.key_id}" for r in records]
        info = {f"{r.connection}/{r.key_id}": entry_info(r) for r in records}
        return Response(data={"keys": keys, "key_info": info})

    return [
        Path(
            "deletions/?$",
            operations={
                Operation.LIST: OperationSpec(
                    list_deletions,
                    summary="List the keys still to be deleted at their provider.",
                )
            },
            synopsis="The deletion queue: keys the engine is still deleting at their provider.",
            description=DELETIONS_HELP,
        )
    ]
