"""What a key spent, read by the provider clients from the emulators over real HTTP: OpenRouter's key `usage`
and LiteLLM's `info.spend` while the key lives (gone after the delete), OpenAI's costs API by API key id,
late, for deleted keys too (a key per lease only)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from llm_emulators import LiteLLMEmulator, OpenAIEmulator, OpenRouterEmulator
from llmsecrets.providers import KeySpec, LiteLLMClient, OpenAIClient, OpenRouterClient, ProviderNotFound
from llmsecrets.providers.base import SPEND_LATE, SPEND_LIVE, SPEND_NONE, SpendReporting
from llmsecrets.providers.errors import ProviderBadResponse
from llmsecrets.providers.openai import KEY_PER_LEASE, role_account_name

COST = 0.03125  # a binary fraction: sums compare exactly
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
ADMIN = {
    "openrouter": "sk-or-v1-emulator:spend",
    "litellm": "sk-emulator:spend",
    "openai": "sk-admin-em:spend",
}


def deadline() -> float:
    return time.monotonic() + 20


def chat(url: str, secret: str, n: int) -> None:
    for _ in range(n):
        resp = httpx.post(url, json=CHAT, headers={"Authorization": f"Bearer {secret}"}, timeout=10)
        assert resp.status_code == 200, resp.text


@pytest.mark.parametrize("provider", ["openrouter", "litellm"])
def test_live_spend_is_read_from_the_key_until_it_is_deleted(provider: str) -> None:
    emu = (
        OpenRouterEmulator(ADMIN[provider]) if provider == "openrouter" else LiteLLMEmulator(ADMIN[provider])
    )
    emu.set_usage(cost_per_request=COST)
    with emu.serve() as server:
        cls = OpenRouterClient if provider == "openrouter" else LiteLLMClient
        client = cls(admin_key=ADMIN[provider], base_url=server.base_url)
        try:
            assert isinstance(client, SpendReporting)
            assert client.spend_kind("") == SPEND_LIVE
            key = client.create_key(KeySpec(name="vault-0123abcd-spend"), deadline=deadline())
            assert client.key_spend(key.key_id, scope=key.scope, deadline=deadline()) == 0
            chat(server.base_url + "/chat/completions", key.api_key.reveal(), 3)
            assert client.key_spend(key.key_id, scope=key.scope, deadline=deadline()) == 3 * COST
            assert client.delete_key(key.key_id, scope=key.scope, deadline=deadline())
            with pytest.raises(ProviderNotFound):
                client.key_spend(key.key_id, scope=key.scope, deadline=deadline())
        finally:
            client.close()


def test_a_spend_that_is_not_an_amount_is_a_bad_response() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": {"hash": "h", "usage": "lots"}})

    client = OpenRouterClient(admin_key="sk-or-v1-x", transport=httpx.MockTransport(answer))
    with pytest.raises(ProviderBadResponse, match="USD"):
        client.key_spend("h", deadline=deadline())


def test_openai_spend_arrives_late_through_the_costs_api_for_deleted_keys_too() -> None:
    emu = OpenAIEmulator(ADMIN["openai"], allow_service_account_key_delete=True)
    emu.set_usage(cost_per_request=COST, delay=3600)
    with emu.serve() as server:
        client = OpenAIClient(admin_key=ADMIN["openai"], base_url=server.base_url, key_mode=KEY_PER_LEASE)
        try:
            since = datetime.now(UTC) - timedelta(minutes=1)
            keys = []
            for i, n in enumerate((2, 5)):
                spec = KeySpec(
                    name=f"vault-0123abcd-k{i}",
                    project_id="proj_default",
                    service_account_name=role_account_name("vault-0123abcd-", "r"),
                    expires_at=datetime.now(UTC) + timedelta(hours=1),
                )
                key = client.create_key(spec, deadline=deadline())
                assert client.spend_kind(key.scope) == SPEND_LATE
                chat(server.base_url + "/chat/completions", key.api_key.reveal(), n)
                keys.append(key)
            ids = [k.key_id for k in keys]
            scope = keys[0].scope
            for key in keys:
                assert client.delete_key(key.key_id, scope=key.scope, deadline=deadline())
            # Not reported yet: nothing, not an error.
            assert client.keys_spend(ids, scope=scope, since=since, deadline=deadline()) == dict.fromkeys(
                ids, 0.0
            )
            emu.advance_clock(3601)
            got = client.keys_spend(ids, scope=scope, since=since, deadline=deadline())
            assert got == {ids[0]: 2 * COST, ids[1]: 5 * COST}
            # A service account per lease is not reported per key.
            assert client.spend_kind("proj_default") == SPEND_NONE
        finally:
            client.close()


def test_openai_costs_pages_are_walked_and_a_repeated_page_is_refused() -> None:
    seen: list[httpx.URL] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        page = request.url.params.get("page")
        result = {
            "object": "organization.costs.result",
            "amount": {"value": "0.5", "currency": "usd"},
            "api_key_id": "key_a",
            "project_id": None,
            "line_item": None,
        }
        bucket = {"object": "bucket", "start_time": 0, "end_time": 86400, "results": [result]}
        if page is None:
            return httpx.Response(
                200, json={"object": "page", "data": [bucket], "has_more": True, "next_page": "p2"}
            )
        return httpx.Response(
            200, json={"object": "page", "data": [bucket], "has_more": True, "next_page": "p2"}
        )

    client = OpenAIClient(admin_key="sk-admin-x", transport=httpx.MockTransport(answer))
    with pytest.raises(ProviderBadResponse, match="new page"):
        client.keys_spend(["key_a"], scope="proj/api_keys", since=datetime.now(UTC), deadline=deadline())
    first = seen[0].params
    assert first.get_list("api_key_ids[]") == ["key_a"]
    assert first.get_list("group_by[]") == ["api_key_id"]
    assert first["bucket_width"] == "1d" and int(first["start_time"]) % 86400 == 0
    assert seen[1].params["page"] == "p2"
