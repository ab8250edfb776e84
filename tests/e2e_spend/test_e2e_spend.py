"""Spend per lease through a real OpenBao and the built plugin, against the provider emulators.

What a user relies on:
- keys of two roles (and a third whose leases expire on their own) spend at the provider; when each lease ends
  (`sys/leases/revoke`, a revoke-prefix, Vault's expiry) the engine reads what the key spent before deleting
  it, and `spend` answers per lease and per role exactly what the provider accounted (OpenRouter, LiteLLM);
  `spend/role/<role>` narrows it to one role, and the plugin logs one "spend:" line per lease;
- OpenAI reports spend late (its costs API, by API key id): right after the revoke the leases show as
  "collecting" with no amount, and a later rollback tick, with no request behind it, collects the exact
  amounts once OpenAI reports them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from devkit.bao import BaoServer
from engine_support import EngineMount, Unmounter, VaultApi, engine_mount
from spend_e2e_support import COST, LIVE_PROVIDERS, OPENAI_KEY_PER_LEASE, wait_for, wait_spend

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(params=sorted(LIVE_PROVIDERS))
def live_mount(
    bao: BaoServer, api: VaultApi, unmounter: Unmounter, request: pytest.FixtureRequest
) -> Iterator[EngineMount]:
    name = str(request.param)
    with engine_mount(bao, api, unmounter, name, "spend", spec=LIVE_PROVIDERS[name]) as m:
        m.emulator.set_usage(cost_per_request=COST)
        m.configure()
        yield m


def test_spend_per_lease_and_per_role_is_what_the_provider_accounted(live_mount: EngineMount) -> None:
    m = live_mount
    m.add_role("ci", ttl="10m", max_ttl="1h")
    m.add_role("web", ttl="10m", max_ttl="1h")
    m.add_role("short", ttl="4s", max_ttl="4s")
    plan = [("ci", 3), ("ci", 1), ("web", 2), ("web", 0), ("short", 5)]
    leases = [(role, n, m.creds(role)) for role, n in plan]
    for _, n, lease in leases:
        for _ in range(n):
            assert m.infer(lease.api_key) == 200
    for role, _, lease in leases:
        if role == "ci":
            m.api.ok("PUT", "sys/leases/revoke", json={"lease_id": lease.lease_id})
    m.api.ok("PUT", f"sys/leases/revoke-prefix/{m.path}/creds/web")
    # The "short" lease is revoked by Vault when its TTL runs out.
    wait_for(
        lambda: all(m.is_deleted_at_provider(lease.key_id) for _, _, lease in leases), 30, "every key deleted"
    )

    data = wait_spend(m, lambda d: d["leases"] == len(plan), 10, "every lease recorded")
    # Vault sends no lease id with a revoke: a lease is known by its key's id (in its creds data).
    accounted = {lease.key_id: m.emulator.spent(lease.key_id) for _, _, lease in leases}
    assert sorted(accounted.values()) == [0, COST, 2 * COST, 3 * COST, 5 * COST]  # what the test spent
    assert {x["key_id"]: x["usd"] for x in data["top_leases"]} == accounted
    assert [x["status"] for x in data["top_leases"]] == ["read"] * len(plan)
    roles = {"ci": 4 * COST, "web": 2 * COST, "short": 5 * COST}
    assert data["roles"] == {
        role: {"usd": usd, "leases": 1 if role == "short" else 2, "unknown": 0, "collecting": 0}
        for role, usd in roles.items()
    }
    assert data["total_usd"] == sum(accounted.values()) == 11 * COST
    top = data["top_leases"][0]
    (short,) = [lease for role, _, lease in leases if role == "short"]
    assert (top["role"], top["key_id"], top["key_name"]) == ("short", short.key_id, short.data["key_name"])
    assert top["ended_at"] and top["issued_at"] and top["connection"] == "main"

    ci = m.read("spend/role/ci?top=1")[1]["data"]
    assert ci["total_usd"] == 4 * COST and ci["leases"] == 2 and len(ci["top_leases"]) == 1
    assert ci["top_leases"][0]["usd"] == 3 * COST

    log = m.server.log_path.read_text(errors="replace")
    for _, _, lease in leases:
        line = re.search(rf"spend: role=\w+ connection=main key_id={lease.key_id} .*usd=([0-9.]+)", log)
        assert line is not None, lease.key_id
        assert float(line.group(1)) == accounted[lease.key_id]


def test_openai_spend_arrives_late_and_a_later_tick_collects_it(
    bao: BaoServer, api: VaultApi, unmounter: Unmounter
) -> None:
    with engine_mount(bao, api, unmounter, "openai", "late-spend", spec=OPENAI_KEY_PER_LEASE) as m:
        delay = 20.0  # OpenAI's costs show a call only this long after it (600 s by default)
        m.emulator.set_usage(cost_per_request=COST, delay=delay)
        m.configure()
        m.add_role("batch", ttl="10m", max_ttl="1h")
        m.must_write("spend/config", late_interval="0s")  # ask on every tick, not every 10 minutes
        leases = [m.creds("batch"), m.creds("batch")]
        for lease, n in zip(leases, (2, 3), strict=True):
            for _ in range(n):
                assert m.infer(lease.api_key) == 200
        for lease in leases:
            m.api.ok("PUT", "sys/leases/revoke", json={"lease_id": lease.lease_id})
            assert m.is_deleted_at_provider(lease.key_id)

        # OpenAI has not reported the calls yet: the leases are recorded, their amounts are still unknown.
        costs = httpx.get(
            m.emu_server.base_url + "/organization/costs",
            params={"start_time": 0, "group_by[]": "api_key_id", "limit": 180},
            headers={"Authorization": f"Bearer {m.admin_key}"},
        ).json()
        assert [r for b in costs["data"] for r in b["results"]] == []
        first = wait_spend(m, lambda d: d["leases"] == 2, 10, "both leases recorded")
        assert first["collecting"] == 2 and first["unknown"] == 2 and first["total_usd"] == 0
        assert [x["status"] for x in first["top_leases"]] == ["collecting", "collecting"]

        # Nothing asks the engine again: Vault's rollback tick (once a minute) collects what OpenAI reports.
        spent = {lease.key_id: m.emulator.spent(lease.key_id) for lease in leases}
        assert sorted(spent.values()) == [2 * COST, 3 * COST]
        data = wait_spend(
            m, lambda d: d["unknown"] == 0, 150, "a rollback tick to collect the late spend", interval=2
        )
        assert data["total_usd"] == 5 * COST
        assert {x["key_id"]: x["usd"] for x in data["top_leases"]} == spent
        assert data["roles"] == {"batch": {"usd": 5 * COST, "leases": 2, "unknown": 0, "collecting": 2}}
        # Still "collecting": OpenAI may yet report more, for 24 h after the revoke (late_window).
        assert {x["status"] for x in data["top_leases"]} == {"collecting"}
