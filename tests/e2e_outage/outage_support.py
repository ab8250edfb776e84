"""Helpers for the provider-outage suite: mounts on any registration of the engine, an outage of a provider's
admin API (every admin call answers 503; inference keeps working, so a live key visibly still works), the
deletion queue as an operator reads it, and timing of "the last key is gone".

A uniquely named module (not conftest), so test directories without __init__.py cannot shadow it.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devkit.bao import BaoServer
from engine_support import (
    PLUGIN_ENV,
    PLUGIN_NAME,
    PROVIDERS,
    BuiltEngine,
    EngineMount,
    Lease,
    Unmounter,
    VaultApi,
    new_admin_key,
    unique_mount_name,
)
from llm_emulators.core import Fault

# The promise under test: every key whose lease ended during an outage is deleted this soon after the
# provider answers again.
DELETED_WITHIN_SECONDS = 30.0


@contextlib.contextmanager
def outage_mount(
    server: BaoServer,
    api: VaultApi,
    unmounter: Unmounter,
    provider: str,
    hint: str,
    plugin: str = PLUGIN_NAME,
) -> Iterator[EngineMount]:
    """A new mount of registration `plugin`, wired to a new emulator of `provider`, with connection `main`.
    At exit the outage ends, the mount's leases are revoked, the emulator stops and the mount is disabled."""
    spec = PROVIDERS[provider]
    admin_key = new_admin_key(provider)
    emulator = spec.emulator(admin_key)
    with emulator.serve() as emu_server:
        path = unique_mount_name(f"{provider}-{hint}")
        server.enable(plugin, path)
        mount = EngineMount(server, api, path, spec, emulator, emu_server, admin_key)
        try:
            mount.configure()
            mount.must_write("tidy/config", interval="0")  # only the mechanism under test deletes keys
            yield mount
        finally:
            emulator.set_faults()
            status, body = api.call("PUT", f"sys/leases/revoke-prefix/{path}")
            if status not in (200, 204):
                print(f"note: revoking the leases of {path} failed: {status} {body}")
            unmounter.unmount(path)


def register_copy(server: BaoServer, engine: BuiltEngine, name: str) -> Path:
    """Register the engine a second time from a copy named `name`, so this registration's plugin
    processes (one per mount) can be told from the others by their executable."""
    copy = engine.plugin_dir / name
    if not copy.exists():
        shutil.copy2(engine.path, copy)
    server.register_plugin(name, copy.name, engine.sha256, env=PLUGIN_ENV)
    return copy


# --- the outage ----------------------------------------------------------------------------------------


def start_outage(mounts: list[EngineMount]) -> float:
    """Every admin call of every mount's provider answers 503 from now on; returns the start time."""
    for m in mounts:
        m.emulator.set_faults(Fault.server_error(times=None, status=503))
    return time.monotonic()


def end_outage(mounts: list[EngineMount]) -> float:
    """The providers answer again; returns the time they came back."""
    for m in mounts:
        m.emulator.set_faults()
    return time.monotonic()


# --- what an operator and a user see -------------------------------------------------------------------


def deletions(m: EngineMount) -> dict[str, dict[str, Any]]:
    """`bao list -detailed <mount>/deletions`: entry id -> its key_info (empty when the queue is)."""
    status, body = m.call("LIST", "deletions")
    if status == 404:
        return {}
    assert status == 200, (status, body)
    info: dict[str, dict[str, Any]] = body["data"].get("key_info") or {}
    assert sorted(info) == sorted(body["data"]["keys"]), body
    return info


def lease_exists(m: EngineMount, lease: Lease) -> bool:
    status, body = m.lookup(lease.lease_id)
    if status == 200:
        return True
    assert status == 400 and "invalid lease" in str(body), (status, body)
    return False


def sync_revoke(m: EngineMount, lease: Lease) -> tuple[int, dict[str, Any]]:
    """`bao lease revoke <id>` (synchronous)."""
    return m.api.call("PUT", "sys/leases/revoke", json={"lease_id": lease.lease_id})


@dataclass(frozen=True)
class Gone:
    """When the last of a set of keys was found deleted, in seconds after a reference time."""

    seconds: float
    keys: int


def wait_until_deleted(
    mounts_keys: list[tuple[EngineMount, list[str]]], since: float, timeout: float, poll: float = 0.2
) -> Gone:
    """Poll the emulators until every listed key is deleted; the seconds from `since` to the last one."""
    pending = {(id(m), key_id): m for m, keys in mounts_keys for key_id in keys}
    deadline = since + timeout
    while pending:
        for ident, m in list(pending.items()):
            if m.is_deleted_at_provider(ident[1]):
                del pending[ident]
        if not pending:
            break
        if time.monotonic() > deadline:
            left = [f"{m.spec.name}:{key}" for (_, key), m in pending.items()]
            raise AssertionError(
                f"{len(left)} key(s) still live {timeout:.0f}s after the provider returned: {left}"
            )
        time.sleep(poll)
    return Gone(seconds=time.monotonic() - since, keys=sum(len(keys) for _, keys in mounts_keys))
