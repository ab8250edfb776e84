"""vault-config/agent/exec.hcl with a real `bao agent`: the agent as the application's process supervisor.

What a user relies on: the application starts with a working OPENAI_API_KEY in its environment; lease
renewals do not disturb it; shortly before the lease's max_ttl the agent stops it and starts it again with a
new key; the old key is deleted at the provider when its lease ends.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from agent_support import (
    DELETE_DEADLINE,
    SHIPPED_ADDRESS,
    SHIPPED_COMMAND,
    SHIPPED_TOKEN_PATH,
    AgentStack,
    Timeline,
    describe,
    from_shipped,
    hcl_string,
    lease_of_key,
    running_agent,
    wait_until,
)
from devkit.bao import is_gone, kill_leftovers

pytestmark = pytest.mark.timeout(90)

# The agent (re)starts the application 2 s after the key changes (a debounce in exec mode), so the new key
# must arrive more than 2 s before the old lease ends. With ttl=12s and max_ttl=30s it arrives at the renewal
# around 25-26 s, 3.6-4.8 s early (renewals every 2/3 ttl + grace/3, grace 10-20% of ttl; a new key once a
# capped renewal leaves at most 4 graces).
TTL = 12
MAX_TTL = 30

# The application: records its pid and the key it was started with, then runs until stopped.
CHILD = """\
import json, os, sys, time
out = os.path.join(sys.argv[1], f"{os.getpid()}.json")
record = {"pid": os.getpid(), "key": os.environ.get("OPENAI_API_KEY", ""), "started": time.time()}
with open(out + ".tmp", "w") as f:
    json.dump(record, f)
os.replace(out + ".tmp", out)
time.sleep(3600)
"""


def children(out_dir: Path) -> list[dict[str, Any]]:
    """What each started child recorded, in start order."""
    found = [json.loads(p.read_text()) for p in out_dir.glob("*.json")]
    return sorted(found, key=lambda c: c["started"])


def test_exec_restarts_the_app_with_a_new_key(stack: AgentStack, tmp_path: Path) -> None:
    out_dir = tmp_path / "children"
    out_dir.mkdir()
    child = tmp_path / "app.py"
    child.write_text(CHILD)
    command = json.dumps([sys.executable, str(child), str(out_dir)])
    config = from_shipped(
        "exec.hcl",
        {
            SHIPPED_ADDRESS: hcl_string(stack.server.addr),
            SHIPPED_TOKEN_PATH: hcl_string(str(stack.token_file)),
            SHIPPED_COMMAND: command,
        },
    )

    def app_key() -> tuple[str, dict[str, Any]] | None:
        started = children(out_dir)
        return None if not started else (started[-1]["key"], {"pid": started[-1]["pid"]})

    stack.set_role_ttls(TTL, MAX_TTL)
    pids: list[int] = []
    survivors: list[int] = []
    try:
        with Timeline(stack, app_key) as timeline, running_agent(config, tmp_path / "agent") as agent:
            t0 = time.time()
            wait_until(lambda: children(out_dir), 30, "the application to start", agent)
            first = children(out_dir)[0]
            pids.append(first["pid"])
            assert first["key"].startswith("sk-")
            assert stack.infer(first["key"]) == 200

            wait_until(lambda: len(children(out_dir)) >= 2, MAX_TTL + 10, "a restart with a new key", agent)
            second = children(out_dir)[1]
            pids.append(second["pid"])
            assert second["pid"] != first["pid"] and second["key"] != first["key"]
            assert is_gone(first["pid"]), "the agent did not stop the application it restarted"
            assert stack.infer(second["key"]) == 200
            wait_until(
                lambda: timeline.key_deleted(first["key"]),
                MAX_TTL + DELETE_DEADLINE,
                "the first key deleted at the provider",
                agent,
            )
            assert len(children(out_dir)) == 2, "the application was restarted without a new key"
            timeline.check()
        leases, keys, app_keys = timeline.snapshot()
        print(describe(leases, keys, app_keys, t0))
    finally:
        # The agent stops its child when it stops; a child that outlived it is killed by PID.
        pids.extend(c["pid"] for c in children(out_dir) if c["pid"] not in pids)
        survivors = kill_leftovers(pids, timeout=5)
    assert not survivors, f"children {survivors} outlived the agent"

    first_key = next(k for k in keys if k.api_key == first["key"])
    lease = lease_of_key(first_key, leases)
    # Renewed several times (every ~2/3 of the TTL) without a restart; the restart came with the new key,
    # before the old lease's end and within one TTL of it.
    assert len(lease.renewals) >= 3, lease.renewals
    assert lease.end - lease.issue_time == pytest.approx(MAX_TTL, abs=1)
    assert lease.end - TTL <= second["started"] < lease.end, describe(leases, keys, app_keys, t0)
    assert first_key.deleted_seen_at is not None
    assert lease.end - 0.5 <= first_key.deleted_seen_at <= lease.end + DELETE_DEADLINE
    assert stack.infer(first["key"]) == 401
