"""`roles/<name>` and `LIST roles`: the paths of roles (the rules are in roles.py).

A role asks only for controls its connection's provider enforces per key: asking for one it cannot
enforce is a 400 that says so, never silently ignored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
)

from llmsecrets import roles
from llmsecrets.connections import UnusableConnection
from llmsecrets.naming import DEFAULT_NAME_TEMPLATE, MAX_TEMPLATE_LENGTH, PLACEHOLDER_HELP
from llmsecrets.providers.openai import KEY_MODES
from llmsecrets.roles import MAX_METADATA_ENTRIES, MAX_MODELS, MAX_SCOPES, InvalidRole

if TYPE_CHECKING:
    from llmsecrets.backend import LLMBackend

FIELDS: dict[str, Field] = {
    "name": Field(FieldType.NAME, "Name of the role; applications read creds/<name>."),
    "connection": Field(FieldType.NAME, "The connection (config/<name>) keys are minted through. Required."),
    "ttl": Field(
        FieldType.DURATION,
        "Lease TTL of issued keys (e.g. 15m, 1h). 0 = the mount's default lease TTL. "
        "Must not exceed max_ttl.",
    ),
    "max_ttl": Field(
        FieldType.DURATION,
        "Longest a lease may be renewed to. 0 = the mount's max lease TTL; may not exceed it. Where the "
        "provider enforces expiry, each key also expires at the provider shortly after this.",
    ),
    "name_template": Field(
        FieldType.STRING,
        "How the key's name at the provider is built, after the mount prefix vault-<8 hex of the mount's "
        f"UUID>-. Placeholders: {PLACEHOLDER_HELP}; {{{{random}}}} is required. Values are made key-safe. "
        f"Default: {DEFAULT_NAME_TEMPLATE}. Empty string restores the default.",
        max_length=MAX_TEMPLATE_LENGTH,
    ),
    "project_id": Field(
        FieldType.STRING,
        "OpenAI only, required there: the id (proj_...) of the project whose service accounts become the "
        "issued keys.",
        max_length=256,
    ),
    "spend_limit": Field(
        FieldType.FLOAT,
        "Spend cap per key in USD (> 0). OpenRouter (limit) and LiteLLM (max_budget) only.",
    ),
    "models": Field(
        FieldType.COMMA_STRING_LIST,
        "Models each key may use. LiteLLM only. Empty = the provider's default.",
        max_length=MAX_MODELS,
    ),
    "metadata": Field(
        FieldType.MAP,
        "String pairs stored with each key at the provider. LiteLLM only. A {{...}} in a value must be "
        "one of name_template's placeholders.",
        max_length=MAX_METADATA_ENTRIES,
    ),
    "scopes": Field(
        FieldType.COMMA_STRING_LIST,
        "OpenAI only: API key scopes each key gets (e.g. api.model.request); OpenAI does not publish the "
        "list of values. Empty = an unrestricted key.",
        max_length=MAX_SCOPES,
    ),
    "openai_key_mode": Field(
        FieldType.STRING,
        "OpenAI only. service_account_per_lease (the default): a project service account per lease, "
        "deleted on revoke. key_per_lease: one service account per role and a key per lease under it; "
        "OpenAI documents deleting such a key as an error, so a revoked key may live until it expires at "
        "OpenAI (max_ttl + 5 minutes). Empty = the default.",
        allowed_values=("", *KEY_MODES),
    ),
}

ROLES_HELP = f"""\
A role says how keys are minted for creds/<role>: through which connection, with what lease TTLs,
and with which per-key controls.

Per-key controls by provider (a role asking for one its provider cannot enforce is refused):
    openai      project_id (required: the project's id, proj_...), scopes, openai_key_mode;
                provider-side expiry; no per-key spend limit, models or metadata (project level only)
    openrouter  spend_limit; provider-side expiry
    litellm     spend_limit, models, metadata; provider-side expiry, extended on renew
    xai         models (the key's ACLs); provider-side expiry
    fireworks   no per-key controls; provider-side expiry

On update, fields that are not sent keep their stored values.

Key names at the provider are this mount's prefix vault-<8 hex>- (key_name_prefix in a config read)
followed by <name_template>; the default template is {DEFAULT_NAME_TEMPLATE}.

Example:
    bao write llm/roles/ci connection=openrouter ttl=15m max_ttl=1h spend_limit=5
    bao write llm/roles/app connection=openai project_id=proj_abc123 ttl=1h max_ttl=24h
"""


def paths(b: LLMBackend) -> list[Path]:
    def exists(req: Request, d: FieldData) -> bool:
        return roles.get(b, b.storage_of(req), d.get_str("name")) is not None

    def read(req: Request, d: FieldData) -> Response | None:
        role = roles.get(b, b.storage_of(req), d.get_str("name"))
        return None if role is None else Response(data=roles.view(role))

    def write(req: Request, d: FieldData) -> Response | None:
        try:
            roles.write(b, b.storage_of(req), d.get_str("name"), _sent(d))
        except (InvalidRole, UnusableConnection) as exc:
            raise BadRequest(str(exc)) from None
        return None

    def delete(req: Request, d: FieldData) -> None:
        roles.delete(b, b.storage_of(req), d.get_str("name"))

    def list_roles(req: Request, d: FieldData) -> Response:
        return Response(data={"keys": roles.names(b.storage_of(req))})

    return [
        Path(
            "roles/?$",
            operations={Operation.LIST: OperationSpec(list_roles, summary="List roles.")},
            synopsis="List the roles.",
            description="Lists the names of the roles written to roles/<name>.",
        ),
        Path(
            r"roles/(?P<name>.+)",
            fields=FIELDS,
            operations={
                Operation.READ: OperationSpec(read, summary="Read a role."),
                Operation.CREATE: OperationSpec(write, summary="Create a role."),
                Operation.UPDATE: OperationSpec(write, summary="Update a role."),
                Operation.DELETE: OperationSpec(
                    delete,
                    summary="Delete a role (its live keys stay revocable until their leases end).",
                ),
            },
            existence_check=exists,
            synopsis="Manage a role: connection, lease TTLs, key name template and per-key controls.",
            description=ROLES_HELP,
        ),
    ]


def _sent(d: FieldData) -> dict[str, Any]:
    """The role fields this request sent, parsed."""
    return {name: d.get(name) for name in roles.UPDATE_FIELDS if d.is_set(name)}
