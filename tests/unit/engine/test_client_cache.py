"""The client cache keeps one bulkhead per connection in use, and no more (issue 8): a connection deleted,
renamed or never stored leaves nothing behind, while a client rebuilt for a connection (a config write)
still shares the bulkhead of the calls in flight and the memory of a slow provider.

The engine-level cases run the config paths on the in-process harness; the cache's own cases call OpenRouter
emulators over loopback HTTP.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from devkit.waiting import wait_for
from engine_env import Env
from llm_emulators import Fault, OpenRouterEmulator
from llm_emulators.core import EmulatorServer
from llmsecrets.clients import ClientCache
from llmsecrets.models import ConnectionConfig
from llmsecrets.providers import Bulkhead, ProviderClient
from llmsecrets.providers.bulkhead import STUCK_AFTER
from vaultplugin.framework import BadRequest

pytestmark = pytest.mark.timeout(60)


def tracked(cache: ClientCache) -> list[str]:
    """The names the cache holds a bulkhead for."""
    return sorted(cache._bulkheads)


def bulkhead_of(client: ProviderClient) -> Bulkhead:
    bulkhead = client._http.guards.bulkhead  # type: ignore[attr-defined]
    assert isinstance(bulkhead, Bulkhead)
    return bulkhead


# --- through the config paths --------------------------------------------------------------------------


def test_deleted_and_renamed_connections_leave_no_bulkhead(env: Env) -> None:
    renamed: list[str] = []
    for i in range(20):
        env.connect("openrouter", name=f"conn{i}")
        role = env.role("openrouter", name=f"role{i}", connection=f"conn{i}")
        env.revoke(env.creds(role), role)  # a cached client, and a bulkhead, for the connection
        if i % 2:  # renamed: the account under a new name that issues keys, the old name deleted
            renamed.append(env.connect("openrouter", name=f"renamed{i}"))
            env.write(f"roles/{role}", connection=f"renamed{i}")
            env.creds(role)
        env.delete(f"config/conn{i}")
        assert env.read(f"config/conn{i}") is None
    assert tracked(env.backend.clients) == sorted(renamed)


def test_refused_checks_of_new_connections_leave_no_bulkhead(env: Env) -> None:
    for i in range(20):
        with pytest.raises(BadRequest, match="the provider refused the admin key"):
            env.write(f"config/typo{i}", provider="openrouter", admin_key=f"adm-wrong-{i}")
    assert env.read("config/typo0") is None
    assert tracked(env.backend.clients) == []


def test_live_connections_keep_their_bulkhead(env: Env) -> None:
    env.connect("openrouter", name="kept")
    role = env.role("openrouter", name="r", connection="kept")
    env.creds(role)
    assert tracked(env.backend.clients) == ["kept"]
    # A refused check of a stored connection changes nothing: it still issues through its bulkhead.
    with pytest.raises(BadRequest):
        env.write("config/kept", admin_key="adm-wrong")
    env.creds(role)
    assert tracked(env.backend.clients) == ["kept"]


# --- the cache over real HTTP --------------------------------------------------------------------------


@pytest.fixture
def emu() -> OpenRouterEmulator:
    return OpenRouterEmulator("adm-openrouter-cache-0123456789abcdef")


@pytest.fixture
def server(emu: OpenRouterEmulator) -> Iterator[EmulatorServer]:
    srv = emu.serve()
    yield srv
    srv.stop()


def connection(srv: EmulatorServer, name: str = "c") -> ConnectionConfig:
    return ConnectionConfig(
        name=name, provider="openrouter", admin_key=srv.emulator.admin_key, base_url=srv.base_url
    )


def soon(seconds: float = 10.0) -> float:
    return time.monotonic() + seconds


def test_a_rebuilt_client_shares_the_bulkhead_of_calls_in_flight(
    server: EmulatorServer, emu: OpenRouterEmulator
) -> None:
    cache = ClientCache()
    conn = connection(server)
    old = cache.get(conn)
    emu.set_faults(Fault.latency(seconds=1.0, op="list"))
    call = threading.Thread(
        target=old.find_keys, args=("vault-",), kwargs={"scope": None, "deadline": soon()}
    )
    call.start()
    wait_for(lambda: bulkhead_of(old).in_flight == 1, timeout=5, what="the call to be in flight")

    cache.invalidate(conn.name)  # a config write
    new = cache.get(conn)

    assert new is not old
    assert bulkhead_of(new) is bulkhead_of(old) and bulkhead_of(new).in_flight == 1
    call.join()
    cache.clear()


def test_a_slow_provider_is_remembered_across_a_config_write(
    server: EmulatorServer, emu: OpenRouterEmulator
) -> None:
    cache = ClientCache()
    conn = connection(server)
    old = cache.get(conn)
    emu.set_faults(Fault.latency(seconds=STUCK_AFTER + 0.2, op="list"))
    old.find_keys("vault-", scope=None, deadline=soon())  # answered, but slowly
    emu.set_faults()

    cache.invalidate(conn.name)
    cache.get(connection(server, "other"))  # a new entry: the cache drops what is no longer in use

    assert bulkhead_of(cache.get(conn)) is bulkhead_of(old)
    cache.clear()


def test_bulkheads_stay_bounded_by_the_connections_in_use(server: EmulatorServer) -> None:
    cache = ClientCache()
    for i in range(200):
        conn = connection(server, f"c{i}")
        cache.get(conn).find_keys("vault-", scope=None, deadline=soon())
        cache.invalidate(conn.name)
    with cache.checking(connection(server, "checked")) as client:
        client.verify()
    assert len(tracked(cache)) <= 1, tracked(cache)

    live = [connection(server, f"live{i}") for i in range(3)]
    for conn in live:
        cache.get(conn).find_keys("vault-", scope=None, deadline=soon())
    cache.get(connection(server, "one-more"))
    assert tracked(cache) == ["live0", "live1", "live2", "one-more"]

    cache.forget("live1")  # deleted
    assert tracked(cache) == ["live0", "live2", "one-more"]
    cache.clear()
    assert tracked(cache) == []
