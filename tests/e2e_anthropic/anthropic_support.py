"""Helpers for the Anthropic check-out set tests: a mount of the engine wired to the Anthropic emulator, with
a set of pre-made keys, and the calls a user makes (check out, use the key at /v1/messages, renew, revoke).

A uniquely named module (not conftest), so test directories without __init__.py cannot shadow it. The engine's
e2e helpers (plugin build, server, mounts) come from tests/e2e_engine/engine_support.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from devkit.waiting import wait_for
from engine_support import EngineMount, Lease, ProviderSpec, errors_of
from llm_emulators import AnthropicEmulator
from llm_emulators.core import LiveKey

SPEC = ProviderSpec("anthropic", lambda key: AnthropicEmulator(key), "/v1/messages")
SET = "team"
MESSAGE = {"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hello"}]}


@dataclass
class SetMount:
    """One engine mount, its Anthropic emulator, an anthropic connection `main` and the set's keys."""

    m: EngineMount
    plugin_pids: list[int]
    keys: list[LiveKey] = field(default_factory=list)

    @property
    def emu(self) -> AnthropicEmulator:
        emu = self.m.emulator
        assert isinstance(emu, AnthropicEmulator)
        return emu

    @property
    def values(self) -> set[str]:
        return {k.secret for k in self.keys}

    def make_set(self, n: int, name: str = SET, **fields: Any) -> None:
        """Pre-make `n` keys in the console (inactive) and write them as set `name`."""
        self.keys = [self.emu.add_key(f"{name}-{i}", status="inactive") for i in range(n)]
        self.m.must_write(
            f"sets/{name}", connection="main", keys={k.key_id: k.secret for k in self.keys}, **fields
        )

    def checkout(self, name: str = SET) -> Lease:
        status, body = self.m.read(f"sets/{name}/creds")
        assert status == 200, (status, body)
        return Lease(body["lease_id"], body["lease_duration"], body["renewable"], body["data"])

    def view(self, name: str = SET) -> dict[str, Any]:
        status, body = self.m.read(f"sets/{name}")
        assert status == 200, (status, body)
        return dict(body["data"])

    def states(self, name: str = SET) -> dict[str, str]:
        return {k["key_id"]: k["state"] for k in self.view(name)["keys"]}

    def works(self, api_key: str) -> int:
        """Status of one message at the emulator's /v1/messages with `api_key`."""
        resp = httpx.post(
            self.m.emu_server.url + "/v1/messages",
            headers={"x-api-key": api_key, "anthropic-version": "2023-06-01"},
            json=MESSAGE,
            timeout=10,
        )
        return resp.status_code

    def revoke(self, lease_id: str) -> tuple[int, dict[str, Any]]:
        return self.m.api.call("PUT", "sys/leases/revoke", json={"lease_id": lease_id})

    def renew(self, lease_id: str, increment: int) -> tuple[int, dict[str, Any]]:
        return self.m.api.call("PUT", "sys/leases/renew", json={"lease_id": lease_id, "increment": increment})

    def wait_status(self, key_id: str, status: str, timeout: float, what: str) -> None:
        wait_for(lambda: self.emu.key_status(key_id) == status, timeout=timeout, what=what, interval=0.1)


def errors_text(body: dict[str, Any]) -> str:
    return errors_of(body)


def elapsed_since(start: float) -> float:
    return time.monotonic() - start
