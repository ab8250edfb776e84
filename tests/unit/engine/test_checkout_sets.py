"""Anthropic check-out sets on the engine (in-memory storage, the Anthropic emulator in-process, fake clock).

What a user relies on: a check-out lends a free key and activates it; the key works only while leased; revoke
and expiry deactivate it and return it to the set; no key is lent twice at once, also under concurrent reads;
an exhausted set is a clear 429; a key that cannot be deactivated is retried and never lent meanwhile; a
check-out interrupted after the activation is rolled back; the sweep deactivates active keys nobody holds;
reads never show a key's value; roles refuse an anthropic connection.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from engine_env import Env
from llm_emulators import AnthropicEmulator
from llm_emulators.core import Fault, LiveKey
from llmsecrets import checkout_sets
from vaultplugin.framework import (
    BadRequest,
    CodedError,
    ReadOnlyStorage,
    Response,
    UpstreamError,
    VaultError,
    list_wal,
)
from vaultplugin.framework.logical import REPLICATION_PERFORMANCE_STANDBY

ADMIN = "sk-ant-admin01-FAKE-TEST-0000000000"
SET = "team"


@dataclass
class Anth:
    env: Env
    emu: AnthropicEmulator
    keys: list[LiveKey]

    @property
    def values(self) -> set[str]:
        return {k.secret for k in self.keys}

    def checkout(self) -> Response:
        resp = self.env.read(f"sets/{SET}/creds")
        assert resp is not None and resp.secret is not None
        return resp

    def view(self) -> dict[str, Any]:
        resp = self.env.read(f"sets/{SET}")
        assert resp is not None
        return resp.data

    def states(self) -> dict[str, str]:
        return {k["key_id"]: k["state"] for k in self.view()["keys"]}

    def works(self, api_key: str) -> bool:
        with self.emu.client() as http:
            resp = http.post(
                "/messages",
                headers={"x-api-key": api_key, "anthropic-version": "2023-06-01"},
                json={"model": "claude-x", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]},
            )
        return resp.status_code == 200

    def retry_pass(self, after: float = 15.0) -> None:
        """Let the retrier's next attempt come due, and run the rollback tick (one pass without a thread)."""
        self.env.clock.advance(after)
        self.env.rollback()


def make(n: int = 3, **env_args: Any) -> Anth:
    env = Env(**env_args)
    emu = AnthropicEmulator(ADMIN, clock=env.clock)
    env.emus["anthropic"] = emu
    env.write("config/anth", provider="anthropic", admin_key=ADMIN)
    keys = [emu.add_key(f"team-{i}", status="inactive") for i in range(n)]
    values = {k.key_id: k.secret for k in keys}
    env.write(f"sets/{SET}", connection="anth", ttl="10m", max_ttl="1h", keys=values)
    return Anth(env, emu, keys)


@pytest.fixture
def anth() -> Iterator[Anth]:
    yield make()


def test_checkout_lends_an_active_key_that_revoke_deactivates_and_returns(anth: Anth) -> None:
    resp = anth.checkout()
    data = resp.data
    assert data["api_key"] in anth.values and data["set"] == SET and data["provider"] == "anthropic"
    assert resp.secret is not None and resp.secret.ttl == 600 and resp.secret.max_ttl == 3600
    assert resp.secret.internal_data["secret_type"] == "llm_anthropic_checkout"
    assert data["api_key"] not in repr(resp.secret.internal_data)
    key_id = data["key_id"]
    assert anth.emu.key_status(key_id) == "active" and anth.works(data["api_key"])
    assert anth.states()[key_id] == "checked_out"

    anth.env.revoke(resp)
    assert anth.emu.key_status(key_id) == "inactive" and not anth.works(data["api_key"])
    assert set(anth.states().values()) == {"free"}
    assert anth.emu.status_changes(key_id) == [("inactive", "active"), ("active", "inactive")]
    anth.env.revoke(resp)  # Vault may ask again: already returned, nothing changes
    assert anth.emu.status_change_count(key_id) == 2


