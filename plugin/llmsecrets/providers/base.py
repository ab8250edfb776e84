"""The contract every provider client meets, and the values that cross it.

The engine codes against `ProviderClient` only. Each provider module (`openai`, `openrouter`,
`litellm`) holds one class that satisfies it; `registry.make_client` builds one by name.

Secrets cross this boundary in `SecretStr`, whose `str()` and `repr()` are redacted: an
`IssuedKey` can be logged or put in an exception without leaking the key it carries.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Protocol, runtime_checkable

REDACTED = "**********"


class SecretStr:
    """A string that does not show itself: `str()` and `repr()` are redacted; `.reveal()` returns it.

    Not a `str` subclass on purpose, so it cannot be concatenated, formatted or serialised
    into a log line or a JSON body by accident.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("SecretStr wraps a str")
        self._value = value

    def reveal(self) -> str:
        """The secret itself. Call it only where the value must leave the process."""
        return self._value

    def __str__(self) -> str:
        return REDACTED

    def __repr__(self) -> str:
        return f"SecretStr('{REDACTED}')"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretStr):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("SecretStr cannot be pickled")


def _frozen_mapping(value: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(value))


@dataclass(frozen=True)
class KeySpec:
    """What to ask the provider for. Fields a provider cannot honour are ignored (see `Capabilities`).

    - `name`: the key's name at the provider; the engine makes it unique and prefixed so
      `find_keys` can find orphans and settle a create whose outcome is unknown.
    - `expires_at`: provider-side expiry backstop (timezone-aware UTC), or None.
    - `spend_limit`: USD cap for the key, or None.
    - `models`: allowed models; empty means the provider default.
    - `metadata`: string pairs stored with the key where the provider supports it.
    - `project_id`: OpenAI project that owns the service account (required there).
    - `scopes`: API key scopes (OpenAI: opaque strings such as "api.model.request"); empty means
      the provider default (an unrestricted key).
    - `key_mode`: how the provider makes the key, where it offers more than one way (OpenAI: see
      `providers.openai.KEY_MODES`); None means the client's default.
    - `service_account_name`: OpenAI "key_per_lease" mode: the exact name of the shared service account
      the key is made under (found or created by that name).
    """

    name: str
    expires_at: datetime | None = None
    spend_limit: float | None = None
    models: tuple[str, ...] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)
    project_id: str | None = None
    scopes: tuple[str, ...] = ()
    key_mode: str | None = None
    service_account_name: str | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("KeySpec.name must not be empty")
        if self.expires_at is not None and self.expires_at.tzinfo is None:
            raise ValueError("KeySpec.expires_at must be timezone-aware (UTC)")
        if self.spend_limit is not None and self.spend_limit < 0:
            raise ValueError("KeySpec.spend_limit must not be negative")
        object.__setattr__(self, "models", tuple(self.models))
        object.__setattr__(self, "metadata", _frozen_mapping(self.metadata))
        object.__setattr__(self, "scopes", tuple(self.scopes))


@dataclass(frozen=True)
class IssuedKey:
    """A key the provider has just created.

    - `key_id`: what `delete_key` needs (OpenAI service-account id, OpenRouter hash, LiteLLM token_id).
    - `key_name`: the name it was created under.
    - `api_key`: the secret, shown once by the provider; never in `repr()`.
    - `expires_at`: provider-side expiry as the provider reported it, or None.
    - `scope`: what `delete_key` needs besides the id (OpenAI: the project id; others "").
    - `created_at`: when it was created (provider's clock when reported, else ours), UTC.
    """

    key_id: str
    key_name: str
    api_key: SecretStr = field(repr=False)
    expires_at: datetime | None
    scope: str
    created_at: datetime


@dataclass(frozen=True)
class ProviderKey:
    """A key found by listing (never carries a secret)."""

    key_id: str
    name: str
    created_at: datetime | None
    scope: str


