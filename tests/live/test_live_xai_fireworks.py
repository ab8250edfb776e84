"""Live tests against the real xAI and Fireworks APIs, through a real OpenBao: issue a key, check that the
provider stored the expiry the engine asked for and lists the key under its name (the details the clients
mark unconfirmed), use the key once, revoke it, and check that it stops working and is gone from the list.

They run only when the provider's credentials are set, and skip otherwise:
    xAI        XAI_MANAGEMENT_KEY and XAI_TEAM_ID (optional XAI_MANAGEMENT_BASE_URL, XAI_API_BASE_URL)
    Fireworks  FIREWORKS_ADMIN_KEY, FIREWORKS_ACCOUNT_ID and FIREWORKS_USER_ID (optional FIREWORKS_BASE_URL)
"Use" is a call that needs a valid key and costs nothing: `GET /v1/models` (xAI), `GET /inference/v1/models`
(Fireworks). Every key issued is revoked in a finally block (revoke-prefix of the mount).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.timeout(180)

STOP_WORKING_WITHIN = 90.0  # a provider's edge may honour a deleted key a little while


def _env(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _xai_admin() -> str:
    return _env("XAI_MANAGEMENT_BASE_URL", "https://management-api.x.ai").rstrip("/")


def _fireworks() -> str:
    return _env("FIREWORKS_BASE_URL", "https://api.fireworks.ai").rstrip("/")


def _xai_listed(key_id: str) -> dict[str, Any] | None:
    url = f"{_xai_admin()}/auth/teams/{_env('XAI_TEAM_ID')}/api-keys"
    body = httpx.get(url, headers=_bearer(_env("XAI_MANAGEMENT_KEY")), timeout=30).raise_for_status().json()
    return next((k for k in body.get("apiKeys", []) if k.get("apiKeyId") == key_id), None)


def _fireworks_listed(key_id: str) -> dict[str, Any] | None:
    url = (
        f"{_fireworks()}/v1/accounts/{_env('FIREWORKS_ACCOUNT_ID')}/users/{_env('FIREWORKS_USER_ID')}/apiKeys"
    )
    body = httpx.get(url, headers=_bearer(_env("FIREWORKS_ADMIN_KEY")), timeout=30).raise_for_status().json()
    return next((k for k in body.get("apiKeys", []) if k.get("keyId") == key_id), None)


@dataclass(frozen=True)
class Live:
    required: tuple[str, ...]
    config: Callable[[], dict[str, str]]
    use: Callable[[str], httpx.Request]
    listed: Callable[[str], dict[str, Any] | None]  # the key as the provider lists it, or None
    name_field: str


LIVE = {
    "xai": Live(
        ("XAI_MANAGEMENT_KEY", "XAI_TEAM_ID"),
        lambda: {
            "admin_key": _env("XAI_MANAGEMENT_KEY"),
            "base_url": _xai_admin(),
            "team_id": _env("XAI_TEAM_ID"),
        },
        lambda key: httpx.Request(
            "GET",
            _env("XAI_API_BASE_URL", "https://api.x.ai/v1").rstrip("/") + "/models",
            headers=_bearer(key),
        ),
        _xai_listed,
        "name",
    ),
    "fireworks": Live(
        ("FIREWORKS_ADMIN_KEY", "FIREWORKS_ACCOUNT_ID", "FIREWORKS_USER_ID"),
        lambda: {
            "admin_key": _env("FIREWORKS_ADMIN_KEY"),
            "base_url": _fireworks(),
            "account_id": _env("FIREWORKS_ACCOUNT_ID"),
            "user_id": _env("FIREWORKS_USER_ID"),
        },
        lambda key: httpx.Request("GET", f"{_fireworks()}/inference/v1/models", headers=_bearer(key)),
        _fireworks_listed,
        "displayName",
    ),
}


def use(live: Live, key: str) -> int:
    with httpx.Client(timeout=30) as client:
        return client.send(live.use(key)).status_code


@pytest.mark.parametrize("provider", sorted(LIVE))
def test_live_issue_expiry_use_revoke(provider: str, request: pytest.FixtureRequest) -> None:
    live = LIVE[provider]
    missing = [name for name in live.required if not _env(name)]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not set: live test skipped")
    server = request.getfixturevalue("live_server")
    api = server.api
    mount = f"llm-live-{provider}-{int(time.time())}"
    api.ok("POST", f"sys/mounts/{mount}", json={"type": "llm"})
    try:
        api.ok("POST", f"{mount}/config/live", json={"provider": provider, **live.config()})
        api.ok("POST", f"{mount}/roles/live", json={"connection": "live", "ttl": "5m", "max_ttl": "15m"})
        status, body = api.call("GET", f"{mount}/creds/live")
        assert status == 200, body
        data, lease_id = body["data"], body["lease_id"]

        # The provider lists the key under its name, with the expiry the engine asked for.
        listed = live.listed(data["key_id"])
        assert listed is not None, f"{provider} does not list the issued key"
        assert listed.get(live.name_field) == data["key_name"]
        assert "expires_at" in data, f"{provider} did not echo the expiry it was sent"
        stored = datetime.fromisoformat(str(listed.get("expireTime")))
        assert abs(stored.timestamp() - datetime.fromisoformat(data["expires_at"]).timestamp()) <= 1

        assert use(live, data["api_key"]) == 200, f"the issued {provider} key does not work"

        api.ok("PUT", "sys/leases/revoke", json={"lease_id": lease_id})
        assert live.listed(data["key_id"]) is None, f"{provider} still lists the revoked key"
        deadline = time.monotonic() + STOP_WORKING_WITHIN
        while (status := use(live, data["api_key"])) == 200 and time.monotonic() < deadline:
            time.sleep(2)  # the provider's own propagation; nothing in Vault to poll
        assert status in (400, 401, 403), f"the revoked {provider} key still answers {status}"
    finally:
        api.call("PUT", f"sys/leases/revoke-prefix/{mount}")  # never leave a real key behind
        server.unmounter.unmount(mount)
