"""vault-config/agent/sidecar.hcl with a real `bao agent`: the key file an application reads.

What a user relies on: the agent logs in with the pod's service account (the shipped auto_auth block), renders
a key that works at the provider, keeps its lease alive by renewing it, writes a NEW key to the same file
before the old lease reaches max_ttl (and only then: renewals do not rewrite the file), and every superseded
key is deleted at the provider within seconds of its lease's end, never before it.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest
from agent_support import (
    DELETE_DEADLINE,
    MOUNT,
    ROLE,
    SHIPPED_ADDRESS,
    SHIPPED_DESTINATION,
    SHIPPED_TOKEN_PATH,
    AgentStack,
    Timeline,
    describe,
    from_shipped,
    hcl_string,
    lease_of_key,
    read_env_file,
    running_agent,
    wait_until,
)

pytestmark = pytest.mark.timeout(120)

# Short TTLs so rotations happen in seconds: the agent renews every ~4 s and reads a new key 2-3 s before each
# lease's max_ttl (the rules that give, for ttl=15m and max_ttl=1h, a renewal every ~10 min and a new key
# 1.5-12 min early).
TTL = 6
MAX_TTL = 15
ROTATIONS = 2  # superseded keys to follow to their deletion


def test_sidecar_renders_renews_and_rotates_the_key(stack: AgentStack, tmp_path: Path) -> None:
    destination = tmp_path / "secrets" / "openai.env"
    config = from_shipped(
        "sidecar.hcl",
        {
            SHIPPED_ADDRESS: hcl_string(stack.server.addr),
            SHIPPED_TOKEN_PATH: hcl_string(str(stack.token_file)),
            SHIPPED_DESTINATION: hcl_string(str(destination)),
        },
    )

    def rendered() -> tuple[str, dict[str, str]] | None:
        env = read_env_file(destination, "OPENAI_API_KEY", "LLM_KEY_ID", "LLM_LEASE_ID")
        if env is None:
            return None
        return env["OPENAI_API_KEY"], {"LLM_KEY_ID": env["LLM_KEY_ID"], "LLM_LEASE_ID": env["LLM_LEASE_ID"]}

    stack.set_role_ttls(TTL, MAX_TTL)
    reviews_before = stack.kube.reviews
    with Timeline(stack, rendered) as timeline, running_agent(config, tmp_path / "agent") as agent:
        t0 = time.time()
        first_key, first = wait_until(rendered, 30, "the first render", agent)
        # The rendered key is live at the provider and works there; the file names its key and lease.
        assert first["LLM_LEASE_ID"].startswith(f"{MOUNT}/creds/{ROLE}/")
        assert stack.key_id_of(first_key) == first["LLM_KEY_ID"]
        assert stack.infer(first_key) == 200
        assert stack.kube.reviews > reviews_before, "the agent did not log in through the kubernetes method"
        assert oct(destination.stat().st_mode & 0o777) == "0o640"

        # Follow ROTATIONS superseded keys until each is deleted at the provider.
        wait_until(
            lambda: timeline.distinct_app_keys() > ROTATIONS,
            ROTATIONS * MAX_TTL + 15,
            f"{ROTATIONS} new keys rendered",
            agent,
        )
        superseded = [app.api_key for app in timeline.snapshot()[2][:ROTATIONS]]
        current = timeline.snapshot()[2][-1]
        assert stack.infer(current.api_key) == 200, "the newest rendered key does not work"
        wait_until(
            lambda: all(timeline.key_deleted(k) for k in superseded),
            MAX_TTL + DELETE_DEADLINE,
            "the superseded keys deleted at the provider",
            agent,
        )
        timeline.check()
    leases, keys, app_keys = timeline.snapshot()
    print(describe(leases, keys, app_keys, t0))

    # One key per lease and every key the agent got is the one it rendered: no hidden extra keys.
    assert [k.api_key for k in keys][: len(app_keys)] == [a.api_key for a in app_keys]
    assert len(keys) == len(app_keys), "the agent read more keys than it rendered"
    for app in app_keys:
        assert app.detail["LLM_LEASE_ID"] in {lease.lease_id for lease in leases}

    for old, new in itertools.pairwise(app_keys[: ROTATIONS + 1]):
        old_key = next(k for k in keys if k.api_key == old.api_key)
        lease = lease_of_key(old_key, leases)
        assert lease.lease_id == old.detail["LLM_LEASE_ID"]
        # Renewed: right after the read and then every ~2/3 of the TTL, each renewal moving the expiry on,
        # until Vault capped it at max_ttl.
        assert len(lease.renewals) >= 3, f"expected renewals every ~{TTL * 2 / 3:.0f}s: {lease.renewals}"
        assert lease.expire_times == sorted(lease.expire_times) and len(lease.expire_times) >= 3
        assert lease.end - lease.issue_time == pytest.approx(MAX_TTL, abs=1)
        # The new key was rendered before the old lease's end, within one TTL of it (shortly before max_ttl).
        assert lease.end - TTL <= new.seen_at < lease.end, describe(leases, keys, app_keys, t0)
        # The superseded key lived to its lease's end and was deleted at the provider soon after.
        assert old_key.deleted_seen_at is not None
        assert lease.end - 0.5 <= old_key.deleted_seen_at <= lease.end + DELETE_DEADLINE
        assert stack.infer(old.api_key) == 401