@dataclass(frozen=True)
class Capabilities:
    """What a provider can do per key.

    - `expiry`: the provider expires the key itself at `KeySpec.expires_at`.
    - `extend_expiry`: `extend_key` can move that expiry (renewals).
    - `spend_limit`: `KeySpec.spend_limit` is enforced per key.
    - `models`: `KeySpec.models` is enforced per key.
    - `metadata`: `KeySpec.metadata` is stored with the key.
    - `needs_project`: `KeySpec.project_id` is required.
    - `scopes`: `KeySpec.scopes` is sent with the key.
    - `checkout_only`: `create_key`/`delete_key` cannot work (Anthropic, whose Admin API only switches
      pre-made keys on and off): its keys are leased through check-out sets, never roles.
    """

    expiry: bool
    extend_expiry: bool
    spend_limit: bool
    models: bool
    metadata: bool
    needs_project: bool
    scopes: bool = False
    checkout_only: bool = False


@runtime_checkable
class ProviderClient(Protocol):
    """One provider's admin API. Every call takes `deadline`, a `time.monotonic()` value by which it
    gives up, retries included. Every failure is a `ProviderError` subclass (see `errors`)."""

    name: str
    capabilities: Capabilities

    def verify(self) -> None:
        """Make a harmless authenticated call that proves the admin key works."""
        ...

    def create_key(self, spec: KeySpec, *, deadline: float) -> IssuedKey:
        """Create one key. Never blindly repeated: a lost response raises `CreateOutcomeUnknown`."""
        ...

    def delete_key(self, key_id: str, *, scope: str, deadline: float) -> bool:
        """Delete a key: True if deleted, False if it was already gone."""
        ...

    def find_keys(self, name_prefix: str, *, scope: str | None, deadline: float) -> list[ProviderKey]:
        """Every key whose name starts with `name_prefix`, walking all pages."""
        ...

    def extend_key(self, key_id: str, *, scope: str, expires_at: datetime, deadline: float) -> None:
        """Move the provider-side expiry (only where `capabilities.extend_expiry`)."""
        ...

    def close(self) -> None:
        """Release the HTTP connection pool."""
        ...


@runtime_checkable
class AdminKeyRotation(Protocol):
    """A provider client whose admin API makes and deletes admin keys themselves (OpenAI's organization
    admin API keys; a LiteLLM proxy's virtual keys of a proxy_admin user): what `config/<name>/rotate`
    needs. The client's own admin key makes the new one; the old one is deleted with the new one, by id."""

    def create_admin_key(self, name: str, *, deadline: float) -> IssuedKey:
        """Create an admin key named `name` (`key_id`: its id; `api_key`: its value, shown once). A lost
        answer raises `CreateOutcomeUnknown`: the key is then found by `find_admin_keys(name)`."""
        ...

    def delete_admin_key(self, key_id: str, *, deadline: float) -> bool:
        """Delete an admin key by id: True if deleted, False if it was already gone."""
        ...

    def find_admin_keys(self, name: str, *, deadline: float) -> list[ProviderKey]:
        """The admin keys named exactly `name` (every page)."""
        ...

    def own_admin_key_id(self, *, deadline: float) -> str | None:
        """The id of the admin key this client calls with, if the provider can tell; None if it cannot
        (e.g. it is not one of the admin keys the API lists)."""
        ...


# How a provider reports what a key spent (see `SpendReporting.spend_kind`).
SPEND_NONE = ""
SPEND_LIVE = "live"  # on the key itself, while it exists: read it before the delete
SPEND_LATE = "late"  # through a usage API, late, for deleted keys too: collect it after the delete


@runtime_checkable
class SpendReporting(Protocol):
    """A provider client that can say what one of its keys spent, in USD (OpenRouter key `usage`, LiteLLM
    key `spend`, OpenAI's costs API by API key id)."""

    def spend_kind(self, scope: str) -> str:
        """SPEND_LIVE, SPEND_LATE or SPEND_NONE for a key of this `scope` (OpenAI reports per API key: a key
        per lease yes, a service account per lease no)."""
        ...

    def key_spend(self, key_id: str, *, scope: str, deadline: float) -> float:
        """SPEND_LIVE: what the key has spent so far (`ProviderNotFound` once it is deleted)."""
        ...

    def keys_spend(
        self, key_ids: Sequence[str], *, scope: str, since: datetime, deadline: float
    ) -> dict[str, float]:
        """SPEND_LATE: what each key spent since `since`, as far as the provider has reported it yet (a key
        with nothing reported: 0.0). One call (and its pages) for all of `key_ids`."""
        ...
