"""config/<name>: connections, write-only admin keys, verification, and every bad input as a 400."""

from __future__ import annotations

import pytest
from engine_env import ADMIN_KEYS, LITELLM_URL, Env
from vaultplugin.framework import BadRequest, Operation


def test_create_read_list_for_every_provider(env: Env, provider: str) -> None:
    env.connect(provider, allowed_roles="a,b")
    resp = env.read(f"config/{provider}")
    assert resp is not None
    assert resp.data["provider"] == provider
    assert resp.data["admin_key_set"] is True
    assert resp.data["allowed_roles"] == ["a", "b"]
    assert "admin_key" not in resp.data
    assert ADMIN_KEYS[provider] not in repr(resp.data)
    listed = env.list_keys("config/")
    assert listed is not None and listed.data["keys"] == [provider]


def test_read_shows_default_base_url_and_unknown_is_404(env: Env) -> None:
    env.connect("openrouter")
    resp = env.read("config/openrouter")
    assert resp is not None and resp.data["base_url"] == "https://openrouter.ai/api/v1"
    assert env.read("config/nope") is None


def test_update_keeps_admin_key_and_other_fields(env: Env) -> None:
    env.connect("litellm", allowed_roles="r1")
    env.write("config/litellm", allowed_roles="r1,r2")
    stored = env.backend.connection(env.storage, "litellm")
    assert stored is not None
    assert stored.admin_key == ADMIN_KEYS["litellm"]
    assert stored.base_url == LITELLM_URL
    assert stored.allowed_roles == ("r1", "r2")


def test_update_uses_new_admin_key_for_new_clients(env: Env) -> None:
    env.setup_provider("openrouter")
    env.creds("openrouter-role")
    with pytest.raises(BadRequest, match="admin key"):
        env.write("config/openrouter", admin_key="sk-or-v1-FAKE-wrong-key")
    # Nothing stored on a failed verify: the old key still works.
    env.creds("openrouter-role")


def test_verify_failure_is_400_with_reason_and_nothing_stored(env: Env) -> None:
    with pytest.raises(BadRequest) as err:
        env.write("config/or", provider="openrouter", admin_key="sk-or-v1-FAKE-not-the-key")
    assert "refused the admin key" in err.value.message
    assert "sk-or-v1-FAKE-not-the-key" not in err.value.message
    assert env.storage.get("config/or") is None


def test_verify_false_stores_without_calling_the_provider(env: Env) -> None:
    env.write("config/or", provider="openrouter", admin_key="sk-or-v1-FAKE-unchecked", verify=False)
    assert env.storage.get("config/or") is not None
    assert env.transport_calls == []


def test_verify_outage_is_400(env: Env) -> None:
    env.emus["openrouter"].faults.server_error(times=None)
    with pytest.raises(BadRequest, match="could not be reached or is failing"):
        env.connect("openrouter")
    assert env.storage.get("config/openrouter") is None


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"admin_key": "sk-FAKE-x"}, "provider"),
        ({"provider": "azure", "admin_key": "sk-FAKE-x"}, "provider"),
        ({"provider": "openrouter"}, "admin_key"),
        ({"provider": "openrouter", "admin_key": "   "}, "admin_key"),
        ({"provider": "openrouter", "admin_key": "k" * 5000}, "admin_key"),
        ({"provider": "litellm", "admin_key": "sk-FAKE-x"}, "base_url"),
        ({"provider": "litellm", "admin_key": "sk-FAKE-x", "base_url": "ftp://host"}, "base_url"),
        ({"provider": "litellm", "admin_key": "sk-FAKE-x", "base_url": "not a url"}, "base_url"),
        ({"provider": "litellm", "admin_key": "sk-FAKE-x", "base_url": "http://u:p@host"}, "base_url"),
        ({"provider": "litellm", "admin_key": "sk-FAKE-x", "base_url": "http://host:99999"}, "base_url"),
        ({"provider": "openrouter", "admin_key": "sk-FAKE-x", "organization_id": "org-1"}, "organization_id"),
        ({"provider": "openrouter", "admin_key": "sk-FAKE-x", "allowed_roles": ["a/b"]}, "allowed_roles"),
        ({"provider": "openrouter", "admin_key": "sk-FAKE-x", "allowed_roles": {"x": 1}}, "allowed_roles"),
        ({"provider": "openrouter", "admin_key": "sk-FAKE-x", "verify": "maybe"}, "verify"),
    ],
)
def test_bad_input_is_400_naming_the_field(env: Env, data: dict[str, object], field: str) -> None:
    with pytest.raises(BadRequest) as err:
        env.write("config/c1", **data)
    assert field in err.value.message
    assert "sk-FAKE-x" not in err.value.message
    assert env.storage.get("config/c1") is None


@pytest.mark.parametrize("name", ["a/b", "bad name", "-x", "x" * 200])
def test_bad_names_are_400(env: Env, name: str) -> None:
    with pytest.raises(BadRequest, match='"name"'):
        env.request(Operation.CREATE, f"config/{name}", provider="openrouter", admin_key="sk-FAKE-x")
    assert env.storage.keys() == []


def test_provider_cannot_change(env: Env) -> None:
    env.connect("openrouter", name="c")
    with pytest.raises(BadRequest, match='"provider" cannot change'):
        env.write("config/c", provider="litellm", base_url=LITELLM_URL, admin_key=ADMIN_KEYS["litellm"])


def test_delete_refused_while_keys_are_live(env: Env) -> None:
    role = env.setup_provider("openrouter")
    lease = env.creds(role)
    with pytest.raises(BadRequest) as err:
        env.delete("config/openrouter")
    assert "1 live key" in err.value.message
    assert "bao lease revoke -prefix llm/creds/" in err.value.message
    assert env.storage.get("config/openrouter") is not None
    env.revoke(lease)
    env.delete("config/openrouter")
    assert env.storage.get("config/openrouter") is None
    assert env.read("config/openrouter") is None


def test_delete_of_missing_connection_is_a_no_op(env: Env) -> None:
    assert env.delete("config/none") is None


def test_write_invalidates_cached_client(env: Env) -> None:
    role = env.setup_provider("litellm")
    env.creds(role)
    calls = len(env.transport_calls)
    env.creds(role)
    assert len(env.transport_calls) == calls  # cached client reused
    env.write("config/litellm", allowed_roles="*")
    env.creds(role)
    assert len(env.transport_calls) > calls


def test_invalidate_drops_cached_connection(env: Env) -> None:
    role = env.setup_provider("openrouter")
    env.creds(role)
    # Another node changed the connection behind our back.
    raw = env.storage.get("config/openrouter")
    assert raw is not None
    env.storage.put("config/openrouter", raw.replace(b'"allowed_roles":[]', b'"allowed_roles":["other"]'))
    env.creds(role)  # still cached
    env.backend.invalidate("config/openrouter")
    with pytest.raises(BadRequest, match="allowed_roles"):
        env.creds(role)


def test_read_shows_the_prefix_every_issued_key_name_carries(env: Env) -> None:
    # No Vault API shows the backend UUID the prefix comes from: the config read is where operators find it.
    env.setup_provider("openrouter")
    issued = env.creds("openrouter-role")
    resp = env.read("config/openrouter")
    assert resp is not None
    prefix = resp.data["key_name_prefix"]
    assert prefix.startswith("vault-") and len(prefix) == len("vault-12345678-")
    assert issued.data["key_name"].startswith(prefix)
