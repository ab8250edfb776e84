"""Fault knobs, for every provider, in-process and over a real server; plus the HTTP control endpoints."""

from __future__ import annotations

import time

import httpx
import pytest
from emu_support import CHAT, Harness, Provider
from llm_emulators import Fault, FaultKind, OpenAIEmulator


def _issue(h: Harness, p: Provider, name: str = "k") -> tuple[str, str]:
    r = p.create(h.admin(), name)
    assert r.status_code == p.create_ok, r.text
    return p.key_id(r.json()), p.secret(r.json())


def test_rate_limit(any_h: Harness, provider: Provider) -> None:
    admin = any_h.admin()
    _, secret = _issue(any_h, provider)
    any_h.emu.faults.rate_limit(times=2, retry_after=1.5)
    for _ in range(2):
        r = provider.list(admin)
        provider.error_status_and_shape(r, 429)
        assert r.headers["Retry-After"] == "2"  # whole seconds, rounded up
    # Inference is not an admin call: unaffected.
    any_h.emu.faults.rate_limit(times=1)
    assert any_h.client(secret).post(provider.chat_path, json=CHAT).status_code == 200
    provider.error_status_and_shape(provider.list(admin), 429)
    assert provider.list(admin).status_code == 200


def test_rate_limit_scoped_to_delete(any_h: Harness, provider: Provider) -> None:
    admin = any_h.admin()
    any_h.emu.set_faults(Fault.rate_limit(times=1, op="delete"))
    key_id, _ = _issue(any_h, provider)
    provider.error_status_and_shape(provider.delete(admin, key_id), 429)
    assert any_h.emu.delete_count == 0 and len(any_h.emu.live_keys()) == 1
    assert provider.delete(admin, key_id).status_code == 200
    assert any_h.emu.deleted_key_ids() == [key_id]


@pytest.mark.parametrize("status", [500, 503])
def test_server_error(any_h: Harness, provider: Provider, status: int) -> None:
    any_h.emu.faults.server_error(times=1, status=status, op="create")
    r = provider.create(any_h.admin(), "x")
    provider.error_status_and_shape(r, status)
    assert any_h.emu.create_count == 0 and any_h.emu.live_keys() == []
    assert provider.create(any_h.admin(), "x").status_code == provider.create_ok


def test_bad_gateway_is_html(any_h: Harness, provider: Provider) -> None:
    any_h.emu.faults.server_error(status=502)
    r = provider.list(any_h.admin())
    assert r.status_code == 502
    assert r.headers["content-type"].startswith("text/html")
    with pytest.raises(ValueError):
        r.json()


def test_latency(any_h: Harness, provider: Provider) -> None:
    _, secret = _issue(any_h, provider)
    latency = 0.8  # well above what a call takes on a busy machine, so "not delayed" is safe to assert
    any_h.emu.faults.latency(latency, op="list")
    start = time.monotonic()
    assert provider.list(any_h.admin()).status_code == 200
    assert time.monotonic() - start >= latency
    start = time.monotonic()
    assert any_h.client(secret).post(provider.chat_path, json=CHAT).status_code == 200
    assert time.monotonic() - start < latency
    start = time.monotonic()
    assert provider.create(any_h.admin(), "fast").status_code == provider.create_ok
    assert time.monotonic() - start < latency


def test_latency_times_out_a_client(any_h: Harness, provider: Provider) -> None:
    if any_h.server is None:
        pytest.skip("timeouts need a socket")
    any_h.emu.faults.latency(1.0, times=1)
    with httpx.Client(base_url=any_h.base_url, timeout=0.2) as c, pytest.raises(httpx.ReadTimeout):
        provider.list(c)


def test_drop_after_create(any_h: Harness, provider: Provider) -> None:
    any_h.emu.faults.drop_after_create(times=1)
    with pytest.raises(httpx.RemoteProtocolError):
        provider.create(any_h.admin(), "lost-response")
    # The create happened: the key exists and is counted, only the answer was lost.
    assert any_h.emu.create_count == 1
    assert [k.name for k in any_h.emu.live_keys()] == ["lost-response"]
    assert provider.create(any_h.admin(), "second").status_code == provider.create_ok
    assert any_h.emu.create_count == 2


def test_drop_after_create_skips_failed_creates(any_h: Harness, provider: Provider) -> None:
    any_h.emu.faults.drop_after_create(times=1)
    any_h.emu.faults.server_error(times=1)
    provider.error_status_and_shape(provider.create(any_h.admin(), "x"), 500)
    with pytest.raises(httpx.RemoteProtocolError):
        provider.create(any_h.admin(), "x")


def test_revoke_admin_key(any_h: Harness, provider: Provider) -> None:
    key_id, secret = _issue(any_h, provider)
    any_h.emu.revoke_admin_key()
    admin = any_h.admin()
    provider.error_status_and_shape(provider.list(admin), 401)
    provider.error_status_and_shape(provider.create(admin, "x"), 401)
    provider.error_status_and_shape(provider.delete(admin, key_id), 401)
    # Issued keys keep working: only the admin key was revoked.
    assert any_h.client(secret).post(provider.chat_path, json=CHAT).status_code == 200
    any_h.emu.restore_admin_key()
    assert provider.delete(admin, key_id).status_code == 200


def test_revoke_scoped(any_h: Harness, provider: Provider) -> None:
    any_h.emu.faults.revoke_admin_key(op="delete")
    key_id, _ = _issue(any_h, provider)
    provider.error_status_and_shape(provider.delete(any_h.admin(), key_id), 401)
    assert provider.list(any_h.admin()).status_code == 200


