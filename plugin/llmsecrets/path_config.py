"""`config/<name>` and `LIST config`: the paths of connections (the rules are in connections.py).

A connection holds one provider admin key. It is write-only: reads show `admin_key_set`, never the key.
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

from llmsecrets import connections, errors
from llmsecrets.connections import ConnectionInUse, InvalidConnection, UnusableConnection
from llmsecrets.providers.errors import ProviderError
from llmsecrets.providers.registry import PROVIDER_NAMES

if TYPE_CHECKING:
    from llmsecrets.backend import LLMBackend

FIELDS: dict[str, Field] = {
    "name": Field(FieldType.NAME, "Name of the connection (one provider account)."),
    "provider": Field(
        FieldType.STRING,
        "The provider: openai, openrouter, litellm, xai, fireworks, or anthropic (whose keys are lent by "
        "check-out sets, sets/<name>, not minted by roles). Required on create; cannot be changed later "
        "(issued keys are revoked through it).",
        allowed_values=PROVIDER_NAMES,
    ),
    "admin_key": Field(
        FieldType.STRING,
        "The provider admin key the engine mints and deletes keys with: an OpenAI admin key "
        "(sk-admin-...), an OpenRouter management key, the LiteLLM proxy's master key, an xAI management "
        "key, the API key of a Fireworks account admin, or an Anthropic Admin API key (sk-ant-admin..., "
        "which switches a set's keys on and off). Required on create; write-only (never "
        "returned). Omit on update to keep the stored key.",
        sensitive=True,
        max_length=1024,
    ),
    "base_url": Field(
        FieldType.STRING,
        "The provider's API base URL (http or https). Defaults to the provider's public API "
        "(https://api.openai.com/v1, https://openrouter.ai/api/v1); required for litellm (the proxy's "
        "URL). Write an empty string to go back to the default.",
        max_length=2048,
    ),
    "organization_id": Field(
        FieldType.STRING,
        "OpenAI only: the organization id sent as OpenAI-Organization. Write an empty string to clear it.",
        max_length=256,
    ),
    "team_id": Field(
        FieldType.STRING,
        "xAI only, required there: the team whose API keys the engine creates and deletes.",
        max_length=128,
    ),
    "account_id": Field(
        FieldType.STRING,
        "Fireworks only, required there: the account the keys belong to.",
        max_length=128,
    ),
    "user_id": Field(
        FieldType.STRING,
        "Fireworks only, required there: the user (e.g. a service account) the keys are created for.",
        max_length=128,
    ),
    "allowed_roles": Field(
        FieldType.COMMA_STRING_LIST,
        "Roles that may use this connection. Empty or '*' (the default) allows every role.",
    ),
    "admin_key_id": Field(
        FieldType.STRING,
        "The provider's id of admin_key (OpenAI: key_...), which config/<name>/rotate deletes after a "
        "rotation. Optional: OpenAI's list of admin keys usually singles it out; writing another admin_key "
        "without it forgets the old id. Set by rotations.",
        max_length=128,
    ),
    "rotation_period": Field(
        FieldType.DURATION,
        "Rotate the admin key (config/<name>/rotate) when it is older than this, on the periodic "
        "rollback tick (e.g. 30d). 0, the default, never rotates it on its own. Only for providers that "
        "can make admin keys (OpenAI).",
    ),
    "rotation_overlap": Field(
        FieldType.DURATION,
        "After a rotation, the old admin key is deleted once the calls made with it have ended, and at the "
        "latest this long after the rotation (default 60s; at most 24h). Keep it above the engine's provider "
        "call timeout (30s), or a call still running with the old key may fail.",
        default=60,
    ),
    "verify": Field(
        FieldType.BOOL,
        "Check the admin key with a harmless provider call before storing the connection; a failure "
        "is a 400 with the provider's reason and nothing is stored.",
        default=True,
    ),
}

CONFIG_HELP = """\
A connection is one provider account: its provider, its admin key and where its API lives. Roles
name the connection their keys are minted through.