def test_reads_and_logs_never_show_a_value(anth: Anth, caplog: pytest.LogCaptureFixture) -> None:
    anth.checkout()
    view = anth.view()
    assert (view["key_count"], view["free"], view["checked_out"]) == (3, 2, 1)
    text = repr(view) + caplog.text
    assert not any(v in text for v in anth.values)
    listed = anth.env.list_keys("sets/")
    assert listed is not None and listed.data["keys"] == [SET]


def test_no_key_is_lent_twice_and_an_exhausted_set_is_429(anth: Anth) -> None:
    ids = {anth.checkout().data["key_id"] for _ in range(3)}
    assert ids == {k.key_id for k in anth.keys}
    with pytest.raises(CodedError) as err:
        anth.checkout()
    assert err.value.code == 429
    assert "'team'" in err.value.message and "3 of 3 are checked out" in err.value.message
    assert list_wal(anth.env.storage) == []


def test_concurrent_checkouts_get_distinct_keys() -> None:
    anth = make(5)
    got: list[str] = []
    refused: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def one() -> None:
        start.wait()
        try:
            key = anth.checkout().data["key_id"]
            with lock:
                got.append(key)
        except CodedError as exc:
            with lock:
                refused.append(exc.code)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(got) == sorted({k.key_id for k in anth.keys}) and refused == [429, 429, 429]


def test_renew_extends_up_to_the_sets_max_ttl(anth: Anth) -> None:
    resp = anth.checkout()
    anth.env.clock.advance(500)
    renewed = anth.env.renew(resp, increment=600)
    assert renewed.secret is not None and renewed.secret.ttl == 600
    anth.env.clock.advance(3000)  # 3500 s after the check-out: 100 s of max TTL left
    renewed = anth.env.renew(resp, increment=600)
    assert renewed.secret is not None and 99 <= renewed.secret.ttl <= 100
    anth.env.clock.advance(200)
    with pytest.raises(BadRequest, match="max TTL"):
        anth.env.renew(resp)
    anth.env.revoke(resp)
    with pytest.raises(BadRequest, match="no longer checked out"):
        anth.env.renew(resp)


def test_a_failed_deactivation_is_retried_and_the_key_never_lent_meanwhile(anth: Anth) -> None:
    resp = anth.checkout()
    key_id = resp.data["key_id"]
    anth.emu.set_faults(Fault.server_error(times=None, status=529, op="update"))
    with pytest.raises(UpstreamError) as err:
        anth.env.revoke(resp)  # a running lease: never reported revoked while the key is active
    assert "still active" in err.value.message and key_id in err.value.message
    assert anth.emu.key_status(key_id) == "active"
    entry = next(k for k in anth.view()["keys"] if k["key_id"] == key_id)
    assert entry["state"] == "deactivating" and "overloaded" in entry["last_error"].lower()

    anth.emu.set_faults()
    others = {anth.checkout().data["key_id"] for _ in range(2)}
    assert key_id not in others
    with pytest.raises(CodedError, match="1 await deactivation"):
        anth.checkout()

    anth.emu.set_faults(Fault.server_error(times=2, status=500, op="update"))
    anth.retry_pass()  # still failing (the client retries once per attempt: both fail)
    assert anth.emu.key_status(key_id) == "active" and anth.states()[key_id] == "deactivating"
    anth.retry_pass()
    assert anth.emu.key_status(key_id) == "inactive" and anth.states()[key_id] == "free"
    anth.env.revoke(resp)  # Vault's retry of the revoke now succeeds without a provider call
    assert anth.checkout().data["key_id"] == key_id


def test_revoke_of_an_ended_lease_succeeds_and_the_engine_deactivates_later(anth: Anth) -> None:
    resp = anth.checkout()
    key_id = resp.data["key_id"]
    anth.env.clock.advance(601)  # Vault's expiry
    anth.emu.set_faults(Fault.server_error(times=None, status=500, op="update"))
    anth.env.revoke(resp)
    assert anth.states()[key_id] == "deactivating" and anth.emu.key_status(key_id) == "active"
    anth.emu.set_faults()
    anth.retry_pass()
    assert anth.emu.key_status(key_id) == "inactive" and anth.states()[key_id] == "free"


