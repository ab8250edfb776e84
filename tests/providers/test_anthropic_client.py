"""The Anthropic Admin API client against the Anthropic emulator (in-process and over a loopback server).

What check-out sets rely on: the admin key travels as `x-api-key` with `anthropic-version`; a key's status is
switched and read back; every page of the list is walked; Anthropic's errors map to the engine's classes (an
overloaded 529 is retried); "inactive" is proven for a key that can no longer be switched; and the client
refuses to create or delete keys, which Anthropic's Admin API cannot do.
"""

from __future__ import annotations

import httpx
import pytest
from llm_emulators import AnthropicEmulator
from llm_emulators.core import Fault
from llmsecrets.checkout_sets import ensure_inactive
from llmsecrets.providers import (
    KeySpec,
    ProviderAuthError,
    ProviderNotFound,
    ProviderRejected,
    ProviderUnavailable,
    RetryPolicy,
    make_client,
)
from llmsecrets.providers.anthropic import AnthropicClient, hint_matches
from llmsecrets.providers.registry import PROVIDERS

from .conftest import FakeClock

ADMIN = "adm-ANTHROPICADMINKEY-0123456789abcdef"
FAR = 1e12  # a deadline that never passes on the fake clock


def client_for(emu: AnthropicEmulator, policy: RetryPolicy, base_url: str | None = None) -> AnthropicClient:
    client = make_client(
        "anthropic",
        admin_key=ADMIN,
        base_url=base_url or "http://anthropic.emulator.invalid",
        transport=None if base_url else httpx.MockTransport(emu.handle),
        retry=policy,
    )
    assert isinstance(client, AnthropicClient)
    return client


@pytest.fixture
def emu() -> AnthropicEmulator:
    return AnthropicEmulator(ADMIN)


def test_registry_and_capabilities() -> None:
    assert PROVIDERS["anthropic"].default_base_url == "https://api.anthropic.com"
    client = make_client("anthropic", admin_key=ADMIN)
    assert client.capabilities.checkout_only and not client.capabilities.expiry
    assert ADMIN not in repr(client)
    with pytest.raises(ProviderRejected, match="check-out set"):
        client.create_key(KeySpec(name="x"), deadline=FAR)
    with pytest.raises(ProviderRejected, match="cannot create or delete"):
        client.delete_key("apikey_01x", deadline=FAR)
    client.close()


def test_status_switches_and_reads_back_with_the_admin_headers(
    emu: AnthropicEmulator, policy: RetryPolicy
) -> None:
    key = emu.add_key("team-1", status="inactive")
    seen: list[httpx.Request] = []

    def spy(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return emu.handle(request)

    client = make_client(
        "anthropic",
        admin_key=ADMIN,
        base_url="http://a.invalid",
        transport=httpx.MockTransport(spy),
        retry=policy,
    )
    assert isinstance(client, AnthropicClient)
    client.verify()
    assert client.set_status(key.key_id, "active", deadline=FAR).status == "active"
    assert emu.key_status(key.key_id) == "active"
    got = client.get_key(key.key_id, deadline=FAR)
    assert (got.key_id, got.name, got.status) == (key.key_id, "team-1", "active")
    assert hint_matches(got.partial_key_hint, key.secret) is True
    assert hint_matches(got.partial_key_hint, key.secret[:-3] + "xAA") is False
    assert client.set_status(key.key_id, "inactive", deadline=FAR).status == "inactive"
    for request in seen:
        assert request.headers["x-api-key"] == ADMIN and request.headers["anthropic-version"] == "2023-06-01"
        assert "authorization" not in request.headers


def test_the_list_walks_every_page(emu: AnthropicEmulator, policy: RetryPolicy) -> None:
    ids = {emu.add_key(f"k{i}", status="inactive" if i % 2 else "active").key_id for i in range(7)}
    emu.set_page_size(3)
    client = client_for(emu, policy)
    assert {k.key_id for k in client.list_keys(deadline=FAR)} == ids
    active = client.list_keys(status="active", deadline=FAR)
    assert active and all(k.status == "active" for k in active) and len(active) == 4


def test_errors_map_to_the_engines_classes(
    emu: AnthropicEmulator, policy: RetryPolicy, clock: FakeClock
) -> None:
    key = emu.add_key("k", status="inactive")
    client = client_for(emu, policy)
    with pytest.raises(ProviderNotFound) as missing:
        client.get_key("apikey_01NoSuchKey", deadline=FAR)
    assert missing.value.api_error
    emu.set_faults(Fault.server_error(times=2, status=529, op="update"))
    assert client.set_status(key.key_id, "active", deadline=FAR).status == "active"  # overloaded: retried
    emu.set_faults(Fault.server_error(times=None, status=529, op="update"))
    with pytest.raises(ProviderUnavailable, match="Overloaded"):
        client.set_status(key.key_id, "inactive", deadline=FAR)
    emu.set_faults()
    bad = make_client(
        "anthropic", admin_key="adm-wrong", transport=httpx.MockTransport(emu.handle), retry=policy
    )
    with pytest.raises(ProviderAuthError) as denied:
        bad.verify()
    assert "adm-wrong" not in str(denied.value)


def test_an_archived_or_gone_key_counts_as_inactive(emu: AnthropicEmulator, policy: RetryPolicy) -> None:
    client = client_for(emu, policy)
    archived = emu.add_key("old", status="active")
    emu.set_status(archived.key_id, "archived")
    with pytest.raises(ProviderRejected):
        client.set_status(archived.key_id, "inactive", deadline=FAR)
    ensure_inactive(client, archived.key_id, deadline=FAR)  # cannot authenticate: done
    ensure_inactive(client, "apikey_01Gone", deadline=FAR)  # 404 from the API itself: done


def test_over_a_loopback_server(emu: AnthropicEmulator, policy: RetryPolicy) -> None:
    key = emu.add_key("k", status="inactive")
    with emu.serve() as server:
        client = client_for(emu, policy, base_url=server.url)
        client.set_status(key.key_id, "active", deadline=FAR)
        resp = httpx.post(
            server.url + "/v1/messages",
            headers={"x-api-key": key.secret, "anthropic-version": "2023-06-01"},
            json={"model": "claude-x", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]},
        )
        assert resp.status_code == 200
        client.set_status(key.key_id, "inactive", deadline=FAR)
        client.close()
