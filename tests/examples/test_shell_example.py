"""examples/shell/chat.sh run for real: the bao CLI, curl and jq against the engine and an OpenAI emulator.

What a user of the example relies on: it gets one key, both chat calls with it succeed, the lease is
renewed, and on exit the lease is revoked and the key deleted at the provider (before the lease would
have ended by itself); the key is never printed.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from devkit.bao import BaoServer, bao_binary
from devkit.waiting import wait_for
from examples_support import REPO, ROLE, TTL, Api, Provider

pytestmark = pytest.mark.timeout(60)

SCRIPT = REPO / "examples" / "shell" / "chat.sh"


def test_shell_example_uses_renews_and_revokes(
    bao: BaoServer, api: Api, provider: Provider, tmp_path: Path
) -> None:
    token = api.app_token(default_policy=True)  # `bao lease renew` sends the lease id in the body
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "BAO_ADDR": bao.addr,
        "BAO_TOKEN": token,
        "VAULT_CLI": bao_binary(),
        "OPENAI_BASE_URL": provider.base_url,
    }
    proc = subprocess.run(
        [str(SCRIPT), ROLE, "hello"], env=env, capture_output=True, text=True, timeout=45, check=False
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    lines = proc.stdout.splitlines()

    emulator = provider.emulator
    [key_id] = emulator.keys_used()
    assert [c.status for c in emulator.chats] == [200, 200]
    assert lines[0].startswith(f"key {key_id} under lease llm/creds/{ROLE}/")
    assert [line for line in lines if line.startswith("answer: ")] == ["answer: " + lines[1][8:]] * 2
    assert f"renewed: {TTL} s left" in lines
    lease_id = lines[0].split(" under lease ")[1].split(" ")[0]
    assert lines[-1] == f"revoked lease {lease_id}: the engine deletes key {key_id} at the provider"

    # The CLI queues the revocation: the key goes within moments, long before the lease's TTL would end.
    wait_for(
        lambda: key_id in emulator.deleted_key_ids() and not api.lease_exists(lease_id),
        TTL - 1,
        "the key's deletion at the provider and the lease's end",
    )
    assert emulator.find_key(key_id) is None
    assert emulator.chats[0].secret not in output
    assert token not in output
