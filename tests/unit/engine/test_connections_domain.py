"""connections.py called directly (no request, no FieldData): a connection update's rules, the stored
record's schema (released records still read), and the one way to a client with its one error type."""

from __future__ import annotations

from typing import Any

import pytest
from engine_env import ADMIN_KEYS, LITELLM_URL, Env
from llmsecrets import connections
from llmsecrets.connections import (
    ConnectionInUse,
    InvalidConnection,
    Unusable,
    UnusableConnection,
    merge,
)
from llmsecrets.models import ConnectionConfig, IssuedKeyRecord, RecordError
from llmsecrets.providers.registry import PROVIDERS
from vaultplugin.framework import put_json

KEY = "sk-FAKE-TEST-admin-0000"


def new(provider: str, **fields: Any) -> ConnectionConfig:
    return merge("c", None, {"provider": provider, "admin_key": KEY, **fields})


# --- merging an update -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"admin_key": KEY}, 'missing required field "provider"'),
        ({"provider": "openrouter"}, 'missing required field "admin_key"'),
        ({"provider": "openrouter", "admin_key": "  "}, '"admin_key" must not be empty'),
        ({"provider": "openrouter", "admin_key": "sk x"}, '"admin_key" must be printable ASCII'),
        ({"provider": "openrouter", "admin_key": "sk-é"}, '"admin_key" must be printable ASCII'),
        ({"provider": "litellm", "admin_key": KEY}, '"base_url" is required for litellm'),
        ({"provider": "openrouter", "admin_key": KEY, "base_url": "ftp://h"}, "http:// or https://"),
        ({"provider": "openrouter", "admin_key": KEY, "base_url": "https://u:p@h"}, "credentials"),
        ({"provider": "openrouter", "admin_key": KEY, "base_url": "https://h/?q=1"}, "query"),
        ({"provider": "openrouter", "admin_key": KEY, "base_url": "https://h:99999"}, "not a valid URL"),
        ({"provider": "openrouter", "admin_key": KEY, "allowed_roles": ["ok", "no/pe"]}, "not a role name"),
        ({"provider": "xai", "admin_key": KEY}, 'missing required field "team_id" for xai'),
        ({"provider": "fireworks", "admin_key": KEY, "account_id": "a"}, '"user_id" for fireworks'),
        ({"provider": "xai", "admin_key": KEY, "team_id": "a/b"}, '"team_id" must be 1-128 letters'),
        (
            {"provider": "openai", "admin_key": KEY, "team_id": "t"},
            '"team_id" applies to xai only, not openai',
        ),
        (
            {"provider": "xai", "admin_key": KEY, "team_id": "t", "organization_id": "org-1"},
            '"organization_id" applies to openai only, not xai',
        ),
        ({"provider": "openai", "admin_key": KEY, "organization_id": "org 1"}, '"organization_id" must be'),
        ({"provider": "azure", "admin_key": KEY}, '"provider" must be one of'),
    ],
)
def test_a_bad_update_names_its_field(update: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidConnection, match=message):
        merge("c", None, update)


def test_the_provider_cannot_change() -> None:
    with pytest.raises(InvalidConnection, match="cannot change from 'openrouter' to 'openai'"):
        merge("c", new("openrouter"), {"provider": "openai"})


def test_fields_not_sent_keep_their_values_and_empty_ones_clear() -> None:
    conn = new("openai", organization_id=" org-1 ", base_url="https://proxy.example/v1", allowed_roles=["a"])
    assert conn.account == {"organization_id": "org-1"}
    kept = merge("c", conn, {"allowed_roles": ["b", "b", " c ", ""]})
    assert (kept.admin_key, kept.base_url, kept.account) == (KEY, "https://proxy.example/v1", conn.account)
    assert kept.allowed_roles == ("b", "c")
    cleared = merge("c", kept, {"organization_id": "", "base_url": ""})
    assert cleared.account == {} and cleared.base_url is None

    fw = new("fireworks", account_id="acme", user_id="sa")
    assert merge("c", fw, {"user_id": "sa-2"}).account == {"account_id": "acme", "user_id": "sa-2"}
    # A blank foreign field is ignored (clients send every field of a form); a set one is refused.
    assert merge("c", fw, {"team_id": " ", "organization_id": ""}).account == fw.account


def test_the_admin_key_is_stripped_and_never_in_repr() -> None:
    conn = merge("c", None, {"provider": "litellm", "admin_key": f" {KEY}\n", "base_url": LITELLM_URL})
    assert conn.admin_key == KEY
    assert KEY not in repr(conn)


def test_every_account_field_of_the_registry_is_a_path_field() -> None:
    from llmsecrets.path_config import FIELDS

    assert set(connections.account_field_names()) <= set(FIELDS)
    assert set(connections.UPDATE_FIELDS) <= set(FIELDS)


# --- the stored record -------------------------------------------------------------------------------------


