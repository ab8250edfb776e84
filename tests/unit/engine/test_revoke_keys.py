"""`roles/<name>/revoke-keys` and `config/<name>/revoke-keys`: every key of a role or connection deleted at
the provider at once; the leases revoked afterwards without another provider call; what fails is left to
the deletion queue, which finishes it.
"""

from __future__ import annotations

from typing import Any

import pytest
from engine_env import Env
from vaultplugin.framework import BadRequest, Operation, Response


def kill(env: Env, path: str) -> dict[str, Any]:
    resp = env.request(Operation.UPDATE, path)
    assert resp is not None
    return {**resp.data, "warnings": list(resp.warnings)}


def issue(env: Env, role: str, n: int) -> list[Response]:
    return [env.creds(role) for _ in range(n)]


def key_ids(resps: list[Response]) -> set[str]:
    return {str(r.data["key_id"]) for r in resps}


def test_a_roles_keys_die_at_once_and_only_that_roles(env: Env, provider: str) -> None:
    role = env.setup_provider(provider)
    other = env.role(provider, name="other")
    issue(env, role, 5)
    kept = issue(env, other, 3)

    out = kill(env, f"roles/{role}/revoke-keys")

    assert out["keys"] == 5 and out["deleted"] == 5
    assert out["queued"] == out["failed"] == out["already_gone"] == 0
    assert out["revoke_leases"] == f"bao lease revoke -prefix llm/creds/{role}"
    assert env.live_ids(provider) == key_ids(kept)


def test_the_leases_are_then_revoked_without_calling_the_provider(env: Env) -> None:
    role = env.setup_provider("openrouter")
    resps = issue(env, role, 4)
    kill(env, f"roles/{role}/revoke-keys")
    deletes = env.emus["openrouter"].delete_count
    env.emus["openrouter"].faults.server_error(times=None, status=503)  # a call now would fail the revoke

    for resp in resps:
        env.revoke(resp, role)

    assert env.emus["openrouter"].delete_count == deletes
    stored = env.storage.keys()
    assert [k for k in stored if k.startswith(("keys/", "deletions/"))] == []


def test_a_killed_key_cannot_be_renewed(env: Env) -> None:
    role = env.setup_provider("litellm")
    resp = env.creds(role)
    kill(env, f"roles/{role}/revoke-keys")
    with pytest.raises(BadRequest, match="no longer live"):
        env.renew(resp)


def test_a_connections_keys_die_across_its_roles(env: Env) -> None:
    env.connect("openrouter")
    env.connect("openrouter", name="second")
    a = env.role("openrouter", name="a")
    b = env.role("openrouter", name="b")
    elsewhere = env.role("openrouter", name="c", connection="second")
    issue(env, a, 2)
    issue(env, b, 3)
    kept = issue(env, elsewhere, 2)

    out = kill(env, "config/openrouter/revoke-keys")

    assert (out["keys"], out["deleted"]) == (5, 5)
    assert env.live_ids("openrouter") == key_ids(kept)
    # The connection has no live key left: it can be deleted once its leases are gone.
    env.delete("config/openrouter")
    assert env.read("config/openrouter") is None


def test_a_deleted_role_is_found_through_its_keys(env: Env) -> None:
    role = env.setup_provider("openai")
    issue(env, role, 3)
    env.delete(f"roles/{role}")  # what a responder does first, to stop new keys

    out = kill(env, f"roles/{role}/revoke-keys")

    assert out["deleted"] == 3 and not out["warnings"]
    assert env.live("openai") == []


def test_a_key_already_gone_counts_as_such(env: Env) -> None:
    role = env.setup_provider("openrouter")
    resps = issue(env, role, 2)
    emu = env.emus["openrouter"]
    with emu._lock:  # deleted behind the engine's back
        emu._mark_deleted(emu._records[str(resps[0].data["key_id"])])

    out = kill(env, f"roles/{role}/revoke-keys")

    assert (out["deleted"], out["already_gone"]) == (1, 1)


def test_an_unknown_role_with_no_keys_says_so(env: Env) -> None:
    env.setup_provider("openrouter")
    out = kill(env, "roles/no-such-role/revoke-keys")
    assert out["keys"] == 0
    assert "no role named 'no-such-role'" in out["warnings"][0]


def test_during_an_outage_the_keys_are_queued_and_the_queue_finishes_them(env: Env) -> None:
    role = env.setup_provider("openrouter")
    resps = issue(env, role, 200)
    emu = env.emus["openrouter"]
    fault = emu.faults.server_error(times=10_000, status=503)

    out = kill(env, f"roles/{role}/revoke-keys")

    assert (out["keys"], out["queued"], out["deleted"]) == (200, 200, 0)
    assert any("deletion queue" in w for w in out["warnings"])
    # A connection-wide failure is enough: the keys not yet in flight are queued without a call each (the
    # harness's client tries twice), so the provider is not hammered with 400 calls.
    assert 10_000 - fault.times <= 2 * 64
    listed = env.list_keys("deletions/")
    assert listed is not None and len(listed.data["keys"]) == 200
    # While queued, a revoke of a running lease must not report the key deleted.
    with pytest.raises(Exception, match="still live"):
        env.revoke(resps[0], role)

    emu.faults.clear()
    env.clock.advance(15)
    env.backend.deletions.run_pass(env.storage)
    assert env.live("openrouter") == []
    for resp in resps:
        env.revoke(resp, role)  # tombstones: each succeeds


def test_many_keys_in_parallel(env: Env) -> None:
    role = env.setup_provider("litellm")
    issue(env, role, 150)
    out = kill(env, f"roles/{role}/revoke-keys")
    assert (out["keys"], out["deleted"]) == (150, 150)
    assert env.live("litellm") == []


def test_the_paths_do_not_shadow_roles_and_connections(env: Env) -> None:
    role = env.setup_provider("openrouter")
    resp = env.read(f"roles/{role}")
    assert resp is not None and resp.data["connection"] == "openrouter"
    help_resp = env.request(Operation.HELP, f"roles/{role}/revoke-keys")
    assert help_resp is not None and "incident" in str(help_resp.data)
