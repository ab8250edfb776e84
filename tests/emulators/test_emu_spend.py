"""Spend at the emulators: each inference call charges a configurable cost to the key it used, and each
provider reports it in its own documented place (OpenRouter key `usage`, LiteLLM `/key/info` `info.spend`,
OpenAI's usage and costs API by `api_key_id`, late)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from emu_support import CHAT, PROVIDERS, FakeClock, Harness, Provider

# A binary fraction: sums of it are exact, so totals can be compared with ==.
COST = 0.03125


def _issue(h: Harness, p: Provider, name: str) -> tuple[str, str]:
    resp = p.create(h.admin(), name)
    assert resp.status_code == p.create_ok, resp.text
    body = resp.json()
    return p.key_id(body), p.secret(body)


def _chat(h: Harness, secret: str, path: str = "/chat/completions") -> int:
    return h.client(secret).post(path, json=CHAT).status_code


def test_cost_per_call_is_set_through_the_control_endpoint_and_accounted_per_key(
    any_h: Harness, provider: Provider
) -> None:
    ctl = any_h.control()
    resp = ctl.post("/_emulator/usage", json={"cost_per_request": COST, "delay": 0})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"cost_per_request": COST, "delay": 0.0}
    a_id, a = _issue(any_h, provider, "vault-a")
    b_id, b = _issue(any_h, provider, "vault-b")
    for _ in range(3):
        assert _chat(any_h, a, provider.chat_path) == 200
    assert _chat(any_h, b, provider.chat_path) == 200
    # A refused call (a body that is not JSON) costs nothing.
    assert any_h.client(b).post(provider.chat_path, content=b"{").status_code == 400
    assert provider.delete(any_h.admin(), a_id).status_code == 200
    spent = ctl.get("/_emulator/state").json()["spent"]
    assert spent == {a_id: 3 * COST, b_id: COST}  # the deleted key's spend stays accounted
    assert any_h.emu.spent(a_id) == 3 * COST
    for bad in ({"cost_per_request": -1}, {"delay": "soon"}, {"cost_per_request": True}):
        assert ctl.post("/_emulator/usage", json=bad).status_code == 400


def test_openrouter_reports_usage_on_the_key(openrouter_h: Harness, clock: FakeClock) -> None:
    openrouter_h.emu.set_usage(cost_per_request=COST)
    p = next(x for x in PROVIDERS if x.name == "openrouter")
    key_id, secret = _issue(openrouter_h, p, "vault-or")
    for _ in range(5):
        assert _chat(openrouter_h, secret) == 200
    data = openrouter_h.admin().get(f"/keys/{key_id}").json()["data"]
    assert data["usage"] == 5 * COST
    assert data["usage_daily"] == data["usage_weekly"] == data["usage_monthly"] == 5 * COST
    clock.advance(86400 * 40)  # a later month: the windowed figures start again, the total does not
    data = openrouter_h.admin().get(f"/keys/{key_id}").json()["data"]
    assert (data["usage"], data["usage_daily"], data["usage_monthly"]) == (5 * COST, 0, 0)


def test_litellm_reports_spend_in_key_info(litellm_h: Harness) -> None:
    litellm_h.emu.set_usage(cost_per_request=COST)
    p = next(x for x in PROVIDERS if x.name == "litellm")
    key_id, secret = _issue(litellm_h, p, "vault-ll")
    for _ in range(2):
        assert _chat(litellm_h, secret) == 200
    info = litellm_h.admin().get("/key/info", params={"key": key_id}).json()["info"]
    assert info["spend"] == 2 * COST


def test_a_reporting_delay_hides_recent_charges(litellm_h: Harness, clock: FakeClock) -> None:
    litellm_h.emu.set_usage(cost_per_request=COST, delay=30)
    p = next(x for x in PROVIDERS if x.name == "litellm")
    key_id, secret = _issue(litellm_h, p, "vault-late")
    assert _chat(litellm_h, secret) == 200
    assert litellm_h.admin().get("/key/info", params={"key": key_id}).json()["info"]["spend"] == 0
    clock.advance(30)
    assert litellm_h.admin().get("/key/info", params={"key": key_id}).json()["info"]["spend"] == COST


# ---- OpenAI: usage and costs API


_KEYS = "/organization/projects/proj_default/service_accounts"


def _openai_keys(h: Harness) -> tuple[str, str, str, str]:
    """A per-lease service account (its key id differs from the account id) and a key under a shared one."""
    admin = h.admin()
    sa = admin.post(_KEYS, json={"name": "vault-sa"}).json()
    shared = admin.post(_KEYS, json={"name": "vault-role:r", "create_service_account_only": True}).json()
    assert admin.post(f"{_KEYS}/{shared['id']}", json={"role": "member"}).status_code == 200
    key = admin.post(f"{_KEYS}/{shared['id']}/api_keys", json={"name": "vault-k"}).json()
    return sa["api_key"]["id"], sa["api_key"]["value"], key["id"], key["value"]


def _costs(h: Harness, **params: Any) -> httpx.Response:
    return h.admin().get("/organization/costs", params=params)


def _amounts(body: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for bucket in body["data"]:
        assert bucket["object"] == "bucket"
        for r in bucket["results"]:
            assert r["object"] == "organization.costs.result"
            assert r["amount"]["currency"] == "usd"
            out[r["api_key_id"]] = out.get(r["api_key_id"], 0.0) + r["amount"]["value"]
    return out


def test_openai_costs_by_api_key_arrive_late(openai_h: Harness, clock: FakeClock) -> None:
    emu = openai_h.emu
    assert emu.usage_delay == 600  # OpenAI's default lag
    emu.set_usage(cost_per_request=COST)
    sa_key, sa_secret, key_id, key_secret = _openai_keys(openai_h)
    start = int(clock.now) - 3600
    for secret, n in ((sa_secret, 2), (key_secret, 3)):
        for _ in range(n):
            assert _chat(openai_h, secret) == 200
    query = {"start_time": start, "group_by[]": "api_key_id", "api_key_ids[]": [sa_key, key_id]}
    early = _costs(openai_h, **query)
    assert early.status_code == 200, early.text
    assert _amounts(early.json()) == {}
    clock.advance(601)
    assert _amounts(_costs(openai_h, **query).json()) == {sa_key: 2 * COST, key_id: 3 * COST}
    only = _costs(openai_h, start_time=start, group_by="api_key_id", api_key_ids=key_id)
    assert _amounts(only.json()) == {key_id: 3 * COST}
    usage = openai_h.admin().get(
        "/organization/usage/completions",
        params={"start_time": start, "bucket_width": "1h", "group_by[]": "api_key_id"},
    )
    assert usage.status_code == 200, usage.text
    requests = {r["api_key_id"]: r["num_model_requests"] for b in usage.json()["data"] for r in b["results"]}
    assert requests == {sa_key: 2, key_id: 3}


def test_openai_costs_pages_and_validation(openai_h: Harness, clock: FakeClock) -> None:
    openai_h.emu.set_usage(cost_per_request=COST, delay=0)
    _, secret, _, _ = _openai_keys(openai_h)
    assert _chat(openai_h, secret) == 200
    start = int(clock.now) - 9 * 86400
    first = _costs(openai_h, start_time=start, limit=5).json()
    assert len(first["data"]) == 5 and first["has_more"] and first["next_page"]
    second = _costs(openai_h, start_time=start, limit=5, page=first["next_page"]).json()
    assert not second["has_more"] and second["next_page"] is None
    buckets = first["data"] + second["data"]
    assert [b["end_time"] - b["start_time"] for b in buckets] == [86400] * len(buckets)
    total = sum(r["amount"]["value"] for b in buckets for r in b["results"])
    assert total == COST
    for params, param in (
        ({}, "start_time"),
        ({"start_time": start, "bucket_width": "1h"}, "bucket_width"),
        ({"start_time": start, "limit": 181}, "limit"),
        ({"start_time": start, "group_by": "model"}, "group_by"),
        ({"start_time": "yesterday"}, "start_time"),
        ({"start_time": start, "page": "nope"}, "page"),
    ):
        resp = _costs(openai_h, **params)
        assert resp.status_code == 400, (params, resp.text)
        assert resp.json()["error"]["param"] == param
    issued = openai_h.client(secret).get("/organization/costs", params={"start_time": start})
    assert issued.status_code == 401  # an issued key is not an admin key


@pytest.mark.parametrize("path", ["/organization/costs", "/organization/usage/completions"])
def test_openai_usage_needs_an_admin_key(openai_h: Harness, path: str) -> None:
    assert openai_h.client().get(path, params={"start_time": 0}).status_code == 401
