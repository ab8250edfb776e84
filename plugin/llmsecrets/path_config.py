"""`config/<name>` and `LIST config`: provider account connections.

A connection holds one provider admin key. It is write-only: reads show `admin_key_set`, never the key.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

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
    list_wal,
)
from vaultplugin.framework.fields import NAME_RE
from vaultplugin.framework.wal import WalDecodeError, get_wal

from llmsecrets import errors
from llmsecrets.models import (
    CONFIG_PREFIX,
    KEYS_PREFIX,
    ConnectionConfig,
    PendingCreate,
    RecordError,
    WalKind,
)
from llmsecrets.providers.errors import ProviderError
from llmsecrets.providers.registry import (
    ACCOUNT_FIELDS,
    ACCOUNT_ID_RE,
    PROVIDERS,
    join_account,
    split_account,
)

if TYPE_CHECKING:
    from vaultplugin.framework import Storage

    from llmsecrets.backend import LLMBackend

PROVIDER_NAMES = tuple(sorted(PROVIDERS))

FIELDS: dict[str, Field] = {
    "name": Field(FieldType.NAME, "Name of the connection (one provider account)."),
    "provider": Field(
        FieldType.STRING,
        "The provider: openai, openrouter, litellm, xai or fireworks. Required on create; cannot be changed "
        "later (issued keys are revoked through it).",
        allowed_values=PROVIDER_NAMES,
    ),
    "admin_key": Field(
        FieldType.STRING,
        "The provider admin key the engine mints and deletes keys with: an OpenAI admin key "
        "(sk-admin-...), an OpenRouter management key, the LiteLLM proxy's master key, an xAI management "
        "key, or the API key of a Fireworks account admin. Required on create; write-only (never "
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

By default the admin key is checked with a harmless call to the provider before anything is stored.

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
        return b.connection(b.storage_of(req), d.get_str("name")) is not None

    def read(req: Request, d: FieldData) -> Response | None:
        storage = b.storage_of(req)
        conn = b.connection(storage, d.get_str("name"))
        if conn is None:
            return None
        view = _view(conn, live_keys=len(_live_key_ids(storage, conn.name)))
        # The prefix of every key this mount creates; no Vault API shows the UUID it comes from.
        view["key_name_prefix"] = b.mount_prefix
        return Response(data=view)

    def write(req: Request, d: FieldData) -> Response | None:
        storage = b.storage_of(req)
        name = d.get_str("name")
        existing = b.connection(storage, name)
        conn = _merge(name, existing, d)
        if d.get_bool("verify"):
            try:
                _verify(b, conn)
            except BadRequest:
                if existing is None:
                    b.clients.forget(name)  # nothing is stored under this name: keep no state for it
                raise
        b.save_connection(storage, conn)
        return None

    def delete(req: Request, d: FieldData) -> None:
        storage = b.storage_of(req)
        name = d.get_str("name")
        if b.connection(storage, name) is None:
            return
        live = len(_live_key_ids(storage, name))
        pending = _pending_creates(storage, name)
        if live or pending:
            mount = req.mount_point or "<mount>/"
            raise BadRequest(
                f"connection {name!r} still has {live} live key(s) and {pending} unfinished create(s) "
                "issued through it; deleting it would leave them impossible to revoke. Revoke their "
                f"leases first (bao lease revoke -prefix {mount}creds/, or {mount}creds/<role> for one "
                f"role), run {mount}tidy for unfinished creates, then delete the connection"
            )
        b.delete_connection(storage, name)
        b.clients.forget(name)

    def list_configs(req: Request, d: FieldData) -> Response:
        keys = list_leaves(b.storage_of(req), CONFIG_PREFIX)
        return Response(data={"keys": sorted(keys)})

    return [
        Path(
            "config/?$",
            operations={
                Operation.LIST: OperationSpec(list_configs, summary="List connections.", cooperative=True)
            },
            synopsis="List the provider connections.",
            description="Lists the names of the connections written to config/<name>.",
        ),
        Path(
            r"config/(?P<name>.+)",
            fields=FIELDS,
            operations={
                Operation.READ: OperationSpec(
                    read, summary="Read a connection (never its admin key).", cooperative=True
                ),
                Operation.CREATE: OperationSpec(write, summary="Create a connection."),
                Operation.UPDATE: OperationSpec(write, summary="Update a connection."),
                Operation.DELETE: OperationSpec(
                    delete, summary="Delete a connection with no live keys.", cooperative=True
                ),
            },
            existence_check=exists,
            synopsis="Manage a provider connection: provider, admin key, base URL, allowed roles.",
            description=CONFIG_HELP,
        ),
    ]


def effective_base_url(conn: ConnectionConfig) -> str:
    info = PROVIDERS.get(conn.provider)
    default = info.default_base_url if info is not None else None
    return conn.base_url or default or ""


def _view(conn: ConnectionConfig, *, live_keys: int) -> dict[str, Any]:
    return {
        "provider": conn.provider,
        "admin_key_set": bool(conn.admin_key),
        "base_url": effective_base_url(conn),
        "organization_id": "" if conn.provider in ACCOUNT_FIELDS else conn.organization_id or "",
        **split_account(conn.provider, conn.organization_id),
        "allowed_roles": list(conn.allowed_roles),
        "live_keys": live_keys,
    }


def _merge(name: str, existing: ConnectionConfig | None, d: FieldData) -> ConnectionConfig:
    """The connection after this write, or a 400 naming the field that is wrong."""
    provider, provider_set = d.get_ok("provider")
    if existing is None and not provider_set:
        raise BadRequest(f'missing required field "provider" (one of: {", ".join(PROVIDER_NAMES)})')
    if existing is not None and provider_set and provider != existing.provider:
        raise BadRequest(
            f'"provider" cannot change from {existing.provider!r} to {provider!r}: keys issued through '
            "this connection are revoked through its provider. Create a new connection instead"
        )
    provider = provider if provider_set else existing.provider if existing else ""

    admin_key, key_set = d.get_ok("admin_key")
    if key_set:
        if not admin_key.strip():
            raise BadRequest('"admin_key" must not be empty')
        admin_key = admin_key.strip()
        _check_header_value("admin_key", admin_key)
    elif existing is not None:
        admin_key = existing.admin_key
    else:
        raise BadRequest('missing required field "admin_key" (the provider admin key)')

    base_url, url_set = d.get_ok("base_url")
    base_url = (base_url.strip() or None) if url_set else existing.base_url if existing else None
    if base_url is not None:
        _check_url(base_url)
    if PROVIDERS[provider].default_base_url is None and base_url is None:
        raise BadRequest(
            f'"base_url" is required for {provider} (the URL of the proxy, e.g. http://host:4000)'
        )

    account = _account(provider, existing, d)
    org, org_set = d.get_ok("organization_id")
    org = (org.strip() or None) if org_set else existing.organization_id if existing and not account else None
    if org is not None and provider != "openai":
        raise BadRequest(f'"organization_id" applies to openai only, not {provider}')
    if org is not None:
        _check_header_value("organization_id", org)

    roles, roles_set = d.get_ok("allowed_roles")
    if roles_set:
        allowed = tuple(dict.fromkeys(r.strip() for r in roles if r.strip()))
        for role in allowed:
            if role != "*" and not NAME_RE.fullmatch(role):
                raise BadRequest(f'"allowed_roles": {role[:40]!r} is not a role name (or "*")')
    else:
        allowed = existing.allowed_roles if existing else ()

    return ConnectionConfig(
        name=name,
        provider=provider,
        admin_key=admin_key,
        base_url=base_url,
        organization_id=account or org,
        allowed_roles=allowed,
    )


def _account(provider: str, existing: ConnectionConfig | None, d: FieldData) -> str | None:
    """xAI's team or Fireworks' account and user, joined as stored (registry.join_account); None for
    other providers. A 400 for a missing or malformed id, or for another provider's field."""
    for owner, names in ACCOUNT_FIELDS.items():
        for name in names:
            value, given = d.get_ok(name)
            if given and value.strip() and owner != provider:
                raise BadRequest(f'"{name}" applies to {owner} only, not {provider}')
    names = ACCOUNT_FIELDS.get(provider, ())
    if not names:
        return None
    values = split_account(provider, existing.organization_id if existing else None)
    for name in names:
        value, given = d.get_ok(name)
        values[name] = value.strip() if given else values[name]
        if not values[name]:
            raise BadRequest(f'missing required field "{name}" for {provider} connections')
        if not ACCOUNT_ID_RE.fullmatch(values[name]):
            raise BadRequest(
                f'"{name}" must be 1-128 letters, digits and . _ @ + - (it goes into the provider\'s URLs)'
            )
    return join_account(provider, values)