def test_dropped_connections_on_deactivation_are_retried_until_done(anth: Anth) -> None:
    resp = anth.checkout()
    key_id = resp.data["key_id"]
    anth.emu.drop_connection("update", times=3, after=False)  # the client tries twice a call
    with pytest.raises(UpstreamError):
        anth.env.revoke(resp)
    anth.retry_pass()
    assert anth.emu.key_status(key_id) == "inactive" and anth.states()[key_id] == "free"


def test_an_interrupted_checkout_is_rolled_back() -> None:
    anth = make(2, wal_min_age_seconds=5)
    # The activation goes through, its answer is lost, and the process dies before it settles anything.
    anth.emu.drop_connection("update", times=2, after=True)  # both tries of the call

    def die(*args: Any) -> None:
        raise SystemExit("killed")

    original = checkout_sets._activation_failed
    checkout_sets._activation_failed = die  # type: ignore[assignment]
    try:
        with pytest.raises(SystemExit):
            anth.checkout()
    finally:
        checkout_sets._activation_failed = original  # type: ignore[assignment]
    active = [k.key_id for k in anth.keys if anth.emu.key_status(k.key_id) == "active"]
    assert len(active) == 1 and anth.states()[active[0]] == "checked_out"
    assert len(list_wal(anth.env.storage)) == 1

    anth.env.clock.advance(6)
    anth.env.rollback()
    assert anth.emu.key_status(active[0]) == "inactive" and set(anth.states().values()) == {"free"}
    assert list_wal(anth.env.storage) == []


def test_an_ambiguous_activation_failure_leaves_the_key_awaiting_deactivation(anth: Anth) -> None:
    anth.emu.drop_connection("update", times=2, after=True)  # the key is active, the answer lost (twice)
    with pytest.raises(UpstreamError):
        anth.checkout()
    [entry] = [k for k in anth.view()["keys"] if k["state"] != "free"]
    assert entry["state"] == "deactivating" and anth.emu.key_status(entry["key_id"]) == "active"
    anth.retry_pass()
    assert anth.emu.key_status(entry["key_id"]) == "inactive" and set(anth.states().values()) == {"free"}


def test_an_archived_key_is_marked_unusable_and_not_lent_again() -> None:
    anth = make(1)
    anth.emu.set_status(anth.keys[0].key_id, "archived")
    with pytest.raises(BadRequest, match="remove_keys"):
        anth.checkout()
    assert anth.states() == {anth.keys[0].key_id: "unusable"}
    with pytest.raises(CodedError, match="1 are unusable"):
        anth.checkout()
    anth.env.write(f"sets/{SET}", remove_keys=[anth.keys[0].key_id])
    assert anth.view()["key_count"] == 0


def test_the_sweep_deactivates_active_keys_no_lease_holds(anth: Anth) -> None:
    held = anth.checkout().data["key_id"]
    stray = next(k.key_id for k in anth.keys if k.key_id != held)
    anth.emu.set_status(stray, "active")  # switched on in the console, say
    resp = anth.env.request("update", "tidy")
    assert resp is not None
    assert [k["key_id"] for k in resp.data["set_keys_deactivated"]] == [stray]
    assert anth.emu.key_status(stray) == "inactive" and anth.emu.key_status(held) == "active"
    assert anth.states()[stray] == "free" and anth.states()[held] == "checked_out"


def test_the_sweep_reclaims_a_key_past_its_lease_max(anth: Anth) -> None:
    held = anth.checkout().data["key_id"]
    anth.env.clock.advance(3600 + 121)  # lease max + the sweep's grace: no lease can hold it
    resp = anth.env.request("update", "tidy")
    assert resp is not None and [k["key_id"] for k in resp.data["set_keys_reclaimed"]] == [held]
    assert anth.emu.key_status(held) == "inactive" and anth.states()[held] == "free"


# --- set writes --------------------------------------------------------------------------------------------


