"""OpenAI client against the emulator over real HTTP: expiry at the provider, scopes, and both key modes
(a service account per lease; a key per lease under one service account per role)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from llm_emulators import OpenAIEmulator
from llmsecrets.providers import KeySpec, OpenAIClient, ProviderRejected
from llmsecrets.providers.openai import KEY_PER_LEASE, KEY_SCOPE_SUFFIX, role_account_name

ADMIN = "sk-admin-emulator:provider-tests"
PROJECT = "proj_default"
PREFIX = "vault-0123abcd-"
ROLE_SA = role_account_name(PREFIX, "ci")
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


@dataclass
class Env:
    emu: OpenAIEmulator
    url: str
    admin: httpx.Client

    def client(self, **kwargs: Any) -> OpenAIClient:
        return OpenAIClient(admin_key=ADMIN, base_url=self.url, **kwargs)

    def chat(self, secret: str) -> httpx.Response:
        return httpx.post(
            f"{self.url}/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {secret}"}
        )

    def accounts(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = self.admin.get(
            f"/organization/projects/{PROJECT}/service_accounts", params={"limit": 100}
        ).json()["data"]
        return data


@pytest.fixture
def env() -> Iterator[Env]:
    emu = OpenAIEmulator(admin_key=ADMIN)
    with (
        emu.serve() as server,
        httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {ADMIN}"}) as admin,
    ):
        yield Env(emu, server.base_url, admin)


def deadline() -> float:
    return time.monotonic() + 20


def spec(name: str, *, seconds: int = 3600, **kwargs: Any) -> KeySpec:
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=seconds)
    return KeySpec(name=name, project_id=PROJECT, expires_at=expires, **kwargs)


def test_default_mode_expires_at_the_provider_and_revoke_deletes(env: Env) -> None:
    client = env.client()
    assert client.capabilities.expiry and client.capabilities.scopes
    s = spec(PREFIX + "app-1", seconds=600)
    issued = client.create_key(s, deadline=deadline())
    assert issued.key_id.startswith("svc_acct_") and issued.scope == PROJECT
    assert issued.expires_at == s.expires_at
    live = env.emu.find_key(issued.key_id)
    assert live is not None and live.expires_at == pytest.approx(s.expires_at.timestamp(), abs=2)  # type: ignore[union-attr]
    secret = issued.api_key.reveal()
    assert env.chat(secret).status_code == 200
    env.emu.advance_clock(601)
    r = env.chat(secret)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    # Nobody revoked it, so it still exists (expired) until the delete.
    assert client.delete_key(issued.key_id, scope=issued.scope, deadline=deadline()) is True
    assert client.delete_key(issued.key_id, scope=issued.scope, deadline=deadline()) is False
    assert env.emu.live_keys() == []


def test_default_mode_with_scopes_makes_a_bare_account_and_one_scoped_key(env: Env) -> None:
    client = env.client()
    issued = client.create_key(spec(PREFIX + "app-2", scopes=("api.model.request",)), deadline=deadline())
    [account] = env.accounts()
    assert account["id"] == issued.key_id and account["role"] == "member"
    keys = env.admin.get(f"/organization/projects/{PROJECT}/api_keys").json()["data"]
    assert [k["name"] for k in keys] == [PREFIX + "app-2"]
    assert env.emu.key_scopes(keys[0]["id"]) == ["api.model.request"]
    assert keys[0]["expires_at"] is not None
    assert env.chat(issued.api_key.reveal()).status_code == 200
    # The sweep sees one thing to delete (the account), not the account and its key.
    found = client.find_keys(PREFIX, scope=None, deadline=deadline())
    assert [(k.key_id, k.scope) for k in found] == [(issued.key_id, PROJECT)]
    assert client.delete_key(issued.key_id, scope=issued.scope, deadline=deadline()) is True
    assert env.chat(issued.api_key.reveal()).status_code == 401


def test_key_per_lease_shares_one_account_per_role(env: Env) -> None:
    client = env.client(key_mode=KEY_PER_LEASE)
    specs = [
        spec(PREFIX + f"ci-{i}", service_account_name=ROLE_SA, scopes=("api.model.request",))
        for i in range(3)
    ]
    issued = [client.create_key(s, deadline=deadline()) for s in specs]
    [account] = env.accounts()
    assert account["name"] == ROLE_SA and account["role"] == "member"
    for key, s in zip(issued, specs, strict=True):
        assert key.key_id.startswith("key_") and key.scope == PROJECT + KEY_SCOPE_SUFFIX
        assert env.emu.service_account_of(key.key_id) == account["id"]
        assert env.emu.key_scopes(key.key_id) == ["api.model.request"]
        assert key.expires_at == s.expires_at
        assert env.chat(key.api_key.reveal()).status_code == 200
    # A second client (another node) finds the same account by name.
    other = env.client(key_mode=KEY_PER_LEASE)
    other.create_key(spec(PREFIX + "ci-9", service_account_name=ROLE_SA), deadline=deadline())
    assert len(env.accounts()) == 1
    # The role's account is never reported as an orphan key; its keys are, by name.
    found = client.find_keys(PREFIX, scope=None, deadline=deadline())
    assert sorted(k.name for k in found) == sorted([s.name for s in specs] + [PREFIX + "ci-9"])
    assert all(k.scope == PROJECT + KEY_SCOPE_SUFFIX for k in found)


def test_key_per_lease_expires_on_its_own(env: Env) -> None:
    client = env.client(key_mode=KEY_PER_LEASE)
    key = client.create_key(
        spec(PREFIX + "ci-1", seconds=120, service_account_name=ROLE_SA), deadline=deadline()
    )
    assert env.chat(key.api_key.reveal()).status_code == 200
    env.emu.advance_clock(121)
    r = env.chat(key.api_key.reveal())
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


def test_key_per_lease_delete_refused_counts_as_gone_only_when_openai_says_so(env: Env) -> None:
    client = env.client(key_mode=KEY_PER_LEASE)
    key = client.create_key(
        spec(PREFIX + "ci-1", seconds=3, service_account_name=ROLE_SA), deadline=deadline()
    )
    # OpenAI documents deleting a service account's key through the project as an error.
    with pytest.raises(ProviderRejected, match="still live at openai; it expires at"):
        client.delete_key(key.key_id, scope=key.scope, deadline=deadline())
    assert env.chat(key.api_key.reveal()).status_code == 200
    # Once the expiry OpenAI reports for the key is past, the key counts as gone (and is dead there).
    assert key.expires_at is not None
    # (OpenAI reports whole seconds; the emulator expires at the fraction after.)
    time.sleep(max(0.0, (key.expires_at - datetime.now(UTC)).total_seconds()) + 1.1)
    assert env.chat(key.api_key.reveal()).status_code == 401
    assert client.delete_key(key.key_id, scope=key.scope, deadline=deadline()) is False


def test_key_per_lease_delete_when_openai_allows_it(env: Env) -> None:
    env.emu.allow_service_account_key_delete = True
    client = env.client(key_mode=KEY_PER_LEASE)
    keys = [
        client.create_key(spec(PREFIX + f"ci-{i}", service_account_name=ROLE_SA), deadline=deadline())
        for i in range(2)
    ]
    assert client.delete_key(keys[0].key_id, scope=keys[0].scope, deadline=deadline()) is True
    assert env.chat(keys[0].api_key.reveal()).status_code == 401
    assert env.chat(keys[1].api_key.reveal()).status_code == 200  # the other lease's key is untouched
    assert client.delete_key(keys[0].key_id, scope=keys[0].scope, deadline=deadline()) is False


def test_key_per_lease_when_the_roles_account_vanished(env: Env) -> None:
    client = env.client(key_mode=KEY_PER_LEASE)
    key = client.create_key(spec(PREFIX + "ci-1", service_account_name=ROLE_SA), deadline=deadline())
    [account] = env.accounts()
    assert (
        env.admin.delete(f"/organization/projects/{PROJECT}/service_accounts/{account['id']}").status_code
        == 200
    )
    # OpenAI no longer knows the key: gone, confirmed by a 404 on the key itself.
    assert client.delete_key(key.key_id, scope=key.scope, deadline=deadline()) is False
    # The next create finds no account under that id and makes the role's account again.
    again = client.create_key(spec(PREFIX + "ci-2", service_account_name=ROLE_SA), deadline=deadline())
    [fresh] = env.accounts()
    assert fresh["id"] != account["id"] and fresh["name"] == ROLE_SA
    assert env.chat(again.api_key.reveal()).status_code == 200


def test_key_per_lease_adopts_an_account_left_without_a_role(env: Env) -> None:
    r = env.admin.post(
        f"/organization/projects/{PROJECT}/service_accounts",
        json={"name": ROLE_SA, "create_service_account_only": True},
    )
    assert r.json()["role"] == "none"
    client = env.client(key_mode=KEY_PER_LEASE)
    key = client.create_key(spec(PREFIX + "ci-1", service_account_name=ROLE_SA), deadline=deadline())
    [account] = env.accounts()
    assert account["id"] == r.json()["id"] and account["role"] == "member"
    assert env.chat(key.api_key.reveal()).status_code == 200


def test_find_keys_walks_every_page_of_project_keys(env: Env) -> None:
    env.emu.set_page_size(2)
    client = env.client(key_mode=KEY_PER_LEASE)
    names = [PREFIX + f"ci-{i}" for i in range(5)]
    for name in names:
        client.create_key(spec(name, service_account_name=ROLE_SA), deadline=deadline())
    # What a rollback does: look for one exact name within the role's project.
    found = client.find_keys(names[4], scope=PROJECT, deadline=deadline())
    assert [k.name for k in found] == [names[4]]
    assert sorted(k.name for k in client.find_keys(PREFIX, scope=PROJECT, deadline=deadline())) == names


def test_key_mode_validation(env: Env) -> None:
    with pytest.raises(ValueError, match="key_mode"):
        env.client(key_mode="per_lease")
    client = env.client(key_mode=KEY_PER_LEASE)
    with pytest.raises(ValueError, match="service_account_name"):
        client.create_key(spec(PREFIX + "x"), deadline=deadline())
    with pytest.raises(ValueError, match="must contain"):
        client.create_key(spec(PREFIX + "x", service_account_name=PREFIX + "role-ci"), deadline=deadline())
    # A role may ask for the mode on its own, whatever the client's default.
    per_role = env.client().create_key(
        spec(PREFIX + "y", key_mode=KEY_PER_LEASE, service_account_name=ROLE_SA), deadline=deadline()
    )
    assert per_role.scope == PROJECT + KEY_SCOPE_SUFFIX
    [account] = env.accounts()
    assert account["name"] == ROLE_SA and env.emu.service_account_of(per_role.key_id) == account["id"]
