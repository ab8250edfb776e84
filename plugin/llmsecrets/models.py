"""The records the engine stores, as frozen dataclasses with explicit `to_storage()` / `from_storage()`.

Storage layout (all JSON objects, each with `"schema_version"`):

    config/<connection>            ConnectionConfig   one provider account (holds the admin key)
    roles/<role>                   Role               how keys are minted for `creds/<role>`
    keys/<connection>/<key id>     IssuedKeyRecord    the index of live keys (ids and names, never values)
    tidy/config                    SweepConfig        cadence and thresholds of the orphan sweep
    tidy/state                     SweepState         when the sweep last ran
    deletions/<connection>/<id>    PendingDeletion    a key still to be deleted at its provider (deletions.py)
    wal/<uuid>                     PendingCreate      (framework WAL, kind `WalKind.CREATE_KEY`)
    sets/<set>                     CheckoutSet        an Anthropic check-out set (holds its keys' values)
    holds/<set>/<key id>           KeyHold            a set's key that is not free (checkout_sets.py)
    wal/<uuid>                     PendingCheckout    (framework WAL, kind `WalKind.CHECKOUT_KEY`)
    wal/<uuid>                     PendingAdminKey    (framework WAL, kind `WalKind.ROTATE_ADMIN_KEY`)

`from_storage` checks every field's type and raises `RecordError` for anything unexpected, so a
corrupt or foreign record never turns into a half-valid object.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import quote

SCHEMA_VERSION = 1

CONFIG_PREFIX = "config/"
ROLES_PREFIX = "roles/"
KEYS_PREFIX = "keys/"
SWEEP_CONFIG_KEY = "tidy/config"
SWEEP_STATE_KEY = "tidy/state"
DELETIONS_PREFIX = "deletions/"
# The one account field stored where released versions keep it (see ConnectionConfig).
ORGANIZATION_ID = "organization_id"
# Seconds an old admin key may live on after a rotation, for calls in flight with it (rotation.py).
DEFAULT_ROTATION_OVERLAP = 60


class RecordError(ValueError):
    """A stored record does not have the expected shape."""


class WalKind(StrEnum):
    """The WAL kinds this engine writes (the framework hands each entry only to code that knows it)."""

    CREATE_KEY = "llm_create_key"
    CHECKOUT_KEY = "llm_checkout_key"
    ROTATE_ADMIN_KEY = "llm_rotate_admin_key"


# --- checked readers ---------------------------------------------------------------------------------------


def _check_version(data: Mapping[str, Any], what: str) -> None:
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise RecordError(f"{what}: unsupported schema_version {version!r} (expected {SCHEMA_VERSION})")


def _str(data: Mapping[str, Any], key: str, what: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise RecordError(f"{what}: field {key!r} is not a string")
    return value


def _opt_str(data: Mapping[str, Any], key: str, what: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise RecordError(f"{what}: field {key!r} is not a string")
    return value


def _num(data: Mapping[str, Any], key: str, what: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RecordError(f"{what}: field {key!r} is not a number")
    return float(value)


def _opt_num(data: Mapping[str, Any], key: str, what: str) -> float | None:
    return None if data.get(key) is None else _num(data, key, what)


def _bool(data: Mapping[str, Any], key: str, what: str) -> bool:
    value = data.get(key)
    if not isinstance(value, bool):
        raise RecordError(f"{what}: field {key!r} is not a boolean")
    return value


def _int(data: Mapping[str, Any], key: str, what: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise RecordError(f"{what}: field {key!r} is not an integer")
    return value


def _opt_int(data: Mapping[str, Any], key: str, what: str, default: int) -> int:
    return default if data.get(key) is None else _int(data, key, what)


def _str_tuple(data: Mapping[str, Any], key: str, what: str) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RecordError(f"{what}: field {key!r} is not a list of strings")
    return tuple(value)


def _str_map(data: Mapping[str, Any], key: str, what: str) -> dict[str, str]:
    value = data.get(key, {})
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise RecordError(f"{what}: field {key!r} is not a map of strings")
    return dict(value)


# --- connections -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectionConfig:
    """One provider account. `admin_key` lives in storage and in requests to its provider, nowhere else.

    `account` holds the provider's account fields that are set, by name (`ProviderInfo.account`): OpenAI's
    `organization_id`; xAI's `team_id`; Fireworks' `account_id` and `user_id`. In storage OpenAI's
    `organization_id` keeps the top-level field released versions read and write (so their records read
    as before, and a record written now still reads after a downgrade); the fields added since sit in
    the `account` map.

    Admin-key rotation (rotation.py): `admin_key_id` is the provider's id of `admin_key` (None: not known);
    `admin_key_rotated_at` when it was last set (unix seconds; None in records older than rotation);
    `rotation_period` rotates it when older (seconds, 0 = never); `rotation_overlap` bounds how long the old
    key stays alive after a rotation; `previous_admin_key_id` is the old key still to be deleted at the
    provider, by `previous_delete_by` at the latest (its value is not kept: the new key deletes it by id).
    """

    name: str
    provider: str
    admin_key: str = field(repr=False)
    base_url: str | None = None  # None = the provider's public API
    account: Mapping[str, str] = field(default_factory=dict)
    allowed_roles: tuple[str, ...] = ()  # empty or "*" = every role
    admin_key_id: str | None = None
    admin_key_rotated_at: float | None = None
    rotation_period: int = 0
    rotation_overlap: int = DEFAULT_ROTATION_OVERLAP
    previous_admin_key_id: str | None = None
    previous_delete_by: float | None = None

    @staticmethod
    def storage_key(name: str) -> str:
        return CONFIG_PREFIX + name

    @property
    def organization_id(self) -> str | None:
        return self.account.get(ORGANIZATION_ID) or None

    def allows(self, role: str) -> bool:
        return not self.allowed_roles or "*" in self.allowed_roles or role in self.allowed_roles

    def to_storage(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "name": self.name,
            "provider": self.provider,
            "admin_key": self.admin_key,
            "base_url": self.base_url,
            "organization_id": self.organization_id,
            "account": {k: v for k, v in sorted(self.account.items()) if k != ORGANIZATION_ID},
            "allowed_roles": list(self.allowed_roles),
            "admin_key_id": self.admin_key_id,
            "admin_key_rotated_at": self.admin_key_rotated_at,
            "rotation_period": self.rotation_period,
            "rotation_overlap": self.rotation_overlap,
            "previous_admin_key_id": self.previous_admin_key_id,
            "previous_delete_by": self.previous_delete_by,
        }

    @classmethod
    def from_storage(cls, data: Mapping[str, Any]) -> ConnectionConfig:
        what = "connection config"
        _check_version(data, what)
        account = _str_map(data, "account", what)  # absent in records of released versions
        if ORGANIZATION_ID in account:
            raise RecordError(f"{what}: {ORGANIZATION_ID!r} belongs at the top level, not in 'account'")
        organization = _opt_str(data, ORGANIZATION_ID, what)
        if organization:
            account[ORGANIZATION_ID] = organization
        return cls(
            name=_str(data, "name", what),
            provider=_str(data, "provider", what),
            admin_key=_str(data, "admin_key", what),
            base_url=_opt_str(data, "base_url", what),
            account=account,
            allowed_roles=_str_tuple(data, "allowed_roles", what),
            # Absent from records written before admin-key rotation.
            admin_key_id=_opt_str(data, "admin_key_id", what),
            admin_key_rotated_at=_opt_num(data, "admin_key_rotated_at", what),
            rotation_period=_opt_int(data, "rotation_period", what, 0),
            rotation_overlap=_opt_int(data, "rotation_overlap", what, DEFAULT_ROTATION_OVERLAP),
            previous_admin_key_id=_opt_str(data, "previous_admin_key_id", what),
            previous_delete_by=_opt_num(data, "previous_delete_by", what),
        )


# --- roles -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Role:
    """How keys are minted for `creds/<name>`. ttl/max_ttl are seconds; 0 = the mount's default/max."""

    name: str
    connection: str
    ttl: int = 0
    max_ttl: int = 0
    name_template: str = ""
    project_id: str | None = None
    spend_limit: float | None = None
    models: tuple[str, ...] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)
    scopes: tuple[str, ...] = ()  # openai: API key scopes of each key
    openai_key_mode: str = ""  # openai: "" = the client's default (providers.openai.KEY_MODES)

    @staticmethod
    def storage_key(name: str) -> str:
        return ROLES_PREFIX + name

    def to_storage(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "name": self.name,
            "connection": self.connection,
            "ttl": self.ttl,
            "max_ttl": self.max_ttl,
            "name_template": self.name_template,
            "project_id": self.project_id,
            "spend_limit": self.spend_limit,
            "models": list(self.models),
            "metadata": dict(self.metadata),
            "scopes": list(self.scopes),
            "openai_key_mode": self.openai_key_mode,
        }

    @classmethod
    def from_storage(cls, data: Mapping[str, Any]) -> Role:
        what = "role"
        _check_version(data, what)
        return cls(
            name=_str(data, "name", what),
            connection=_str(data, "connection", what),
            ttl=_int(data, "ttl", what),
            max_ttl=_int(data, "max_ttl", what),
            name_template=_str(data, "name_template", what),
            project_id=_opt_str(data, "project_id", what),
            spend_limit=_opt_num(data, "spend_limit", what),
            models=_str_tuple(data, "models", what),
            metadata=_str_map(data, "metadata", what),
            # Absent from records written before these fields existed.
            scopes=_str_tuple(data, "scopes", what),
            openai_key_mode=_opt_str(data, "openai_key_mode", what) or "",
        )


