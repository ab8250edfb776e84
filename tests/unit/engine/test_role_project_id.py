"""A role's project_id has the shape of its provider's project ids (issue 8): OpenAI's are proj_ and letters
and digits; providers whose keys belong to no project refuse one. Either mistake is a 400 that says what to
write, and nothing is stored (the id goes into the provider's URL path, so nothing else is ever sent)."""

from __future__ import annotations

import pytest
from engine_env import PROJECT, Env
from vaultplugin.framework import BadRequest

NOT_PROJECT_IDS = [
    "My Project",  # the project's name
    "proj-abc123",
    "proj_",
    "abc123",
    "org-abc123",
    "proj_abc 123",
    "proj_default/../../admin_api_keys",  # a path trick
    "proj_default?limit=1",
    "proj_\u0661\u0662\u0663",  # digits, but not ASCII ones
    "proj_" + "a" * 65,
]


@pytest.mark.parametrize("project_id", NOT_PROJECT_IDS)
def test_an_openai_role_refuses_what_is_not_a_project_id(env: Env, project_id: str) -> None:
    env.connect("openai")
    with pytest.raises(BadRequest) as err:
        env.write("roles/r", connection="openai", project_id=project_id)
    message = err.value.message
    assert message.startswith('"project_id" ') and "is not an OpenAI project id" in message
    assert "proj_ followed by letters and digits, e.g. proj_abc123" in message
    assert len(message) < 300  # a long value is cut, not echoed whole
    assert env.storage.get("roles/r") is None
    assert env.emus["openai"].create_count == 0


@pytest.mark.parametrize("project_id", [PROJECT, "proj_abc123", "proj_AbCdEf0123456789xyzUVW"])
def test_an_openai_role_takes_a_project_id(env: Env, project_id: str) -> None:
    env.connect("openai")
    env.write("roles/r", connection="openai", project_id=f"  {project_id} ")
    resp = env.read("roles/r")
    assert resp is not None and resp.data["project_id"] == project_id


def test_providers_without_projects_refuse_one_and_say_so(env: Env) -> None:
    for provider in ("openrouter", "litellm"):
        env.connect(provider)
        with pytest.raises(BadRequest) as err:
            env.write("roles/r", connection=provider, project_id=PROJECT)
        message = err.value.message
        assert f"{provider} keys belong to no project" in message
        assert 'remove "project_id" from the role' in message
    assert env.storage.get("roles/r") is None


def test_an_update_keeps_a_good_project_id_and_refuses_a_bad_one(env: Env) -> None:
    env.setup_provider("openai")
    env.write("roles/openai-role", ttl="5m")
    with pytest.raises(BadRequest, match='"project_id"'):
        env.write("roles/openai-role", project_id="Production")
    resp = env.read("roles/openai-role")
    assert resp is not None and resp.data["project_id"] == PROJECT and resp.data["ttl"] == 300
    env.creds("openai-role")