def test_a_record_of_a_released_version_still_reads() -> None:
    released = {
        "schema_version": 1,
        "name": "c",
        "provider": "openai",
        "admin_key": KEY,
        "base_url": None,
        "organization_id": "org-1",
        "allowed_roles": ["a"],
    }
    conn = ConnectionConfig.from_storage(released)
    assert conn.account == {"organization_id": "org-1"}
    assert conn.organization_id == "org-1"
    written = conn.to_storage()
    # Where released versions read it, so a downgrade keeps the organization.
    assert written["organization_id"] == "org-1" and written["account"] == {}
    assert ConnectionConfig.from_storage(written) == conn


def test_account_fields_round_trip_by_name() -> None:
    conn = new("fireworks", account_id="acme", user_id="sa")
    stored = conn.to_storage()
    assert stored["account"] == {"account_id": "acme", "user_id": "sa"}
    assert stored["organization_id"] is None
    assert ConnectionConfig.from_storage(stored) == conn


@pytest.mark.parametrize(
    "account", [{"organization_id": "org-1"}, {"team_id": 7}, ["team_id"]], ids=["org-inside", "int", "list"]
)
def test_a_malformed_account_map_is_a_record_error(account: Any) -> None:
    stored = {**new("xai", team_id="t").to_storage(), "account": account}
    with pytest.raises(RecordError):
        ConnectionConfig.from_storage(stored)


def test_view_always_has_organization_id_and_the_providers_fields() -> None:
    assert connections.view(new("openai", organization_id="org-1"), live_keys=2) == {
        "provider": "openai",
        "admin_key_set": True,
        "base_url": PROVIDERS["openai"].default_base_url,
        "organization_id": "org-1",
        "allowed_roles": [],
        "live_keys": 2,
        "admin_key_id": "",
        "admin_key_rotated_at": None,
        "rotation_period": 0,
        "rotation_overlap": 60,
        "previous_admin_key_id": "",
        "previous_admin_key_delete_by": None,
    }
    view = connections.view(new("xai", team_id="t"), live_keys=0)
    assert (view["organization_id"], view["team_id"]) == ("", "t")
    assert "account_id" not in view and KEY not in repr(view)


# --- clients -----------------------------------------------------------------------------------------------


def test_client_for_keys_one_error_type_for_every_reason(env: Env) -> None:
    env.connect("openrouter", name="or")
    conn, client = connections.client_for_keys(env.backend, env.storage, "or", "openrouter")
    assert conn.name == "or" and client is connections.client(env.backend, conn)  # the cached one

    with pytest.raises(UnusableConnection) as missing:
        connections.client_for_keys(env.backend, env.storage, "gone", "openrouter")
    assert (
        missing.value.why is Unusable.MISSING and str(missing.value) == "connection 'gone' no longer exists"
    )
    assert "write config/gone again" in connections.deletion_blocker(missing.value)

    with pytest.raises(UnusableConnection) as changed:
        connections.client_for_keys(env.backend, env.storage, "or", "litellm")
    assert changed.value.why is Unusable.PROVIDER_CHANGED
    assert str(changed.value) == "connection 'or' is now openrouter, the key was issued by litellm"

    # A record the provider layer refuses (an organization on an OpenRouter connection, written by hand).
    put_json(env.storage, "config/x", {**new("openrouter").to_storage(), "name": "x", "organization_id": "o"})
    with pytest.raises(UnusableConnection) as refused:
        connections.client_for_keys(env.backend, env.storage, "x", "openrouter")
    assert refused.value.why is Unusable.SETTINGS
    reason = "openrouter: organization_id applies to openai only"
    assert str(refused.value) == f"connection 'x' is unusable: {reason}"
    assert connections.deletion_blocker(refused.value) == f"connection 'x': {reason}"


def test_write_stores_and_a_failed_check_stores_nothing(env: Env) -> None:
    conn = connections.write(
        env.backend,
        env.storage,
        "or",
        {"provider": "openrouter", "admin_key": ADMIN_KEYS["openrouter"]},
        verify=True,
    )
    assert env.backend.connection(env.storage, "or") == conn
    assert connections.names(env.storage) == ["or"]
    from llmsecrets.providers.errors import ProviderAuthError

    with pytest.raises(ProviderAuthError):
        connections.write(
            env.backend,
            env.storage,
            "bad",
            {"provider": "openrouter", "admin_key": "sk-or-v1-FAKE-no"},
            verify=True,
        )
    assert env.storage.get("config/bad") is None


def test_delete_refuses_a_connection_with_live_keys(env: Env) -> None:
    env.setup_provider("openrouter")
    env.creds("openrouter-role")
    with pytest.raises(ConnectionInUse) as err:
        connections.delete(env.backend, env.storage, "openrouter")
    assert (err.value.live_keys, err.value.pending_creates) == (1, 0)
    assert env.backend.connection(env.storage, "openrouter") is not None
    for key in connections.live_key_ids(env.storage, "openrouter"):
        env.storage.delete(IssuedKeyRecord.storage_key("openrouter", key))
    connections.delete(env.backend, env.storage, "openrouter")
    assert connections.get(env.backend, env.storage, "openrouter") is None
    connections.delete(env.backend, env.storage, "openrouter")  # nothing to delete: no error
