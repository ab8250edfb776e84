"""examples/python/app.py run for real: hvac + the OpenAI SDK against the engine and an OpenAI emulator,
with a role of TTL 4 s and max_ttl 12 s, for 20 s.

What a user of the example relies on: every completion succeeds; the app renews its lease (its first key
keeps working past its first TTL); it moves to a new key before the lease's max_ttl (the emulator sees two
keys or more, and never a request with a dead key); each old key is deleted at the provider; and on exit the
app revokes its lease, leaving no key and no lease behind. It works with the app policy alone (a token
without the default policy: renew and revoke by lease id in the URL), and prints no key or token.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from devkit.bao import BaoServer
from examples_support import MAX_TTL, REPO, ROLE, TTL, Api, Provider

pytestmark = pytest.mark.timeout(120)

APP = REPO / "examples" / "python" / "app.py"
RUN_FOR = 20


def test_app_renews_switches_keys_before_max_ttl_and_revokes_on_exit(
    bao: BaoServer, api: Api, provider: Provider, tmp_path: Path
) -> None:
    token = api.app_token(default_policy=False)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "VAULT_ADDR": bao.addr,
        "VAULT_TOKEN": token,
        "OPENAI_BASE_URL": provider.base_url,
    }
    args = [sys.executable, str(APP), "--role", ROLE, "--run-for", str(RUN_FOR), "--interval", "0.5"]
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=90, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    kinds = [e["event"] for e in events]
    emulator = provider.emulator

    # Every question got an answer, and the emulator never saw a dead or unknown key.
    assert kinds.count("completion") >= RUN_FOR
    assert not {"key_refused", "renew_failed", "revoke_failed"} & set(kinds), kinds
    assert [c.status for c in emulator.chats if c.status != 200] == []

    # The lease was renewed: the first key kept working well past its first TTL.
    assert kinds.count("renewed") >= 2
    issued = [e["key_id"] for e in events if e["event"] == "issued"]
    first_uses = emulator.uses_of(issued[0])
    assert first_uses[-1] - first_uses[0] > TTL + 2

    # New keys before max_ttl: two or more keys served completions, each for less than max_ttl, in order.
    assert len(issued) >= 2
    assert emulator.keys_used() == issued
    for key_id in issued:
        uses = emulator.uses_of(key_id)
        assert uses[-1] - uses[0] < MAX_TTL, key_id
    switches = [(e["old_key_id"], e["new_key_id"]) for e in events if e["event"] == "switched"]
    assert switches == list(itertools.pairwise(issued))

    # Every key is gone at the provider (the old ones after their lease ended, the last on exit), and so
    # is every lease.
    assert emulator.live_keys() == []
    assert set(issued) <= set(emulator.deleted_key_ids())
    assert kinds[-1] == "revoked"
    leases = [e["lease_id"] for e in events if e["event"] == "issued"]
    assert not [lease for lease in leases if api.lease_exists(lease)]

    output = proc.stdout + proc.stderr
    assert token not in output
    assert not [c.secret for c in emulator.chats if c.secret in output]
