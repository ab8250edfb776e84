"""Admin-key rotation: a connection's admin key replaced by a new one the provider makes, without downtime.

Where the provider's admin API makes admin keys (`providers.base.AdminKeyRotation`: OpenAI's organization
admin API keys; a LiteLLM proxy's virtual keys of a proxy_admin user, but not its master key, which lives in
the proxy's config), `rotate` works in two phases:

1. a WAL entry (`PendingAdminKey`: the new key's unique name) is written BEFORE the provider creates the new
   key; the key is checked with a harmless call through a new client; then the old key's client is set
   aside (`ClientCache.retire`), the connection is stored with the new key as current and the old key's id
   as `previous_admin_key_id` with a deadline (`previous_delete_by` = now + `rotation_overlap`), and the WAL
   entry is deleted. A new key that fails its check is deleted again (with the old key) and nothing changes.
2. the old key is deleted at the provider, by id, with the new key, once no call made with it is in flight
   and none was handed out for `SETTLE_SECONDS` (a thread started by the rotation polls for that), or at the
   deadline whatever is in flight. Then `previous_admin_key_id` is cleared.

A crash leaves neither two live admin keys for ever nor none:
- before the new key is stored: the WAL rollback (`settle`) finds the new key by name and deletes it
  (unless the connection already uses it: then the rotation had finished and only the entry is dropped);
- after: the stored connection still names the old key; the new plugin process deletes it when Vault
  initializes it (`resume`), and the periodic tick (`periodic`, on the active node) is the backstop.
The old key's value is not kept anywhere: the new key deletes it by id.

Where the provider cannot make admin keys (OpenRouter management keys, made in its dashboard; xAI and
Fireworks, whose admin credentials the engine does not manage), `rotate` raises `RotationUnsupported`, whose
message says how to rotate by hand: write the new key to config/<name>, which checks it before it replaces
the old one.

`rotation_period` (seconds, 0 = off) makes `periodic` rotate a key older than that.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from vaultplugin.framework import delete_wal, put_wal

from llmsecrets import connections
from llmsecrets.connections import Unusable, UnusableConnection
from llmsecrets.models import ConnectionConfig, PendingAdminKey, WalKind
from llmsecrets.providers.base import AdminKeyRotation
from llmsecrets.providers.errors import CreateOutcomeUnknown, ProviderError

if TYPE_CHECKING:
    from vaultplugin.framework import Storage

    from llmsecrets.backend import LLMBackend

log = logging.getLogger(__name__)

# A client of the old key handed out this recently may be about to call: wait that long after the last one.
SETTLE_SECONDS = 2.0
# How often the thread of phase 2 looks whether the old key's calls are over.
POLL_SECONDS = 0.25
# Admin keys made by rotations are named `vault-admin-<8 hex>-<connection>-<unix time>-<4 hex>`: not under
# the mount's key prefix (`vault-<8 hex>-`), so the orphan sweep never takes one for a lost lease key.
ADMIN_KEY_NAME_START = "vault-admin-"

# (backend, connection) of the rotations running in this process.
_running: set[tuple[int, str]] = set()
_running_lock = threading.Lock()

# How to rotate by hand, for providers whose admin API cannot make admin keys.
BY_HAND = {
    "openrouter": "OpenRouter management keys are made in its dashboard only",
    "xai": "xAI management keys are made in the xAI console",
    "fireworks": "the engine does not manage the Fireworks admin's own API keys",
    "anthropic": "Anthropic admin keys are made in its console only",
}


class RotationError(Exception):
    """A rotation cannot start or finish; the message says why and what to do (a 400)."""


class RotationUnsupported(RotationError):
    """The provider's admin API cannot make admin keys."""


@dataclass(frozen=True)
class Rotated:
    """What a rotation did: the new key's id, the old key's id and when it is deleted at the latest."""

    connection: str
    admin_key_id: str
    previous_admin_key_id: str
    previous_delete_by: float


