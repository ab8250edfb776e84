"""Connections: one provider account each (its provider, admin key, base URL, account fields, allowed
roles), and the one way to a provider client for a connection.

The rules live here; `path_config` declares the `config/<name>` paths and translates: FieldData in, a
domain call, a Response out, and the errors below mapped to 400s. Background work (rollback, the deletion
queue, the sweep, revoke-keys) gets its clients through `client` / `client_for_keys` and maps
`UnusableConnection` to its own handling.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from vaultplugin.framework import list_leaves, list_wal
from vaultplugin.framework.fields import NAME_RE
from vaultplugin.framework.wal import WalDecodeError, get_wal

from llmsecrets.models import (
    CONFIG_PREFIX,
    KEYS_PREFIX,
    ConnectionConfig,
    PendingCreate,
    RecordError,
    WalKind,
)
from llmsecrets.providers.base import AdminKeyRotation, ProviderClient
from llmsecrets.providers.registry import (
    ACCOUNT_ID_RE,
    PROVIDER_NAMES,
    PROVIDERS,
    AccountField,
    Carrier,
    account_owners,
)

if TYPE_CHECKING:
    from vaultplugin.framework import Storage

    from llmsecrets.backend import LLMBackend

# Fields of a connection update (besides the account fields of the providers, `account_field_names()`).
UPDATE_FIELDS = (
    "provider",
    "admin_key",
    "base_url",
    "allowed_roles",
    "admin_key_id",
    "rotation_period",
    "rotation_overlap",
)
# Largest rotation_overlap (seconds): an old admin key must not outlive a rotation by more than a day.
MAX_ROTATION_OVERLAP = 86400


class InvalidConnection(ValueError):
    """A connection update breaks a rule; the message names the field and says what to fix."""


@dataclass
class ConnectionInUse(Exception):
    """The connection still has keys that are revoked through it."""

    name: str
    live_keys: int
    pending_creates: int


class Unusable(StrEnum):
    MISSING = "missing"  # no connection of that name is stored
    PROVIDER_CHANGED = "provider_changed"  # it is stored, for another provider than the key's
    SETTINGS = "settings"  # the provider layer refuses its settings


class UnusableConnection(Exception):
    """No provider client can serve this connection now. `str()` is a sentence naming the connection (what
    a request is answered with); background work words its own message from `why` and `reason`."""

    def __init__(
        self, name: str, why: Unusable, reason: str = "", *, provider: str = "", expected: str = ""
    ) -> None:
        self.name = name
        self.why = why
        self.reason = reason  # SETTINGS: what the provider layer refused
        self.provider = provider  # PROVIDER_CHANGED: the stored connection's provider
        self.expected = expected  # PROVIDER_CHANGED: the provider the keys were issued by
        super().__init__(self._sentence())

    def _sentence(self) -> str:
        if self.why is Unusable.MISSING:
            return f"connection {self.name!r} no longer exists"
        if self.why is Unusable.PROVIDER_CHANGED:
            return f"connection {self.name!r} is now {self.provider}, the key was issued by {self.expected}"
        return f"connection {self.name!r} is unusable: {self.reason}"


# --- records -----------------------------------------------------------------------------------------------


def get(b: LLMBackend, storage: Storage, name: str) -> ConnectionConfig | None:
    return b.connection(storage, name)


def names(storage: Storage) -> list[str]:
    return sorted(list_leaves(storage, CONFIG_PREFIX))


def live_key_ids(storage: Storage, connection: str) -> list[str]:
    return list_leaves(storage, f"{KEYS_PREFIX}{connection}/")


def pending_creates(storage: Storage, connection: str) -> int:
    """Creates through `connection` whose outcome is not settled yet (their WAL entries)."""
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


def delete(b: LLMBackend, storage: Storage, name: str) -> None:
    """Delete the connection (nothing if there is none). ConnectionInUse while keys issued through it are
    live or being created: deleting it would leave them impossible to revoke."""
    if b.connection(storage, name) is None:
        return
    from llmsecrets.checkout_sets import busy_keys  # here: checkout_sets imports this module

    # Keys of check-out sets held or awaiting deactivation are switched off through this connection too.
    live = len(live_key_ids(storage, name)) + busy_keys(storage, name)
    pending = pending_creates(storage, name)
    if live or pending:
        raise ConnectionInUse(name, live, pending)
    b.delete_connection(storage, name)
    b.clients.forget(name)


def effective_base_url(conn: ConnectionConfig) -> str:
    info = PROVIDERS.get(conn.provider)
    default = info.default_base_url if info is not None else None
    return conn.base_url or default or ""


def view(conn: ConnectionConfig, *, live_keys: int) -> dict[str, Any]:
    """What a read shows: never the admin key. `organization_id` is always there (as in released
    versions: empty unless openai); the provider's other account fields follow."""
    info = PROVIDERS.get(conn.provider)
    account = {f.name: conn.account.get(f.name, "") for f in (info.account if info else ())}
    return {
        "provider": conn.provider,
        "admin_key_set": bool(conn.admin_key),
        "base_url": effective_base_url(conn),
        "organization_id": conn.account.get("organization_id", ""),
        **account,
        "allowed_roles": list(conn.allowed_roles),
        "live_keys": live_keys,
        "admin_key_id": conn.admin_key_id or "",
        "admin_key_rotated_at": _iso(conn.admin_key_rotated_at),
        "rotation_period": conn.rotation_period,
        "rotation_overlap": conn.rotation_overlap,
        "previous_admin_key_id": conn.previous_admin_key_id or "",
        "previous_admin_key_delete_by": _iso(conn.previous_delete_by),
    }


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- updates -----------------------------------------------------------------------------------------------


