"""`roles/<name>` and `LIST roles`: how keys are minted for `creds/<name>`.

A role asks only for controls its connection's provider enforces per key (`Capabilities`): asking for
one it cannot enforce is a 400 that says so, never silently ignored.
"""

from __future__ import annotations

import math
import re
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
    list_leaves,
)

from llmsecrets.models import ROLES_PREFIX, ConnectionConfig, Role
from llmsecrets.naming import DEFAULT_NAME_TEMPLATE, MAX_TEMPLATE_LENGTH, TemplateError, validate_template
from llmsecrets.providers.base import Capabilities, ProviderClient

if TYPE_CHECKING:
    from llmsecrets.backend import LLMBackend

MAX_SPEND_LIMIT = 1_000_000.0
MAX_MODELS = 128
MAX_MODEL_LENGTH = 256
MAX_METADATA_ENTRIES = 64
MAX_METADATA_KEY = 128
MAX_METADATA_VALUE = 512

# What a project id looks like at each provider whose keys belong to a project, and how to say it. It goes
# into the provider's URL path, so nothing but this shape is ever sent.
PROJECT_ID_SHAPES: dict[str, tuple[re.Pattern[str], str, str]] = {
    "openai": (
        re.compile(r"proj_[A-Za-z0-9]{1,64}"),
        "an OpenAI project id",
        "proj_ followed by letters and digits, e.g. proj_abc123: the project's ID on its settings page "
        "at platform.openai.com, not its name",
    ),
}

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
        "UUID>-. Placeholders: {{role}}, {{connection}}, {{display_name}}, {{unix_time}}, {{random}} "
        f"(required). Default: {DEFAULT_NAME_TEMPLATE}. Empty string restores the default.",
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
        "String pairs stored with each key at the provider. LiteLLM only.",
        max_length=MAX_METADATA_ENTRIES,
    ),
}

ROLES_HELP = f"""\
A role says how keys are minted for creds/<role>: through which connection, with what lease TTLs,
and with which per-key controls.

Per-key controls by provider (a role asking for one its provider cannot enforce is refused):
    openai      project_id (required: the project's id, proj_...); no per-key spend limit, models or
                metadata (project level only)
    openrouter  spend_limit; provider-side expiry
    litellm     spend_limit, models, metadata; provider-side expiry, extended on renew

On update, fields that are not sent keep their stored values.

Key names at the provider are this mount's prefix vault-<8 hex>- (key_name_prefix in a config read)
followed by <name_template>; the default template is {DEFAULT_NAME_TEMPLATE}.

Example:
    bao write llm/roles/ci connection=openrouter ttl=15m max_ttl=1h spend_limit=5
    bao write llm/roles/app connection=openai project_id=proj_abc123 ttl=1h max_ttl=24h
"""


def paths(b: LLMBackend) -> list[Path]:
    def exists(req: Request, d: FieldData) -> bool:
        return b.role(b.storage_of(req), d.get_str("name")) is not None

    def read(req: Request, d: FieldData) -> Response | None:
        role = b.role(b.storage_of(req), d.get_str("name"))
        return None if role is None else Response(data=_view(role))

    def write(req: Request, d: FieldData) -> Response | None:
        storage = b.storage_of(req)
        name = d.get_str("name")
        existing = b.role(storage, name)
        connection, conn_set = d.get_ok("connection")
        if not conn_set:
            if existing is None:
                raise BadRequest('missing required field "connection" (the name of a config/<name> entry)')
            connection = existing.connection
        conn = b.connection(storage, connection)
        if conn is None:
            raise BadRequest(
                f'"connection": there is no connection named {connection!r}; write config/{connection} first'
            )
        role = _merge(b, name, connection, existing, d)
        check_capabilities(role, conn, client_for(b, conn).capabilities)
        b.save_role(storage, role)
        return None

    def delete(req: Request, d: FieldData) -> None:
        b.delete_role(b.storage_of(req), d.get_str("name"))

    def list_roles(req: Request, d: FieldData) -> Response:
        keys = list_leaves(b.storage_of(req), ROLES_PREFIX)
        return Response(data={"keys": sorted(keys)})

    return [
        Path(
            "roles/?$",
            operations={Operation.LIST: OperationSpec(list_roles, summary="List roles.", cooperative=True)},
            synopsis="List the roles.",
            description="Lists the names of the roles written to roles/<name>.",
        ),
        Path(
            r"roles/(?P<name>.+)",
            fields=FIELDS,
            operations={
                Operation.READ: OperationSpec(read, summary="Read a role.", cooperative=True),
                Operation.CREATE: OperationSpec(write, summary="Create a role.", cooperative=True),
                Operation.UPDATE: OperationSpec(write, summary="Update a role.", cooperative=True),
                Operation.DELETE: OperationSpec(
                    delete,
                    summary="Delete a role (its live keys stay revocable until their leases end).",
                    cooperative=True,
                ),
            },
            existence_check=exists,
            synopsis="Manage a role: connection, lease TTLs, key name template and per-key controls.",
            description=ROLES_HELP,
        ),
    ]


