"""OpenAI keys expire at the provider on their own, through a real OpenBao and the built plugin.

What a user relies on:
- an OpenAI key is created with an expiry at OpenAI (`expires_in_seconds` = the role's max TTL + the engine's
  grace), shown as the lease's `expires_at`; a key nobody revokes stops working at OpenAI after it, with no
  call from the engine (the emulator's clock is moved past the expiry instead of waiting an hour);
- revoking the lease deletes the key (its service account) at OpenAI;
- the sweep finds keys of the "key per lease" mode (API keys under a role's shared service account) by name
  through the project's paginated key list: it never takes the shared account itself for an orphan, and a key
  counts as deleted only when OpenAI confirms it (OpenAI documents deleting a service account's key through
  the project as an error: such an orphan stays reported until OpenAI reports it expired).

Issuing in the "key per lease" mode with scopes is covered in test_engine_identity_and_scopes.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from devkit.bao import BaoServer
from engine_support import PROVIDER_EXPIRY_GRACE, EngineMount, Unmounter, VaultApi, engine_mount
from llm_emulators import OpenAIEmulator
from llmsecrets.providers.openai import role_account_name

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def openai_mount(
    bao: BaoServer, api: VaultApi, unmounter: Unmounter, request: pytest.FixtureRequest
) -> Iterator[EngineMount]:
    with engine_mount(bao, api, unmounter, "openai", request.node.originalname) as m:
        m.configure()
        yield m


def emulator(mount: EngineMount) -> OpenAIEmulator:
    assert isinstance(mount.emulator, OpenAIEmulator)
    return mount.emulator


def test_a_key_nobody_revokes_dies_at_openai_on_its_own(openai_mount: EngineMount) -> None:
    mount = openai_mount
    mount.add_role("app", ttl="10m", max_ttl="1h")
    before = time.time()
    lease = mount.creds("app")
    after = time.time()

    live = mount.emulator.find_key(lease.key_id)
    assert live is not None and live.secret == lease.api_key
    assert live.expires_at is not None
    assert (
        before + 3600 + PROVIDER_EXPIRY_GRACE - 1
        <= live.expires_at
        <= after + 3600 + PROVIDER_EXPIRY_GRACE + 2
    )
    assert lease.data["expires_at"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(live.expires_at))
    assert mount.infer(lease.api_key) == 200

    # Just before its expiry at OpenAI the key still works; just after, OpenAI refuses it, though the engine
    # has made no call: the lease is still live in Vault and nothing was deleted.
    emu = emulator(mount)
    emu.advance_clock(live.expires_at - emu.now() - 5)
    assert mount.infer(lease.api_key) == 200
    emu.advance_clock(6)
    assert mount.infer(lease.api_key) == 401
    assert emu.delete_count == 0 and mount.emulator.find_key(lease.key_id) is not None
    assert mount.lookup(lease.lease_id)[0] == 200

    # Revoking the lease still deletes the (expired) key at OpenAI.
    mount.api.ok("PUT", "sys/leases/revoke", json={"lease_id": lease.lease_id})
    assert mount.is_deleted_at_provider(lease.key_id)
    assert mount.emulator.live_keys() == []


def test_revoke_deletes_the_key_before_its_expiry(openai_mount: EngineMount) -> None:
    mount = openai_mount
    mount.add_role("app", ttl="10m", max_ttl="20m")
    lease = mount.creds("app")
    other = mount.creds("app")
    assert mount.infer(lease.api_key) == 200
    mount.api.ok("PUT", "sys/leases/revoke", json={"lease_id": lease.lease_id})
    assert mount.is_deleted_at_provider(lease.key_id)
    assert mount.infer(lease.api_key) == 401
    assert mount.infer(other.api_key) == 200


def test_sweep_finds_keys_under_a_roles_shared_account(openai_mount: EngineMount) -> None:
    mount = openai_mount
    mount.must_write("tidy/config", interval="0")  # no periodic sweep racing the one under test
    mount.add_role("app", ttl="10m", max_ttl="1h")
    live = mount.creds("app")
    prefix = mount.prefix()
    emu = emulator(mount)
    account = role_account_name(prefix, "app")
    old = time.time() - 3600
    # Leftovers of a crash in "key per lease" mode, more than a page of project keys apart.
    emu.set_page_size(2)
    for i in range(3):
        emu.seed_api_key(
            f"{prefix}app-1700000000-filler{i}", account_name="someone-elses-account", created_at=old
        )
    expired = emu.seed_api_key(
        f"{prefix}app-1700000000-expired1", account_name=account, created_at=old, expires_at=time.time() - 60
    )
    stuck = emu.seed_api_key(f"{prefix}app-1700000000-crashed1", account_name=account, created_at=old)
    young = emu.seed_api_key(f"{prefix}app-1700000000-inflight", account_name=account)

    report = mount.tidy()

    # The expired one counts as gone (OpenAI reports its expiry past); the live one cannot be deleted
    # through the project (OpenAI's documented refusal), so it is reported, not counted as deleted.
    deleted = {str(k["key_id"]) for k in report["orphans_deleted"]}
    assert expired.key_id in deleted and stuck.key_id not in deleted
    assert any(stuck.key_id in str(f) for f in report["failures"]), report["failures"]
    assert report["orphans_too_young"] >= 1
    assert mount.infer(stuck.secret) == 200
    assert mount.infer(young.secret) == 200
    assert mount.infer(live.api_key) == 200  # the tracked key of a live lease is untouched
    # The role's shared account is not a key: it is still there.
    names = [k.name for k in emu.live_keys()]
    assert account in names

    # Where OpenAI lets the delete through, the same sweep deletes the orphan.
    emu.allow_service_account_key_delete = True
    again = mount.tidy()
    assert stuck.key_id in {str(k["key_id"]) for k in again["orphans_deleted"]}
    assert mount.infer(stuck.secret) == 401
    assert mount.infer(young.secret) == 200 and mount.infer(live.api_key) == 200
    assert account in [k.name for k in emu.live_keys()]