# --- issued keys (index) -----------------------------------------------------------------------------------


def key_segment(key_id: str) -> str:
    """A provider key id as one storage path segment (ids are opaque: quote anything unusual)."""
    return quote(key_id, safe="")


@dataclass(frozen=True)
class IssuedKeyRecord:
    """One live key in the index. Holds what revoke, renew and the sweep need; never the key value.

    Times are unix seconds. `lease_expires_at` is issue time + the lease's max TTL: after it (plus a
    grace) no lease can still own the key, so the sweep deletes it.
    """

    connection: str
    provider: str
    key_id: str
    scope: str
    role: str
    key_name: str
    issued_at: float
    ttl: int
    lease_expires_at: float
    provider_expires_at: float | None = None

    @classmethod
    def for_lease(
        cls,
        ref: LeaseRef,
        *,
        issued_at: float,
        ttl: int,
        lease_expires_at: float,
        provider_expires_at: float | None,
    ) -> IssuedKeyRecord:
        """The index entry of the key a lease refers to."""
        return cls(
            connection=ref.connection,
            provider=ref.provider,
            key_id=ref.key_id,
            scope=ref.scope,
            role=ref.role,
            key_name=ref.key_name,
            issued_at=issued_at,
            ttl=ttl,
            lease_expires_at=lease_expires_at,
            provider_expires_at=provider_expires_at,
        )

    @staticmethod
    def storage_key(connection: str, key_id: str) -> str:
        return f"{KEYS_PREFIX}{connection}/{key_segment(key_id)}"

    @property
    def key(self) -> str:
        return self.storage_key(self.connection, self.key_id)

    def to_storage(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "connection": self.connection,
            "provider": self.provider,
            "key_id": self.key_id,
            "scope": self.scope,
            "role": self.role,
            "key_name": self.key_name,
            "issued_at": self.issued_at,
            "ttl": self.ttl,
            "lease_expires_at": self.lease_expires_at,
            "provider_expires_at": self.provider_expires_at,
        }

    @classmethod
    def from_storage(cls, data: Mapping[str, Any]) -> IssuedKeyRecord:
        what = "issued key record"
        _check_version(data, what)
        return cls(
            connection=_str(data, "connection", what),
            provider=_str(data, "provider", what),
            key_id=_str(data, "key_id", what),
            scope=_str(data, "scope", what),
            role=_str(data, "role", what),
            key_name=_str(data, "key_name", what),
            issued_at=_num(data, "issued_at", what),
            ttl=_int(data, "ttl", what),
            lease_expires_at=_num(data, "lease_expires_at", what),
            provider_expires_at=_opt_num(data, "provider_expires_at", what),
        )