def by_hand(conn: ConnectionConfig, mount: str = "<mount>/") -> str:
    reason = BY_HAND.get(conn.provider, f"{conn.provider}'s admin API cannot make admin keys")
    return (
        f"connection {conn.name!r} ({conn.provider}) cannot rotate its admin key through the provider: "
        f"{reason}. Rotate it by hand: create a new key at the provider, write it with `bao write "
        f"{mount}config/{conn.name} admin_key=...` (the engine checks the new key before it replaces the old "
        "one; a key that fails the check changes nothing), then delete the old key at the provider"
    )


def _rotator(b: LLMBackend, conn: ConnectionConfig, mount: str = "<mount>/") -> AdminKeyRotation:
    client = connections.client(b, conn)
    if not isinstance(client, AdminKeyRotation):
        raise RotationUnsupported(by_hand(conn, mount))
    return client


def admin_key_name(b: LLMBackend, conn: ConnectionConfig, now: float) -> str:
    mount_hex = b.mount_prefix.removeprefix("vault-").rstrip("-")
    return f"{ADMIN_KEY_NAME_START}{mount_hex}-{conn.name}-{int(now)}-{secrets.token_hex(2)}"


# --- phase 1 -----------------------------------------------------------------------------------------------


def rotate(b: LLMBackend, storage: Storage, name: str, *, mount: str = "<mount>/") -> Rotated:
    """Replace the admin key of connection `name` (phase 1) and start phase 2. Raises RotationError (a 400:
    unsupported, unknown connection or old key id, a previous rotation still in its overlap or another one
    running), ProviderError from the provider, UnusableConnection for settings the provider layer refuses."""
    # Two rotations of one connection at once would each store their own new key, and the first one's would
    # be left alive. Only the active node rotates, so a lock in this process is enough; it is never waited
    # for (the rollback tick may run on the hub, where a wait would hold up every call).
    key = (id(b), name)
    with _running_lock:
        if key in _running:
            raise RotationError(f"connection {name!r}: a rotation of its admin key is running; try again")
        _running.add(key)
    try:
        return _rotate(b, storage, name, mount)
    finally:
        with _running_lock:
            _running.discard(key)


def _rotate(b: LLMBackend, storage: Storage, name: str, mount: str) -> Rotated:
    conn = b.connection(storage, name)
    if conn is None:
        raise RotationError(f"no connection {name!r}: write config/{name} first")
    client = _rotator(b, conn, mount)
    sharing = _sharing_the_admin_key(b, storage, conn)
    if sharing:
        others = ", ".join(repr(n) for n in sharing)
        raise RotationError(
            f"connection {name!r} shares its admin key with {others}: a rotation deletes the old key, which "
            "would stop those connections. Give each connection an admin key of its own first"
        )
    if conn.previous_admin_key_id is not None:
        if not due(b, conn) or not finish_previous(b, storage, conn):
            raise RotationError(
                f"connection {name!r}: the admin key replaced by the last rotation "
                f"({conn.previous_admin_key_id}) is not deleted yet (calls with it may still be in flight; "
                f"at the latest {conn.rotation_overlap} s after that rotation); rotate again after that"
            )
        conn = b.connection(storage, name) or conn
        client = _rotator(b, conn, mount)
    old_id = conn.admin_key_id or client.own_admin_key_id(deadline=b.deadline())
    if old_id is None and conn.provider == "litellm":
        raise RotationError(
            f"connection {name!r}: the stored admin key is not a virtual key the proxy stores (it is the "
            "master key, set in the proxy's config, which LiteLLM's API cannot delete), so the engine does "
            "not rotate it. Generate a virtual key for a user with the proxy_admin role (POST /key/generate "
            f'{{"user_id": "<admin user>"}}), write it with `bao write {mount}config/{name} admin_key=...`, '
            "and rotate from then on; keep the master key out of Vault"
        )
    if old_id is None:
        raise RotationError(
            f"connection {name!r}: cannot tell which of the {conn.provider} admin keys is the one stored, so "
            "it could not be deleted after the rotation. Write its id to the connection (bao write "
            f"{mount}config/{name} admin_key_id=<id>, as the provider lists it) and rotate again"
        )
    now = b.clock()
    pending = PendingAdminKey(conn.name, conn.provider, admin_key_name(b, conn, now), now)
    wal_id = put_wal(storage, WalKind.ROTATE_ADMIN_KEY, pending.to_wal(), created_at=now)
    try:
        issued = client.create_admin_key(pending.key_name, deadline=b.deadline())
    except CreateOutcomeUnknown:
        log.warning(
            "admin key create outcome unknown, left for WAL rollback: connection=%s name=%s",
            conn.name,
            pending.key_name,
        )
        raise
    except ProviderError:
        delete_wal(storage, wal_id)  # nothing was created
        raise
    new = replace(
        conn,
        admin_key=issued.api_key.reveal(),
        admin_key_id=issued.key_id,
        admin_key_rotated_at=now,
        previous_admin_key_id=old_id,
        previous_delete_by=now + conn.rotation_overlap,
    )
    try:
        connections.check(b, new)
    except (ProviderError, UnusableConnection) as exc:
        _discard(b, storage, client, conn, wal_id=wal_id, key_id=issued.key_id)
        raise RotationError(
            f"connection {name!r}: the new admin key failed its check ({exc}); it was deleted and the old "
            "key stays in use"
        ) from None
    b.clients.retire(conn)
    try:
        b.save_connection(storage, new)
    except Exception:
        _discard(b, storage, client, conn, wal_id=wal_id, key_id=issued.key_id)
        raise
    delete_wal(storage, wal_id)
    log.info(
        "admin key rotated: connection=%s new_key_id=%s old_key_id=%s old_key_deleted_by=+%ds",
        conn.name,
        issued.key_id,
        old_id,
        conn.rotation_overlap,
    )
    _retire_later(b, storage, conn.name, old_id)
    return Rotated(conn.name, issued.key_id, old_id, now + conn.rotation_overlap)


