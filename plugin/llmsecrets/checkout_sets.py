"""Check-out sets: pre-made Anthropic keys lent out one per lease, active only while a lease holds them.

Anthropic's Admin API cannot create or delete a key; it can switch one between `active` and `inactive`. A set
(`sets/<name>`) holds keys an operator made in Anthropic's console (their ids and values) and the connection
whose admin key switches them. A check-out (`sets/<name>/creds`) takes a free key, activates it and returns
it under a lease (secret type `llm_anthropic_checkout`); renew extends the lease up to the set's max TTL;
revoke or expiry deactivates the key and frees it. The same key value comes back to later leases: this is
weaker than a key per lease, and the set's keys should be rotated in the console now and then.

State lives in storage (`models.py`): the set (`sets/<name>`), and a hold per key that is not free
(`holds/<set>/<key id>`: checked out, awaiting deactivation, or unusable). A key with no hold is free.

Exactly-once check-out. The hold is written BEFORE the key is activated, and that write is the commit point:
a key is free only while it has no hold. Picking a key and writing its hold happen under a per-set lock
(`CheckoutSets.locked`) that is never held across a provider call; every other change of a hold (revoke,
the retrier, the sweep, the rollback, a set write) takes the same lock, re-reads the hold, and acts only if
it still carries the check-out id it expects. The lock is the framework's `CallLock`, which a call may hold
across storage calls: on the plugin's hub a call that waits for it is suspended, not the hub. Only the active
node checks out (a standby forwards the read), so one process's lock covers every check-out of the mount.

Order of a check-out: WAL entry (`PendingCheckout`, naming the check-out id) -> hold (checked out) ->
activate at Anthropic -> response -> WAL entry deleted. A process killed in between leaves the WAL entry:
the rollback finds the hold by check-out id and deactivates the key. A check-out whose activation failed in
a way that may still have activated the key leaves the hold awaiting deactivation.

Deactivation is never left to chance. A revoke deactivates the key; if that fails, the hold turns into
"deactivating" BEFORE the answer, and the retrier here (one thread, like the deletion queue: 1, 2, 4, 8, then
every 10 s, +/- 20 %) tries until the key is inactive; only then is it free. A revoke of an ended lease is
answered "revoked" (the key is the engine's to deactivate); a revoke of a running lease is answered with a
retryable error while the key is still active, so a sync revoke never reports success early.

The sweep (`sweep`, from the engine's periodic sweep) deactivates any key of a set that is active at
Anthropic with no hold, and frees keys whose lease max (+ grace) has passed.
"""

from __future__ import annotations

import logging
import random
import secrets
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import unquote

from vaultplugin.framework import (
    BadRequest,
    CodedError,
    LeaseInfo,
    UpstreamError,
    VaultError,
    delete_wal,
    get_json,
    list_leaves,
    put_json,
    put_wal,
)
from vaultplugin.framework.fields import NAME_RE
from vaultplugin.framework.runtime import CallLock

from llmsecrets import connections, errors
from llmsecrets.connections import UnusableConnection, check_header_value
from llmsecrets.deletions import describe
from llmsecrets.leases import lease_ended
from llmsecrets.models import (
    HOLDS_PREFIX,
    SETS_PREFIX,
    CheckoutSet,
    ConnectionConfig,
    HoldState,
    KeyHold,
    PendingCheckout,
    RecordError,
    WalKind,
)
from llmsecrets.providers.anthropic import ACTIVE, INACTIVE, AnthropicClient, hint_matches
from llmsecrets.providers.errors import (
    ProviderAuthError,
    ProviderCallCancelled,
    ProviderError,
    ProviderNotFound,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
)
from llmsecrets.retrier import Retrier

if TYPE_CHECKING:
    from vaultplugin.framework import Storage

    from llmsecrets.backend import LLMBackend

log = logging.getLogger(__name__)

_T = TypeVar("_T")

SECRET_TYPE = "llm_anthropic_checkout"  # noqa: S105 - a type name, not a password
# Used only when the host reports no lease TTLs at all (never in a real Vault).
FALLBACK_MAX_TTL = 86400
FALLBACK_TTL = 3600
# Retry schedule of a key awaiting deactivation: FIRST_RETRY * 2**n seconds, at most RETRY_CAP, +/- JITTER.
FIRST_RETRY = 1.0
RETRY_CAP = 10.0
JITTER = 0.2
# One provider call of the retrier or the sweep may take this long, its own retries included.
ATTEMPT_SECONDS = 10.0
KEY_ID_RE = NAME_RE
MAX_KEY_VALUE = 512
MAX_KEYS = 1000


class InvalidSet(ValueError):
    """A set write breaks a rule; the message names the field and says what to fix."""


class SetInUse(Exception):
    """The set (or the keys a write would remove) is held by leases or awaits deactivation."""


@dataclass(frozen=True)
class CheckedOut:
    """What a check-out hands the path: the response data (with the key's value), the lease's internal data,
    and its TTLs."""

    data: dict[str, Any] = field(repr=False)
    internal: dict[str, Any]
    ttl: int
    max_ttl: int