# --- lease internal data -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LeaseRef:
    """What a lease's internal data holds: exactly what revoke needs. Never the key value."""

    connection: str
    provider: str
    key_id: str
    scope: str
    role: str
    key_name: str

    def to_internal(self) -> dict[str, Any]:
        return {
            "connection": self.connection,
            "provider": self.provider,
            "key_id": self.key_id,
            "scope": self.scope,
            "role": self.role,
            "key_name": self.key_name,
        }

    @classmethod
    def from_internal(cls, data: Mapping[str, Any]) -> LeaseRef:
        what = "lease internal data"
        return cls(
            connection=_str(data, "connection", what),
            provider=_str(data, "provider", what),
            key_id=_str(data, "key_id", what),
            scope=_str(data, "scope", what),
            role=_str(data, "role", what),
            key_name=_str(data, "key_name", what),
        )


# --- WAL ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PendingCreate:
    """The WAL entry written before a provider create: enough to find the key by name and delete it."""

    connection: str
    provider: str
    scope: str
    key_name: str
    role: str
    created_at: float

    def to_wal(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "connection": self.connection,
            "provider": self.provider,
            "scope": self.scope,
            "key_name": self.key_name,
            "role": self.role,
            "created_at": self.created_at,
        }

    @classmethod
    def from_wal(cls, data: Mapping[str, Any]) -> PendingCreate:
        what = "WAL entry " + WalKind.CREATE_KEY.value
        _check_version(data, what)
        return cls(
            connection=_str(data, "connection", what),
            provider=_str(data, "provider", what),
            scope=_str(data, "scope", what),
            key_name=_str(data, "key_name", what),
            role=_str(data, "role", what),
            created_at=_num(data, "created_at", what),
        )


