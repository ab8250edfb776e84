"""`spend` and `spend/role/<role>` (read): what leases spent, per role and per lease; `spend/config`.

The records are made at revoke and by the rollback tick (spend.py); these paths only read them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vaultplugin.framework import (
    BadRequest,
    Field,
    FieldData,
    FieldType,
    Operation,
    OperationSpec,
    Path,
    Request,
    Response,
    generic_name_regex,
)

from llmsecrets.spend import LIMITS, TOP_KEPT, SpendConfig

if TYPE_CHECKING:
    from llmsecrets.backend import LLMBackend

DEFAULT_DAYS = 7
DEFAULT_TOP = 10

SPEND_HELP = f"""\
What the keys of this mount's leases spent at their provider, per role and per lease, over the last N days
(UTC days, today included; default {DEFAULT_DAYS}).

When a lease ends (revoke or expiry) the engine reads, before it deletes the key, what the key spent where
the provider reports it on the key: OpenRouter (the key's usage) and LiteLLM (the key's spend). OpenAI
reports spend late, through its costs API by API key id: such a lease shows status "collecting" and the
rollback tick asks again (every spend/config late_interval) until late_window after the revoke, keeping the
latest figure; then "collected". OpenAI's key_per_lease mode only: a service account per lease is not
reported per key. xAI and Fireworks report no spend per key ("unreported"). A read that failed shows
"failed" with the reason; the revoke itself never waits more than read_timeout for it, and never fails
because of it. When the delete fails too (an outage), the deletion queue reads the key's spend again right
before it deletes the key. Every revoke also logs one line: "spend: role=... key_id=... usd=...".

Answer: total_usd, leases, unknown (leases whose amount is not known), collecting, roles (per role: usd,
leases, unknown, collecting), by_day (USD per day), and top_leases: the largest spenders (role, connection,
provider, key_id, key_name, issued_at, ended_at, usd, status, note; lease_id only where the host sends it with
the revoke, which OpenBao does not: key_id, also in the lease's creds data, names the lease). Days older than
spend/config retention_days are dropped, oldest first; past days keep each role's {TOP_KEPT} largest leases.

Examples:
    bao read llm/spend days=7
    bao read llm/spend/role/ci days=7 top=5
"""

SPEND_CONFIG_HELP = """\
How spend is read and kept (see `path-help spend`).

Example:
    bao write llm/spend/config retention_days=90 late_interval=15m
"""

QUERY_FIELDS: dict[str, Field] = {
    "days": Field(FieldType.INT, "How many UTC days back, today included.", default=DEFAULT_DAYS, query=True),
    "role": Field(FieldType.NAME, "Only this role (also a role deleted since).", query=True),
    "top": Field(
        FieldType.INT,
        f"How many of the largest leases to list (0 to {TOP_KEPT}).",
        default=DEFAULT_TOP,
        query=True,
    ),
}


def _limit(name: str) -> str:
    low, high = LIMITS[name]
    return f"{low:g} to {high:g}"


CONFIG_FIELDS: dict[str, Field] = {
    "enabled": Field(FieldType.BOOL, "Read and record spend at revoke (default true)."),
    "retention_days": Field(
        FieldType.INT, f"Days of records kept, oldest dropped first ({_limit('retention_days')}; default 30)."
    ),
    "max_leases_per_day": Field(
        FieldType.INT,
        "Lease records kept a day; beyond it a lease counts only in its role's totals "
        f"({_limit('max_leases_per_day')}; default 10000).",
    ),
    "read_timeout": Field(
        FieldType.FLOAT,
        f"Seconds a revoke waits at most for the provider's spend answer ({_limit('read_timeout')}; "
        "default 2).",
    ),
    "late_window": Field(
        FieldType.DURATION,
        "How long after the revoke late-reported spend (OpenAI) is collected (up to 7 days; default 24h).",
    ),
    "late_interval": Field(
        FieldType.DURATION,
        "Least time between two collections of a lease's late-reported spend (default 10m; 0: every rollback "
        "tick, about once a minute).",
    ),
}


def paths(b: LLMBackend) -> list[Path]:
    def read_spend(req: Request, d: FieldData) -> Response:
        storage = b.storage_of(req)
        config = b.spend.config(storage)
        days, top = d.get_int("days"), d.get_int("top")
        if not 1 <= days <= config.retention_days:
            raise BadRequest(
                f'"days" must be between 1 and {config.retention_days} (spend/config retention_days)'
            )
        if not 0 <= top <= TOP_KEPT:
            raise BadRequest(f'"top" must be between 0 and {TOP_KEPT}')
        role = (d.get_str("name") if "name" in d.schema else d.get_str("role")) or None
        report = b.spend.report(storage, days=days, role=role, top=top)
        return Response(data={**report, "retention_days": config.retention_days})

    def read_config(req: Request, d: FieldData) -> Response:
        return Response(data=b.spend.config(b.storage_of(req)).to_storage())

    def write_config(req: Request, d: FieldData) -> None:
        storage = b.storage_of(req)
        current = b.spend.config(storage)
        values = current.to_storage()
        for name in CONFIG_FIELDS:
            value, is_set = d.get_ok(name)
            if is_set:
                values[name] = value
        try:
            config = SpendConfig.from_storage(values)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        b.spend.save_config(storage, config)

    read_op = OperationSpec(read_spend, summary="Read spend per role and the largest leases.")
    return [
        Path(
            "spend/config",
            fields=CONFIG_FIELDS,
            operations={
                Operation.READ: OperationSpec(read_config, summary="Read the spend settings."),
                Operation.UPDATE: OperationSpec(write_config, summary="Change the spend settings."),
            },
            synopsis="Configure how spend per lease is read and kept.",
            description=SPEND_CONFIG_HELP,
        ),
        Path(
            "spend/role/" + generic_name_regex("name"),
            fields={
                **{k: v for k, v in QUERY_FIELDS.items() if k != "role"},
                "name": Field(FieldType.NAME, "The role.", required=True),
            },
            operations={Operation.READ: read_op},
            synopsis="What one role's leases spent.",
            description=SPEND_HELP,
        ),
        Path(
            "spend/?$",
            fields=QUERY_FIELDS,
            operations={Operation.READ: read_op},
            synopsis="What this mount's leases spent, per role and per lease.",
            description=SPEND_HELP,
        ),
    ]
