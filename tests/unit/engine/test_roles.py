"""roles/<name>: validation against the mount, the connection and the provider's per-key capabilities."""

from __future__ import annotations

from typing import Any

import pytest
from engine_env import MOUNT_MAX_TTL, PROJECT, Env
from vaultplugin.framework import BadRequest, Operation


def test_create_read_list_update_delete(env: Env, provider: str) -> None:
    env.connect(provider)
    env.role(provider, name="r", ttl="15m", max_ttl="2h")
    resp = env.read("roles/r")
    assert resp is not None
    assert resp.data["connection"] == provider
    assert resp.data["ttl"] == 900
    assert resp.data["max_ttl"] == 7200
    assert resp.data["name_template"] == "{{role}}-{{unix_time}}-{{random}}"
    # A partial update keeps everything else.
    env.write("roles/r", ttl="30m")
    resp = env.read("roles/r")
    assert resp is not None and resp.data["ttl"] == 1800 and resp.data["max_ttl"] == 7200
    listed = env.list_keys("roles/")
    assert listed is not None and listed.data["keys"] == ["r"]
    env.delete("roles/r")
    assert env.read("roles/r") is None


def test_per_key_controls_where_supported(env: Env) -> None:
    env.connect("litellm")
    env.role("litellm", name="l", spend_limit=2.5, models="gpt-4o,gpt-4o-mini", metadata={"team": "ml"})
    resp = env.read("roles/l")
    assert resp is not None
    assert resp.data["spend_limit"] == 2.5
    assert resp.data["models"] == ["gpt-4o", "gpt-4o-mini"]
    assert resp.data["metadata"] == {"team": "ml"}
    env.connect("openrouter")
    env.role("openrouter", name="o", spend_limit=1)


@pytest.mark.parametrize(
    ("provider", "extra", "field"),
    [
        ("openai", {"spend_limit": 5}, "spend_limit"),
        ("openai", {"models": "gpt-4o"}, "models"),
        ("openai", {"metadata": "a=b"}, "metadata"),
        ("openrouter", {"models": "gpt-4o"}, "models"),
        ("openrouter", {"metadata": "a=b"}, "metadata"),
    ],
)
def test_controls_the_provider_cannot_enforce_are_400(
    env: Env, provider: str, extra: dict[str, Any], field: str
) -> None:
    env.connect(provider)
    with pytest.raises(BadRequest) as err:
        env.role(provider, name="r", **extra)
    assert f'"{field}"' in err.value.message
    assert f"{provider} cannot enforce" in err.value.message
    assert env.storage.get("roles/r") is None


def test_openai_needs_project_and_others_refuse_it(env: Env) -> None:
    env.connect("openai")
    with pytest.raises(BadRequest, match='"project_id" is required'):
        env.write("roles/r", connection="openai")
    env.connect("openrouter")
    with pytest.raises(BadRequest, match='"project_id" applies to openai'):
        env.write("roles/r", connection="openrouter", project_id=PROJECT)
    assert env.storage.get("roles/r") is None


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({}, "connection"),
        ({"connection": "missing"}, "connection"),
        ({"connection": "or", "ttl": "2h", "max_ttl": "1h"}, "ttl"),
        ({"connection": "or", "max_ttl": MOUNT_MAX_TTL + 1}, "max_ttl"),
        ({"connection": "or", "ttl": MOUNT_MAX_TTL + 1}, "ttl"),
        ({"connection": "or", "ttl": "ten minutes"}, "ttl"),
        ({"connection": "or", "ttl": "-5m"}, "ttl"),
        ({"connection": "or", "max_ttl": True}, "max_ttl"),
        ({"connection": "or", "spend_limit": "lots"}, "spend_limit"),
        ({"connection": "or", "spend_limit": 0}, "spend_limit"),
        ({"connection": "or", "spend_limit": -1}, "spend_limit"),
        ({"connection": "or", "spend_limit": 1e12}, "spend_limit"),
        ({"connection": "or", "name_template": "{{role}}"}, "name_template"),
        ({"connection": "or", "name_template": "{{random}}-{{nope}}"}, "name_template"),
        ({"connection": "or", "name_template": "a b {{random}}"}, "name_template"),
        ({"connection": "or", "name_template": "{{random}}" + "x" * 80}, "name_template"),
        ({"connection": "or", "models": 5}, "models"),
        ({"connection": "or", "metadata": "not-a-map"}, "metadata"),
        ({"connection": "or", "connection_extra": 1, "ttl": []}, "ttl"),
        ({"connection": "a/b"}, "connection"),
    ],
)
def test_bad_input_is_400_naming_the_field(env: Env, data: dict[str, object], field: str) -> None:
    env.connect("openrouter", name="or")
    with pytest.raises(BadRequest) as err:
        env.write("roles/r", **data)
    assert f'"{field}"' in err.value.message
    assert env.storage.get("roles/r") is None


def test_failed_update_leaves_the_role_unchanged(env: Env) -> None:
    env.connect("openrouter")
    env.role("openrouter", name="r")
    before = env.storage.get("roles/r")
    with pytest.raises(BadRequest):
        env.write("roles/r", ttl="10m", max_ttl="5m")
    assert env.storage.get("roles/r") == before


@pytest.mark.parametrize("name", ["a/b", "x y", "." * 3])
def test_bad_role_names_are_400(env: Env, name: str) -> None:
    env.connect("openrouter")
    with pytest.raises(BadRequest, match='"name"'):
        env.request(Operation.CREATE, f"roles/{name}", connection="openrouter")


def test_zero_ttls_mean_mount_defaults(env: Env) -> None:
    env.connect("openrouter")
    env.role("openrouter", name="r", ttl=0, max_ttl=0)
    lease = env.creds("r")
    assert lease.secret is not None
    assert lease.secret.ttl == 3600
    assert lease.secret.max_ttl == MOUNT_MAX_TTL


def test_a_role_saved_while_a_request_reads_it_is_not_cached_stale(env: Env) -> None:
    """Calls on the hub interleave at storage calls: a read overlapping a save must not cache the old role."""
    env.connect("openrouter")
    env.role("openrouter", name="r", ttl="15m")
    real_get = env.storage.get
    overlapped: list[str] = []

    def get_with_a_save_in_between(key: str) -> bytes | None:
        value = real_get(key)
        if key == "roles/r" and not overlapped:
            overlapped.append(key)
            env.write("roles/r", ttl="20m")  # lands while this read is under way
        return value

    env.storage.get = get_with_a_save_in_between  # type: ignore[method-assign]
    first = env.read("roles/r")
    assert first is not None and first.data["ttl"] == 15 * 60  # the read saw the role as it was
    after = env.read("roles/r")
    assert overlapped and after is not None and after.data["ttl"] == 20 * 60