def _sharing_the_admin_key(b: LLMBackend, storage: Storage, conn: ConnectionConfig) -> list[str]:
    """The mount's other connections that hold the same admin key (a rotation would delete it under them)."""
    others = (b.connection(storage, n) for n in connections.names(storage) if n != conn.name)
    return [o.name for o in others if o is not None and o.admin_key == conn.admin_key]


def _discard(
    b: LLMBackend,
    storage: Storage,
    client: AdminKeyRotation,
    conn: ConnectionConfig,
    *,
    wal_id: str,
    key_id: str,
) -> None:
    """Delete a new admin key that will not be used (with the old key); if that fails the WAL entry stays
    and the rollback deletes it."""
    try:
        client.delete_admin_key(key_id, deadline=b.deadline())
    except ProviderError as exc:
        log.warning(
            "could not delete an unused new admin key, left for WAL rollback: connection=%s key_id=%s: %s",
            conn.name,
            key_id,
            exc,
        )
        return
    delete_wal(storage, wal_id)


# --- phase 2 -----------------------------------------------------------------------------------------------


def due(b: LLMBackend, conn: ConnectionConfig) -> bool:
    """May the old admin key of `conn` be deleted now: its calls are over, or its deadline has passed?"""
    if conn.previous_admin_key_id is None:
        return False
    if conn.previous_delete_by is not None and b.clock() >= conn.previous_delete_by:
        return True
    return b.clients.retired_idle(conn.name, SETTLE_SECONDS)


def finish_previous(b: LLMBackend, storage: Storage, conn: ConnectionConfig) -> bool:
    """Delete the old admin key of `conn` at the provider (with the current key) and forget it. True when it
    is gone; raises ProviderError / UnusableConnection / RotationUnsupported when it could not be deleted now
    (the next tick tries again)."""
    old_id = conn.previous_admin_key_id
    if old_id is None:
        return True
    if old_id != conn.admin_key_id:  # never the key in use (an admin_key_id written by mistake)
        existed = _rotator(b, conn).delete_admin_key(old_id, deadline=b.deadline())
        log.info(
            "old admin key %s: connection=%s key_id=%s",
            "deleted" if existed else "already gone",
            conn.name,
            old_id,
        )
    fresh = b.connection(storage, conn.name)
    if fresh is not None and fresh.previous_admin_key_id == old_id:
        b.save_connection(storage, replace(fresh, previous_admin_key_id=None, previous_delete_by=None))
    b.clients.release(conn.name)
    return True


