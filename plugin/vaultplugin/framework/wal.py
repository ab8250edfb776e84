"""A write-ahead log for work that must be undone if it is interrupted.

Pattern: before creating something remote (e.g. an upstream API key), `put_wal` a record of it;
once the lease that owns it is safely returned, `delete_wal`. If the process dies in between,
the backend's `rollback` operation finds the old record and calls `wal_rollback` to undo the work.

Records live under `wal/<uuid>` as JSON `{"kind", "data", "created_at"}` (unix seconds, float).
Kinds are declared on the Backend (`wal_kinds`), so a record is only handed to code that knows it.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from vaultplugin.framework.logical import Request, Storage
from vaultplugin.framework.storage import get_json, list_leaves, put_json

WAL_PREFIX = "wal/"

WalRollback = Callable[[Request, str, dict[str, Any]], None]

logger = logging.getLogger(__name__)


class WalDecodeError(ValueError):
    """A stored WAL record is not in the expected shape."""


@dataclass(frozen=True)
class WalEntry:
    id: str
    kind: str
    data: dict[str, Any]
    created_at: float


def put_wal(storage: Storage, kind: str, data: dict[str, Any], *, created_at: float | None = None) -> str:
    """Store a record and return its id. `data` must be JSON-serialisable and hold no secret."""
    if not kind:
        raise ValueError("a WAL entry needs a kind")
    wal_id = str(uuid.uuid4())
    record = {
        "kind": str(kind),
        "data": data,
        "created_at": time.time() if created_at is None else created_at,
    }
    put_json(storage, WAL_PREFIX + wal_id, record)
    return wal_id


def get_wal(storage: Storage, wal_id: str) -> WalEntry | None:
    try:
        record = get_json(storage, WAL_PREFIX + wal_id)
    except ValueError as exc:
        raise WalDecodeError(f"WAL entry {wal_id} is not a JSON object") from exc
    if record is None:
        return None
    kind, data, created_at = record.get("kind"), record.get("data"), record.get("created_at")
    if (
        not isinstance(kind, str)
        or not isinstance(data, dict)
        or isinstance(created_at, bool)
        or not isinstance(created_at, int | float)
    ):
        raise WalDecodeError(f"WAL entry {wal_id} is malformed")
    return WalEntry(id=wal_id, kind=kind, data=data, created_at=float(created_at))


def delete_wal(storage: Storage, wal_id: str) -> None:
    storage.delete(WAL_PREFIX + wal_id)


def list_wal(storage: Storage) -> list[str]:
    return list_leaves(storage, WAL_PREFIX)


def rollback_wal(
    req: Request,
    *,
    storage: Storage,
    kinds: Collection[str],
    callback: WalRollback,
    min_age_seconds: float,
    now: float,
) -> int:
    """Roll back every entry older than `min_age_seconds`; return how many failed (and were kept).

    An entry is deleted only after its callback returns; a failing callback leaves it for the next run.
    Entries of an undeclared kind, or unreadable ones, are logged and kept (a human may need them).
    """
    failures = 0
    for wal_id in list_wal(storage):
        try:
            entry = get_wal(storage, wal_id)
        except WalDecodeError:
            logger.error("skipping unreadable WAL entry %s", wal_id)
            failures += 1
            continue
        if entry is None or now - entry.created_at < min_age_seconds:
            continue
        if entry.kind not in kinds:
            logger.error("keeping WAL entry %s of undeclared kind %r", wal_id, entry.kind)
            failures += 1
            continue
        try:
            callback(req, entry.kind, entry.data)
        except Exception:
            logger.exception("rollback of WAL entry %s (kind %r) failed; will retry", wal_id, entry.kind)
            failures += 1
            continue
        delete_wal(storage, wal_id)
    return failures
