"""The sweep (periodic and `tidy`): expired keys and orphans go; young keys and other mounts' keys stay."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from engine_env import MOUNT_PREFIX, OTHER_MOUNT_PREFIX, PROJECT, Env
from llmsecrets.models import IssuedKeyRecord
from llmsecrets.providers import LiteLLMClient, ProviderKey
from vaultplugin.framework import BadRequest, UpstreamError, list_wal


def tidy(env: Env) -> dict[str, Any]:
    resp = env.request("update", "tidy")
    assert resp is not None
    return resp.data


def seed(env: Env, provider: str, name: str, age: float) -> str:
    project = PROJECT if provider == "openai" else None
    return env.emus[provider].seed_key(name, created_at=env.clock() - age, project_id=project).key_id


def test_tidy_deletes_old_orphans_only(env: Env, provider: str) -> None:
    role = env.setup_provider(provider)
    issued = env.creds(role)
    env.clock.advance(1200)  # the issued key is old but its lease is not over
    orphan = seed(env, provider, MOUNT_PREFIX + "lost-1", age=3600)
    young = seed(env, provider, MOUNT_PREFIX + "lost-2", age=30)
    foreign = seed(env, provider, OTHER_MOUNT_PREFIX + "theirs", age=7200)
    unrelated = seed(env, provider, "prod-key", age=7200)

    report = tidy(env)

    assert env.live_ids(provider) == {issued.data["key_id"], young, foreign, unrelated}
    assert report["orphans_deleted_count"] == 1
    assert report["orphans_deleted"] == [
        {"connection": provider, "key_id": orphan, "key_name": MOUNT_PREFIX + "lost-1"}
    ]
    assert report["orphans_too_young"] == 1
    assert report["expired_deleted_count"] == 0
    assert report["failures"] == []
    assert "api_key" not in repr(report) and issued.data["api_key"] not in repr(report)


def test_openai_orphans_in_any_project(env: Env) -> None:
    env.setup_provider("openai")
    orphan = env.emus["openai"].seed_key(
        MOUNT_PREFIX + "lost", created_at=env.clock() - 3600, project_id="proj_other"
    )
    report = tidy(env)
    assert report["orphans_deleted_count"] == 1
    assert env.emus["openai"].find_key(orphan.key_id) is None


def test_tidy_deletes_keys_past_their_lease_max(env: Env, provider: str) -> None:
    role = env.setup_provider(provider)
    resp = env.creds(role)
    key_id = resp.data["key_id"]
    env.clock.advance(3600 + 60)  # past max TTL, within the grace
    assert tidy(env)["expired_deleted_count"] == 0
    env.clock.advance(120)
    report = tidy(env)
    assert report["expired_deleted"] == [
        {"connection": provider, "key_id": key_id, "key_name": resp.data["key_name"]}
    ]
    assert env.live(provider) == []
    assert env.storage.get(IssuedKeyRecord.storage_key(provider, key_id)) is None
    env.revoke(resp)  # Vault's late revoke still succeeds


def test_pending_create_is_not_an_orphan(env: Env) -> None:
    role = env.setup_provider("openrouter")
    env.emus["openrouter"].faults.drop_after_create()
    with pytest.raises(UpstreamError):
        env.read(f"creds/{role}")
    env.clock.advance(700)
    report = tidy(env)
    assert report["orphans_deleted_count"] == 0
    assert len(env.live("openrouter")) == 1
    env.rollback()  # the WAL settles it instead
    assert env.live("openrouter") == []
    assert list_wal(env.storage) == []


def test_keys_of_a_sibling_connection_are_not_orphans(env: Env) -> None:
    env.connect("openrouter", name="or1")
    env.connect("openrouter", name="or2")
    env.role("openrouter", name="r", connection="or1")
    resp = env.creds("r")
    env.clock.advance(1200)
    report = tidy(env)
    assert report["connections_checked"] == 2
    assert report["orphans_deleted_count"] == 0
    assert env.live_ids("openrouter") == {resp.data["key_id"]}


def test_one_failing_connection_does_not_stop_the_others(env: Env) -> None:
    env.connect("openrouter")
    env.connect("litellm")
    or_orphan = seed(env, "openrouter", MOUNT_PREFIX + "a", age=3600)
    ll_orphan = seed(env, "litellm", MOUNT_PREFIX + "b", age=3600)
    env.emus["openrouter"].faults.server_error(times=None)
    report = tidy(env)
    assert report["failure_count"] == 1 and "openrouter" in report["failures"][0]
    assert env.emus["litellm"].find_key(ll_orphan) is None
    assert env.emus["openrouter"].find_key(or_orphan) is not None
    env.emus["openrouter"].faults.clear()
    tidy(env)
    assert env.emus["openrouter"].find_key(or_orphan) is None


def test_periodic_sweep_is_rate_limited(env: Env) -> None:
    env.connect("openrouter")
    first = seed(env, "openrouter", MOUNT_PREFIX + "a", age=3600)
    env.rollback()
    assert env.emus["openrouter"].find_key(first) is None
    assert env.storage.get("tidy/state") is not None
    second = seed(env, "openrouter", MOUNT_PREFIX + "b", age=3600)
    env.clock.advance(60)
    env.rollback()
    assert env.emus["openrouter"].find_key(second) is not None  # ran a minute ago
    env.clock.advance(241)
    env.rollback()
    assert env.emus["openrouter"].find_key(second) is None


def test_periodic_sweep_respects_stored_last_run_after_restart(env: Env) -> None:
    env.connect("openrouter")
    env.rollback()
    restarted = Env()
    restarted.storage, restarted.emus, restarted.clock.now = env.storage, env.emus, env.clock.now
    key = seed(restarted, "openrouter", MOUNT_PREFIX + "a", age=3600)
    restarted.rollback()
    assert env.emus["openrouter"].find_key(key) is not None


def test_backend_args_lower_the_thresholds() -> None:
    env = Env(min_orphan_age=5, sweep_interval=0)
    env.connect("litellm")
    key = seed(env, "litellm", MOUNT_PREFIX + "a", age=10)
    env.rollback()  # interval 0: no periodic sweep
    assert env.emus["litellm"].find_key(key) is not None
    assert tidy(env)["orphans_deleted_count"] == 1


def test_tidy_config(env: Env) -> None:
    resp = env.read("tidy/config")
    assert resp is not None and resp.data == {"interval": 300, "min_orphan_age": 600, "expired_grace": 120}
    env.write("tidy/config", interval="10m", min_orphan_age="30m")
    resp = env.read("tidy/config")
    assert resp is not None and resp.data == {"interval": 600, "min_orphan_age": 1800, "expired_grace": 120}
    with pytest.raises(BadRequest, match='"min_orphan_age"'):
        env.write("tidy/config", min_orphan_age="5s")
    with pytest.raises(BadRequest, match='"interval"'):
        env.write("tidy/config", interval="soon")
    env.connect("openrouter")
    key = seed(env, "openrouter", MOUNT_PREFIX + "a", age=1000)
    assert tidy(env)["orphans_too_young"] == 1
    assert env.emus["openrouter"].find_key(key) is not None


def test_no_orphan_scan_without_a_mount_uuid() -> None:
    env = Env(backend_uuid="")
    env.connect("openrouter")
    key = seed(env, "openrouter", "vault-00000000-x", age=3600)
    report = tidy(env)
    assert report["notes"] and "backend UUID" in report["notes"][0]
    assert env.emus["openrouter"].find_key(key) is not None


def test_orphan_without_creation_time_is_aged_from_first_sighting(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_find = LiteLLMClient.find_keys

    def undated(self: LiteLLMClient, name_prefix: str, **kwargs: Any) -> list[ProviderKey]:
        return [replace(k, created_at=None) for k in real_find(self, name_prefix, **kwargs)]

    monkeypatch.setattr(LiteLLMClient, "find_keys", undated)
    env.connect("litellm")
    key = seed(env, "litellm", MOUNT_PREFIX + "a", age=7200)
    assert tidy(env)["orphans_too_young"] == 1  # first sighting
    env.clock.advance(599)
    assert tidy(env)["orphans_too_young"] == 1
    env.clock.advance(2)
    assert tidy(env)["orphans_deleted_count"] == 1
    assert env.emus["litellm"].find_key(key) is None


def test_mount_prefix_comes_from_the_backend_uuid() -> None:
    env = Env(backend_uuid="ABCDEF01-2345-6789-abcd-ef0123456789")
    assert env.backend.mount_prefix == "vault-abcdef01-"
    env.setup_provider("openrouter")
    assert env.creds("openrouter-role").data["key_name"].startswith("vault-abcdef01-openrouter-role-")