def account_field_names() -> tuple[str, ...]:
    return tuple(account_owners())


def merge(name: str, existing: ConnectionConfig | None, update: Mapping[str, Any]) -> ConnectionConfig:
    """The connection after writing `update` (the fields that were sent, by name: strings, and a list of
    strings for allowed_roles) over `existing`; fields not sent keep their stored values. InvalidConnection
    names the field that is wrong."""
    provider: str | None = update.get("provider")
    if existing is None and provider is None:
        raise InvalidConnection(f'missing required field "provider" (one of: {", ".join(PROVIDER_NAMES)})')
    if existing is not None and provider is not None and provider != existing.provider:
        raise InvalidConnection(
            f'"provider" cannot change from {existing.provider!r} to {provider!r}: keys issued through '
            "this connection are revoked through its provider. Create a new connection instead"
        )
    provider = provider if provider is not None else existing.provider if existing else ""
    info = PROVIDERS.get(provider)
    if info is None:
        raise InvalidConnection(f'"provider" must be one of: {", ".join(PROVIDER_NAMES)}')

    admin_key: str | None = update.get("admin_key")
    if admin_key is not None:
        admin_key = admin_key.strip()
        if not admin_key:
            raise InvalidConnection('"admin_key" must not be empty')
        check_header_value("admin_key", admin_key)
    elif existing is not None:
        admin_key = existing.admin_key
    else:
        raise InvalidConnection('missing required field "admin_key" (the provider admin key)')

    base_url: str | None = update.get("base_url")
    if base_url is not None:
        base_url = base_url.strip() or None
    elif existing is not None:
        base_url = existing.base_url
    if base_url is not None:
        check_url(base_url)
    if info.default_base_url is None and base_url is None:
        raise InvalidConnection(
            f'"base_url" is required for {provider} (the URL of the proxy, e.g. http://host:4000)'
        )

    account = _account(provider, info.account, existing, update)

    roles: list[str] | None = update.get("allowed_roles")
    if roles is not None:
        allowed = tuple(dict.fromkeys(r.strip() for r in roles if r.strip()))
        for role in allowed:
            if role != "*" and not NAME_RE.fullmatch(role):
                raise InvalidConnection(f'"allowed_roles": {role[:40]!r} is not a role name (or "*")')
    else:
        allowed = existing.allowed_roles if existing else ()

    return replace(
        existing or ConnectionConfig(name=name, provider=provider, admin_key=admin_key),
        name=name,
        provider=provider,
        admin_key=admin_key,
        base_url=base_url,
        account=account,
        allowed_roles=allowed,
        **_rotation_settings(
            existing, update, key_changed=existing is None or admin_key != existing.admin_key
        ),
    )