@dataclass
class SweepResult:
    """What the sweep did to the keys of sets (ids only)."""

    deactivated: list[dict[str, str]] = field(default_factory=list)
    freed: list[dict[str, str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    sets_checked: int = 0


# --- records -----------------------------------------------------------------------------------------------


def get_set(storage: Storage, name: str) -> CheckoutSet | None:
    raw = get_json(storage, CheckoutSet.storage_key(name))
    if raw is None:
        return None
    try:
        return CheckoutSet.from_storage(raw)
    except RecordError as exc:
        log.error("stored set %s is unreadable: %s", name, exc)
        raise VaultError(f"stored set {name!r} is unreadable; see the plugin's log") from None


def set_names(storage: Storage) -> list[str]:
    return sorted(list_leaves(storage, SETS_PREFIX))


def read_hold(storage: Storage, set_name: str, key_id: str) -> KeyHold | None:
    key = KeyHold.storage_key(set_name, key_id)
    raw = get_json(storage, key)
    if raw is None:
        return None
    try:
        return KeyHold.from_storage(raw)
    except RecordError as exc:
        # Unreadable: the key counts as held (never lent out) until an operator looks.
        log.error("hold %s is unreadable: %s", key, exc)
        return KeyHold(set_name, key_id, HoldState.UNUSABLE.value, "", 0.0, last_error="unreadable record")


def held_ids(storage: Storage, set_name: str) -> set[str]:
    """Ids of the set's keys that have a hold (one storage list)."""
    return {unquote(leaf) for leaf in list_leaves(storage, f"{HOLDS_PREFIX}{set_name}/")}


def holds_of(storage: Storage, set_name: str) -> dict[str, KeyHold]:
    out: dict[str, KeyHold] = {}
    for key_id in sorted(held_ids(storage, set_name)):
        hold = read_hold(storage, set_name, key_id)
        if hold is not None:
            out[key_id] = hold
    return out


def busy_keys(storage: Storage, connection: str) -> int:
    """How many keys of the sets on `connection` are checked out or await deactivation (it switches them)."""
    count = 0
    for name in set_names(storage):
        s = get_set(storage, name)
        if s is not None and s.connection == connection:
            count += sum(h.state != HoldState.UNUSABLE for h in holds_of(storage, name).values())
    return count


def _iso(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def view(s: CheckoutSet, holds: Mapping[str, KeyHold]) -> dict[str, Any]:
    """What a read shows: ids and states, never a key's value."""
    keys: list[dict[str, Any]] = []
    counts = {"free": 0, **{state.value: 0 for state in HoldState}}
    for key_id in sorted(s.keys):
        hold = holds.get(key_id)
        if hold is None:
            counts["free"] += 1
            keys.append({"key_id": key_id, "state": "free"})
            continue
        counts[hold.state] = counts.get(hold.state, 0) + 1
        entry: dict[str, Any] = {"key_id": key_id, "state": hold.state, "since": _iso(hold.since)}
        if hold.state == HoldState.CHECKED_OUT:
            entry["lease_ends_at"] = _iso(hold.lease_ends_at)
            entry["lease_max_at"] = _iso(hold.lease_max_at)
        else:
            entry["reason"] = hold.reason
            entry["attempts"] = hold.attempts
            entry["last_error"] = hold.last_error
            if hold.state == HoldState.DEACTIVATING:
                entry["next_attempt_at"] = _iso(hold.next_attempt_at)
        keys.append(entry)
    return {
        "connection": s.connection,
        "ttl": s.ttl,
        "max_ttl": s.max_ttl,
        "keys": keys,
        "key_count": len(s.keys),
        "free": counts["free"],
        "checked_out": counts[HoldState.CHECKED_OUT.value],
        "deactivating": counts[HoldState.DEACTIVATING.value],
        "unusable": counts[HoldState.UNUSABLE.value],
    }


# --- set writes --------------------------------------------------------------------------------------------


def merge(
    name: str,
    existing: CheckoutSet | None,
    update: Mapping[str, Any],
    *,
    held: Mapping[str, KeyHold],
    mount_max_ttl: int,
) -> CheckoutSet:
    """The set after writing `update` (the fields sent: connection, ttl, max_ttl (seconds), keys / add_keys
    (maps id -> value), remove_keys (ids)) over `existing`. `held` are the set's holds now. InvalidSet names
    what is wrong; SetInUse when the write would drop or re-point keys that leases hold."""
    connection: str | None = update.get("connection")
    if connection is not None:
        connection = connection.strip()
        if not NAME_RE.fullmatch(connection):
            raise InvalidSet('"connection" must be the name of a connection (config/<name>)')
    elif existing is not None:
        connection = existing.connection
    else:
        raise InvalidSet('missing required field "connection" (an anthropic connection, config/<name>)')
    busy = {k: h for k, h in held.items() if h.state != HoldState.UNUSABLE}
    if existing is not None and connection != existing.connection and busy:
        raise SetInUse(
            f'"connection" cannot change while {len(busy)} key(s) of set {name!r} are checked out or await '
            "deactivation: their leases end through the current connection"
        )

    ttl = int(update.get("ttl", existing.ttl if existing else 0))
    max_ttl = int(update.get("max_ttl", existing.max_ttl if existing else 0))
    if ttl < 0 or max_ttl < 0:
        raise InvalidSet('"ttl" and "max_ttl" must not be negative')
    if ttl and max_ttl and ttl > max_ttl:
        raise InvalidSet(f'"ttl" ({ttl}s) must not exceed "max_ttl" ({max_ttl}s)')
    if mount_max_ttl > 0 and max_ttl > mount_max_ttl:
        raise InvalidSet(f'"max_ttl" ({max_ttl}s) exceeds the mount\'s max lease TTL ({mount_max_ttl}s)')

    replace_all: Mapping[str, str] | None = update.get("keys")
    add: Mapping[str, str] = update.get("add_keys") or {}
    remove: Iterable[str] = update.get("remove_keys") or ()
    if replace_all is not None and (add or remove):
        raise InvalidSet('send either "keys" (the whole set) or "add_keys"/"remove_keys", not both')
    keys = dict(existing.keys) if existing is not None else {}
    if replace_all is not None:
        new = {k.strip(): v.strip() for k, v in replace_all.items()}
        for key_id, value in new.items():
            if key_id in keys and keys[key_id] != value:
                raise InvalidSet(
                    f"key {key_id!r} is already in the set with another value; a key's value never changes "
                    "at Anthropic: remove it and add the new key under its own id"
                )
        dropped = set(keys) - set(new)
        keys = new
    else:
        dropped = set()
        for key_id in (r.strip() for r in remove):
            if key_id not in keys:
                raise InvalidSet(f'"remove_keys": key {key_id!r} is not in set {name!r}')
            dropped.add(key_id)
            del keys[key_id]
        for raw_id, raw_value in add.items():
            key_id, value = raw_id.strip(), raw_value.strip()
            if key_id in keys and keys[key_id] != value:
                raise InvalidSet(
                    f"key {key_id!r} is already in the set with another value; remove it first (a key's "
                    "value never changes at Anthropic)"
                )
            keys[key_id] = value
    in_use = sorted(k for k in dropped if k in busy)
    if in_use:
        raise SetInUse(
            f"key(s) {', '.join(in_use)} of set {name!r} are checked out or await deactivation: revoke their "
            "leases (or wait for the deactivation) before removing them"
        )
    _check_keys(keys)
    return CheckoutSet(name=name, connection=connection, keys=keys, ttl=ttl, max_ttl=max_ttl)


def _check_keys(keys: Mapping[str, str]) -> None:
    if len(keys) > MAX_KEYS:
        raise InvalidSet(f"a set holds at most {MAX_KEYS} keys")
    seen: dict[str, str] = {}
    for key_id, value in keys.items():
        if not KEY_ID_RE.fullmatch(key_id):
            raise InvalidSet(f"key id {key_id[:40]!r} is not an Anthropic key id (e.g. apikey_01Rj2N8S...)")
        if not value:
            raise InvalidSet(f"key {key_id!r} has an empty value")
        if len(value) > MAX_KEY_VALUE:
            raise InvalidSet(f"the value of key {key_id!r} is longer than {MAX_KEY_VALUE} characters")
        try:
            check_header_value(f"the value of key {key_id}", value)
        except ValueError as exc:
            raise InvalidSet(str(exc)) from None
        if value in seen:
            raise InvalidSet(
                f"keys {seen[value]!r} and {key_id!r} have the same value; each id has its own key"
            )
        seen[value] = key_id


def set_connection(
    b: LLMBackend, storage: Storage, s: CheckoutSet
) -> tuple[ConnectionConfig, AnthropicClient]:
    """The set's connection and its client. InvalidSet when it is missing or not a check-out provider."""
    conn = b.connection(storage, s.connection)
    if conn is None:
        raise InvalidSet(
            f"set {s.name!r} uses connection {s.connection!r}, which does not exist: write "
            f"config/{s.connection} (provider=anthropic) or point the set at another connection"
        )
    try:
        client = connections.client(b, conn)
    except UnusableConnection as exc:
        raise InvalidSet(str(exc)) from None
    if not client.capabilities.checkout_only or not isinstance(client, AnthropicClient):
        raise InvalidSet(
            f"connection {conn.name!r} is a {conn.provider} connection, which mints a key per lease: use "
            "roles/<name> and creds/<role> with it. Check-out sets are for anthropic connections"
        )
    return conn, client


def write(
    b: LLMBackend, storage: Storage, name: str, update: Mapping[str, Any], *, verify: bool
) -> CheckoutSet:
    """Merge `update` into the stored set and store it. With `verify`, every key it adds is looked up at
    Anthropic first (it must exist, be usable, and its value fit the key's hint) and made inactive: a key at
    rest in a set is never active. Raises InvalidSet, SetInUse, or the ProviderError of a lookup; nothing is
    stored then."""
    mount_max = int(b.system.max_lease_ttl())
    existing = get_set(storage, name)
    draft = merge(name, existing, update, held=holds_of(storage, name), mount_max_ttl=mount_max)
    conn, client = set_connection(b, storage, draft)
    added = {k: v for k, v in draft.keys.items() if existing is None or k not in existing.keys}
    if verify:
        for key_id, value in sorted(added.items()):
            _adopt(b, client, conn, key_id, value)

    def commit() -> CheckoutSet:
        # Again under the lock, on fresh state: a check-out or another write may have run meanwhile.
        fresh = merge(
            name, get_set(storage, name), update, held=holds_of(storage, name), mount_max_ttl=mount_max
        )
        put_json(storage, CheckoutSet.storage_key(name), fresh.to_storage())
        for key_id in set(existing.keys if existing else ()) - set(fresh.keys):
            storage.delete(KeyHold.storage_key(name, key_id))  # only unusable holds can be left here
        return fresh

    stored = b.sets.locked(name, commit)
    log.info(
        "set written: set=%s connection=%s keys=%d added=%d verified=%s",
        name,
        stored.connection,
        len(stored.keys),
        len(added),
        verify,
    )
    return stored


def _adopt(b: LLMBackend, client: AnthropicClient, conn: ConnectionConfig, key_id: str, value: str) -> None:
    """Check one key being added to a set, and make it inactive."""
    if value == conn.admin_key:
        raise InvalidSet(f"the value of key {key_id!r} is the connection's admin key, not an API key")
    try:
        key = client.get_key(key_id, deadline=b.deadline())
    except ProviderNotFound as exc:
        if exc.api_error:
            raise InvalidSet(
                f"key {key_id!r} does not exist in the organization of connection {conn.name!r}; use the id "
                "Anthropic's console shows for the key (apikey_...)"
            ) from None
        raise
    if not key.usable and key.status != INACTIVE:
        raise InvalidSet(f"key {key_id!r} is {key.status} at Anthropic and can never be activated again")
    if key.partial_key_hint and hint_matches(key.partial_key_hint, value) is False:
        raise InvalidSet(
            f"the value given for key {key_id!r} does not match that key's hint at Anthropic "
            f"({key.partial_key_hint}): the id and the value belong to different keys"
        )
    if key.status == ACTIVE:
        client.set_status(key_id, INACTIVE, deadline=b.deadline())
        log.info("set write: deactivated key %s (a key at rest in a set is inactive)", key_id)


def delete(b: LLMBackend, storage: Storage, name: str) -> None:
    """Delete the set (nothing if there is none). SetInUse while a key is checked out or awaits
    deactivation. The keys stay as they are at Anthropic (inactive)."""

    def commit() -> None:
        holds = holds_of(storage, name)
        busy = sorted(k for k, h in holds.items() if h.state != HoldState.UNUSABLE)
        if busy:
            raise SetInUse(
                f"set {name!r} still has {len(busy)} key(s) checked out or awaiting deactivation "
                f"({', '.join(busy[:5])}): revoke their leases first"
            )
        for key_id in holds:
            storage.delete(KeyHold.storage_key(name, key_id))
        storage.delete(CheckoutSet.storage_key(name))

    b.sets.locked(name, commit)
    log.info("set deleted: set=%s", name)


# --- check-out ---------------------------------------------------------------------------------------------


def lease_ttls(b: LLMBackend, s: CheckoutSet) -> tuple[int, int]:
    """(ttl, max_ttl): the set's, defaulting to and capped by the mount's."""
    if s.ttl and s.max_ttl:
        return min(s.ttl, s.max_ttl), s.max_ttl
    mount_default = int(b.system.default_lease_ttl())
    mount_max = int(b.system.max_lease_ttl())
    max_ttl = s.max_ttl or mount_max
    if mount_max > 0:
        max_ttl = min(max_ttl, mount_max)
    if max_ttl <= 0:
        max_ttl = FALLBACK_MAX_TTL
    ttl = s.ttl or mount_default or FALLBACK_TTL
    return min(ttl, max_ttl), max_ttl


def check_out(b: LLMBackend, storage: Storage, set_name: str) -> CheckedOut:
    """Lend one free key of the set: hold it, activate it, and say what the lease needs."""
    s = get_set(storage, set_name)
    if s is None:
        raise BadRequest(f"unknown set {set_name!r}: write sets/{set_name} first")
    try:
        conn, client = set_connection(b, storage, s)
    except InvalidSet as exc:
        raise BadRequest(str(exc)) from None
    ttl, max_ttl = lease_ttls(b, s)
    now = b.clock()
    checkout_id = str(uuid.uuid4())
    pending = PendingCheckout(set_name=s.name, connection=conn.name, checkout_id=checkout_id, created_at=now)
    wal_id = put_wal(storage, WalKind.CHECKOUT_KEY, pending.to_wal(), created_at=now)
    b.sets.begin(checkout_id)
    try:
        try:
            hold, value = b.sets.locked(
                set_name,
                lambda: _pick(b, storage, set_name, checkout_id=checkout_id, ttl=ttl, max_ttl=max_ttl),
            )
        except BaseException:
            delete_wal(storage, wal_id)  # nothing was held
            raise
        try:
            key = client.set_status(hold.key_id, ACTIVE, deadline=b.deadline())
        except ProviderError as exc:
            _activation_failed(b, storage, client, hold, exc)
            delete_wal(storage, wal_id)
            raise _checkout_error(exc, hold, conn.name) from None
    finally:
        b.sets.end(checkout_id)
    data = {
        "api_key": value,
        "key_id": hold.key_id,
        "key_name": key.name,
        "set": s.name,
        "connection": conn.name,
        "provider": conn.provider,
    }
    internal = {"set": s.name, "connection": conn.name, "key_id": hold.key_id, "checkout_id": checkout_id}
    delete_wal(storage, wal_id)
    log.info(
        "checked out key: set=%s key_id=%s checkout_id=%s ttl=%d max_ttl=%d",
        s.name,
        hold.key_id,
        checkout_id,
        ttl,
        max_ttl,
    )
    return CheckedOut(data=data, internal=internal, ttl=ttl, max_ttl=max_ttl)


def _pick(
    b: LLMBackend, storage: Storage, set_name: str, *, checkout_id: str, ttl: int, max_ttl: int
) -> tuple[KeyHold, str]:
    """Under the set's lock: a free key, held for `checkout_id` (the hold's write is the commit point)."""
    s = get_set(storage, set_name)
    if s is None:
        raise BadRequest(f"set {set_name!r} was deleted meanwhile")
    held = held_ids(storage, set_name)
    free = sorted(k for k in s.keys if k not in held)
    if not free:
        raise _exhausted(storage, s, held)
    key_id = secrets.choice(free)  # spread use over the keys
    now = b.clock()
    hold = KeyHold(
        set_name=set_name,
        key_id=key_id,
        state=HoldState.CHECKED_OUT.value,
        checkout_id=checkout_id,
        since=now,
        ttl=ttl,
        lease_ends_at=now + ttl,
        lease_max_at=now + max_ttl,
        reason="lease",
    )
    put_json(storage, hold.key, hold.to_storage())
    return hold, s.keys[key_id]


def _exhausted(storage: Storage, s: CheckoutSet, held: set[str]) -> VaultError:
    states: dict[str, int] = {}
    for key_id in held & set(s.keys):
        hold = read_hold(storage, s.name, key_id)
        if hold is not None:
            states[hold.state] = states.get(hold.state, 0) + 1
    if not s.keys:
        return BadRequest(f"set {s.name!r} has no keys: add some (sets/{s.name} add_keys=...)")
    return CodedError(
        429,
        f"set {s.name!r} has no free key: {states.get(HoldState.CHECKED_OUT.value, 0)} of {len(s.keys)} "
        f"are checked out, {states.get(HoldState.DEACTIVATING.value, 0)} await deactivation and "
        f"{states.get(HoldState.UNUSABLE.value, 0)} are unusable. Try again when a lease ends, or add keys "
        "to the set",
    )


def _activation_failed(
    b: LLMBackend, storage: Storage, client: AnthropicClient, hold: KeyHold, exc: ProviderError
) -> None:
    """Settle the hold of a key whose activation failed: free it when the key provably stayed inactive,
    mark it unusable when Anthropic cannot activate it, else leave it awaiting deactivation."""
    not_done = (
        isinstance(exc, ProviderAuthError | ProviderRateLimited | ProviderRejected)
        or (isinstance(exc, ProviderUnavailable | ProviderCallCancelled) and not exc.sent)
        or (isinstance(exc, ProviderNotFound) and not exc.api_error)
    )
    unusable = isinstance(exc, ProviderNotFound) and exc.api_error
    if isinstance(exc, ProviderRejected):
        # Archived or expired keys cannot change status (400): look, so such a key is not picked again.
        try:
            unusable = not client.get_key(hold.key_id, deadline=b.deadline()).usable
        except ProviderNotFound as lookup:
            unusable = lookup.api_error
        except ProviderError:
            unusable = False
    now = b.clock()
    error = describe(exc)
    if unusable:
        new: KeyHold | None = replace(
            hold, state=HoldState.UNUSABLE.value, since=now, reason="activation refused", last_error=error
        )
    elif not_done:
        new = None
    else:
        new = _deactivating(hold, now, reason="activation failed", error=error, attempted=False)
    b.sets.transition(storage, hold, lambda _current: new)
    log.warning(
        "check-out failed: set=%s key_id=%s outcome=%s error=%s",
        hold.set_name,
        hold.key_id,
        "unusable" if unusable else "freed" if not_done else "awaiting deactivation",
        error,
    )
    if new is not None and new.state == HoldState.DEACTIVATING:
        b.sets.wake()


def _checkout_error(exc: ProviderError, hold: KeyHold, connection: str) -> VaultError:
    err = errors.for_request(exc, connection=connection, action=f"activating key {hold.key_id}")
    if isinstance(exc, ProviderNotFound | ProviderRejected):
        return BadRequest(
            f"{err.message}. The key is not lent out again until it is fixed: remove it from set "
            f"{hold.set_name!r} (remove_keys={hold.key_id}) if it was archived or deleted in the console"
        )
    return err


def _deactivating(hold: KeyHold, now: float, *, reason: str, error: str, attempted: bool = True) -> KeyHold:
    attempts = hold.attempts + int(attempted) if hold.state == HoldState.DEACTIVATING else int(attempted)
    return replace(
        hold,
        state=HoldState.DEACTIVATING.value,
        since=hold.since if hold.state == HoldState.DEACTIVATING else now,
        reason=hold.reason if hold.state == HoldState.DEACTIVATING else reason,
        attempts=attempts,
        last_error=error,
        last_attempt_at=now if attempted else hold.last_attempt_at,
        next_attempt_at=now + (_delay(attempts) if attempted else 0.0),
    )


def _delay(attempts: int) -> float:
    base = min(RETRY_CAP, FIRST_RETRY * 2.0 ** max(attempts - 1, 0))
    return base * random.uniform(1 - JITTER, 1 + JITTER)  # noqa: S311 - retry jitter, not security


# --- deactivation ------------------------------------------------------------------------------------------


def ensure_inactive(client: AnthropicClient, key_id: str, *, deadline: float) -> None:
    """Make sure the key cannot authenticate: set it inactive. A refusal (400, 404) counts as done only when
    a fresh look shows the key gone, archived, expired or inactive; else it is raised."""
    try:
        client.set_status(key_id, INACTIVE, deadline=deadline)
    except (ProviderRejected, ProviderNotFound) as exc:
        if isinstance(exc, ProviderNotFound) and not exc.api_error:
            raise
        try:
            key = client.get_key(key_id, deadline=deadline)
        except ProviderNotFound as lookup:
            if lookup.api_error:
                return  # gone: nobody can use it
            raise exc from None
        except ProviderError:
            raise exc from None
        if key.usable:
            raise


def _client_for_hold(
    b: LLMBackend, storage: Storage, hold: KeyHold
) -> tuple[ConnectionConfig, AnthropicClient]:
    """The client that deactivates a held key; VaultError (retryable) that says what is missing."""
    s = get_set(storage, hold.set_name)
    if s is None:
        raise VaultError(f"set {hold.set_name!r} no longer exists: cannot deactivate key {hold.key_id}")
    try:
        return set_connection(b, storage, s)
    except InvalidSet as exc:
        raise VaultError(f"cannot deactivate key {hold.key_id} of set {hold.set_name!r}: {exc}") from None


def deactivate_now(
    b: LLMBackend,
    storage: Storage,
    hold: KeyHold,
    *,
    reason: str,
    vault_waiting: bool = False,
    seconds: float | None = None,
) -> str:
    """Deactivate a held key now and free it; on failure leave the hold awaiting deactivation (written before
    this returns) and return the error ("" on success). Storage failures are raised."""
    try:
        _, client = _client_for_hold(b, storage, hold)
        ensure_inactive(client, hold.key_id, deadline=b.deadline(seconds))
    except (ProviderError, VaultError) as exc:
        error = describe(exc) if isinstance(exc, ProviderError) else exc.message

        def failed(current: KeyHold) -> KeyHold:
            new = _deactivating(current, b.clock(), reason=reason, error=error)
            return replace(new, vault_waiting=new.vault_waiting or vault_waiting)

        b.sets.transition(storage, hold, failed)
        b.sets.wake()
        return error
    b.sets.transition(storage, hold, lambda _current: None)
    return ""


# --- renew and revoke --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LeaseKey:
    """What a check-out lease's internal data names."""

    set_name: str
    connection: str
    key_id: str
    checkout_id: str

    @classmethod
    def from_internal(cls, data: Mapping[str, Any]) -> LeaseKey:
        values = [data.get(k) for k in ("set", "connection", "key_id", "checkout_id")]
        if not all(isinstance(v, str) and v for v in values):
            # Retryable on purpose: an operator can still `bao lease revoke -force` it.
            raise VaultError("this lease's internal data is not what the engine wrote for a check-out")
        set_name, connection, key_id, checkout_id = (str(v) for v in values)
        return cls(set_name, connection, key_id, checkout_id)


def renew(b: LLMBackend, storage: Storage, lease: LeaseInfo) -> float:
    """The lease's new TTL (seconds), never past the set's max TTL from the check-out. BadRequest when the key
    is no longer this lease's."""
    ref = LeaseKey.from_internal(lease.internal_data)
    hold = read_hold(storage, ref.set_name, ref.key_id)
    if hold is None or hold.checkout_id != ref.checkout_id or hold.state != HoldState.CHECKED_OUT:
        raise BadRequest(
            f"key {ref.key_id} of set {ref.set_name!r} is no longer checked out by this lease (revoked or "
            "reclaimed by the sweep); read creds again"
        )
    now = b.clock()
    remaining = (hold.lease_max_at or now) - now
    if remaining <= 0:
        raise BadRequest("the lease has reached the set's max TTL; read creds again for a key")
    new_ttl = min(float(lease.increment or hold.ttl), remaining)
    b.sets.transition(storage, hold, lambda current: replace(current, lease_ends_at=now + new_ttl))
    return new_ttl


def revoke(b: LLMBackend, storage: Storage, lease: LeaseInfo, *, mount_point: str) -> None:
    """Deactivate the lease's key and free it (see the module's doc for the contract)."""
    ref = LeaseKey.from_internal(lease.internal_data)
    hold = read_hold(storage, ref.set_name, ref.key_id)
    if hold is None or hold.checkout_id != ref.checkout_id or hold.state == HoldState.UNUSABLE:
        log.info("revoked check-out (key already returned): set=%s key_id=%s", ref.set_name, ref.key_id)
        return
    ended = lease_ended(lease, b.clock())
    if hold.state == HoldState.DEACTIVATING and ended:
        return  # the retrier owns it; Vault's part is over
    error = deactivate_now(
        b, storage, hold, reason="revoke" if not ended else "lease ended", vault_waiting=not ended
    )
    if not error:
        log.info(
            "revoked check-out: set=%s key_id=%s checkout_id=%s", ref.set_name, ref.key_id, ref.checkout_id
        )
        return
    if ended:
        log.warning(
            "revoke of an ended check-out: deactivation failed, the key awaits deactivation and Vault is "
            "told the lease is revoked: set=%s key_id=%s error=%s",
            ref.set_name,
            ref.key_id,
            error,
        )
        return
    where = f"{mount_point.rstrip('/')}/sets/{ref.set_name}" if mount_point else f"sets/{ref.set_name}"
    raise UpstreamError(
        f"deactivating key {ref.key_id} of set {ref.set_name!r} failed ({error}). The key is still active; "
        f"the engine retries every few seconds (bao read {where}) and lends it to no one until it is "
        "inactive. Vault retries this revoke too"
    )


# --- the sets service: locks, in-flight check-outs, the deactivation retrier -------------------------------


class CheckoutSets:
    """Per-set locks, the check-outs in flight in this process, and the retrier of deactivations."""

    def __init__(self, b: LLMBackend, *, background: bool = True) -> None:
        self._b = b
        self._background = background
        self._guard = threading.Lock()  # guards the fields below; never held across any call
        self._locks: dict[str, CallLock] = {}
        self._in_flight: set[str] = set()
        self._retrier = Retrier(
            "llm-deactivations",
            self._pass_and_next_due,
            may_act=b.provider_actions_allowed,
            failure_pause=RETRY_CAP,
        )
        self._pass_lock = threading.Lock()

    # --- locks

    def locked(self, set_name: str, fn: Callable[[], _T]) -> _T:
        """`fn()` under the set's lock, which `fn` may hold across calls to Vault (a `CallLock`: on the hub a
        call that waits for it is suspended, not the hub). Never call a provider inside `fn`."""
        with self._guard:
            lock = self._locks.setdefault(set_name, CallLock())
        with lock:
            return fn()

    def transition(
        self, storage: Storage, hold: KeyHold, change: Callable[[KeyHold], KeyHold | None]
    ) -> bool:
        """Under the set's lock: if the key's hold still carries `hold.checkout_id`, replace it with
        `change(current)` (None frees the key). False when the hold changed meanwhile (nothing written)."""

        def run() -> bool:
            current = read_hold(storage, hold.set_name, hold.key_id)
            if current is None or current.checkout_id != hold.checkout_id:
                return False
            new = change(current)
            if new is None:
                storage.delete(current.key)
            else:
                put_json(storage, new.key, new.to_storage())
            return True

        return self.locked(hold.set_name, run)

    def begin(self, checkout_id: str) -> None:
        with self._guard:
            self._in_flight.add(checkout_id)

    def end(self, checkout_id: str) -> None:
        with self._guard:
            self._in_flight.discard(checkout_id)

    def in_flight(self, checkout_id: str) -> bool:
        with self._guard:
            return checkout_id in self._in_flight

    # --- the retrier's life

    def start(self, storage: Storage) -> None:
        if self._background:
            self._retrier.start(storage)

    def tick(self, storage: Storage) -> None:
        """Vault's rollback tick: keep the retrier alive; without a thread run one pass here."""
        self.start(storage)
        if not self._background:
            self.run_pass(storage)

    def wake(self) -> None:
        self._retrier.wake()

    def stop(self) -> None:
        self._retrier.stop()

    def _pass_and_next_due(self, storage: Storage) -> float | None:
        due = self.run_pass(storage)
        return None if due is None else due - self._b.clock()

    def run_pass(self, storage: Storage) -> float | None:
        """Try every key awaiting deactivation that is due; return when the next one is due (None: none
        waits). Skipped if a pass is running."""
        if not self._pass_lock.acquire(blocking=False):
            return None
        try:
            if not self._b.provider_actions_allowed(storage):
                return None
            next_due: float | None = None
            for set_folder in storage.list(HOLDS_PREFIX):
                if not set_folder.endswith("/"):
                    continue
                set_name = set_folder[:-1]
                for key_id in sorted(held_ids(storage, set_name)):
                    hold = read_hold(storage, set_name, key_id)
                    if hold is None or hold.state != HoldState.DEACTIVATING:
                        continue
                    due = hold.next_attempt_at or 0.0
                    if due <= self._b.clock():
                        if not self._attempt(storage, hold):
                            fresh = read_hold(storage, set_name, key_id)
                            due = (fresh.next_attempt_at or 0.0) if fresh is not None else 0.0
                        else:
                            continue
                    next_due = due if next_due is None else min(next_due, due)
            return next_due
        finally:
            self._pass_lock.release()

    def _attempt(self, storage: Storage, hold: KeyHold) -> bool:
        now = self._b.clock()
        # On record before the provider sees it: on a read-only (standby) node this write fails first.
        claimed = self.transition(storage, hold, lambda current: replace(current, last_attempt_at=now))
        if not claimed:
            return True  # settled meanwhile
        error = deactivate_now(self._b, storage, hold, reason=hold.reason, seconds=ATTEMPT_SECONDS)
        if error:
            log.warning(
                "deactivation retry failed: set=%s key_id=%s attempts=%d error=%s",
                hold.set_name,
                hold.key_id,
                hold.attempts + 1,
                error,
            )
            return False
        log.info(
            "deactivated a key that was awaiting deactivation: set=%s key_id=%s attempts=%d waited=%.1fs",
            hold.set_name,
            hold.key_id,
            hold.attempts + 1,
            now - hold.since,
        )
        return True


# --- sweep and rollback ------------------------------------------------------------------------------------


def sweep(b: LLMBackend, storage: Storage, *, now: float, expired_grace: float) -> SweepResult:
    """For every set: deactivate keys active at Anthropic with no hold, and reclaim keys whose lease max (+
    grace) has passed. A key that cannot be deactivated now awaits deactivation (the retrier takes it)."""
    result = SweepResult()
    for name in set_names(storage):
        try:
            s = get_set(storage, name)
            if s is None:
                continue
            _, client = set_connection(b, storage, s)
            active = {k.key_id for k in client.list_keys(status=ACTIVE, deadline=b.deadline())}
        except (InvalidSet, VaultError) as exc:
            result.failures.append(f"set {name!r}: {exc}")
            continue
        except ProviderError as exc:
            result.failures.append(f"set {name!r}: listing active keys: {exc}")
            continue
        result.sets_checked += 1
        holds = holds_of(storage, name)
        for key_id in sorted(s.keys):
            hold = holds.get(key_id)
            if hold is None and key_id in active:
                _sweep_key(b, storage, s, key_id, hold=None, why="active without a lease", result=result)
            elif (
                hold is not None
                and hold.state == HoldState.CHECKED_OUT
                and hold.lease_max_at is not None
                and now > hold.lease_max_at + expired_grace
                and not b.sets.in_flight(hold.checkout_id)
            ):
                _sweep_key(b, storage, s, key_id, hold=hold, why="lease max passed", result=result)
    return result


def _sweep_key(
    b: LLMBackend,
    storage: Storage,
    s: CheckoutSet,
    key_id: str,
    *,
    hold: KeyHold | None,
    why: str,
    result: SweepResult,
) -> None:
    now = b.clock()
    marker = KeyHold(s.name, key_id, HoldState.DEACTIVATING.value, f"sweep-{uuid.uuid4()}", now, reason=why)

    def mark() -> KeyHold | None:
        current = read_hold(storage, s.name, key_id)
        if hold is None:
            if current is not None:
                return None  # checked out meanwhile: its lease owns it
            put_json(storage, marker.key, marker.to_storage())
            return marker
        if current is None or current.checkout_id != hold.checkout_id or current.state != hold.state:
            return None
        moved = replace(
            current, state=HoldState.DEACTIVATING.value, since=now, reason=why, next_attempt_at=now
        )
        put_json(storage, moved.key, moved.to_storage())
        return moved

    marked = b.sets.locked(s.name, mark)
    if marked is None:
        return
    error = deactivate_now(b, storage, marked, reason=why)
    entry = {"set": s.name, "key_id": key_id, "why": why}
    if error:
        result.failures.append(f"set {s.name!r}: deactivating key {key_id} ({why}): {error} (retried)")
        return
    (result.freed if hold is not None else result.deactivated).append(entry)
    log.info("sweep deactivated a key of a set: set=%s key_id=%s why=%s", s.name, key_id, why)


def rollback_wal(b: LLMBackend, storage: Storage, data: dict[str, Any]) -> None:
    """The WAL rollback of `WalKind.CHECKOUT_KEY` (rollback.py hands its entries here)."""
    rollback(b, storage, PendingCheckout.from_wal(data))


def rollback(b: LLMBackend, storage: Storage, pending: PendingCheckout) -> None:
    """Settle an interrupted check-out: its key (found by check-out id) is deactivated and freed. A key that
    cannot be deactivated now is left awaiting deactivation (the retrier takes it), so the entry is done."""
    if b.sets.in_flight(pending.checkout_id):
        raise VaultError("the check-out is still under way in this process")
    if get_set(storage, pending.set_name) is None:
        return
    for hold in holds_of(storage, pending.set_name).values():
        if hold.checkout_id != pending.checkout_id or hold.state != HoldState.CHECKED_OUT:
            continue
        error = deactivate_now(b, storage, hold, reason="interrupted check-out")
        log.warning(
            "rolled back an interrupted check-out: set=%s key_id=%s deactivated=%s%s",
            hold.set_name,
            hold.key_id,
            not error,
            f" error={error}" if error else "",
        )
        return