def _retire_later(b: LLMBackend, storage: Storage, name: str, old_id: str) -> None:
    """Phase 2 as soon as it is due, on a thread of its own (the periodic tick is the backstop)."""

    def run() -> None:
        try:
            while True:
                conn = b.connection(storage, name)
                if conn is None or conn.previous_admin_key_id != old_id:
                    return  # done elsewhere (the tick), or the connection is gone
                if due(b, conn):
                    finish_previous(b, storage, conn)
                    return
                time.sleep(POLL_SECONDS)
        except Exception as exc:
            log.warning(
                "deleting the old admin key failed, the rollback tick retries: connection=%s key_id=%s: %s",
                name,
                old_id,
                exc,
            )

    threading.Thread(target=run, name=f"retire-admin-key-{name}", daemon=True).start()


# --- periodic work and WAL rollback ------------------------------------------------------------------------


def periodic(b: LLMBackend, storage: Storage) -> None:
    """The rollback tick (active node only): finish phase 2 where it is due, rotate keys older than their
    connection's rotation_period. One connection's failure does not stop the others."""
    for name in connections.names(storage):
        try:
            conn = b.connection(storage, name)
            if conn is None:
                continue
            if conn.previous_admin_key_id is not None:
                if due(b, conn):
                    finish_previous(b, storage, conn)
            elif conn.rotation_period > 0 and _older_than_period(b, conn):
                rotated = rotate(b, storage, name)
                log.info("periodic admin key rotation: connection=%s key_id=%s", name, rotated.admin_key_id)
        except Exception as exc:
            log.warning("admin key rotation work failed: connection=%s: %s", name, exc)


def resume(b: LLMBackend, storage: Storage) -> None:
    """A new plugin process (Vault's Initialize): start phase 2 of every rotation a crash interrupted after
    phase 1. Nothing of this process was ever in flight with an old key, so each is deleted at once."""
    try:
        names = connections.names(storage)
    except Exception as exc:
        log.warning("could not list connections to resume admin key rotations: %s", exc)
        return
    for name in names:
        try:
            conn = b.connection(storage, name)
        except Exception as exc:
            log.warning("could not read connection %s to resume its admin key rotation: %s", name, exc)
            continue
        if conn is not None and conn.previous_admin_key_id is not None:
            _retire_later(b, storage, name, conn.previous_admin_key_id)


def _older_than_period(b: LLMBackend, conn: ConnectionConfig) -> bool:
    set_at = conn.admin_key_rotated_at
    return set_at is not None and b.clock() - set_at >= conn.rotation_period


class RotationRollbackError(Exception):
    """An interrupted rotation cannot be settled now; the WAL entry is kept and retried."""


def settle(b: LLMBackend, storage: Storage, pending: PendingAdminKey) -> list[str]:
    """WAL rollback of a rotation interrupted in phase 1: delete every admin key named `pending.key_name`
    that the connection does not use. Returns the deleted ids; raises to keep the entry."""
    try:
        conn, _ = connections.client_for_keys(b, storage, pending.connection, pending.provider)
    except UnusableConnection as exc:
        if exc.why is Unusable.MISSING:
            raise RotationRollbackError(
                f"connection {pending.connection!r} no longer exists: cannot look for admin key "
                f"{pending.key_name!r}; write config/{pending.connection} again to let the rollback finish"
            ) from None
        raise RotationRollbackError(f"{exc}; cannot look for admin key {pending.key_name!r}") from None
    try:
        client = _rotator(b, conn)
    except RotationUnsupported as exc:
        raise RotationRollbackError(str(exc)) from None
    deleted: list[str] = []
    for key in client.find_admin_keys(pending.key_name, deadline=b.deadline()):
        if key.key_id == conn.admin_key_id:
            continue  # the rotation stored it before the crash: it is the key in use
        client.delete_admin_key(key.key_id, deadline=b.deadline())
        deleted.append(key.key_id)
    log.info(
        "rolled back an interrupted admin key rotation: connection=%s name=%s deleted=%d",
        pending.connection,
        pending.key_name,
        len(deleted),
    )
    return deleted
