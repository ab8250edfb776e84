"""`metrics` (Prometheus text, with a token), `metrics/public` (the same without one, once the operator
allows it) and `metrics/config` (that switch). The figures are metrics.py's.

Why two paths: which paths of a mount need no token is fixed when the mount starts (the host reads the
plugin's special paths once, at mount time), so it cannot follow a setting. `metrics/public` is always
declared unauthenticated and answers 403 until `metrics/config` has `unauthenticated_access=true`; `metrics`
always needs a token whose policy allows `read` on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vaultplugin.framework import (
    CodedError,
    Field,
    FieldData,
    FieldType,
    Operation,
    OperationSpec,
    Path,
    Request,
    Response,
    get_json,
    put_json,
    raw_response,
)

from llmsecrets.metrics import CONTENT_TYPE

if TYPE_CHECKING:
    from vaultplugin.framework import Storage

    from llmsecrets.backend import LLMBackend

METRICS_CONFIG_KEY = "metrics/config"
PUBLIC_PATH = "metrics/public"

METRICS_HELP = """\
Prometheus metrics of this mount, in Prometheus' text format (a raw body, not Vault's JSON envelope).

Counted by this plugin process since it started (counters; they restart at 0 with the process):
    llm_secrets_keys_issued_total{provider,role}
    llm_secrets_keys_renewed_total{provider,role}
    llm_secrets_keys_revoked_total{provider,role}
    llm_secrets_key_failures_total{provider,role,operation}      operation: issue, renew, revoke
    llm_secrets_provider_request_duration_seconds{provider,operation,outcome}   histogram
    llm_secrets_provider_request_errors_total{provider,operation,kind}
    llm_secrets_sweeps_total, llm_secrets_sweep_deleted_keys_total{reason}, llm_secrets_sweep_failures_total
    process_* (CPU, resident memory, open files of the plugin process)
Read from the mount's storage at each scrape:
    llm_secrets_deletions_outstanding{connection,provider}, llm_secrets_deletions_oldest_age_seconds
    llm_secrets_wal_entries{kind}, llm_secrets_wal_oldest_age_seconds{kind}
    llm_secrets_sweep_last_run_timestamp_seconds, llm_secrets_sweep_interval_seconds,
    llm_secrets_sweep_last_keys{result}
    llm_secrets_admin_key_age_seconds{connection,provider}, llm_secrets_connections{provider}
    llm_secrets_checkout_keys{set,connection,state}, llm_secrets_checkout_deactivating_oldest_age_seconds

Scrape it with a token whose policy allows read on this path (Prometheus: bearer token). Each mount has its
own figures: scrape each mount, on every node that serves it. Alert rules, a scrape config and the scrape
token's policy: vault-config/prometheus/.

Example:
    curl -H "X-Vault-Token: $TOKEN" $VAULT_ADDR/v1/llm/metrics
"""

PUBLIC_HELP = """\
The same Prometheus text as `metrics`, without a token: answers 403 unless `metrics/config` has
unauthenticated_access=true (default false). Anyone who can reach Vault can then read the mount's role and
connection names and its activity; no key, admin key or lease id is ever in the figures.
"""

CONFIG_HELP = """\
Whether `metrics/public` answers without a token (unauthenticated_access, default false).

Example:
    bao write llm/metrics/config unauthenticated_access=true
"""


def unauthenticated_allowed(storage: Storage) -> bool:
    raw = get_json(storage, METRICS_CONFIG_KEY)
    return bool(raw and raw.get("unauthenticated_access") is True)


def paths(b: LLMBackend) -> list[Path]:
    def scrape(req: Request) -> Response:
        body = b.metrics.exposition(b, b.storage_of(req))
        return raw_response(body, content_type=CONTENT_TYPE, cache_control="no-store")

    def read(req: Request, d: FieldData) -> Response:
        return scrape(req)

    def read_public(req: Request, d: FieldData) -> Response:
        if not unauthenticated_allowed(b.storage_of(req)):
            # A coded 403: the host answers a permission-denied error with its own fixed text, and this one
            # should say how to get in.
            raise CodedError(
                403,
                "unauthenticated metrics are off for this mount: scrape its metrics path with a token, or "
                "have an operator write metrics/config unauthenticated_access=true",
            )
        return scrape(req)

    def read_config(req: Request, d: FieldData) -> Response:
        return Response(data={"unauthenticated_access": unauthenticated_allowed(b.storage_of(req))})

    def write_config(req: Request, d: FieldData) -> None:
        storage = b.storage_of(req)
        value, given = d.get_ok("unauthenticated_access")
        current = unauthenticated_allowed(storage)
        put_json(storage, METRICS_CONFIG_KEY, {"unauthenticated_access": bool(value) if given else current})

    return [
        Path(
            "metrics/config",
            fields={
                "unauthenticated_access": Field(
                    FieldType.BOOL, "Let metrics/public answer without a token (default false)."
                )
            },
            operations={
                Operation.READ: OperationSpec(read_config, summary="Read the metrics settings."),
                Operation.UPDATE: OperationSpec(write_config, summary="Change the metrics settings."),
            },
            synopsis="Whether the mount's metrics may be scraped without a token.",
            description=CONFIG_HELP,
        ),
        Path(
            PUBLIC_PATH,
            operations={
                Operation.READ: OperationSpec(
                    read_public,
                    summary="Prometheus metrics without a token, if metrics/config allows it.",
                )
            },
            synopsis="The mount's Prometheus metrics, without a token (off by default).",
            description=PUBLIC_HELP,
        ),
        Path(
            "metrics",
            operations={Operation.READ: OperationSpec(read, summary="Prometheus metrics of this mount.")},
            synopsis="The mount's Prometheus metrics (text format).",
            description=METRICS_HELP,
        ),
    ]
