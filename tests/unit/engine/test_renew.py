"""Renew: the new TTL stays within max TTL; LiteLLM's provider-side expiry follows the lease."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from engine_env import Env
from vaultplugin.framework import BadRequest, Operation, Request, UpstreamError


def test_renew_extends_litellm_expiry(env: Env) -> None:
    now = env.clock()
    role = env.setup_provider("litellm")
    resp = env.creds(role)
    key_id = resp.data["key_id"]
    out = env.renew(resp, increment=1800)
    assert out.secret is not None and out.secret.ttl == 1800
    key = env.emus["litellm"].find_key(key_id)
    assert key is not None and key.expires_at is not None
    assert abs(key.expires_at - (now + 1800 + 300)) < 3
    # The renew response carries no data (it goes to whoever renewed: never the key again), and the internal
    # data (Vault replaces what it stored with it) plus when the TTL restarted (revoke uses it to tell an
    # ended lease from a running one).
    assert out.data == {}
    assert resp.secret is not None
    assert out.secret.internal_data == {**resp.secret.internal_data, "renewed_at": env.clock()}


def test_renew_caps_at_max_ttl(env: Env) -> None:
    now = env.clock()
    role = env.setup_provider("litellm")
    resp = env.creds(role)
    out = env.renew(resp, increment=7200)
    assert out.secret is not None and out.secret.ttl == pytest.approx(3600, abs=1)
    key = env.emus["litellm"].find_key(resp.data["key_id"])
    assert key is not None and key.expires_at is not None
    assert key.expires_at <= now + 3600 + 300 + 2


def test_renew_caps_at_vaults_lease_end_so_no_renewal_ends_it_earlier(env: Env) -> None:
    # Vault's issue time comes after the creds read began (by the create's duration): a renewal near the max
    # must cap where Vault does, or it would end the lease before the renewal before it had.
    role = env.setup_provider("openrouter")
    resp = env.creds(role)
    issued_by_vault = env.clock() + 0.7
    env.clock.advance(3500)
    lease = env.lease(resp)
    lease.issue_time = datetime.fromtimestamp(issued_by_vault, UTC)
    req = Request(operation=Operation.RENEW, path="creds/x", storage=env.storage, secret=lease)
    out = env.backend.handle_request(req)
    assert out is not None and out.secret is not None
    assert out.secret.ttl == pytest.approx(issued_by_vault + 3600 - env.clock(), abs=0.01)


def test_renew_ttl_shrinks_as_the_lease_ages(env: Env) -> None:
    role = env.setup_provider("openrouter")
    resp = env.creds(role)
    env.clock.advance(3000)
    out = env.renew(resp)
    assert out.secret is not None and out.secret.ttl == pytest.approx(600, abs=1)
    env.clock.advance(200)
    out = env.renew(resp, increment=900)
    assert out.secret is not None and out.secret.ttl == pytest.approx(400, abs=1)
    env.clock.advance(500)
    with pytest.raises(BadRequest, match="max TTL"):
        env.renew(resp)


def test_renew_of_revoked_key_is_refused(env: Env) -> None:
    role = env.setup_provider("openrouter")
    resp = env.creds(role)
    env.revoke(resp)
    with pytest.raises(BadRequest, match="no longer live"):
        env.renew(resp)


def test_renew_during_litellm_outage_is_502(env: Env) -> None:
    role = env.setup_provider("litellm")
    resp = env.creds(role)
    env.emus["litellm"].faults.server_error(times=None, op="update")
    with pytest.raises(UpstreamError):
        env.renew(resp, increment=600)