@dataclass(frozen=True)
class PendingAdminKey:
    """The WAL entry written before an admin key is created by a rotation (kind `ROTATE_ADMIN_KEY`): enough
    to find the new key by its unique name and, unless the connection already uses it, delete it."""

    connection: str
    provider: str
    key_name: str
    created_at: float

    def to_wal(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "connection": self.connection,
            "provider": self.provider,
            "key_name": self.key_name,
            "created_at": self.created_at,
        }

    @classmethod
    def from_wal(cls, data: Mapping[str, Any]) -> PendingAdminKey:
        what = "WAL entry " + WalKind.ROTATE_ADMIN_KEY.value
        _check_version(data, what)
        return cls(
            connection=_str(data, "connection", what),
            provider=_str(data, "provider", what),
            key_name=_str(data, "key_name", what),
            created_at=_num(data, "created_at", what),
        )


# --- sweep -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepConfig:
    """Cadence and thresholds of the sweep (seconds). `interval` 0 turns the periodic sweep off."""

    interval: int
    min_orphan_age: int
    expired_grace: int

    def to_storage(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "interval": self.interval,
            "min_orphan_age": self.min_orphan_age,
            "expired_grace": self.expired_grace,
        }

    @classmethod
    def from_storage(cls, data: Mapping[str, Any]) -> SweepConfig:
        what = "sweep config"
        _check_version(data, what)
        return cls(
            interval=_int(data, "interval", what),
            min_orphan_age=_int(data, "min_orphan_age", what),
            expired_grace=_int(data, "expired_grace", what),
        )


