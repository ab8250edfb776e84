"""A key's life through a real OpenBao, per provider: issue and use, renew, revoke, revoke-prefix, expiry.

What a user relies on: `creds/<role>` hands out a NEW key that works at the provider's inference endpoint;
the lease has the role's TTLs; renewing keeps the key working (and, for LiteLLM, pushes its provider-side
expiry); and however the lease ends (revoke, revoke-prefix, expiry) the key is deleted at the provider and
stops working, while other keys keep working.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest
from devkit.waiting import wait_for
from engine_support import PROVIDER_EXPIRY_GRACE, EngineMount, prefix_of

pytestmark = pytest.mark.timeout(60)

UNAUTHORIZED = 401  # what every emulator answers for a key that does not exist (any more)


def test_issued_key_works_at_the_provider(mount: EngineMount) -> None:
    mount.add_role("app", ttl="10m", max_ttl="1h")
    before = time.time()
    lease = mount.creds("app")
    after = time.time()

    assert lease.lease_id.startswith(f"{mount.path}/creds/app/")
    assert lease.lease_duration == 600
    assert lease.renewable is True
    data = lease.data
    assert (data["provider"], data["role"], data["connection"]) == (mount.spec.name, "app", "main")
    prefix = prefix_of(data["key_name"])  # vault-<8 hex of this mount's backend UUID>-
    assert prefix != "vault-00000000-"  # the host sent a backend UUID: the orphan sweep can work

    live = mount.emulator.find_key(lease.key_id)
    assert live is not None, "the key is not at the provider"
    assert live.name == data["key_name"]
    assert live.secret == lease.api_key
    assert mount.infer(lease.api_key) == 200

    # Provider-side expiry as a backstop: max_ttl + grace (OpenAI, OpenRouter), ttl + grace (LiteLLM).
    if mount.spec.expiry == "none":
        assert "expires_at" not in data
        assert live.expires_at is None
    else:
        horizon = 3600 if mount.spec.expiry == "fixed" else 600
        assert live.expires_at is not None
        assert before + horizon + PROVIDER_EXPIRY_GRACE - 1 <= live.expires_at
        assert live.expires_at <= after + horizon + PROVIDER_EXPIRY_GRACE + 1
        shown = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(live.expires_at))
        assert data["expires_at"] == shown

    # Every read mints a new key; both work; the connection counts them.
    second = mount.creds("app")
    assert second.data["key_name"].startswith(prefix)
    assert second.key_id != lease.key_id and second.api_key != lease.api_key
    assert mount.infer(second.api_key) == 200
    assert mount.infer(lease.api_key) == 200
    status, conn = mount.read("config/main")
    assert status == 200 and conn["data"]["live_keys"] == 2


def test_renew_keeps_the_key_and_moves_litellm_expiry(mount: EngineMount) -> None:
    mount.add_role("app", ttl="1m", max_ttl="10m")
    lease = mount.creds("app")
    expiry_before = mount.emulator.find_key(lease.key_id).expires_at  # type: ignore[union-attr]

    renewed = mount.api.ok("PUT", "sys/leases/renew", json={"lease_id": lease.lease_id, "increment": 300})
    renewed_at = time.time()
    assert renewed["lease_id"] == lease.lease_id
    assert renewed["lease_duration"] == 300
    assert renewed["renewable"] is True
    # Any token may renew a lease whose id it knows (Vault's default policy): a renewal gives out nothing.
    assert not renewed.get("data"), renewed["data"]
    assert lease.api_key not in json.dumps(renewed)
    assert mount.infer(lease.api_key) == 200

    expiry_after = mount.emulator.find_key(lease.key_id).expires_at  # type: ignore[union-attr]
    if mount.spec.expiry == "extends":
        # LiteLLM: the key now expires at the new lease end + grace, not the old one.
        assert expiry_before is not None and expiry_after is not None
        assert abs(expiry_after - (renewed_at + 300 + PROVIDER_EXPIRY_GRACE)) <= 3
        assert expiry_after > expiry_before + 200
    else:
        assert expiry_after == expiry_before  # fixed at issue (max_ttl + grace) or none at all

    # A renewal asking for more than max_ttl allows is capped at the lease's max.
    capped = mount.api.ok("PUT", "sys/leases/renew", json={"lease_id": lease.lease_id, "increment": 3600})
    assert 0 < capped["lease_duration"] <= 600

    # The renewals kept what revoke needs (Vault replaces the lease's data with the renew response's).
    mount.api.ok("PUT", "sys/leases/revoke", json={"lease_id": lease.lease_id})
    assert mount.is_deleted_at_provider(lease.key_id)
    assert mount.infer(lease.api_key) == UNAUTHORIZED


def test_revoke_deletes_only_that_key(mount: EngineMount) -> None:
    mount.add_role("app", ttl="10m", max_ttl="1h")
    lease = mount.creds("app")
    other = mount.creds("app")

    mount.api.ok("PUT", "sys/leases/revoke", json={"lease_id": lease.lease_id})  # `bao lease revoke <id>`

    assert mount.is_deleted_at_provider(lease.key_id)
    assert mount.infer(lease.api_key) == UNAUTHORIZED
    status, body = mount.lookup(lease.lease_id)
    assert status == 400 and "invalid lease" in str(body)

    assert mount.emulator.find_key(other.key_id) is not None
    assert mount.infer(other.api_key) == 200
    assert mount.lookup(other.lease_id)[0] == 200
    assert mount.read("config/main")[1]["data"]["live_keys"] == 1


def test_revoke_prefix_deletes_the_roles_keys(mount: EngineMount) -> None:
    mount.add_role("ci", ttl="10m", max_ttl="1h")
    mount.add_role("web", ttl="10m", max_ttl="1h")
    ci = [mount.creds("ci"), mount.creds("ci")]
    web = mount.creds("web")

    # `bao lease revoke -prefix <mount>/creds/ci`
    mount.api.ok("PUT", f"sys/leases/revoke-prefix/{mount.path}/creds/ci")

    for lease in ci:
        assert mount.is_deleted_at_provider(lease.key_id)
        assert mount.infer(lease.api_key) == UNAUTHORIZED
        assert mount.lookup(lease.lease_id)[0] == 400
    assert mount.emulator.find_key(web.key_id) is not None
    assert mount.infer(web.api_key) == 200


def test_expiry_deletes_the_key(mount: EngineMount) -> None:
    mount.add_role("short", ttl="2s", max_ttl="3s")
    issued_at = time.time()
    lease = mount.creds("short")
    assert lease.lease_duration == 2
    assert mount.infer(lease.api_key) == 200

    wait_for(
        lambda: mount.is_deleted_at_provider(lease.key_id),
        timeout=30,
        what="Vault's expiry revoke to delete the key at the provider",
    )
    assert time.time() - issued_at >= 2  # not before the TTL ran out
    assert mount.infer(lease.api_key) == UNAUTHORIZED
    assert mount.lookup(lease.lease_id)[0] == 400
    assert mount.read("config/main")[1]["data"]["live_keys"] == 0


def delete_at_provider(mount: EngineMount, key_id: str) -> None:
    """Delete a key behind Vault's back through the provider's admin API (as in the provider's console)."""
    url = mount.emu_server.url
    headers = {"Authorization": f"Bearer {mount.admin_key}"}
    if mount.spec.name == "openai":
        path = f"/v1/organization/projects/proj_default/service_accounts/{key_id}"
        resp = httpx.delete(url + path, headers=headers, timeout=10)
    elif mount.spec.name == "openrouter":
        resp = httpx.delete(f"{url}/api/v1/keys/{key_id}", headers=headers, timeout=10)
    else:
        resp = httpx.post(f"{url}/key/delete", headers=headers, json={"keys": [key_id]}, timeout=10)
    assert resp.status_code == 200, resp.text


def test_revoke_of_a_key_already_gone_at_the_provider_succeeds(mount: EngineMount) -> None:
    mount.add_role("app", ttl="10m", max_ttl="1h")
    lease = mount.creds("app")
    delete_at_provider(mount, lease.key_id)
    deletes = mount.emulator.delete_count

    # The provider answers 404 to the engine's delete: that is success, not a fault to retry.
    mount.api.ok("PUT", "sys/leases/revoke", json={"lease_id": lease.lease_id})
    assert mount.lookup(lease.lease_id)[0] == 400
    assert mount.irrevocable_leases() == []
    assert mount.emulator.delete_count == deletes
    assert mount.read("config/main")[1]["data"]["live_keys"] == 0  # and the index forgot it