The admin key is write-only: a read shows `admin_key_set: true`, never the key. On update, fields
that are not sent keep their stored values (so you can change allowed_roles without re-sending the
admin key). The provider of a connection cannot change, because its issued keys are revoked through it.

By default the admin key is checked with a harmless call to the provider before anything is stored:
a new admin_key that fails the check leaves the stored one in place. That is how to rotate the key of a
provider whose admin API cannot make admin keys (OpenRouter, xAI, Fireworks): make a new key at the
provider, write it here, then delete the old one there. OpenAI connections rotate through the provider
instead, old key deleted after an overlap: see config/<name>/rotate and rotation_period.

A connection that still has live keys cannot be deleted: revoke their leases first, e.g.
    bao lease revoke -prefix llm/creds/

Example:
    bao write llm/config/openrouter provider=openrouter admin_key=@mgmt-key.txt allowed_roles=dev,ci
    bao write llm/config/proxy provider=litellm base_url=https://litellm.internal:4000 admin_key=...
    bao write llm/config/grok provider=xai admin_key=@xai-management-key.txt team_id=<team id>
    bao write llm/config/fw provider=fireworks admin_key=@fw-admin-key.txt account_id=acme user_id=vault-sa
"""


def paths(b: LLMBackend) -> list[Path]:
    def exists(req: Request, d: FieldData) -> bool:
        return connections.get(b, b.storage_of(req), d.get_str("name")) is not None

    def read(req: Request, d: FieldData) -> Response | None:
        storage = b.storage_of(req)
        conn = connections.get(b, storage, d.get_str("name"))
        if conn is None:
            return None
        view = connections.view(conn, live_keys=len(connections.live_key_ids(storage, conn.name)))
        # The prefix of every key this mount creates; no Vault API shows the UUID it comes from.
        view["key_name_prefix"] = b.mount_prefix
        return Response(data=view)

    def write(req: Request, d: FieldData) -> Response | None:
        name = d.get_str("name")
        try:
            connections.write(b, b.storage_of(req), name, _sent(d), verify=d.get_bool("verify"))
        except InvalidConnection as exc:
            raise BadRequest(str(exc)) from None
        except UnusableConnection as exc:
            raise BadRequest(f"invalid connection settings: {exc.reason}") from None
        except ProviderError as exc:
            raise errors.for_verify(exc, connection=name) from None
        return None

    def delete(req: Request, d: FieldData) -> None:
        try:
            connections.delete(b, b.storage_of(req), d.get_str("name"))
        except ConnectionInUse as exc:
            mount = req.mount_point or "<mount>/"
            raise BadRequest(
                f"connection {exc.name!r} still has {exc.live_keys} live key(s) and {exc.pending_creates} "
                "unfinished create(s) issued through it; deleting it would leave them impossible to revoke. "
                f"Revoke their leases first (bao lease revoke -prefix {mount}creds/, or {mount}creds/<role> "
                f"for one role), run {mount}tidy for unfinished creates, then delete the connection"
            ) from None

    def list_configs(req: Request, d: FieldData) -> Response:
        return Response(data={"keys": connections.names(b.storage_of(req))})

    return [
        Path(
            "config/?$",
            operations={Operation.LIST: OperationSpec(list_configs, summary="List connections.")},
            synopsis="List the provider connections.",
            description="Lists the names of the connections written to config/<name>.",
        ),
        Path(
            r"config/(?P<name>.+)",
            fields=FIELDS,
            operations={
                Operation.READ: OperationSpec(read, summary="Read a connection (never its admin key)."),
                Operation.CREATE: OperationSpec(write, summary="Create a connection."),
                Operation.UPDATE: OperationSpec(write, summary="Update a connection."),
                Operation.DELETE: OperationSpec(delete, summary="Delete a connection with no live keys."),
            },
            existence_check=exists,
            synopsis="Manage a provider connection: provider, admin key, base URL, allowed roles.",
            description=CONFIG_HELP,
        ),
    ]


def _sent(d: FieldData) -> dict[str, Any]:
    """The connection fields this request sent, parsed."""
    fields = (*connections.UPDATE_FIELDS, *connections.account_field_names())
    return {name: d.get(name) for name in fields if d.is_set(name)}