def test_a_set_write_checks_its_keys_and_deactivates_them(anth: Anth) -> None:
    active = anth.emu.add_key("new", status="active")
    anth.env.write(f"sets/{SET}", add_keys={active.key_id: active.secret})
    assert anth.emu.key_status(active.key_id) == "inactive" and anth.view()["key_count"] == 4

    other = anth.emu.add_key("other", status="inactive")
    with pytest.raises(BadRequest, match="does not match that key's hint"):
        anth.env.write(f"sets/{SET}", add_keys={other.key_id: active.secret[:-4] + "ZZAA"})
    with pytest.raises(BadRequest, match="does not exist"):
        anth.env.write(f"sets/{SET}", add_keys={"apikey_01Nope": "sk-ant-api03-nope"})
    with pytest.raises(BadRequest, match="same value"):
        anth.env.write(f"sets/{SET}", add_keys={other.key_id: active.secret})
    assert anth.view()["key_count"] == 4


def test_keys_in_use_cannot_be_removed_and_the_set_not_deleted(anth: Anth) -> None:
    held = anth.checkout()
    key_id = held.data["key_id"]
    with pytest.raises(BadRequest, match="checked out"):
        anth.env.write(f"sets/{SET}", remove_keys=[key_id])
    with pytest.raises(BadRequest, match="checked out"):
        anth.env.write(f"sets/{SET}", keys={k.key_id: k.secret for k in anth.keys if k.key_id != key_id})
    with pytest.raises(BadRequest, match="revoke their leases"):
        anth.env.delete(f"sets/{SET}")
    anth.env.revoke(held)
    anth.env.delete(f"sets/{SET}")
    assert anth.env.read(f"sets/{SET}") is None


def test_roles_refuse_an_anthropic_connection_and_sets_refuse_others(anth: Anth) -> None:
    with pytest.raises(BadRequest, match="sets/<name>"):
        anth.env.write("roles/r", connection="anth")
    anth.env.connect("openrouter")
    with pytest.raises(BadRequest, match="roles/<name>"):
        anth.env.write("sets/other", connection="openrouter", keys={"apikey_01x": "sk-ant-api03-x"})
    with pytest.raises(BadRequest, match="unknown set"):
        anth.env.read("sets/missing/creds")


def test_the_admin_key_goes_in_x_api_key_with_the_version_header(anth: Anth) -> None:
    seen: list[httpx.Request] = []
    handle = anth.emu.handle

    def spy(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handle(request)

    anth.env.emus["anthropic"].handle = spy  # type: ignore[method-assign]
    anth.env.backend.clients.clear()
    anth.checkout()
    assert seen and all(r.headers["x-api-key"] == ADMIN for r in seen)
    assert all(r.headers["anthropic-version"] == "2023-06-01" for r in seen)
    assert all("authorization" not in r.headers for r in seen)


def test_lease_internal_data_is_checked(anth: Anth) -> None:
    with pytest.raises(VaultError, match="internal data"):
        checkout_sets.LeaseKey.from_internal({"set": SET})


def test_the_connection_of_a_checked_out_key_cannot_be_deleted(anth: Anth) -> None:
    held = anth.checkout()
    with pytest.raises(BadRequest, match="1 live key"):
        anth.env.delete("config/anth")
    anth.env.revoke(held)
    anth.env.delete(f"sets/{SET}")
    anth.env.delete("config/anth")
    assert anth.env.read("config/anth") is None


def test_a_standby_forwards_a_checkout_before_touching_anything(anth: Anth) -> None:
    anth.env.system.replication = REPLICATION_PERFORMANCE_STANDBY
    anth.env.backend.setup({"backend_uuid": "1a2b3c4d-5e6f-4a5b-8c9d-0e1f2a3b4c5d"}, anth.env.system)
    before = anth.env.storage_dump()
    with pytest.raises(ReadOnlyStorage):
        anth.env.read(f"sets/{SET}/creds")
    assert anth.env.storage_dump() == before
    assert all(anth.emu.status_change_count(k.key_id) == 0 for k in anth.keys)
    assert anth.view()["free"] == 3  # reads are served by the standby itself
