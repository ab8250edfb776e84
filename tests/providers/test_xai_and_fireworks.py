"""The xAI and Fireworks clients against their emulators (in-process and over a loopback server), and against
scripted answers for the cases the emulators do not produce.

What the engine relies on: the secret, the id and the scope that delete needs; the provider's own expiry set
at create and reported only as the provider echoes it; "already gone" only when it is proven; every page of
a list walked; a lost create never repeated and then found by name; 4xx answers as clear, scrubbed errors.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from llm_emulators import FireworksEmulator, XAIEmulator
from llm_emulators.core import Emulator
from llmsecrets.providers import (
    CreateOutcomeUnknown,
    KeySpec,
    ProviderAuthError,
    ProviderBadResponse,
    ProviderClient,
    ProviderNotFound,
    ProviderRateLimited,
    ProviderRejected,
    RetryPolicy,
    make_client,
)
from llmsecrets.providers.fireworks import FireworksClient, user_scope
from llmsecrets.providers.registry import PROVIDERS
from llmsecrets.providers.xai import XAIClient, model_acls, provider_time

from .conftest import FakeClock, Script

ADMIN = "adm-EMULATORADMINKEY-0123456789abcdef"
TEAM = "team-1"
ACCOUNT, USER = "acme", "vault-sa"
CHAT = {"xai": "/v1/chat/completions", "fireworks": "/inference/v1/chat/completions"}


def new_emulator(provider: str) -> Emulator:
    if provider == "xai":
        return XAIEmulator(ADMIN, teams=(TEAM, "team-2"))
    return FireworksEmulator(ADMIN, account=ACCOUNT, users=(USER, "other-user"))


def account(provider: str) -> dict[str, str]:
    return {"team_id": TEAM} if provider == "xai" else {"account_id": ACCOUNT, "user_id": USER}


def scope(provider: str) -> str:
    """The scope of the keys the client issues: the team, or the Fireworks user's resource name."""
    return TEAM if provider == "xai" else user_scope(ACCOUNT, USER)


@dataclass
class Env:
    provider: str
    emu: Emulator
    client: ProviderClient
    clock: FakeClock
    root: str
    transport: httpx.BaseTransport | None

    def deadline(self, seconds: float = 30.0) -> float:
        return self.clock() + seconds

    def infer(self, key: str, model: str = "grok-4") -> int:
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(transport=self.transport, timeout=10) as http:
            return http.post(self.root + CHAT[self.provider], json=body, headers=headers).status_code


@pytest.fixture(params=["xai", "fireworks"])
def provider(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["inprocess", "server"])
def env(request: pytest.FixtureRequest, provider: str) -> Iterator[Env]:
    emu = new_emulator(provider)
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=4, sleep=clock.sleep, clock=clock, jitter=lambda lo, hi: hi)
    if request.param == "inprocess":
        transport: httpx.BaseTransport | None = httpx.MockTransport(emu.handle)
        client = make_client(
            provider,
            admin_key=ADMIN,
            base_url=emu.base_path,
            account=account(provider),
            transport=transport,
            retry=policy,
        )
        yield Env(provider, emu, client, clock, emu.base_path, transport)
        client.close()
        return
    with emu.serve() as server:
        client = make_client(
            provider,
            admin_key=ADMIN,
            base_url=server.base_url,
            account=account(provider),
            retry=policy,
        )
        yield Env(provider, emu, client, clock, server.url, None)
        client.close()


def in_an_hour() -> datetime:
    return datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)


# --- the key's life -------------------------------------------------------------------------------------


def test_create_sets_the_providers_expiry_and_the_key_works(env: Env) -> None:
    expires = in_an_hour()
    issued = env.client.create_key(
        KeySpec(name="vault-abc-app-1", expires_at=expires), deadline=env.deadline()
    )

    live = env.emu.find_key(issued.key_id)
    assert live is not None and live.secret == issued.api_key.reveal() and live.name == "vault-abc-app-1"
    assert live.expires_at == expires.timestamp()  # the provider itself will refuse the key after this
    assert issued.expires_at == expires
    assert issued.scope == scope(env.provider)
    assert issued.api_key.reveal() not in repr(issued)
    assert env.infer(issued.api_key.reveal()) == 200

    assert env.client.delete_key(issued.key_id, scope=issued.scope, deadline=env.deadline()) is True
    assert env.emu.find_key(issued.key_id) is None
    assert env.infer(issued.api_key.reveal()) in (400, 401)
    # Gone, and the list proves it: "already gone", not an error.
    assert env.client.delete_key(issued.key_id, scope=issued.scope, deadline=env.deadline()) is False