def _view(role: Role) -> dict[str, Any]:
    return {
        "connection": role.connection,
        "ttl": role.ttl,
        "max_ttl": role.max_ttl,
        "name_template": role.name_template,
        "project_id": role.project_id or "",
        "spend_limit": role.spend_limit,
        "models": list(role.models),
        "metadata": dict(role.metadata),
    }


def _merge(b: LLMBackend, name: str, connection: str, existing: Role | None, d: FieldData) -> Role:
    def pick(field: str, fallback: Any) -> Any:
        value, was_set = d.get_ok(field)
        return value if was_set else fallback

    ttl: int = pick("ttl", existing.ttl if existing else 0)
    max_ttl: int = pick("max_ttl", existing.max_ttl if existing else 0)
    mount_max = int(b.system.max_lease_ttl())
    if mount_max > 0 and max_ttl > mount_max:
        raise BadRequest(f'"max_ttl" ({max_ttl}s) is greater than the mount\'s max lease TTL ({mount_max}s)')
    limit = max_ttl or mount_max
    if limit > 0 and ttl > limit:
        which = '"max_ttl"' if max_ttl else "the mount's max lease TTL"
        raise BadRequest(f'"ttl" ({ttl}s) is greater than {which} ({limit}s)')

    template: str = pick("name_template", existing.name_template if existing else DEFAULT_NAME_TEMPLATE)
    template = template.strip() or DEFAULT_NAME_TEMPLATE
    try:
        validate_template(template)
    except TemplateError as exc:
        raise BadRequest(f'"name_template" {exc}') from None

    project: str | None = pick("project_id", existing.project_id if existing else None)
    project = (project.strip() or None) if project is not None else None

    spend, spend_set = d.get_ok("spend_limit")
    if spend_set:
        if not math.isfinite(spend) or spend <= 0:
            raise BadRequest('"spend_limit" must be a number of USD greater than 0')
        if spend > MAX_SPEND_LIMIT:
            raise BadRequest(f'"spend_limit" must not exceed {MAX_SPEND_LIMIT:.0f} USD')
    spend_limit: float | None = float(spend) if spend_set else existing.spend_limit if existing else None

    models_raw: list[str] = pick("models", list(existing.models) if existing else [])
    models = tuple(dict.fromkeys(m.strip() for m in models_raw if m.strip()))
    for model in models:
        if len(model) > MAX_MODEL_LENGTH:
            raise BadRequest(f'"models" has an item longer than {MAX_MODEL_LENGTH} characters')

    metadata: dict[str, str] = pick("metadata", dict(existing.metadata) if existing else {})
    for key, value in metadata.items():
        if not key or len(key) > MAX_METADATA_KEY or len(value) > MAX_METADATA_VALUE:
            raise BadRequest(
                f'"metadata" keys must be 1-{MAX_METADATA_KEY} characters and values at most '
                f"{MAX_METADATA_VALUE}"
            )

    return Role(
        name=name,
        connection=connection,
        ttl=ttl,
        max_ttl=max_ttl,
        name_template=template,
        project_id=project,
        spend_limit=spend_limit,
        models=models,
        metadata=metadata,
    )


def client_for(b: LLMBackend, conn: ConnectionConfig) -> ProviderClient:
    """The cached client of `conn`; a 400 if its settings are unusable."""
    try:
        return b.clients.get(conn)
    except ValueError as exc:
        raise BadRequest(f"connection {conn.name!r} is unusable: {exc}") from None


def check_capabilities(role: Role, conn: ConnectionConfig, caps: Capabilities) -> None:
    """400 for any control the connection's provider cannot enforce per key."""
    provider = conn.provider
    if caps.needs_project and not role.project_id:
        raise BadRequest(
            f'"project_id" is required for {provider} connections: the project whose service accounts '
            "become the issued keys"
        )
    if not caps.needs_project and role.project_id:
        raise BadRequest(
            f'"project_id" applies to openai connections only, not {provider}: {provider} keys belong to no '
            'project; remove "project_id" from the role'
        )
    shape = PROJECT_ID_SHAPES.get(provider)
    if role.project_id and shape is not None and not shape[0].fullmatch(role.project_id):
        _, what, how = shape
        shown = role.project_id if len(role.project_id) <= 40 else role.project_id[:40] + "..."
        raise BadRequest(f'"project_id" {shown!r} is not {what}; write {how}')
    refused = [
        (role.spend_limit is not None and not caps.spend_limit, "spend_limit", "a spend limit"),
        (bool(role.models) and not caps.models, "models", "a model list"),
        (bool(role.metadata) and not caps.metadata, "metadata", "metadata"),
    ]
    for bad, field, what in refused:
        if bad:
            extra = " (only per project: set it on the OpenAI project)" if provider == "openai" else ""
            raise BadRequest(
                f'"{field}": {provider} cannot enforce {what} per key{extra}; remove "{field}" from the '
                "role, or use a connection whose provider can"
            )