def test_faults_over_http(any_h: Harness, provider: Provider) -> None:
    ctl = any_h.control()
    r = ctl.post("/_emulator/faults", json={"kind": "rate_limit", "times": 1, "retry_after": 3, "op": "list"})
    assert r.status_code == 200 and r.json()["faults"][0]["kind"] == "rate_limit"
    resp = provider.list(any_h.admin())
    provider.error_status_and_shape(resp, 429)
    assert resp.headers["Retry-After"] == "3"
    r = ctl.post(
        "/_emulator/faults",
        json={
            "faults": [{"kind": "server_error", "status": 503, "times": None}],
            "replace": True,
            "page_size": 1,
        },
    )
    assert r.json()["page_size"] == 1 and len(r.json()["faults"]) == 1
    provider.error_status_and_shape(provider.list(any_h.admin()), 503)
    assert ctl.delete("/_emulator/faults").json() == {"faults": []}
    assert provider.list(any_h.admin()).status_code == 200
    ctl.post("/_emulator/faults", json={"revoke_admin_key": True})
    provider.error_status_and_shape(provider.list(any_h.admin()), 401)
    assert ctl.post("/_emulator/faults", json={"kind": "nope"}).status_code == 400
    assert ctl.post("/_emulator/faults", json={"kind": "rate_limit", "times": 0}).status_code == 400
    assert ctl.post("/_emulator/faults", json={"kind": "rate_limit", "colour": 1}).status_code == 400


def test_state_seed_clock_reset_over_http(any_h: Harness, provider: Provider) -> None:
    ctl = any_h.control()
    _, secret = _issue(any_h, provider, "live-one")
    seeded = ctl.post("/_emulator/seed", json={"name": "orphan", "created_at": 1_700_000_000})
    assert seeded.status_code == 201 and "secret" not in seeded.json()
    state = ctl.get("/_emulator/state").json()
    assert state["provider"] == provider.name and state["create_count"] == 1
    assert seeded.json()["key_id"] in [k["key_id"] for k in state["live_keys"]]
    assert [k["name"] for k in state["live_keys"]] == ["live-one", "orphan"]
    assert secret not in str(state)
    r = ctl.post("/_emulator/clock", json={"advance": 10})
    assert r.json()["clock_offset"] == 10 and any_h.emu.now() == r.json()["now"]
    assert ctl.post("/_emulator/reset").status_code == 200
    state = ctl.get("/_emulator/state").json()
    assert (state["create_count"], state["live_keys"], state["faults"]) == (0, [], [])
    assert ctl.get("/_emulator/nothing").status_code == 404


def test_fault_validation() -> None:
    with pytest.raises(ValueError):
        Fault(FaultKind.RATE_LIMIT, times=0)
    with pytest.raises(ValueError):
        Fault.server_error(status=404)
    with pytest.raises(ValueError):
        Fault.rate_limit(times=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Fault(FaultKind.LATENCY, op="destroy")  # type: ignore[arg-type]
    assert Fault(FaultKind.DROP_AFTER_CREATE, op="all").op == "create"
    assert Fault.from_json({"kind": "latency", "seconds": 2, "times": None}).to_json()["seconds"] == 2


def test_permanent_fault_and_set_faults() -> None:
    emu = OpenAIEmulator()
    emu.set_faults(Fault.server_error(times=None))
    with emu.client(headers={"Authorization": f"Bearer {emu.admin_key}"}) as c:
        for _ in range(3):
            assert c.get("/organization/projects/proj_default").status_code == 500
        emu.set_faults()
        assert c.get("/organization/projects/proj_default").status_code == 200


def test_fault_rate_hits_a_share_of_calls_and_counts_them() -> None:
    """A background fault (`rate` < 1, forever) hits about that share of matching calls, reproducibly once
    seeded; spared calls are served normally and use none of its `times`."""
    emu = OpenAIEmulator()
    emu.faults.seed(7)
    fault = emu.faults.add(Fault(FaultKind.SERVER_ERROR, op="get", times=None, rate=0.2))
    with emu.client(headers={"Authorization": f"Bearer {emu.admin_key}"}) as c:
        statuses = [c.get("/organization/projects/proj_default").status_code for _ in range(1000)]
    assert set(statuses) == {200, 500}
    assert fault.hits == statuses.count(500)
    assert 150 <= fault.hits <= 250  # 20 % of 1000, within about 4 standard deviations
    assert fault.to_json()["hits"] == fault.hits and fault.to_json()["rate"] == 0.2

    emu.faults.clear()
    emu.faults.seed(7)
    again = emu.faults.add(Fault(FaultKind.SERVER_ERROR, op="get", times=None, rate=0.2))
    with emu.client(headers={"Authorization": f"Bearer {emu.admin_key}"}) as c:
        for _ in range(1000):
            c.get("/organization/projects/proj_default")
    assert again.hits == fault.hits  # the same seed, the same draws

    # `times` counts hits, not matching calls: a one-shot fault at 10 % waits for its hit, then is gone.
    emu.set_faults(Fault(FaultKind.DROP_AFTER_CREATE, times=1, rate=0.1))
    with emu.client(headers={"Authorization": f"Bearer {emu.admin_key}"}) as c:
        dropped = 0
        for i in range(200):
            try:
                c.post(
                    "/organization/projects/proj_default/service_accounts", json={"name": f"k{i}"}
                ).raise_for_status()
            except httpx.RemoteProtocolError:
                dropped += 1
    assert dropped == 1 and len(emu.faults) == 0
    assert emu.create_count == 200 and len(emu.live_keys()) == 200  # the dropped create made its key


@pytest.mark.parametrize("rate", [0, -0.1, 1.5, True, "0.5"])
def test_fault_rate_validation(rate: object) -> None:
    with pytest.raises(ValueError, match="rate"):
        Fault(FaultKind.RATE_LIMIT, times=None, rate=rate)  # type: ignore[arg-type]