def test_the_provider_refuses_the_key_after_its_expiry(env: Env) -> None:
    issued = env.client.create_key(
        KeySpec(name="vault-exp", expires_at=in_an_hour()), deadline=env.deadline()
    )
    assert env.infer(issued.api_key.reveal()) == 200
    env.emu.advance_clock(3601)
    assert env.infer(issued.api_key.reveal()) in (401, 403)


def test_find_keys_walks_every_page_and_filters_by_prefix(env: Env) -> None:
    base = time.time() - 3600
    wanted = {env.emu.seed_key(f"vault-r-{i:02d}", created_at=base + i).key_id for i in range(23)}
    others = {env.emu.seed_key(f"team-key-{i}", created_at=base).key_id for i in range(4)}
    other_place = env.emu.seed_key(
        "vault-r-elsewhere", project_id="team-2" if env.provider == "xai" else "other-user"
    )
    env.emu.set_page_size(5)
    if env.provider == "fireworks":
        # Fireworks pages only when asked for a page size (its docs: "pagination support to be added").
        env.client = FireworksClient(
            admin_key=ADMIN,
            account_id=ACCOUNT,
            user_id=USER,
            base_url=env.root,
            transport=env.transport,
            retry=RetryPolicy(clock=env.clock, sleep=env.clock.sleep),
            page_size=5,
        )
    found = env.client.find_keys("vault-r-", deadline=env.deadline())
    assert {k.key_id for k in found} == wanted
    assert not (others | {other_place.key_id}) & {k.key_id for k in found}
    assert all(k.scope == scope(env.provider) and k.created_at is not None for k in found)


def test_a_lost_create_is_not_repeated_and_is_found_by_name(env: Env) -> None:
    env.emu.faults.drop_after_create()
    with pytest.raises(CreateOutcomeUnknown):
        env.client.create_key(KeySpec(name="vault-lost-1", expires_at=in_an_hour()), deadline=env.deadline())
    assert env.emu.create_count == 1
    found = env.client.find_keys("vault-lost-1", deadline=env.deadline())
    assert [k.name for k in found] == ["vault-lost-1"]
    assert env.client.delete_key(found[0].key_id, scope=found[0].scope, deadline=env.deadline())


def test_rate_limits_and_server_errors_are_retried(env: Env) -> None:
    env.emu.faults.rate_limit(times=1, retry_after=2, op="create")
    env.emu.faults.server_error(times=1, status=503, op="list")
    issued = env.client.create_key(KeySpec(name="vault-rl"), deadline=env.deadline())
    assert env.emu.create_count == 1
    assert [k.key_id for k in env.client.find_keys("vault-rl", deadline=env.deadline())] == [issued.key_id]
    assert env.clock.sleeps[0] == 2.0 and len(env.clock.sleeps) == 2


def test_a_rate_limit_past_the_deadline_is_an_error(env: Env) -> None:
    env.emu.faults.rate_limit(times=None, retry_after=5, op="delete")
    issued = env.client.create_key(KeySpec(name="vault-rl2"), deadline=env.deadline())
    with pytest.raises(ProviderRateLimited):
        env.client.delete_key(issued.key_id, scope=issued.scope, deadline=env.clock() + 8)


def test_a_revoked_admin_key_is_an_auth_error_without_the_key(env: Env) -> None:
    env.emu.revoke_admin_key()
    with pytest.raises(ProviderAuthError) as info:
        env.client.verify()
    assert info.value.status == 401
    assert ADMIN not in str(info.value) and ADMIN not in repr(info.value)
    assert info.value.api_error  # the provider's own error body, its message included
    assert "invalid" in str(info.value)


# --- xAI ------------------------------------------------------------------------------------------------


def xai_env(script: Script, **kwargs: Any) -> XAIClient:
    return XAIClient(admin_key=ADMIN, team_id=TEAM, transport=script.transport, **kwargs)