def _check_header_value(field: str, value: str) -> None:
    # Sent in an HTTP header: anything else fails at the HTTP client on every call (a 502 per creds read),
    # or splits the header. The value itself is never echoed (admin_key is secret).
    if not value.isascii() or not value.isprintable() or any(c.isspace() for c in value):
        raise BadRequest(f'"{field}" must be printable ASCII without spaces (it is sent in an HTTP header)')


def _check_url(url: str) -> None:
    if not url.isprintable() or any(c.isspace() for c in url):
        raise BadRequest('"base_url" must not contain spaces or control characters')
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a malformed port
    except ValueError:
        raise BadRequest('"base_url" is not a valid URL') from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest('"base_url" must be an http:// or https:// URL with a host')
    try:
        parts.hostname.encode("idna")  # what the resolver will be asked: labels of 1-63 characters
    except UnicodeError:
        raise BadRequest(
            '"base_url" has a host name that cannot be resolved (a label is empty or too long)'
        ) from None
    if parts.username is not None or parts.password is not None:
        raise BadRequest('"base_url" must not contain credentials; put the key in admin_key')
    if parts.query or parts.fragment:
        raise BadRequest('"base_url" must not have a query or a fragment')


def _verify(b: LLMBackend, conn: ConnectionConfig) -> None:
    with ExitStack() as stack:
        try:
            client = stack.enter_context(b.clients.checking(conn))
        except ValueError as exc:
            raise BadRequest(f"invalid connection settings: {exc}") from None
        try:
            client.verify()
        except ProviderError as exc:
            raise errors.for_verify(exc, connection=conn.name) from None


def _live_key_ids(storage: Storage, connection: str) -> list[str]:
    return list_leaves(storage, f"{KEYS_PREFIX}{connection}/")


def _pending_creates(storage: Storage, connection: str) -> int:
    count = 0
    for wal_id in list_wal(storage):
        try:
            entry = get_wal(storage, wal_id)
            if entry is None or entry.kind != WalKind.CREATE_KEY:
                continue
            if PendingCreate.from_wal(entry.data).connection == connection:
                count += 1
        except (WalDecodeError, RecordError):
            continue
    return count
