"""Roles: how keys are minted for `creds/<role>`, and what a role may ask of its connection's provider.

The rules live here; `path_roles` declares the `roles/<name>` paths and translates (FieldData in, a domain
call, a Response out, `InvalidRole` a 400). `merge` takes plain values, so tests call it directly.

A role asks only for controls its connection's provider enforces per key (`Capabilities`): asking for one
it cannot enforce is an error that says so, never silently ignored.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from vaultplugin.framework import list_leaves

from llmsecrets import connections
from llmsecrets.models import ROLES_PREFIX, ConnectionConfig, Role
from llmsecrets.naming import (
    DEFAULT_NAME_TEMPLATE,
    TemplateError,
    validate_metadata_template,
    validate_template,
)
from llmsecrets.providers import openai
from llmsecrets.providers.base import Capabilities

if TYPE_CHECKING:
    from vaultplugin.framework import Storage

    from llmsecrets.backend import LLMBackend

MAX_SPEND_LIMIT = 1_000_000.0
MAX_MODELS = 128
MAX_MODEL_LENGTH = 256
MAX_METADATA_ENTRIES = 64
MAX_METADATA_KEY = 128
MAX_METADATA_VALUE = 512
MAX_SCOPES = 64
MAX_SCOPE_LENGTH = 128

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


class InvalidRole(ValueError):
    """A role update (or a stored role, at issue) breaks a rule; the message names the field and says
    what to fix."""


# --- records -----------------------------------------------------------------------------------------------


def get(b: LLMBackend, storage: Storage, name: str) -> Role | None:
    return b.role(storage, name)


def names(storage: Storage) -> list[str]:
    return sorted(list_leaves(storage, ROLES_PREFIX))


def delete(b: LLMBackend, storage: Storage, name: str) -> None:
    """Delete the role; its live keys stay revocable until their leases end (leases name the connection)."""
    b.delete_role(storage, name)


def view(role: Role) -> dict[str, Any]:
    return {
        "connection": role.connection,
        "ttl": role.ttl,
        "max_ttl": role.max_ttl,
        "name_template": role.name_template,
        "project_id": role.project_id or "",
        "spend_limit": role.spend_limit,
        "models": list(role.models),
        "metadata": dict(role.metadata),
        "scopes": list(role.scopes),
        "openai_key_mode": role.openai_key_mode,
    }


# --- updates -----------------------------------------------------------------------------------------------

# The fields of a role update (all optional but "connection" on create).
UPDATE_FIELDS = (
    "connection",
    "ttl",
    "max_ttl",
    "name_template",
    "project_id",
    "spend_limit",
    "models",
    "metadata",
    "scopes",
    "openai_key_mode",
)


def connection_of(existing: Role | None, update: Mapping[str, Any]) -> str:
    """The connection the role names after `update`."""
    connection: str | None = update.get("connection")
    if connection is not None:
        return connection
    if existing is None:
        raise InvalidRole('missing required field "connection" (the name of a config/<name> entry)')
    return existing.connection


def merge(name: str, existing: Role | None, update: Mapping[str, Any], *, mount_max_ttl: int) -> Role:
    """The role after writing `update` (the fields that were sent, by name: ttl and max_ttl in seconds,
    spend_limit a float, models a list of strings, metadata a map of strings, the rest strings) over
    `existing`; fields not sent keep their stored values. `mount_max_ttl` is the mount's max lease TTL
    (seconds; 0 = none). InvalidRole names the field that is wrong. The connection's provider is checked
    separately (`check_capabilities`)."""

    def pick(field: str, fallback: Any) -> Any:
        return update.get(field, fallback)

    connection = connection_of(existing, update)
    ttl: int = pick("ttl", existing.ttl if existing else 0)
    max_ttl: int = pick("max_ttl", existing.max_ttl if existing else 0)
    if mount_max_ttl > 0 and max_ttl > mount_max_ttl:
        raise InvalidRole(
            f'"max_ttl" ({max_ttl}s) is greater than the mount\'s max lease TTL ({mount_max_ttl}s)'
        )
    limit = max_ttl or mount_max_ttl
    if limit > 0 and ttl > limit:
        which = '"max_ttl"' if max_ttl else "the mount's max lease TTL"
        raise InvalidRole(f'"ttl" ({ttl}s) is greater than {which} ({limit}s)')

    template: str = pick("name_template", existing.name_template if existing else DEFAULT_NAME_TEMPLATE)
    template = template.strip() or DEFAULT_NAME_TEMPLATE
    try:
        validate_template(template)
    except TemplateError as exc:
        raise InvalidRole(f'"name_template" {exc}') from None

    project: str | None = pick("project_id", existing.project_id if existing else None)
    project = (project.strip() or None) if project is not None else None

    spend_limit: float | None = existing.spend_limit if existing else None
    if "spend_limit" in update:
        spend = float(update["spend_limit"])
        if not math.isfinite(spend) or spend <= 0:
            raise InvalidRole('"spend_limit" must be a number of USD greater than 0')
        if spend > MAX_SPEND_LIMIT:
            raise InvalidRole(f'"spend_limit" must not exceed {MAX_SPEND_LIMIT:.0f} USD')
        spend_limit = spend

    models_raw: list[str] = pick("models", list(existing.models) if existing else [])
    models = tuple(dict.fromkeys(m.strip() for m in models_raw if m.strip()))
    for model in models:
        if len(model) > MAX_MODEL_LENGTH:
            raise InvalidRole(f'"models" has an item longer than {MAX_MODEL_LENGTH} characters')

    metadata: dict[str, str] = dict(pick("metadata", existing.metadata if existing else {}))
    for key, value in metadata.items():
        if not key or len(key) > MAX_METADATA_KEY or len(value) > MAX_METADATA_VALUE:
            raise InvalidRole(
                f'"metadata" keys must be 1-{MAX_METADATA_KEY} characters and values at most '
                f"{MAX_METADATA_VALUE}"
            )
        try:
            validate_metadata_template(value)
        except TemplateError as exc:
            raise InvalidRole(f'"metadata" value of {key[:40]!r} {exc}') from None

    scopes_raw: list[str] = pick("scopes", list(existing.scopes) if existing else [])
    scopes = tuple(dict.fromkeys(s.strip() for s in scopes_raw if s.strip()))
    for scope in scopes:
        if len(scope) > MAX_SCOPE_LENGTH or any(c.isspace() for c in scope):
            raise InvalidRole(
                f'"scopes" items are 1-{MAX_SCOPE_LENGTH} characters without spaces (e.g. api.model.request)'
            )
    if len(scopes) > MAX_SCOPES:
        raise InvalidRole(f'"scopes" has more than {MAX_SCOPES} items')

    key_mode: str = pick("openai_key_mode", existing.openai_key_mode if existing else "")
    key_mode = key_mode.strip()
    if key_mode and key_mode not in openai.KEY_MODES:
        raise InvalidRole(f'"openai_key_mode" must be one of {", ".join(openai.KEY_MODES)} (or empty)')

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
        scopes=scopes,
        openai_key_mode=key_mode,
    )


def check_capabilities(role: Role, conn: ConnectionConfig, caps: Capabilities) -> None:
    """InvalidRole for any control the connection's provider cannot enforce per key, and for a project id
    its provider requires but does not have (or would not take)."""
    provider = conn.provider
    if caps.checkout_only:
        raise InvalidRole(
            f'"connection": {conn.name!r} is an {provider} connection, and {provider} cannot create keys per '
            f"lease, so it takes no roles: write a check-out set of keys made in its console instead "
            f"(sets/<name> connection={conn.name} keys=...; see `path-help sets/<name>`)"
        )
    if caps.needs_project and not role.project_id:
        raise InvalidRole(
            f'"project_id" is required for {provider} connections: the project whose service accounts '
            "become the issued keys"
        )
    if not caps.needs_project and role.project_id:
        raise InvalidRole(
            f'"project_id" applies to openai connections only, not {provider}: {provider} keys belong to no '
            'project; remove "project_id" from the role'
        )
    shape = PROJECT_ID_SHAPES.get(provider)
    if role.project_id and shape is not None and not shape[0].fullmatch(role.project_id):
        _, what, how = shape
        shown = role.project_id if len(role.project_id) <= 40 else role.project_id[:40] + "..."
        raise InvalidRole(f'"project_id" {shown!r} is not {what}; write {how}')
    refused = [
        (role.spend_limit is not None and not caps.spend_limit, "spend_limit", "a spend limit"),
        (bool(role.models) and not caps.models, "models", "a model list"),
        (bool(role.metadata) and not caps.metadata, "metadata", "metadata"),
        (bool(role.scopes) and not caps.scopes, "scopes", "API key scopes"),
    ]
    if role.openai_key_mode and provider != "openai":
        raise InvalidRole(f'"openai_key_mode" applies to openai connections only, not {provider}')
    for bad, field, what in refused:
        if bad:
            extra = " (only per project: set it on the OpenAI project)" if provider == "openai" else ""
            raise InvalidRole(
                f'"{field}": {provider} cannot enforce {what} per key{extra}; remove "{field}" from the '
                "role, or use a connection whose provider can"
            )


def write(b: LLMBackend, storage: Storage, name: str, update: Mapping[str, Any]) -> Role:
    """Merge `update` into the stored role, check it against its connection's provider, store it. Raises
    InvalidRole, or UnusableConnection when the connection's settings are refused by the provider layer;
    nothing is stored then."""
    existing = b.role(storage, name)
    connection = connection_of(existing, update)
    conn = b.connection(storage, connection)
    if conn is None:
        raise InvalidRole(
            f'"connection": there is no connection named {connection!r}; write config/{connection} first'
        )
    role = merge(name, existing, update, mount_max_ttl=int(b.system.max_lease_ttl()))
    check_capabilities(role, conn, connections.client(b, conn).capabilities)
    b.save_role(storage, role)
    return role
