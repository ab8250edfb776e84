"""Live tests against the real providers, through a real OpenBao: issue a key, use it once, revoke it, and
check that it stops working.

They run only when the provider's credentials are set, and skip otherwise:
    OpenRouter  OPENROUTER_MANAGEMENT_KEY                 (optional OPENROUTER_BASE_URL)
    OpenAI      OPENAI_ADMIN_KEY and OPENAI_PROJECT_ID    (optional OPENAI_BASE_URL)
    LiteLLM     LITELLM_BASE_URL and LITELLM_MASTER_KEY
"Use" is a call that needs a valid key and costs nothing: OpenAI `GET /models`, OpenRouter `GET /key`,
LiteLLM `GET /v1/models`. Every key issued is revoked in a finally block (revoke-prefix of the mount).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest

pytestmark = pytest.mark.timeout(180)

# Real providers may take a little while to stop honouring a deleted key (caches at their edge).
STOP_WORKING_WITHIN = 90.0


@dataclass(frozen=True)
class Live:
    provider: str
    required: tuple[str, ...]
    config: Callable[[], dict[str, str]]
    role: Callable[[], dict[str, str]]
    check: Callable[[str], httpx.Request]  # the request that "uses" an issued key


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def _openai_base() -> str:
    return _env("OPENAI_BASE_URL", "https://api.openai.com/v1").rstrip("/")


def _openrouter_base() -> str:
    return _env("OPENROUTER_BASE_URL", "https://openrouter.ai/api/v1").rstrip("/")


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


LIVE = {
    "openai": Live(
        "openai",
        ("OPENAI_ADMIN_KEY", "OPENAI_PROJECT_ID"),
        lambda: {"admin_key": _env("OPENAI_ADMIN_KEY"), "base_url": _openai_base()},
        lambda: {"project_id": _env("OPENAI_PROJECT_ID")},
        lambda key: httpx.Request("GET", f"{_openai_base()}/models", headers=_bearer(key)),
    ),
    "openrouter": Live(
        "openrouter",
        ("OPENROUTER_MANAGEMENT_KEY",),
        lambda: {"admin_key": _env("OPENROUTER_MANAGEMENT_KEY"), "base_url": _openrouter_base()},
        lambda: {"spend_limit": "0.01"},
        lambda key: httpx.Request("GET", f"{_openrouter_base()}/key", headers=_bearer(key)),
    ),
    "litellm": Live(
        "litellm",
        ("LITELLM_BASE_URL", "LITELLM_MASTER_KEY"),
        lambda: {"admin_key": _env("LITELLM_MASTER_KEY"), "base_url": _env("LITELLM_BASE_URL").rstrip("/")},
        lambda: {"spend_limit": "0.01"},
        lambda key: httpx.Request(
            "GET", f"{_env('LITELLM_BASE_URL').rstrip('/')}/v1/models", headers=_bearer(key)
        ),
    ),
}


def require(live: Live) -> None:
    missing = [name for name in live.required if not _env(name)]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not set: live test skipped")


def use(live: Live, key: str) -> int:
    with httpx.Client(timeout=30) as client:
        return client.send(live.check(key)).status_code


@pytest.mark.parametrize("provider", sorted(LIVE))
def test_live_issue_use_revoke(provider: str, request: pytest.FixtureRequest) -> None:
    live = LIVE[provider]
    require(live)  # before the server starts: a skipped test costs nothing
    server = request.getfixturevalue("live_server")
    api = server.api
    mount = f"llm-live-{provider}-{int(time.time())}"
    api.ok("POST", f"sys/mounts/{mount}", json={"type": "llm"})
    try:
        api.ok("POST", f"{mount}/config/live", json={"provider": provider, **live.config()})
        api.ok(
            "POST",
            f"{mount}/roles/live",
            json={"connection": "live", "ttl": "5m", "max_ttl": "15m", **live.role()},
        )
        status, body = api.call("GET", f"{mount}/creds/live")
        assert status == 200, body
        key, lease_id = body["data"]["api_key"], body["lease_id"]

        assert use(live, key) == 200, f"the issued {provider} key does not work"

        api.ok("PUT", "sys/leases/revoke", json={"lease_id": lease_id})
        deadline = time.monotonic() + STOP_WORKING_WITHIN
        while (status := use(live, key)) == 200 and time.monotonic() < deadline:
            time.sleep(2)  # the provider's own propagation; nothing in Vault to poll
        assert status in (401, 403), f"the revoked {provider} key still answers {status}"
    finally:
        api.call("PUT", f"sys/leases/revoke-prefix/{mount}")  # never leave a real key behind
        server.unmounter.unmount(mount)
