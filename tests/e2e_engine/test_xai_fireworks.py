"""xAI and Fireworks keys through a real OpenBao, each provider wired to its emulator on loopback.

What a user relies on: `creds/<role>` mints a NEW key at the provider, with the provider's own expiry set at
create (max TTL + grace: neither provider can move it later), and the key works at the inference endpoint;
renewing keeps it; revoke and expiry delete it at the provider; a key with this mount's name prefix that no
lease owns is deleted by the sweep; the connection's admin key is write-only and its team (xAI) or account
and user (Fireworks) are required and checked; and a provider's refusal is a clear 400 or 502, never a 500.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest
from devkit.bao import BaoServer
from devkit.waiting import wait_for
from engine_support import (
    PROVIDER_EXPIRY_GRACE,
    WAL_MIN_AGE_SECONDS,
    EngineMount,
    ProviderSpec,
    Unmounter,
    VaultApi,
    engine_mount,
    errors_of,
    prefix_of,
)
from llm_emulators import FireworksEmulator, XAIEmulator
from llm_emulators.core import Fault

pytestmark = pytest.mark.timeout(90)

TEAM = "team-e2e"
ACCOUNT, USER = "acme-e2e", "vault-sa"
SPECS = {
    "xai": ProviderSpec(
        "xai",
        lambda key: XAIEmulator(key, teams=(TEAM, "team-other")),
        "/v1/chat/completions",
        expiry="fixed",
    ),
    "fireworks": ProviderSpec(
        "fireworks",
        lambda key: FireworksEmulator(key, account=ACCOUNT, users=(USER, "someone-else")),
        "/inference/v1/chat/completions",
        expiry="fixed",
    ),
}
ACCOUNT_FIELDS: dict[str, dict[str, str]] = {
    "xai": {"team_id": TEAM},
    "fireworks": {"account_id": ACCOUNT, "user_id": USER},
}
# What each inference API answers for a key that does not exist (any more).
DEAD = {"xai": 400, "fireworks": 401}


def xf_mount(
    server: BaoServer, api: VaultApi, unmounter: Unmounter, provider: str, hint: str
) -> contextlib.AbstractContextManager[EngineMount]:
    """engine_support.engine_mount, for a provider of this file."""
    return engine_mount(server, api, unmounter, provider, hint, spec=SPECS[provider])


@pytest.fixture(params=tuple(SPECS))
def provider(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def mount(
    bao: BaoServer, api: VaultApi, unmounter: Unmounter, provider: str, request: pytest.FixtureRequest
) -> Iterator[EngineMount]:
    with xf_mount(bao, api, unmounter, provider, request.node.originalname) as m:
        m.configure(**ACCOUNT_FIELDS[provider])
        yield m


def seed(mount: EngineMount, name: str, *, age: float) -> str:
    return mount.emulator.seed_key(name, created_at=time.time() - age).key_id


# --- the key's life -------------------------------------------------------------------------------------


def test_issue_sets_the_providers_expiry_and_the_key_works(mount: EngineMount, provider: str) -> None:
    mount.add_role("app", ttl="10m", max_ttl="1h")
    before = time.time()
    lease = mount.creds("app")
    after = time.time()

    assert lease.lease_duration == 600 and lease.renewable is True
    data = lease.data
    assert (data["provider"], data["role"], data["connection"]) == (provider, "app", "main")
    live = mount.emulator.find_key(lease.key_id)
    assert live is not None and live.name == data["key_name"] and live.secret == lease.api_key
    assert prefix_of(data["key_name"]) != "vault-00000000-"
    assert mount.infer(lease.api_key) == 200

    # The provider itself ends the key at max TTL + grace, even if Vault never revokes it.
    assert live.expires_at is not None
    assert (
        before + 3600 + PROVIDER_EXPIRY_GRACE - 1
        <= live.expires_at
        <= after + 3600 + PROVIDER_EXPIRY_GRACE + 1
    )
    assert data["expires_at"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(live.expires_at))
    mount.emulator.advance_clock(live.expires_at - time.time() + 1)
    assert mount.infer(lease.api_key) in (401, 403)
    mount.emulator.advance_clock(-(live.expires_at - time.time() + 1))
    assert mount.infer(lease.api_key) == 200

    second = mount.creds("app")
    assert second.key_id != lease.key_id and second.api_key != lease.api_key
    assert mount.read("config/main")[1]["data"]["live_keys"] == 2


def test_renew_keeps_the_key_then_revoke_deletes_it(mount: EngineMount, provider: str) -> None:
    mount.add_role("app", ttl="1m", max_ttl="10m")
    lease = mount.creds("app")
    other = mount.creds("app")
    expiry = mount.emulator.find_key(lease.key_id).expires_at  # type: ignore[union-attr]

    renewed = mount.api.ok("PUT", "sys/leases/renew", json={"lease_id": lease.lease_id, "increment": 300})
    assert renewed["lease_duration"] == 300
    assert lease.api_key not in str(renewed)
    assert mount.infer(lease.api_key) == 200
    assert mount.emulator.find_key(lease.key_id).expires_at == expiry  # type: ignore[union-attr]

    mount.api.ok("PUT", "sys/leases/revoke", json={"lease_id": lease.lease_id})
    assert mount.is_deleted_at_provider(lease.key_id)
    assert mount.infer(lease.api_key) == DEAD[provider]
    assert mount.lookup(lease.lease_id)[0] == 400
    assert mount.infer(other.api_key) == 200  # only that key
    assert mount.read("config/main")[1]["data"]["live_keys"] == 1


def test_expiry_deletes_the_key(mount: EngineMount, provider: str) -> None:
    mount.add_role("short", ttl="2s", max_ttl="3s")
    issued_at = time.time()
    lease = mount.creds("short")
    assert mount.infer(lease.api_key) == 200
    wait_for(
        lambda: mount.is_deleted_at_provider(lease.key_id),
        timeout=30,
        what="Vault's expiry revoke to delete the key at the provider",
    )
    assert time.time() - issued_at >= 2
    assert mount.infer(lease.api_key) == DEAD[provider]
    assert mount.read("config/main")[1]["data"]["live_keys"] == 0


def test_revoke_of_a_key_already_gone_at_the_provider_succeeds(mount: EngineMount, provider: str) -> None:
    mount.add_role("app", ttl="10m", max_ttl="1h")
    lease = mount.creds("app")
    # Deleted behind Vault's back, as in the provider's console.
    url, headers = mount.emu_server.url, {"Authorization": f"Bearer {mount.admin_key}"}
    if provider == "xai":
        resp = httpx.delete(f"{url}/auth/api-keys/{lease.key_id}", headers=headers, timeout=10)
    else:
        keys = f"{url}/v1/accounts/{ACCOUNT}/users/{USER}/apiKeys:delete"
        resp = httpx.post(keys, headers=headers, json={"keyId": lease.key_id}, timeout=10)
    assert resp.status_code == 200, resp.text
    deletes = mount.emulator.delete_count

    mount.api.ok("PUT", "sys/leases/revoke", json={"lease_id": lease.lease_id})
    assert mount.lookup(lease.lease_id)[0] == 400
    assert mount.irrevocable_leases() == []
    assert mount.emulator.delete_count == deletes
    assert mount.read("config/main")[1]["data"]["live_keys"] == 0


def test_sweep_deletes_old_orphans_of_this_mount_only(mount: EngineMount, provider: str) -> None:
    mount.must_write("tidy/config", interval="0")
    mount.add_role("app", ttl="10m", max_ttl="1h")
    live = mount.creds("app")
    prefix = mount.prefix()

    orphan = seed(mount, f"{prefix}app-1700000000-crashed1", age=3600)
    young = seed(mount, f"{prefix}app-1700000000-inflight", age=5)
    other_mount = seed(mount, "vault-0badc0de-app-1700000000-notmine1", age=3600)
    not_vault = seed(mount, "team-ci-key", age=3600)

    report = mount.tidy()
    assert {str(k["key_id"]) for k in report["orphans_deleted"]} == {orphan}
    assert report["orphans_too_young"] == 1
    assert report["failure_count"] == 0, report["failures"]
    assert mount.is_deleted_at_provider(orphan)
    for key_id in (young, other_mount, not_vault, live.key_id):
        assert mount.emulator.find_key(key_id) is not None, f"{key_id} was deleted"
    assert mount.infer(live.api_key) == 200


# --- connections and roles ------------------------------------------------------------------------------


def test_connection_fields_are_required_checked_and_the_admin_key_stays_hidden(
    mount: EngineMount, provider: str
) -> None:
    status, body = mount.read("config/main")
    assert status == 200
    view = body["data"]
    assert view["provider"] == provider and view["admin_key_set"] is True
    assert mount.admin_key not in str(body)
    assert {k: view[k] for k in ACCOUNT_FIELDS[provider]} == ACCOUNT_FIELDS[provider]
    assert view["organization_id"] == ""

    # An update that does not resend the account fields keeps them.
    mount.must_write("config/main", allowed_roles="app")
    assert {k: mount.read("config/main")[1]["data"][k] for k in ACCOUNT_FIELDS[provider]} == ACCOUNT_FIELDS[
        provider
    ]

    base = {"provider": provider, "admin_key": mount.admin_key, "base_url": mount.emu_server.base_url}
    foreign = "account_id" if provider == "xai" else "team_id"
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "missing required field"),
        ({**ACCOUNT_FIELDS[provider], "organization_id": "org-1"}, "organization_id"),
        ({**ACCOUNT_FIELDS[provider], foreign: "x"}, f'"{foreign}" applies to'),
        ({k: "a/b" for k in ACCOUNT_FIELDS[provider]}, "letters, digits"),
    ]
    for extra, message in cases:
        status, body = mount.write("config/bad", **base, **extra)
        assert status == 400 and message in errors_of(body), (extra, status, body)
    # The check call proves the admin key and the account together: a wrong team or user is a 400.
    wrong = {"team_id": "team-nope"} if provider == "xai" else {"account_id": ACCOUNT, "user_id": "nobody"}
    status, body = mount.write("config/bad", **base, **wrong)
    assert status == 400 and "not found" in errors_of(body), body
    assert mount.read("config/bad")[0] == 404

    # Other providers refuse these fields.
    for field in ("team_id", "account_id", "user_id"):
        status, body = mount.write(
            "config/other", provider="openrouter", admin_key="k", **{field: "x"}, verify=False
        )
        assert status == 400 and f'"{field}" applies to' in errors_of(body)


def test_role_limits_the_provider_cannot_enforce_are_refused(mount: EngineMount, provider: str) -> None:
    status, body = mount.write("roles/capped", connection="main", spend_limit=5)
    assert status == 400 and "spend_limit" in errors_of(body)
    status, body = mount.write("roles/modeled", connection="main", models="grok-4")
    if provider == "fireworks":
        assert status == 400 and "models" in errors_of(body)
        return
    # xAI enforces a model list per key through its ACLs.
    assert status in (200, 204), body
    lease = mount.creds("modeled")
    chat = mount.emu_server.url + mount.spec.chat_path
    auth = {"Authorization": f"Bearer {lease.api_key}"}
    ask = {"messages": [{"role": "user", "content": "hi"}]}
    assert httpx.post(chat, headers=auth, json={**ask, "model": "grok-4"}, timeout=10).status_code == 200
    assert httpx.post(chat, headers=auth, json={**ask, "model": "grok-3"}, timeout=10).status_code == 403


# --- provider failures ----------------------------------------------------------------------------------


def test_provider_refusals_are_clear_errors_never_500(mount: EngineMount, provider: str) -> None:
    # A team or user that does not exist (the check skipped): the create is refused with a 404.
    wrong = {"team_id": "team-nope"} if provider == "xai" else {"account_id": ACCOUNT, "user_id": "nobody"}
    mount.configure("wrong", verify=False, **wrong)
    mount.add_role("lost", connection="wrong", ttl="10m", max_ttl="1h")
    status, body = mount.read("creds/lost")
    hint = "team_id" if provider == "xai" else "account_id and user_id"
    assert status == 400 and "not found" in errors_of(body) and hint in errors_of(body), body

    mount.add_role("app", ttl="10m", max_ttl="1h")
    live = mount.creds("app")

    # The provider rate-limits every call: 502 with the reason, and no key.
    mount.emulator.set_faults(Fault.rate_limit(times=None, retry_after=1, op="create"))
    status, body = mount.read("creds/app")
    assert status == 502 and "rate limited" in errors_of(body), body

    # The admin key is revoked at the provider: 502 naming the fix; revoke is retried, never irrevocable.
    mount.emulator.set_faults()
    mount.emulator.revoke_admin_key()
    status, body = mount.read("creds/app")
    assert status == 502 and "admin key" in errors_of(body) and mount.admin_key not in str(body), body
    status, body = mount.api.call("PUT", "sys/leases/revoke", json={"lease_id": live.lease_id})
    assert status != 500, body
    assert mount.irrevocable_leases() == []

    # Fixed at the provider: the queued deletion goes through.
    mount.emulator.restore_admin_key()
    wait_for(
        lambda: mount.is_deleted_at_provider(live.key_id),
        timeout=45,
        what="the retried revoke to delete the key",
    )
    assert mount.emulator.create_count == 1


def test_no_key_in_errors_or_the_server_log(mount: EngineMount, provider: str) -> None:
    mount.add_role("app", ttl="10m", max_ttl="1h")
    lease = mount.creds("app")
    # The provider repeats the admin key in its refusal (some proxies do): the error is scrubbed.
    for status in (400, 401, 503):
        mount.emulator.set_faults(Fault.echo_admin_key(status=status, op="create"))
        code, body = mount.read("creds/app")
        assert code in (400, 502), (status, code, body)
        assert mount.admin_key not in str(body) and mount.admin_key[:16] not in str(body)
    mount.emulator.set_faults()
    mount.api.ok("PUT", "sys/leases/revoke", json={"lease_id": lease.lease_id})
    log = mount.server.log_path.read_text(errors="replace")
    assert mount.admin_key not in log and lease.api_key not in log


@pytest.mark.timeout(150)
def test_a_lost_create_is_found_by_name_and_deleted(
    bao: BaoServer, api: VaultApi, unmounter: Unmounter, request: pytest.FixtureRequest
) -> None:
    """SLOW (up to ~60 s, both providers share the wait): Vault's once-a-minute rollback tick settles the
    create whose answer was lost, finding the key by its name at the provider."""
    with ExitStack() as stack:
        mounts = []
        for provider in SPECS:
            m = stack.enter_context(xf_mount(bao, api, unmounter, provider, request.node.originalname))
            m.configure(**ACCOUNT_FIELDS[provider])
            m.must_write("tidy/config", interval="0")  # only the rollback may delete the key
            m.add_role("app", ttl="10m", max_ttl="1h")
            m.emulator.set_faults(Fault.drop_after_create())
            status, body = m.read("creds/app")
            assert status == 502 and "may have been created" in errors_of(body), body
            [stray] = m.emulator.live_keys()  # the provider made it; nobody got it
            assert m.infer(stray.secret) == 200
            mounts.append((m, stray))
        for m, stray in mounts:
            wait_for(
                lambda m=m, stray=stray: m.is_deleted_at_provider(stray.key_id),
                timeout=90,
                what=f"the rollback tick to delete the stray {m.spec.name} key",
                interval=0.5,
            )
            assert m.infer(stray.secret) == DEAD[m.spec.name]
            assert m.emulator.create_count == 1  # never created twice
    assert WAL_MIN_AGE_SECONDS < 60
