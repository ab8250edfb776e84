"""Helpers of the spend-per-lease end-to-end tests (a uniquely named module, not conftest)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from engine_support import PROVIDERS, EngineMount, ProviderSpec
from llm_emulators import OpenAIEmulator

# A binary fraction: every sum of it is exact in floating point, so the engine's totals must equal the
# emulator's to the last bit.
COST = 0.0625

# OpenAI in the "key per lease" mode, the one whose keys OpenAI reports spend for (by API key id). OpenAI
# documents deleting a service account's key through the project as an error; this organization allows it,
# so a revoke deletes the key at once.
OPENAI_KEY_PER_LEASE = ProviderSpec(
    "openai",
    lambda key: OpenAIEmulator(key, projects=("proj_default",), allow_service_account_key_delete=True),
    "/v1/chat/completions",
    role_fields={"project_id": "proj_default", "openai_key_mode": "key_per_lease"},
    expiry="fixed",
)
LIVE_PROVIDERS = {name: PROVIDERS[name] for name in ("openrouter", "litellm")}


def spend(mount: EngineMount, **query: Any) -> dict[str, Any]:
    status, body = mount.call("GET", "spend", params=query)
    assert status == 200, (status, body)
    data: dict[str, Any] = body["data"]
    return data


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def wait_spend(
    mount: EngineMount,
    done: Callable[[dict[str, Any]], bool],
    timeout: float,
    what: str,
    interval: float = 0.5,
) -> dict[str, Any]:
    """`spend` of the mount once `done` holds for it."""
    last: list[dict[str, Any]] = []

    def check() -> dict[str, Any] | None:
        last[:] = [spend(mount)]
        return last[0] if done(last[0]) else None

    try:
        found: dict[str, Any] = wait_for(check, timeout, what, interval)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last spend: {last}") from None
    return found