@dataclass(frozen=True)
class SweepState:
    last_run: float

    def to_storage(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, "last_run": self.last_run}

    @classmethod
    def from_storage(cls, data: Mapping[str, Any]) -> SweepState:
        what = "sweep state"
        _check_version(data, what)
        return cls(last_run=_num(data, "last_run", what))


# --- deletion queue ----------------------------------------------------------------------------------------


class DeletionReason(StrEnum):
    """Why a key is in the deletion queue."""

    REVOKE = "revoke"  # a revoke of a running lease failed: Vault was answered with an error
    LEASE_ENDED = "lease_ended"  # Vault revoked an ended lease: it was answered "done", the engine deletes
    SWEEP = "sweep"  # the sweep could not delete a key past its lease max, or an orphan


@dataclass(frozen=True)
class PendingDeletion:
    """A key the engine still has to delete at its provider, or (with `done_at`) has just deleted.

    - `expires_by`: by then the provider has expired the key by itself (unix seconds), None if it never does;
    - `vault_waiting`: a revoke was answered with an error, so Vault will ask again: once the key is gone the
      entry stays as a tombstone (`done_at`) that lets that revoke succeed without a provider call;
    - `attempts`, `last_error`, `last_attempt_at`, `next_attempt_at`: what an operator sees.
    Never holds a key value.
    """

    connection: str
    provider: str
    key_id: str
    scope: str
    key_name: str
    role: str
    reason: str
    queued_at: float
    expires_by: float | None
    vault_waiting: bool
    attempts: int = 0
    last_error: str = ""
    last_attempt_at: float | None = None
    next_attempt_at: float | None = None
    done_at: float | None = None

    @staticmethod
    def storage_key(connection: str, key_id: str) -> str:
        return f"{DELETIONS_PREFIX}{connection}/{key_segment(key_id)}"

    @property
    def key(self) -> str:
        return self.storage_key(self.connection, self.key_id)

    def to_storage(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, **asdict(self)}

    @classmethod
    def from_storage(cls, data: Mapping[str, Any]) -> PendingDeletion:
        what = "pending deletion"
        _check_version(data, what)
        return cls(
            connection=_str(data, "connection", what),
            provider=_str(data, "provider", what),
            key_id=_str(data, "key_id", what),
            scope=_str(data, "scope", what),
            key_name=_str(data, "key_name", what),
            role=_str(data, "role", what),
            reason=_str(data, "reason", what),
            queued_at=_num(data, "queued_at", what),
            expires_by=_opt_num(data, "expires_by", what),
            vault_waiting=_bool(data, "vault_waiting", what),
            attempts=_int(data, "attempts", what),
            last_error=_str(data, "last_error", what),
            last_attempt_at=_opt_num(data, "last_attempt_at", what),
            next_attempt_at=_opt_num(data, "next_attempt_at", what),
            done_at=_opt_num(data, "done_at", what),
        )


# --- check-out sets (checkout_sets.py) ---------------------------------------------------------------------

SETS_PREFIX = "sets/"
HOLDS_PREFIX = "holds/"


@dataclass(frozen=True)
class CheckoutSet:
    """Pre-made keys of one connection (Anthropic), lent out one per lease. `keys` maps each key's provider id
    to its value: stored (the mount's storage is encrypted by Vault's barrier, as admin keys are) and sent to
    the lease holder, never returned by a read or logged. ttl/max_ttl are seconds; 0 = the mount's."""

    name: str
    connection: str
    keys: Mapping[str, str] = field(repr=False)
    ttl: int = 0
    max_ttl: int = 0

    @staticmethod
    def storage_key(name: str) -> str:
        return SETS_PREFIX + name

    def to_storage(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "name": self.name,
            "connection": self.connection,
            "ttl": self.ttl,
            "max_ttl": self.max_ttl,
            "keys": dict(sorted(self.keys.items())),
        }

    @classmethod
    def from_storage(cls, data: Mapping[str, Any]) -> CheckoutSet:
        what = "check-out set"
        _check_version(data, what)
        return cls(
            name=_str(data, "name", what),
            connection=_str(data, "connection", what),
            keys=_str_map(data, "keys", what),
            ttl=_int(data, "ttl", what),
            max_ttl=_int(data, "max_ttl", what),
        )