def _rotation_settings(
    existing: ConnectionConfig | None, update: Mapping[str, Any], *, key_changed: bool
) -> dict[str, Any]:
    """admin_key_id (forgotten when another key is written without one), rotation_period, rotation_overlap."""
    out: dict[str, Any] = {}
    key_id: str | None = update.get("admin_key_id")
    if key_id is not None:
        key_id = key_id.strip()
        if key_id and not ACCOUNT_ID_RE.fullmatch(key_id):
            raise InvalidConnection('"admin_key_id" must be 1-128 letters, digits and . _ @ + -')
        out["admin_key_id"] = key_id or None
    elif key_changed:
        out["admin_key_id"] = None
    period: int | None = update.get("rotation_period")
    if period is not None:
        if period < 0:
            raise InvalidConnection('"rotation_period" must not be negative (0 turns periodic rotation off)')
        out["rotation_period"] = period
    overlap: int | None = update.get("rotation_overlap")
    if overlap is not None:
        if not 0 <= overlap <= MAX_ROTATION_OVERLAP:
            raise InvalidConnection(
                f'"rotation_overlap" must be between 0 and {MAX_ROTATION_OVERLAP} seconds'
            )
        out["rotation_overlap"] = overlap
    return out


def _account(
    provider: str,
    fields: tuple[AccountField, ...],
    existing: ConnectionConfig | None,
    update: Mapping[str, Any],
) -> dict[str, str]:
    """The provider's account fields after the update: sent ones stripped (empty clears an optional one),
    the rest kept. InvalidConnection for another provider's field, a missing required one, or a value that
    cannot travel where the field goes."""
    declared = {f.name for f in fields}
    for field, owners in account_owners().items():
        value = update.get(field)
        if field not in declared and value is not None and value.strip():
            raise InvalidConnection(f'"{field}" applies to {" and ".join(owners)} only, not {provider}')
    account: dict[str, str] = {}
    for f in fields:
        sent = update.get(f.name)
        value = sent.strip() if sent is not None else existing.account.get(f.name, "") if existing else ""
        if not value:
            if f.required:
                raise InvalidConnection(f'missing required field "{f.name}" for {provider} connections')
            continue
        if f.carrier is Carrier.HEADER:
            check_header_value(f.name, value)
        elif not ACCOUNT_ID_RE.fullmatch(value):
            raise InvalidConnection(
                f'"{f.name}" must be 1-128 letters, digits and . _ @ + - (it goes into the provider\'s URLs)'
            )
        account[f.name] = value
    return account


def check_header_value(field: str, value: str) -> None:
    # Sent in an HTTP header: anything else fails at the HTTP client on every call (a 502 per creds read),
    # or splits the header. The value itself is never echoed (admin_key is secret).
    if not value.isascii() or not value.isprintable() or any(c.isspace() for c in value):
        raise InvalidConnection(
            f'"{field}" must be printable ASCII without spaces (it is sent in an HTTP header)'
        )


