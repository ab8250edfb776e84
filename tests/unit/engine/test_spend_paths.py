"""The engine with spend per lease wired in (in-process emulators, fake clock): a revoke reads the key's spend
before deleting it, `spend` answers per role and per lease, `spend/config` and bad input."""

from __future__ import annotations

import httpx
import pytest
from engine_env import Env
from llmsecrets import deletions, spend
from vaultplugin.framework import BadRequest, Response

COST = 0.0625
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def infer(env: Env, provider: str, resp: Response, n: int) -> None:
    emu = env.emus[provider]
    path = {"openrouter": "/chat/completions", "litellm": "/chat/completions", "openai": "/chat/completions"}
    with httpx.Client(transport=httpx.MockTransport(emu.handle), base_url=emu.base_path) as client:
        for _ in range(n):
            r = client.post(
                path[provider], json=CHAT, headers={"Authorization": f"Bearer {resp.data['api_key']}"}
            )
            assert r.status_code == 200, r.text


def report(env: Env, path: str = "spend", **query: object) -> dict[str, object]:
    resp = env.request("read", path, **query)
    assert resp is not None and resp.data is not None
    return resp.data


@pytest.mark.parametrize("provider", ["openrouter", "litellm"])
def test_revoke_records_what_each_lease_spent_per_role(env: Env, provider: str) -> None:
    env.emus[provider].set_usage(cost_per_request=COST)
    env.connect(provider)
    env.role(provider, "ci")
    env.role(provider, "web")
    leases = {("ci", 3): env.creds("ci"), ("ci", 1): env.creds("ci"), ("web", 2): env.creds("web")}
    for (_, n), resp in leases.items():
        infer(env, provider, resp, n)
    for resp in leases.values():
        assert env.revoke(resp) is None
    assert env.live(provider) == []  # the read came first, the delete still happened
    data = report(env)
    spent = {resp.data["key_id"]: env.emus[provider].spent(resp.data["key_id"]) for resp in leases.values()}
    assert data["roles"] == {
        "ci": {"usd": 4 * COST, "leases": 2, "unknown": 0, "collecting": 0},
        "web": {"usd": 2 * COST, "leases": 1, "unknown": 0, "collecting": 0},
    }
    assert data["total_usd"] == sum(spent.values()) == 6 * COST
    top = data["top_leases"]
    assert isinstance(top, list) and [x["usd"] for x in top] == [3 * COST, 2 * COST, COST]
    assert {x["key_id"]: x["usd"] for x in top} == spent
    assert report(env, "spend/role/web")["total_usd"] == 2 * COST
    assert report(env, role="ci", top=1)["top_leases"] == top[:1]


def test_a_failing_spend_read_does_not_stop_the_revoke(env: Env) -> None:
    role = env.setup_provider("openrouter")
    resp = env.creds(role)
    env.emus["openrouter"].faults.server_error(times=2, status=503, op="get")  # the read and its retry
    assert env.revoke(resp) is None
    assert env.live("openrouter") == []
    (lease,) = report(env)["top_leases"]  # type: ignore[misc]
    assert lease["usd"] is None and lease["status"] == spend.FAILED and "503" in lease["note"]


def test_bad_input_is_a_400(env: Env) -> None:
    for query in ({"days": 0}, {"days": 31}, {"top": -1}, {"top": 101}, {"role": "no/such"}):
        with pytest.raises(BadRequest):
            env.request("read", "spend", **query)
    for body in ({"retention_days": 0}, {"read_timeout": 60}, {"late_window": "8d"}, {"enabled": "maybe"}):
        with pytest.raises(BadRequest):
            env.write("spend/config", **body)
    env.write("spend/config", retention_days=90, late_interval="0s")
    assert report(env, "spend/config")["retention_days"] == 90
    assert report(env, days=90)["days"] == 90


def test_every_spend_path_has_help(env: Env) -> None:
    for path in ("spend", "spend/role/ci", "spend/config"):
        resp = env.request("help", path)
        assert resp is not None and resp.data is not None
        text = str(resp.data.get("help", ""))
        assert "spend" in text.lower() and len(text) > 200, path


def test_after_an_outage_the_deletion_queue_reads_what_the_revoke_could_not(env: Env) -> None:
    env.emus["openrouter"].set_usage(cost_per_request=COST)
    role = env.setup_provider("openrouter")
    leases = [env.creds(role) for _ in range(3)]
    for n, resp in enumerate(leases, start=1):
        infer(env, "openrouter", resp, n)
    env.emus["openrouter"].faults.server_error(times=None, status=503)
    env.clock.advance(601)  # the leases' TTL ran out: Vault's expiry revokes them
    for resp in leases:
        assert env.revoke(resp) is None  # queued (the first after failed calls, the rest without a call)
    during = report(env)
    assert during["leases"] == 3 and during["unknown"] == 3
    notes = sorted(str(x["note"]) for x in during["top_leases"])  # type: ignore[union-attr]
    assert "503" in notes[-1] and notes[:2] == ["not read: the connection is failing"] * 2

    env.emus["openrouter"].faults.clear()
    env.clock.advance(deletions.RETRY_CAP * (1 + deletions.JITTER))
    assert env.backend.deletions.run_pass(env.storage) == 3
    assert env.live("openrouter") == []
    after = {x["key_id"]: x for x in report(env)["top_leases"]}  # type: ignore[union-attr]
    assert len(after) == 3
    for key_id, lease in after.items():
        assert lease["status"] == spend.READ
        assert lease["usd"] == env.emus["openrouter"].spent(key_id) > 0
        assert lease["note"] == "read by the deletion queue, before its delete"


def test_a_key_that_outlived_a_failed_delete_is_read_again_before_the_queue_deletes_it(env: Env) -> None:
    env.emus["openrouter"].set_usage(cost_per_request=COST)
    role = env.setup_provider("openrouter")
    resp = env.creds(role)
    infer(env, "openrouter", resp, 1)
    env.emus["openrouter"].faults.server_error(
        times=2, status=503, op="delete"
    )  # the read works, the delete not
    env.clock.advance(601)
    assert env.revoke(resp) is None  # an ended lease: queued, Vault is told it is revoked
    assert report(env)["total_usd"] == COST
    infer(env, "openrouter", resp, 2)  # the key still works until the queue deletes it
    env.clock.advance(deletions.RETRY_CAP * (1 + deletions.JITTER))
    assert env.backend.deletions.run_pass(env.storage) == 1
    (lease,) = report(env)["top_leases"]  # type: ignore[misc]
    assert lease["usd"] == env.emus["openrouter"].spent(resp.data["key_id"]) == 3 * COST
