"""`creds/<role>` (read): mint a fresh provider key under a lease.

This module declares the path and its help; the work is `issuing.issue` (the order of work that makes an
interrupted read safe, and where it runs, are described there).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vaultplugin.framework import (
    Field,
    FieldData,
    FieldType,
    Operation,
    OperationSpec,
    Path,
    Request,
    Response,
)

from llmsecrets import issuing
from llmsecrets.providers.registry import PROVIDER_NAMES

if TYPE_CHECKING:
    from llmsecrets.backend import LLMBackend

CREDS_HELP = f"""\
Reading creds/<role> creates a NEW key at the role's provider and returns it under a lease.

Returns:
    api_key      the provider API key (shown once; the engine does not keep it)
    key_id       the provider's id for the key (OpenAI service account id, OpenRouter hash,
                 LiteLLM token id)
    key_name     the key's name at the provider: this mount's prefix vault-<8 hex>- (key_name_prefix
                 in a config read) followed by the role's name_template
    provider     {", ".join(PROVIDER_NAMES)}
    role         the role read
    connection   the connection the key was minted through
    expires_at   when the provider itself expires the key (ISO-8601 UTC), only where the provider
                 enforces expiry (OpenRouter, LiteLLM)

Lease behaviour:
    The lease has the role's ttl (default: the mount's default lease TTL) and can be renewed up to
    the role's max_ttl (default: the mount's max). When the lease ends, by expiry or by
    `bao lease revoke`, the key is deleted at the provider. As a backstop, where the provider
    supports it the key also expires on its own a few minutes after the lease could last at most
    (LiteLLM: a few minutes after the current lease end; each renewal pushes it forward).

    Each read makes a new key: read once per workload and renew (Vault Agent does this), not once
    per request.

Errors:
    400  unknown role, role not allowed by its connection, or the provider refused the request
    502  the provider is failing, rate limiting or refusing the admin key (no key was issued)

Example:
    $ bao read llm/creds/ci
    Key                Value
    ---                -----
    lease_id           llm/creds/ci/Xb3...
    lease_duration     15m
    lease_renewable    true
    api_key            sk-or-v1-...
    connection         openrouter
    expires_at         2026-01-01T13:05:00Z
    key_id             5f2c...
    key_name           vault-1a2b3c4d-ci-1767268800-k3j9x2qa
    provider           openrouter
    role               ci
"""


def paths(b: LLMBackend) -> list[Path]:
    def read(req: Request, d: FieldData) -> Response:
        issued = issuing.issue(b, req, d.get_str("role"))
        return b.api_key.response(issued.data, issued.internal, ttl=issued.ttl, max_ttl=issued.max_ttl)

    return [
        Path(
            r"creds/(?P<role>.+)",
            fields={"role": Field(FieldType.NAME, "The role to issue a key for.")},
            operations={
                Operation.READ: OperationSpec(read, summary="Issue a new provider API key under a lease."),
            },
            synopsis="Issue a short-lived provider API key for a role.",
            description=CREDS_HELP,
        )
    ]
