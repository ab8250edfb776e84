"""Request shapes and response parsing of each client, against tiny scripted handlers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from llmsecrets.providers import (
    PROVIDERS,
    CreateOutcomeUnknown,
    KeySpec,
    LiteLLMClient,
    OpenAIClient,
    OpenRouterClient,
    ProviderAuthError,
    ProviderClient,
    ProviderNotFound,
    ProviderRejected,
    RetryPolicy,
    SecretStr,
    make_client,
)
from llmsecrets.providers.litellm import duration_until

from .conftest import ADMIN_KEY, FakeClock, Script, error

ISSUED = "sk-proj-ISSUEDSECRET0123456789abcdefABCDEF"


def body_of(request: httpx.Request) -> object:
    return json.loads(request.content)


# --- SecretStr / KeySpec ----------------------------------------------------------------------------


def test_secret_str_is_redacted() -> None:
    secret = SecretStr(ISSUED)
    assert ISSUED not in str(secret)
    assert ISSUED not in repr(secret)
    assert ISSUED not in f"{secret}"
    assert secret.reveal() == ISSUED
    assert secret == SecretStr(ISSUED)
    assert secret != SecretStr("other")
    with pytest.raises(TypeError):
        _ = secret + "x"  # type: ignore[operator]


def test_keyspec_validates() -> None:
    with pytest.raises(ValueError, match="timezone"):
        KeySpec(name="x", expires_at=datetime(2030, 1, 1))
    with pytest.raises(ValueError):
        KeySpec(name="")
    spec = KeySpec(name="x", models=["a"], metadata={"k": "v"})  # type: ignore[arg-type]
    assert spec.models == ("a",)
    with pytest.raises(TypeError):
        spec.metadata["k"] = "w"  # type: ignore[index]


# --- OpenAI -------------------------------------------------------------------------------------------


def openai_created(request: httpx.Request) -> httpx.Response:
    name = body_of(request)["name"]  # type: ignore[index]
    return httpx.Response(
        200,
        json={
            "object": "organization.project.service_account",
            "id": "svc_acct_abc",
            "name": name,
            "role": "member",
            "created_at": 1_780_000_000,
            "api_key": {
                "object": "organization.project.service_account.api_key",
                "value": ISSUED,
                "name": "Secret Key",
                "created_at": 1_780_000_000,
                "id": "key_abc",
            },
        },
    )


def test_openai_create_request_and_result(policy: RetryPolicy, clock: FakeClock) -> None:
    script = Script(openai_created)
    client = OpenAIClient(
        admin_key=ADMIN_KEY, organization_id="org-1", transport=script.transport, retry=policy
    )
    spec = KeySpec(
        name="vault-role-1", project_id="proj_x", expires_at=datetime.now(UTC) + timedelta(hours=1)
    )
    issued = client.create_key(spec, deadline=clock() + 30)
    request = script.requests[0]
    assert request.method == "POST"
    assert request.url == "https://api.openai.com/v1/organization/projects/proj_x/service_accounts"
    sent = body_of(request)
    assert isinstance(sent, dict) and set(sent) == {"name", "expires_in_seconds"}
    assert sent["name"] == "vault-role-1" and 3599 <= sent["expires_in_seconds"] <= 3601
    assert request.headers["OpenAI-Organization"] == "org-1"
    assert issued.key_id == "svc_acct_abc"
    assert issued.scope == "proj_x"
    assert issued.api_key.reveal() == ISSUED
    # The answer carries no expires_at: the one asked for stands.
    assert issued.expires_at == spec.expires_at
    assert issued.created_at == datetime.fromtimestamp(1_780_000_000, UTC)
    assert ISSUED not in repr(issued)
    assert client.capabilities.expiry


def test_openai_send_expiry_switch_off(policy: RetryPolicy, clock: FakeClock) -> None:
    script = Script(openai_created)
    client = OpenAIClient(admin_key=ADMIN_KEY, transport=script.transport, retry=policy, send_expiry=False)
    assert not client.capabilities.expiry
    spec = KeySpec(name="n", project_id="p", expires_at=datetime.now(UTC) + timedelta(seconds=900))
    assert client.create_key(spec, deadline=clock() + 30).expires_at is None
    assert body_of(script.requests[0]) == {"name": "n"}


def test_openai_create_without_secret_is_outcome_unknown(policy: RetryPolicy, clock: FakeClock) -> None:
    script = Script(httpx.Response(200, json={"id": "svc_acct_abc", "name": "n"}))
    client = OpenAIClient(admin_key=ADMIN_KEY, transport=script.transport, retry=policy)
    with pytest.raises(CreateOutcomeUnknown):
        client.create_key(KeySpec(name="n", project_id="p"), deadline=clock() + 30)


def test_openai_unknown_project_and_archived(policy: RetryPolicy, clock: FakeClock) -> None:
    script = Script(error(404, "No such project: proj_nope"), error(400, "Project is archived"))
    client = OpenAIClient(admin_key=ADMIN_KEY, transport=script.transport, retry=policy)
    with pytest.raises(ProviderNotFound):
        client.create_key(KeySpec(name="n", project_id="proj_nope"), deadline=clock() + 30)
    with pytest.raises(ProviderRejected, match="archived"):
        client.create_key(KeySpec(name="n", project_id="proj_old"), deadline=clock() + 30)
    assert len(script.requests) == 2


def test_openai_delete_404_without_api_body_is_not_gone(policy: RetryPolicy, clock: FakeClock) -> None:
    script = Script(httpx.Response(404, text="Not Found"))
    client = OpenAIClient(admin_key=ADMIN_KEY, transport=script.transport, retry=policy)
    with pytest.raises(ProviderNotFound):
        client.delete_key("svc_acct_abc", scope="p", deadline=clock() + 30)


def test_openai_find_keys_follows_cursor(policy: RetryPolicy, clock: FakeClock) -> None:
    def page(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/api_keys"):
            assert request.url.params["owner_project_access"] == "any"
            return httpx.Response(
                200, json={"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}
            )
        after = request.url.params.get("after")
        if after is None:
            data = [
                {"id": "a1", "name": "vault-1", "created_at": 1},
                {"id": "a2", "name": "other", "created_at": 2},
            ]
            return httpx.Response(
                200,
                json={"object": "list", "data": data, "first_id": "a1", "last_id": "a2", "has_more": True},
            )
        assert after == "a2"
        data = [{"id": "a3", "name": "vault-3", "created_at": 3}]
        return httpx.Response(
            200, json={"object": "list", "data": data, "first_id": "a3", "last_id": "a3", "has_more": False}
        )

    script = Script(page)
    client = OpenAIClient(admin_key=ADMIN_KEY, transport=script.transport, retry=policy)
    keys = client.find_keys("vault-", scope="proj_x", deadline=clock() + 30)
    assert [(k.key_id, k.name, k.scope) for k in keys] == [
        ("a1", "vault-1", "proj_x"),
        ("a3", "vault-3", "proj_x"),
    ]
    assert script.requests[0].url.params["limit"] == "100"


# --- OpenRouter ---------------------------------------------------------------------------------------


def test_openrouter_create_request_and_result(policy: RetryPolicy, clock: FakeClock) -> None:
    secret = "sk-or-v1-" + "0e6" * 20
    script = Script(
        httpx.Response(
            201,
            json={
                "data": {
                    "hash": "h1",
                    "name": "vault-x",
                    "label": "sk-or-v1-0e6...",
                    "disabled": False,
                    "limit": 5.0,
                    "usage": 0,
                    "created_at": "2026-08-01T10:00:00.000Z",
                    "updated_at": None,
                    "expires_at": "2026-08-01T11:00:00Z",
                },
                "key": secret,
            },
        )
    )
    client = OpenRouterClient(admin_key=ADMIN_KEY, transport=script.transport, retry=policy)
    expires = datetime(2026, 8, 1, 11, 0, 0, 123456, tzinfo=UTC)
    issued = client.create_key(
        KeySpec(name="vault-x", spend_limit=5.0, expires_at=expires), deadline=clock() + 30
    )
    request = script.requests[0]
    assert request.url == "https://openrouter.ai/api/v1/keys"
    assert body_of(request) == {"name": "vault-x", "limit": 5.0, "expires_at": "2026-08-01T11:00:00Z"}
    assert issued.key_id == "h1"
    assert issued.scope == ""
    assert issued.api_key.reveal() == secret
    assert issued.expires_at == datetime(2026, 8, 1, 11, tzinfo=UTC)
    assert issued.created_at == datetime(2026, 8, 1, 10, tzinfo=UTC)


def test_openrouter_not_a_management_key(policy: RetryPolicy, clock: FakeClock) -> None:
    script = Script(
        httpx.Response(
            403, json={"error": {"code": 403, "message": "Only management keys can perform this operation"}}
        )
    )
    client = OpenRouterClient(admin_key=ADMIN_KEY, transport=script.transport, retry=policy)
    with pytest.raises(ProviderAuthError, match="Only management keys"):
        client.verify()
    assert len(script.requests) == 1


# --- LiteLLM ------------------------------------------------------------------------------------------


def test_litellm_create_request_and_result(policy: RetryPolicy, clock: FakeClock) -> None:
    secret = "sk-LITELLMSECRET12345"
    script = Script(
        httpx.Response(
            200,
            json={
                "key": secret,
                "key_name": "sk-...2345",
                "token_id": "t" * 64,
                "expires": "2026-08-01T11:00:00+00:00",
                "key_alias": "vault-x",
            },
        )
    )
    client = LiteLLMClient(
        admin_key=ADMIN_KEY, base_url="http://proxy.test:4000", transport=script.transport, retry=policy
    )
    spec = KeySpec(
        name="vault-x",
        expires_at=datetime.now(UTC) + timedelta(seconds=905),
        spend_limit=2.5,
        models=("gpt-4o",),
        metadata={"role": "r"},
    )
    issued = client.create_key(spec, deadline=clock() + 30)
    request = script.requests[0]
    assert request.url == "http://proxy.test:4000/key/generate"
    sent = body_of(request)
    assert isinstance(sent, dict)
    assert sent["key_alias"] == "vault-x"
    assert sent["duration"] in ("904s", "905s")
    assert sent["models"] == ["gpt-4o"]
    assert sent["max_budget"] == 2.5
    assert sent["metadata"] == {"role": "r"}
    assert issued.key_id == "t" * 64
    assert issued.expires_at == datetime(2026, 8, 1, 11, tzinfo=UTC)


def test_litellm_duration_rendering() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert duration_until(now + timedelta(seconds=905), now=now) == "905s"
    assert duration_until(now + timedelta(seconds=1.2), now=now) == "2s"
    assert duration_until(now - timedelta(seconds=5), now=now) == "1s"


def test_litellm_find_keys_tolerates_bare_hashes(policy: RetryPolicy, clock: FakeClock) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/key/list":
            page = int(request.url.params["page"])
            keys = {
                1: ["h1", {"token": "h2", "key_alias": "vault-2", "created_at": "2026-01-01T00:00:00"}],
                2: [],
            }[page]
            return httpx.Response(200, json={"keys": keys, "total_count": 2, "current_page": page})
        assert request.url.path == "/key/info"
        return httpx.Response(200, json={"key": "h1", "info": {"key_alias": "vault-1"}})

    script = Script(handler)
    client = LiteLLMClient(
        admin_key=ADMIN_KEY, base_url="http://proxy.test", transport=script.transport, retry=policy
    )
    keys = client.find_keys("vault-", scope=None, deadline=clock() + 30)
    assert [(k.key_id, k.name) for k in keys] == [("h1", "vault-1"), ("h2", "vault-2")]
    assert keys[1].created_at == datetime(2026, 1, 1, tzinfo=UTC)


def test_litellm_delete_404_shapes(policy: RetryPolicy, clock: FakeClock) -> None:
    script = Script(
        error(404, "Failed to delete all keys. No keys found"),
        httpx.Response(404, json={"detail": "Not Found"}),
    )
    client = LiteLLMClient(
        admin_key=ADMIN_KEY, base_url="http://proxy.test", transport=script.transport, retry=policy
    )
    assert client.delete_key("t1", scope="", deadline=clock() + 30) is False
    with pytest.raises(ProviderNotFound):  # a route that does not exist is not "already gone"
        client.delete_key("t1", scope="", deadline=clock() + 30)
    assert body_of(script.requests[0]) == {"keys": ["t1"]}


def test_litellm_extend(policy: RetryPolicy, clock: FakeClock) -> None:
    script = Script(httpx.Response(200, json={"key": "t1"}))
    client = LiteLLMClient(
        admin_key=ADMIN_KEY, base_url="http://proxy.test", transport=script.transport, retry=policy
    )
    client.extend_key(
        "t1", scope="", expires_at=datetime.now(UTC) + timedelta(seconds=600), deadline=clock() + 30
    )
    sent = body_of(script.requests[0])
    assert isinstance(sent, dict)
    assert sent["key"] == "t1"
    assert sent["duration"] in ("599s", "600s")


# --- registry -----------------------------------------------------------------------------------------


def test_registry() -> None:
    assert PROVIDERS["openai"].default_base_url == "https://api.openai.com/v1"
    assert PROVIDERS["openrouter"].default_base_url == "https://openrouter.ai/api/v1"
    assert PROVIDERS["litellm"].default_base_url is None
    for name in ("openai", "openrouter"):
        client = make_client(name, admin_key=ADMIN_KEY)
        assert isinstance(client, ProviderClient)
        assert client.name == name
        assert ADMIN_KEY not in repr(client)
        client.close()
    with pytest.raises(ValueError, match="base_url"):
        make_client("litellm", admin_key=ADMIN_KEY)
    with pytest.raises(ValueError, match="unknown provider"):
        make_client("azure", admin_key=ADMIN_KEY)
    with pytest.raises(ValueError, match="organization_id applies to openai only"):
        make_client("openrouter", admin_key=ADMIN_KEY, account={"organization_id": "org"})
    client = make_client("litellm", admin_key=SecretStr(ADMIN_KEY), base_url="http://127.0.0.1:4000")
    assert client.capabilities.extend_expiry
    client.close()