class HoldState(StrEnum):
    """Why a key of a set is not free (a free key has no hold record)."""

    CHECKED_OUT = "checked_out"  # a lease holds it (or a check-out is under way): active at the provider
    DEACTIVATING = "deactivating"  # must be made inactive before it is free again; retried until it is
    UNUSABLE = "unusable"  # the provider refuses to activate it (archived, expired, gone): never lent out


@dataclass(frozen=True)
class KeyHold:
    """A key of a set that is not free. Written BEFORE the provider is asked to activate the key (the commit
    point of a check-out), removed only once the key is inactive again. `checkout_id` names the check-out
    (and its lease); a revoke or rollback acts only on a hold that still carries its id. Never holds a value.
    """

    set_name: str
    key_id: str
    state: str
    checkout_id: str
    since: float
    ttl: int = 0
    lease_ends_at: float | None = None  # the current lease end (renewals move it)
    lease_max_at: float | None = None  # after it (+ a grace) no lease can still hold the key
    reason: str = ""
    vault_waiting: bool = False  # a revoke was answered with an error: Vault asks again
    attempts: int = 0
    last_error: str = ""
    last_attempt_at: float | None = None
    next_attempt_at: float | None = None

    @staticmethod
    def storage_key(set_name: str, key_id: str) -> str:
        return f"{HOLDS_PREFIX}{set_name}/{key_segment(key_id)}"

    @property
    def key(self) -> str:
        return self.storage_key(self.set_name, self.key_id)

    def to_storage(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, **asdict(self)}

    @classmethod
    def from_storage(cls, data: Mapping[str, Any]) -> KeyHold:
        what = "key hold"
        _check_version(data, what)
        state = _str(data, "state", what)
        if state not in HoldState.__members__.values():
            raise RecordError(f"{what}: unknown state {state!r}")
        return cls(
            set_name=_str(data, "set_name", what),
            key_id=_str(data, "key_id", what),
            state=state,
            checkout_id=_str(data, "checkout_id", what),
            since=_num(data, "since", what),
            ttl=_int(data, "ttl", what),
            lease_ends_at=_opt_num(data, "lease_ends_at", what),
            lease_max_at=_opt_num(data, "lease_max_at", what),
            reason=_str(data, "reason", what),
            vault_waiting=_bool(data, "vault_waiting", what),
            attempts=_int(data, "attempts", what),
            last_error=_str(data, "last_error", what),
            last_attempt_at=_opt_num(data, "last_attempt_at", what),
            next_attempt_at=_opt_num(data, "next_attempt_at", what),
        )


@dataclass(frozen=True)
class PendingCheckout:
    """The WAL entry written before a check-out picks its key: the rollback finds the hold by `checkout_id`
    and deactivates the key, so an interrupted check-out never leaves a key active without a lease."""

    set_name: str
    connection: str
    checkout_id: str
    created_at: float

    def to_wal(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "set_name": self.set_name,
            "connection": self.connection,
            "checkout_id": self.checkout_id,
            "created_at": self.created_at,
        }

    @classmethod
    def from_wal(cls, data: Mapping[str, Any]) -> PendingCheckout:
        what = "WAL entry " + WalKind.CHECKOUT_KEY.value
        _check_version(data, what)
        return cls(
            set_name=_str(data, "set_name", what),
            connection=_str(data, "connection", what),
            checkout_id=_str(data, "checkout_id", what),
            created_at=_num(data, "created_at", what),
        )