def test_xai_role_models_become_acls_the_provider_enforces() -> None:
    emu = XAIEmulator(ADMIN, teams=(TEAM,))
    client = XAIClient(
        admin_key=ADMIN, team_id=TEAM, base_url=emu.base_path, transport=httpx.MockTransport(emu.handle)
    )
    assert client.capabilities.models and client.capabilities.expiry and not client.capabilities.extend_expiry
    issued = client.create_key(KeySpec(name="vault-m", models=("grok-4",)), deadline=time.monotonic() + 10)
    env = Env("xai", emu, client, FakeClock(), emu.base_path, httpx.MockTransport(emu.handle))
    assert env.infer(issued.api_key.reveal(), model="grok-4") == 200
    assert env.infer(issued.api_key.reveal(), model="grok-3-mini") == 403
    assert model_acls(()) == ["api-key:model:*", "api-key:endpoint:*"]


def test_xai_create_body_and_a_missing_expiry_echo() -> None:
    answer = {"apiKeyId": "k1", "apiKey": "xai-SECRET", "name": "vault-x", "createTime": "1710000000"}
    script = Script(httpx.Response(200, json=answer))
    client = xai_env(script)
    expires = in_an_hour()
    issued = client.create_key(KeySpec(name="vault-x", expires_at=expires), deadline=time.monotonic() + 10)
    request = script.requests[0]
    assert request.url.path == f"/auth/teams/{TEAM}/api-keys"
    assert json.loads(request.content) == {
        "name": "vault-x",
        "acls": ["api-key:model:*", "api-key:endpoint:*"],
        "expireTime": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    assert request.headers["authorization"] == f"Bearer {ADMIN}"
    # xAI did not echo an expiry: none is promised.
    assert issued.expires_at is None
    assert issued.created_at == datetime.fromtimestamp(1710000000, UTC)


def test_xai_send_expiry_switch_off() -> None:
    script = Script(httpx.Response(200, json={"apiKeyId": "k1", "apiKey": "xai-SECRET"}))
    client = xai_env(script, send_expiry=False)
    assert client.capabilities.expiry is False
    client.create_key(KeySpec(name="vault-x", expires_at=in_an_hour()), deadline=time.monotonic() + 10)
    assert "expireTime" not in json.loads(script.requests[0].content)


def test_xai_a_404_on_delete_is_not_gone_while_the_key_is_listed() -> None:
    # A 404 from a wrong route (a gRPC gateway's "Not Found") must not make the engine forget a live key.
    not_found = httpx.Response(404, json={"code": 5, "message": "Not Found", "details": []})
    listed = httpx.Response(200, json={"apiKeys": [{"apiKeyId": "k1", "name": "vault-x"}]})
    with pytest.raises(ProviderNotFound):
        xai_env(Script(not_found, listed)).delete_key("k1", scope=TEAM, deadline=time.monotonic() + 10)
    gone = Script(not_found, httpx.Response(200, json={}))
    assert xai_env(gone).delete_key("k1", scope=TEAM, deadline=time.monotonic() + 10) is False
    assert [r.url.path for r in gone.requests] == ["/auth/api-keys/k1", f"/auth/teams/{TEAM}/api-keys"]
    # Without the check, the 404 stands.
    with pytest.raises(ProviderNotFound):
        xai_env(Script(not_found), confirm_gone=False).delete_key(
            "k1", scope=TEAM, deadline=time.monotonic() + 10
        )


def test_xai_list_follows_a_pagination_token_and_stops_on_a_repeat() -> None:
    pages = Script(
        httpx.Response(
            200, json={"apiKeys": [{"apiKeyId": "a", "name": "vault-1"}], "paginationToken": "t1"}
        ),
        httpx.Response(200, json={"apiKeys": [{"apiKeyId": "b", "name": "vault-2"}]}),
    )
    found = xai_env(pages).find_keys("vault-", deadline=time.monotonic() + 10)
    assert [k.key_id for k in found] == ["a", "b"]
    assert pages.requests[1].url.params["paginationToken"] == "t1"
    loop = Script(
        httpx.Response(200, json={"apiKeys": [{"apiKeyId": "a", "name": "v"}], "nextPageToken": "same"})
    )
    with pytest.raises(ProviderBadResponse):
        xai_env(loop).find_keys("v", deadline=time.monotonic() + 10)


def test_xai_a_list_shape_it_does_not_know_never_makes_a_key_look_gone() -> None:
    odd = httpx.Response(200, json={"keys": [{"apiKeyId": "k1", "name": "vault-x"}]})
    with pytest.raises(ProviderBadResponse):
        xai_env(Script(odd)).find_keys("vault-", deadline=time.monotonic() + 10)
    not_found = httpx.Response(404, json={"code": 5, "message": "Not Found", "details": []})
    with pytest.raises(ProviderNotFound):  # the delete's own error stands: retried, not forgotten
        xai_env(Script(not_found, odd)).delete_key("k1", scope=TEAM, deadline=time.monotonic() + 10)


def test_xai_unknown_team_is_a_clear_not_found() -> None:
    emu = XAIEmulator(ADMIN, teams=(TEAM,))
    client = XAIClient(
        admin_key=ADMIN, team_id="nope", base_url=emu.base_path, transport=httpx.MockTransport(emu.handle)
    )
    with pytest.raises(ProviderNotFound) as info:
        client.create_key(KeySpec(name="vault-t"), deadline=time.monotonic() + 10)
    assert "team nope not found" in str(info.value) and "team_id 'nope'" in str(info.value)
    with pytest.raises(ProviderNotFound):
        client.verify()


def test_xai_a_bad_request_carries_the_providers_message() -> None:
    script = Script(
        httpx.Response(400, json={"code": 3, "message": 'unknown field "expireTime"', "details": []})
    )
    with pytest.raises(ProviderRejected) as info:
        xai_env(script).create_key(
            KeySpec(name="vault-x", expires_at=in_an_hour()), deadline=time.monotonic() + 10
        )
    assert info.value.status == 400 and 'unknown field "expireTime"' in str(info.value)
    assert len(script.requests) == 1  # a refused create is never repeated


def test_xai_times_as_unix_seconds_strings() -> None:
    assert provider_time("1710000000") == datetime.fromtimestamp(1710000000, UTC)
    assert provider_time("2026-01-01T00:00:00.123Z") == datetime(2026, 1, 1, 0, 0, 0, 123000, UTC)
    assert provider_time("") is None


# --- Fireworks ------------------------------------------------------------------------------------------


def fw_env(script: Script, **kwargs: Any) -> FireworksClient:
    return FireworksClient(
        admin_key=ADMIN, account_id=ACCOUNT, user_id=USER, transport=script.transport, **kwargs
    )


def test_fireworks_create_body_is_wrapped_in_api_key() -> None:
    answer = {
        "keyId": "k1",
        "key": "fw_SECRET",
        "displayName": "vault-f",
        "expireTime": "2030-01-01T00:00:00Z",
    }
    script = Script(httpx.Response(200, json=answer))
    expires = in_an_hour()
    issued = fw_env(script).create_key(
        KeySpec(name="vault-f", expires_at=expires), deadline=time.monotonic() + 10
    )
    request = script.requests[0]
    assert request.url.path == f"/v1/accounts/{ACCOUNT}/users/{USER}/apiKeys"
    assert json.loads(request.content) == {
        "apiKey": {"displayName": "vault-f", "expireTime": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}
    }
    assert issued.expires_at == datetime(2030, 1, 1, tzinfo=UTC)  # what Fireworks reports
    assert issued.scope == f"accounts/{ACCOUNT}/users/{USER}"


def test_fireworks_list_sends_no_page_size_unless_told() -> None:
    script = Script(httpx.Response(200, json={"apiKeys": [{"keyId": "a", "displayName": "vault-1"}]}))
    assert [k.key_id for k in fw_env(script).find_keys("vault-", deadline=time.monotonic() + 10)] == ["a"]
    assert "pageSize" not in script.requests[0].url.params
    empty = Script(httpx.Response(200, json={"nextPageToken": "", "totalSize": 0}))  # proto3 leaves [] out
    assert fw_env(empty, page_size=50).find_keys("vault-", deadline=time.monotonic() + 10) == []
    assert empty.requests[0].url.params["pageSize"] == "50"


def test_fireworks_a_total_without_keys_is_a_bad_response() -> None:
    script = Script(httpx.Response(200, json={"nextPageToken": "", "totalSize": 3}))
    with pytest.raises(ProviderBadResponse):
        fw_env(script).find_keys("vault-", deadline=time.monotonic() + 10)


def test_fireworks_delete_is_a_post_to_the_delete_verb() -> None:
    script = Script(httpx.Response(200, json={}))
    assert fw_env(script).delete_key(
        "k1", scope=f"accounts/{ACCOUNT}/users/other", deadline=time.monotonic() + 10
    )
    request = script.requests[0]
    assert (request.method, request.url.path) == (
        "POST",
        f"/v1/accounts/{ACCOUNT}/users/other/apiKeys:delete",
    )
    assert json.loads(request.content) == {"keyId": "k1"}


def test_fireworks_an_expiry_it_refuses_is_a_clear_400() -> None:
    emu = FireworksEmulator(ADMIN, account=ACCOUNT, users=(USER,))
    client = FireworksClient(
        admin_key=ADMIN,
        account_id=ACCOUNT,
        user_id=USER,
        base_url=emu.base_path,
        transport=httpx.MockTransport(emu.handle),
    )
    too_far = datetime.now(UTC) + timedelta(days=400)
    with pytest.raises(ProviderRejected) as info:
        client.create_key(KeySpec(name="vault-far", expires_at=too_far), deadline=time.monotonic() + 10)
    assert info.value.status == 400 and "at most one year" in str(info.value)
    assert emu.live_keys() == []


def test_fireworks_another_account_is_an_auth_error_and_an_unknown_user_not_found() -> None:
    emu = FireworksEmulator(ADMIN, account=ACCOUNT, users=(USER,))
    transport = httpx.MockTransport(emu.handle)
    other = FireworksClient(
        admin_key=ADMIN, account_id="other", user_id=USER, base_url=emu.base_path, transport=transport
    )
    with pytest.raises(ProviderAuthError):
        other.verify()
    nobody = FireworksClient(
        admin_key=ADMIN, account_id=ACCOUNT, user_id="nobody", base_url=emu.base_path, transport=transport
    )
    with pytest.raises(ProviderNotFound) as info:
        nobody.create_key(KeySpec(name="vault-n"), deadline=time.monotonic() + 10)
    assert "check the connection's account_id and user_id" in str(info.value)


# --- the registry ---------------------------------------------------------------------------------------


def test_registry_account_fields_and_refusals() -> None:
    assert PROVIDERS["xai"].account_names == ("team_id",)
    assert PROVIDERS["fireworks"].account_names == ("account_id", "user_id")
    assert all(f.required for p in ("xai", "fireworks") for f in PROVIDERS[p].account)
    with pytest.raises(ValueError, match="team_id is required"):
        make_client("xai", admin_key=ADMIN)
    with pytest.raises(ValueError, match="user_id is required"):
        make_client("fireworks", admin_key=ADMIN, account={"account_id": "acme"})
    with pytest.raises(ValueError, match="team_id applies to xai only"):
        make_client("openrouter", admin_key=ADMIN, account={"team_id": "t"})
    with pytest.raises(ValueError, match="organization_id applies to openai only"):
        make_client("xai", admin_key=ADMIN, account={"team_id": "t", "organization_id": "org-1"})
    client = make_client("xai", admin_key=ADMIN, account={"team_id": "t"})
    assert isinstance(client, XAIClient) and client.team_id == "t"
    assert ADMIN not in repr(client)
    fw = make_client("fireworks", admin_key=ADMIN, account={"account_id": "acme", "user_id": "sa"})
    assert isinstance(fw, FireworksClient)
    assert ADMIN not in repr(fw)


def test_a_page_token_that_comes_back_is_a_bad_response_not_an_endless_walk() -> None:
    """Both clients walk page tokens through gateway.token_paged_keys: a token seen before ends the walk."""
    loop = {"nextPageToken": "2"}
    xai = Script(
        httpx.Response(200, json={"apiKeys": [{"apiKeyId": "a", "name": "vault-1"}], **loop}),
        httpx.Response(200, json={"apiKeys": [{"apiKeyId": "b", "name": "vault-2"}], **loop}),
    )
    with pytest.raises(ProviderBadResponse, match="the same page token came back"):
        xai_env(xai).find_keys("vault-", deadline=time.monotonic() + 10)
    assert [r.url.params.get("pageToken") for r in xai.requests] == [None, "2"]
    fireworks = Script(
        httpx.Response(200, json={"apiKeys": [{"keyId": "a", "displayName": "vault-1"}], **loop}),
        httpx.Response(200, json={"apiKeys": [{"keyId": "b", "displayName": "vault-2"}], **loop}),
    )
    with pytest.raises(ProviderBadResponse, match="the same page token came back"):
        fw_env(fireworks, page_size=1).find_keys("vault-", deadline=time.monotonic() + 10)
    assert [dict(r.url.params) for r in fireworks.requests] == [
        {"pageSize": "1"},
        {"pageSize": "1", "pageToken": "2"},
    ]