def check_url(url: str) -> None:
    if not url.isprintable() or any(c.isspace() for c in url):
        raise InvalidConnection('"base_url" must not contain spaces or control characters')
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a malformed port
    except ValueError:
        raise InvalidConnection('"base_url" is not a valid URL') from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidConnection('"base_url" must be an http:// or https:// URL with a host')
    try:
        parts.hostname.encode("idna")  # what the resolver will be asked: labels of 1-63 characters
    except UnicodeError:
        raise InvalidConnection(
            '"base_url" has a host name that cannot be resolved (a label is empty or too long)'
        ) from None
    if parts.username is not None or parts.password is not None:
        raise InvalidConnection('"base_url" must not contain credentials; put the key in admin_key')
    if parts.query or parts.fragment:
        raise InvalidConnection('"base_url" must not have a query or a fragment')


def write(
    b: LLMBackend, storage: Storage, name: str, update: Mapping[str, Any], *, verify: bool
) -> ConnectionConfig:
    """Merge `update` into the stored connection, check its admin key with a harmless provider call
    (`verify`), store it. Raises InvalidConnection, UnusableConnection (settings the provider layer
    refuses) or the provider's ProviderError from the check; nothing is stored then."""
    existing = b.connection(storage, name)
    conn = merge(name, existing, update)
    if existing is None or conn.admin_key != existing.admin_key or conn.admin_key_rotated_at is None:
        conn = replace(conn, admin_key_rotated_at=b.clock())  # the age a rotation_period is measured by
    if conn.rotation_period and not isinstance(client(b, conn), AdminKeyRotation):
        raise InvalidConnection(
            f'"rotation_period": {conn.provider} admin keys cannot be rotated through the provider; leave '
            f"it 0 and rotate by hand (see the help of config/{name}/rotate)"
        )
    if verify:
        try:
            check(b, conn)
        except Exception:
            if existing is None:
                b.clients.forget(name)  # nothing is stored under this name: keep no state for it
            raise
    b.save_connection(storage, conn)
    return conn


def check(b: LLMBackend, conn: ConnectionConfig) -> None:
    """Call the provider harmlessly with `conn`'s admin key, through a new client (not cached). Raises
    UnusableConnection for settings the provider layer refuses, ProviderError for the provider's answer."""
    with ExitStack() as stack:
        try:
            checker = stack.enter_context(b.clients.checking(conn))
        except ValueError as exc:
            raise UnusableConnection(conn.name, Unusable.SETTINGS, str(exc)) from None
        checker.verify()


# --- clients -----------------------------------------------------------------------------------------------


def client(b: LLMBackend, conn: ConnectionConfig) -> ProviderClient:
    """The cached provider client of `conn`. UnusableConnection (SETTINGS) if the provider layer refuses
    its settings (e.g. a record written under older rules)."""
    try:
        return b.clients.get(conn)
    except ValueError as exc:
        raise UnusableConnection(conn.name, Unusable.SETTINGS, str(exc)) from None


def client_for_keys(
    b: LLMBackend, storage: Storage, name: str, provider: str
) -> tuple[ConnectionConfig, ProviderClient]:
    """The connection `name` and its client, for acting on keys issued through it by `provider` (a key
    must be deleted through the provider that made it).
    UnusableConnection when it is gone (MISSING), now serves another provider (PROVIDER_CHANGED), or its
    settings are refused (SETTINGS)."""
    conn = b.connection(storage, name)
    if conn is None:
        raise UnusableConnection(name, Unusable.MISSING)
    if conn.provider != provider:
        raise UnusableConnection(name, Unusable.PROVIDER_CHANGED, provider=conn.provider, expected=provider)
    return conn, client(b, conn)


def deletion_blocker(exc: UnusableConnection) -> str:
    """Why keys cannot be deleted through the connection now, as the deletion queue records it."""
    if exc.why is Unusable.MISSING:
        return (
            f"connection {exc.name!r} no longer exists: write config/{exc.name} again with its admin key so "
            "the engine can delete the key"
        )
    if exc.why is Unusable.PROVIDER_CHANGED:
        return str(exc)
    return f"connection {exc.name!r}: {exc.reason}"
