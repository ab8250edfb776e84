"""Roles that name who asked, and OpenAI roles with scopes and a key per lease, through a real OpenBao.

What a user relies on:
- an entity with metadata logs in (userpass, with an entity alias and a group) and reads creds: the key's
  name and its metadata at the provider carry the entity's name, its team (entity metadata) and its groups,
  rendered from the role's templates; a root token (no entity) gets the fixed "unknown" in their place and
  still gets its key;
- an OpenAI role with `openai_key_mode=key_per_lease` and `scopes` gets its keys under one service account of
  the role (named after the mount and the role), each key with the role's scopes and an expiry at OpenAI,
  and a revoke deletes the key there (when OpenAI allows it).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable

import httpx
import pytest
from engine_support import EngineMount, VaultApi
from llm_emulators import OpenAIEmulator
from llmsecrets.providers.openai import role_account_name

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def litellm_mount(new_mount: Callable[[str], EngineMount]) -> EngineMount:
    return new_mount("litellm")


@pytest.fixture
def openai_mount(new_mount: Callable[[str], EngineMount]) -> EngineMount:
    return new_mount("openai")


def login_as_entity(api: VaultApi, mount: EngineMount, role: str) -> tuple[str, str]:
    """A userpass user whose entity is named svc-payments (metadata team=payments) and is a member of
    group payments-devs; returns (its token, the entity's name)."""
    suffix = secrets.token_hex(4)
    auth_path = f"up-{suffix}"
    api.ok("POST", f"sys/auth/{auth_path}", json={"type": "userpass"})
    accessor = api.ok("GET", "sys/auth")["data"][f"{auth_path}/"]["accessor"]
    policy = f'path "{mount.path}/creds/{role}" {{ capabilities = ["read"] }}'
    api.ok("PUT", f"sys/policies/acl/creds-{suffix}", json={"policy": policy})
    password = secrets.token_urlsafe(16)
    api.ok(
        "POST", f"auth/{auth_path}/users/alice", json={"password": password, "policies": [f"creds-{suffix}"]}
    )
    entity_name = f"svc-payments-{suffix}"
    entity = api.ok("POST", "identity/entity", json={"name": entity_name, "metadata": {"team": "payments"}})
    entity_id = entity["data"]["id"]
    api.ok(
        "POST",
        "identity/entity-alias",
        json={"name": "alice", "canonical_id": entity_id, "mount_accessor": accessor},
    )
    api.ok(
        "POST", "identity/group", json={"name": f"payments-devs-{suffix}", "member_entity_ids": [entity_id]}
    )
    login = api.ok("POST", f"auth/{auth_path}/login/alice", json={"password": password})
    return str(login["auth"]["client_token"]), entity_name


def creds_as(mount: EngineMount, token: str, role: str) -> dict[str, object]:
    resp = httpx.get(f"{mount.server.addr}/v1/{mount.path}/creds/{role}", headers={"X-Vault-Token": token})
    assert resp.status_code == 200, resp.text
    body: dict[str, object] = resp.json()
    return body


def test_key_name_and_metadata_carry_the_requesting_identity(
    litellm_mount: EngineMount, api: VaultApi
) -> None:
    mount = litellm_mount
    mount.add_role(
        "team",
        ttl="10m",
        max_ttl="1h",
        name_template="{{identity.entity.metadata.team}}-{{identity.entity.name}}-{{random}}",
        metadata={"owner": "{{identity.entity.name}}", "groups": "{{identity.groups.names}}", "app": "pay"},
    )
    token, entity_name = login_as_entity(api, mount, "team")

    body = creds_as(mount, token, "team")
    data = body["data"]
    assert isinstance(data, dict)
    key = mount.emulator.find_key(str(data["key_id"]))
    assert key is not None
    assert re.fullmatch(rf"vault-[0-9a-f]{{8}}-payments-{re.escape(entity_name)}-[a-z0-9]{{8}}", key.name)
    assert data["key_name"] == key.name
    assert dict(key.metadata)["owner"] == entity_name
    assert dict(key.metadata)["groups"] == f"payments-devs-{entity_name.rsplit('-', 1)[1]}"
    assert dict(key.metadata)["app"] == "pay"

    # A root token has no entity: the placeholders render as "unknown", and the key is still issued.
    root = mount.creds("team")
    root_key = mount.emulator.find_key(root.key_id)
    assert root_key is not None
    assert re.fullmatch(r"vault-[0-9a-f]{8}-unknown-unknown-[a-z0-9]{8}", root_key.name)
    assert dict(root_key.metadata)["owner"] == "unknown"


def test_an_unknown_placeholder_is_refused_when_the_role_is_written(litellm_mount: EngineMount) -> None:
    status, body = litellm_mount.write(
        "roles/bad", connection="main", metadata={"owner": "{{identity.entity.nickname}}"}
    )
    assert status == 400
    message = " ".join(body["errors"])
    assert "\"metadata\" value of 'owner' has an unknown placeholder" in message
    assert "{{identity.entity.name}}" in message  # the known ones are listed


def test_openai_key_per_lease_under_the_roles_account_with_scopes(openai_mount: EngineMount) -> None:
    mount = openai_mount
    emu = mount.emulator
    assert isinstance(emu, OpenAIEmulator)
    mount.add_role(
        "scoped", ttl="10m", max_ttl="1h", openai_key_mode="key_per_lease", scopes="api.model.request"
    )
    read = mount.read("roles/scoped")[1]["data"]
    assert (read["openai_key_mode"], read["scopes"]) == ("key_per_lease", ["api.model.request"])

    first, second = mount.creds("scoped"), mount.creds("scoped")
    account = emu.service_account_of(first.key_id)
    assert account is not None and account == emu.service_account_of(second.key_id)
    accounts = {k.key_id: k.name for k in emu.live_keys()}
    assert accounts[account] == role_account_name(mount.prefix(), "scoped")
    assert emu.key_scopes(first.key_id) == ["api.model.request"]
    assert mount.infer(first.api_key) == 200

    emu.allow_service_account_key_delete = True  # OpenAI documents refusing this: see the provider module
    mount.api.ok("PUT", "sys/leases/revoke", json={"lease_id": first.lease_id})
    assert mount.is_deleted_at_provider(first.key_id)
    assert mount.infer(second.api_key) == 200


def test_scopes_and_key_mode_are_refused_for_other_providers(litellm_mount: EngineMount) -> None:
    for field, value in (("scopes", "api.model.request"), ("openai_key_mode", "key_per_lease")):
        status, body = litellm_mount.write("roles/r", connection="main", **{field: value})
        assert status == 400, body
        assert f'"{field}"' in " ".join(body["errors"])
