"""`tidy` (run the sweep now) and `tidy/config` (its cadence and thresholds)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vaultplugin.framework import (
    BadRequest,
    CodedError,
    Field,
    FieldData,
    FieldType,
    Operation,
    OperationSpec,
    Path,
    Request,
    Response,
)

from llmsecrets.models import SweepConfig
from llmsecrets.sweep import SweepBusy

if TYPE_CHECKING:
    from llmsecrets.backend import LLMBackend

# A pending create may take up to the request deadline: orphans younger than this are never touched.
MIN_ORPHAN_AGE_FLOOR = 60

TIDY_HELP = """\
Runs the sweep now and returns what it found and deleted (counts, key ids and names; never key values),
and `deletions_pending`: how many keys the deletion queue is still retrying (`bao list -detailed
llm/deletions` shows them). A key the sweep could not delete joins that queue.

The sweep deletes, for every connection:
  - keys whose lease max TTL (plus expired_grace) has passed: no lease can own them any more, for
    example because Vault gave up revoking them after repeated provider failures;
  - orphans: keys at the provider whose name starts with this mount's prefix (vault-<8 hex>-), that are
    older than min_orphan_age and that the engine neither tracks nor is still creating.
A provider failure in one connection is reported under "failures" and does not stop the others.

The same sweep runs by itself every tidy/config interval (default 5 minutes) on Vault's rollback tick.

Example:
    bao write -f llm/tidy
"""

TIDY_CONFIG_HELP = """\
Cadence and thresholds of the sweep that `tidy` runs on demand and Vault's rollback tick runs
periodically.

Example:
    bao write llm/tidy/config interval=10m min_orphan_age=30m
"""

CONFIG_FIELDS: dict[str, Field] = {
    "interval": Field(
        FieldType.DURATION,
        "Least time between two periodic sweeps (default 5m). 0 turns the periodic sweep off "
        "(tidy still works).",
    ),
    "min_orphan_age": Field(
        FieldType.DURATION,
        f"An unknown key with this mount's prefix is deleted only once it is this old (default 10m; at least "
        f"{MIN_ORPHAN_AGE_FLOOR}s, so a create in flight is never mistaken for an orphan).",
    ),
    "expired_grace": Field(
        FieldType.DURATION,
        "How long after its lease max TTL a tracked key is deleted by the sweep (default 2m).",
    ),
}


def paths(b: LLMBackend) -> list[Path]:
    def tidy(req: Request, d: FieldData) -> Response:
        storage = b.storage_of(req)
        try:
            report = b.sweeper.run(storage)
        except SweepBusy as exc:
            raise CodedError(503, f"tidy: {exc}; try again shortly") from None
        # The deletion queue (and what the sweep just added to it): reloaded, and its retrier woken.
        b.deletions.start(storage)
        pending = sum(1 for rec in b.deletions.listing(storage) if rec.done_at is None)
        return Response(
            data={**report.to_response(), "deletions_pending": pending, "key_name_prefix": b.mount_prefix}
        )

    def read_config(req: Request, d: FieldData) -> Response:
        config = b.sweep_config(b.storage_of(req))
        return Response(
            data={
                "interval": config.interval,
                "min_orphan_age": config.min_orphan_age,
                "expired_grace": config.expired_grace,
            }
        )

    def write_config(req: Request, d: FieldData) -> None:
        storage = b.storage_of(req)
        current = b.sweep_config(storage)
        interval, i_set = d.get_ok("interval")
        min_age, a_set = d.get_ok("min_orphan_age")
        grace, g_set = d.get_ok("expired_grace")
        config = SweepConfig(
            interval=interval if i_set else current.interval,
            min_orphan_age=min_age if a_set else current.min_orphan_age,
            expired_grace=grace if g_set else current.expired_grace,
        )
        if a_set and config.min_orphan_age < MIN_ORPHAN_AGE_FLOOR:
            raise BadRequest(f'"min_orphan_age" must be at least {MIN_ORPHAN_AGE_FLOOR}s')
        b.save_sweep_config(storage, config)

    return [
        Path(
            "tidy/config",
            fields=CONFIG_FIELDS,
            operations={
                Operation.READ: OperationSpec(read_config, summary="Read the sweep settings."),
                Operation.UPDATE: OperationSpec(write_config, summary="Change the sweep settings."),
            },
            synopsis="Configure the periodic sweep of expired and orphaned keys.",
            description=TIDY_CONFIG_HELP,
        ),
        Path(
            "tidy",
            operations={Operation.UPDATE: OperationSpec(tidy, summary="Run the sweep now.")},
            synopsis="Delete keys that outlived their lease and orphaned keys of this mount, now.",
            description=TIDY_HELP,
        ),
    ]
