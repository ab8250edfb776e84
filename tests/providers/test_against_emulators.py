"""Every client against its provider emulator, in-process (MockTransport) and over a real loopback server.

These assert what the engine relies on: the secret and the ids that delete needs, "already gone" as
False, every page walked, Retry-After honoured within the deadline, a lost create never repeated and
then found by name, and no secret in any message or repr.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from llmsecrets.providers import (
    CreateOutcomeUnknown,
    KeySpec,
    ProviderAuthError,
    ProviderClient,
    ProviderRateLimited,
    ProviderUnavailable,
    RetryPolicy,
    make_client,
)

from .conftest import FakeClock

ADMIN = "sk-admin-EMULATORADMINKEY-0123456789abcdef"


@dataclass(frozen=True)
class Case:
    provider: str
    module: str
    cls: str
    scope: str | None

    def emulator(self) -> Any:
        try:
            module = importlib.import_module(self.module)
        except ImportError:
            pytest.skip(f"{self.module} is not there yet")
        return getattr(module, self.cls)(admin_key=ADMIN)

    def spec(self, name: str, **kwargs: Any) -> KeySpec:
        return KeySpec(name=name, project_id=self.scope, **kwargs)


CASES = [
    Case("openai", "llm_emulators.openai", "OpenAIEmulator", "proj_default"),
    Case("openrouter", "llm_emulators.openrouter", "OpenRouterEmulator", None),
    Case("litellm", "llm_emulators.litellm", "LiteLLMEmulator", None),
]


@dataclass
class Env:
    case: Case
    emu: Any
    client: ProviderClient
    clock: FakeClock
    base_url: str
    transport: httpx.BaseTransport | None

    @property
    def scope(self) -> str:
        return self.case.scope or ""

    def deadline(self, seconds: float = 30.0) -> float:
        return self.clock() + seconds

    def new_client(self, retry: RetryPolicy) -> ProviderClient:
        return make_client(
            self.case.provider, admin_key=ADMIN, base_url=self.base_url, transport=self.transport, retry=retry
        )


@pytest.fixture(params=CASES, ids=lambda c: c.provider)
def case(request: pytest.FixtureRequest) -> Case:
    param: Case = request.param
    return param


@pytest.fixture(params=["inprocess", "server"])
def env(request: pytest.FixtureRequest, case: Case) -> Iterator[Env]:
    emu = case.emulator()
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=4, sleep=clock.sleep, clock=clock, jitter=lambda lo, hi: hi)
    if request.param == "inprocess":
        transport: httpx.BaseTransport | None = httpx.MockTransport(emu.handle)
        base_url = emu.base_path
        client = make_client(
            case.provider, admin_key=ADMIN, base_url=base_url, transport=transport, retry=policy
        )
        yield Env(case, emu, client, clock, base_url, transport)
        client.close()
        return
    with emu.serve() as server:
        assert server.url.startswith("http://127.0.0.1:")
        client = make_client(case.provider, admin_key=ADMIN, base_url=server.base_url, retry=policy)
        yield Env(case, emu, client, clock, server.base_url, None)
        client.close()


def test_verify(env: Env) -> None:
    if env.case.provider == "openai":
        probe = env.emu.handle(
            httpx.Request(
                "GET",
                env.emu.base_path + "/organization/projects?limit=1",
                headers={"Authorization": "Bearer " + ADMIN},
            )
        )
        if probe.status_code == 404:
            pytest.xfail("the OpenAI emulator has no GET /organization/projects (list projects) route yet")
    env.client.verify()


def test_verify_openai_project() -> None:
    from llmsecrets.providers import OpenAIClient, ProviderNotFound

    emu = CASES[0].emulator()
    client = OpenAIClient(admin_key=ADMIN, base_url=emu.base_path, transport=httpx.MockTransport(emu.handle))
    client.verify_project("proj_default", deadline=time.monotonic() + 10)
    with pytest.raises(ProviderNotFound):
        client.verify_project("proj_nope", deadline=time.monotonic() + 10)


def test_create_then_delete_then_already_gone(env: Env) -> None:
    issued = env.client.create_key(env.case.spec("vault-test-1"), deadline=env.deadline())
    live = {k.key_id: k for k in env.emu.live_keys()}
    assert issued.key_id in live
    assert live[issued.key_id].secret == issued.api_key.reveal()
    assert live[issued.key_id].name == "vault-test-1"
    assert issued.key_name == "vault-test-1"
    assert issued.scope == env.scope
    assert issued.created_at.tzinfo is not None
    assert env.emu.create_count == 1
    assert issued.api_key.reveal() not in repr(issued)

    assert env.client.delete_key(issued.key_id, scope=issued.scope, deadline=env.deadline()) is True
    assert issued.key_id in env.emu.deleted_key_ids()
    assert env.emu.live_keys() == []
    assert env.client.delete_key(issued.key_id, scope=issued.scope, deadline=env.deadline()) is False


def test_delete_right_after_create(env: Env) -> None:
    """Core revokes at once when registering the lease fails: a key a millisecond old must go."""
    issued = env.client.create_key(env.case.spec("vault-fast"), deadline=env.deadline())
    assert env.client.delete_key(issued.key_id, scope=issued.scope, deadline=env.deadline())


@pytest.mark.parametrize(("count", "page_size"), [(101, None), (250, None), (101, 10), (250, 33)])
def test_find_keys_walks_every_page(env: Env, count: int, page_size: int | None) -> None:
    base = time.time() - 3600
    wanted = {env.emu.seed_key(name=f"vault-r-{i:03d}", created_at=base + i).key_id for i in range(count)}
    others = {env.emu.seed_key(name=f"other-{i}", created_at=base + i).key_id for i in range(7)}
    env.emu.set_page_size(page_size)
    found = env.client.find_keys("vault-r-", scope=env.case.scope, deadline=env.deadline())
    assert len(found) == count
    assert {k.key_id for k in found} == wanted
    assert not others & {k.key_id for k in found}
    assert all(k.name.startswith("vault-r-") and k.scope == env.scope for k in found)
    assert all(k.created_at is not None for k in found)


def test_rate_limit_retry_after_is_honoured(env: Env) -> None:
    env.emu.faults.rate_limit(times=2, retry_after=3, op="create")
    issued = env.client.create_key(env.case.spec("vault-rl"), deadline=env.deadline(60))
    assert env.clock.sleeps == [3.0, 3.0]
    assert env.emu.create_count == 1
    assert [k.key_id for k in env.emu.live_keys()] == [issued.key_id]


def test_rate_limit_never_waits_past_deadline(env: Env) -> None:
    env.emu.faults.rate_limit(times=None, retry_after=5, op="delete")
    issued = env.client.create_key(env.case.spec("vault-rl2"), deadline=env.deadline())
    start = env.clock()
    with pytest.raises(ProviderRateLimited) as info:
        env.client.delete_key(issued.key_id, scope=issued.scope, deadline=start + 8)
    assert info.value.retry_after == 5.0
    assert env.clock.sleeps == [5.0]  # a second 5 s wait would end after the deadline
    assert env.clock() <= start + 8


def test_server_errors_are_retried(env: Env) -> None:
    env.emu.faults.server_error(times=2, status=500, op="create")
    env.emu.faults.server_error(times=1, status=502, op="list")
    env.client.create_key(env.case.spec("vault-5xx"), deadline=env.deadline())
    assert env.emu.create_count == 1
    assert len(env.client.find_keys("vault-5xx", scope=env.case.scope, deadline=env.deadline())) == 1
    assert len(env.clock.sleeps) == 3


def test_server_errors_exhaust_attempts(env: Env) -> None:
    env.emu.faults.server_error(times=None, status=503, op="list")
    with pytest.raises(ProviderUnavailable) as info:
        env.client.find_keys("x", scope=env.case.scope, deadline=env.deadline(300))
    assert info.value.status == 503
    assert len(env.clock.sleeps) == 3


def test_revoked_admin_key_fails_at_once(env: Env) -> None:
    env.emu.revoke_admin_key()
    for call in (
        lambda: env.client.find_keys("vault-", scope=env.case.scope, deadline=env.deadline()),
        lambda: env.client.create_key(env.case.spec("vault-auth"), deadline=env.deadline()),
        lambda: env.client.delete_key("whatever", scope=env.scope, deadline=env.deadline()),
    ):
        with pytest.raises(ProviderAuthError) as info:
            call()
        assert info.value.status == 401
        assert ADMIN not in str(info.value)
        assert ADMIN not in repr(info.value)
    assert env.clock.sleeps == []
    assert env.emu.create_count == 0


def test_wrong_admin_key(env: Env) -> None:
    client = make_client(
        env.case.provider,
        admin_key="sk-admin-WRONGWRONGWRONG-0123456789",
        base_url=env.base_url,
        transport=env.transport,
        retry=RetryPolicy(sleep=env.clock.sleep, clock=env.clock),
    )
    with pytest.raises(ProviderAuthError) as info:
        client.find_keys("vault-", scope=env.case.scope, deadline=env.deadline())
    assert "WRONGWRONG" not in str(info.value)
    client.close()


def test_issued_key_is_not_an_admin_key(env: Env) -> None:
    issued = env.client.create_key(env.case.spec("vault-issued"), deadline=env.deadline())
    client = make_client(
        env.case.provider,
        admin_key=issued.api_key,
        base_url=env.base_url,
        transport=env.transport,
        retry=RetryPolicy(sleep=env.clock.sleep, clock=env.clock),
    )
    with pytest.raises(ProviderAuthError) as info:
        client.find_keys("vault-", scope=env.case.scope, deadline=env.deadline())
    assert issued.api_key.reveal() not in str(info.value)
    assert issued.api_key.reveal() not in repr(client)
    client.close()


def test_lost_create_is_not_repeated_and_is_found_by_name(env: Env) -> None:
    env.emu.faults.drop_after_create()
    with pytest.raises(CreateOutcomeUnknown) as info:
        env.client.create_key(env.case.spec("vault-lost-1"), deadline=env.deadline())
    assert env.emu.create_count == 1
    assert len(env.emu.live_keys()) == 1
    assert ADMIN not in str(info.value)
    found = env.client.find_keys("vault-lost-1", scope=env.case.scope, deadline=env.deadline())
    assert [k.key_id for k in found] == [k.key_id for k in env.emu.live_keys()]
    assert env.client.delete_key(found[0].key_id, scope=found[0].scope, deadline=env.deadline())
    assert env.emu.live_keys() == []


def test_secrets_absent_from_reprs(env: Env) -> None:
    issued = env.client.create_key(env.case.spec("vault-repr"), deadline=env.deadline())
    secret = issued.api_key.reveal()
    for text in (repr(issued), str(issued), repr(env.client), repr(issued.api_key), str(issued.api_key)):
        assert secret not in text
        assert ADMIN not in text


def test_timeouts_respected_over_a_real_server(case: Case) -> None:
    """A slow provider: a create times out into CreateOutcomeUnknown (the key did get made), a list
    gives up by its deadline; neither waits the 15 s read timeout."""
    emu = case.emulator()
    policy = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.02)
    with emu.serve() as server:
        client = make_client(case.provider, admin_key=ADMIN, base_url=server.base_url, retry=policy)
        emu.faults.latency(1.5, times=1, op="create")
        started = time.monotonic()
        with pytest.raises(CreateOutcomeUnknown):
            client.create_key(case.spec("vault-slow"), deadline=started + 0.5)
        assert time.monotonic() - started < 1.2
        time.sleep(1.3)  # let the slow create finish on the server side
        assert emu.create_count == 1
        found = client.find_keys("vault-slow", scope=case.scope, deadline=time.monotonic() + 10)
        assert len(found) == 1

        emu.faults.latency(1.5, times=None, op="list")
        started = time.monotonic()
        with pytest.raises(ProviderUnavailable):
            client.find_keys("vault-", scope=case.scope, deadline=started + 0.6)
        assert time.monotonic() - started < 1.5
        emu.faults.clear()
        client.close()


# --- provider-specific behaviour the engine relies on -------------------------------------------------


def test_openrouter_expiry_and_limit_reach_the_provider() -> None:
    case = CASES[1]
    emu = case.emulator()
    client = make_client(
        "openrouter", admin_key=ADMIN, base_url=emu.base_path, transport=httpx.MockTransport(emu.handle)
    )
    expires = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    issued = client.create_key(
        case.spec("vault-or", expires_at=expires, spend_limit=1.5), deadline=time.monotonic() + 10
    )
    live = emu.find_key(issued.key_id)
    assert live.expires_at == pytest.approx(expires.timestamp())
    assert live.limit == 1.5
    assert issued.expires_at == expires
    assert not client.capabilities.extend_expiry


def test_litellm_expiry_budget_models_metadata_and_extend() -> None:
    case = CASES[2]
    emu = case.emulator()
    client = make_client(
        "litellm", admin_key=ADMIN, base_url=emu.base_path, transport=httpx.MockTransport(emu.handle)
    )
    expires = datetime.now(UTC) + timedelta(seconds=900)
    spec = case.spec(
        "vault-ll", expires_at=expires, spend_limit=2.0, models=("gpt-4o",), metadata={"role": "r1"}
    )
    issued = client.create_key(spec, deadline=time.monotonic() + 10)
    live = emu.find_key(issued.key_id)
    assert live.expires_at == pytest.approx(expires.timestamp(), abs=2)
    assert live.max_budget == 2.0
    assert live.models == ("gpt-4o",)
    assert live.metadata["role"] == "r1"
    later = datetime.now(UTC) + timedelta(seconds=3600)
    client.extend_key(issued.key_id, scope="", expires_at=later, deadline=time.monotonic() + 10)
    assert emu.find_key(issued.key_id).expires_at == pytest.approx(later.timestamp(), abs=2)


def test_openai_unknown_project_and_expiry_switch() -> None:
    from llmsecrets.providers import OpenAIClient, ProviderNotFound

    case = CASES[0]
    emu = case.emulator()
    client = make_client(
        "openai", admin_key=ADMIN, base_url=emu.base_path, transport=httpx.MockTransport(emu.handle)
    )
    with pytest.raises(ProviderNotFound):
        client.create_key(KeySpec(name="vault-x", project_id="proj_nope"), deadline=time.monotonic() + 10)
    assert emu.create_count == 0
    # By default the expiry reaches the provider (and comes back as the key's expiry).
    spec = KeySpec(
        name="vault-y", project_id="proj_default", expires_at=datetime.now(UTC) + timedelta(hours=1)
    )
    first = client.create_key(spec, deadline=time.monotonic() + 10)
    assert first.expires_at is not None
    assert first.expires_at.timestamp() == pytest.approx(spec.expires_at.timestamp(), abs=2)  # type: ignore[union-attr]
    # Switched off, the field is never sent: an API without it still answers.
    emu2 = importlib.import_module("llm_emulators.openai").OpenAIEmulator(
        admin_key=ADMIN, accept_expires_in_seconds=False
    )
    client2 = OpenAIClient(
        admin_key=ADMIN,
        base_url=emu2.base_path,
        transport=httpx.MockTransport(emu2.handle),
        send_expiry=False,
    )
    issued = client2.create_key(spec, deadline=time.monotonic() + 10)
    assert issued.expires_at is None and not client2.capabilities.expiry
    assert emu2.find_key(issued.key_id).expires_at is None  # type: ignore[union-attr]
