"""``python -m llm_emulators``: one JSON line on stdout, serves, exits 0 on SIGTERM/SIGINT."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

ENV_NAME = "LLM_EMULATOR_ADMIN_KEY"


@contextmanager
def run_cli(
    *args: str, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[str], dict[str, Any]]]:
    base_env = {k: v for k, v in os.environ.items() if k != ENV_NAME}
    proc = subprocess.Popen(
        [sys.executable, "-m", "llm_emulators", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**base_env, **(env or {})},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else "no output"
        yield proc, json.loads(line)
    finally:
        # Stop only the process this test started, by its own handle.
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def _stop(proc: subprocess.Popen[str], sig: signal.Signals = signal.SIGTERM) -> int:
    proc.send_signal(sig)
    return proc.wait(timeout=10)


@pytest.mark.parametrize(
    ("provider", "list_path"),
    [("openai", "/organization/projects/proj_default"), ("openrouter", "/keys"), ("litellm", "/key/list")],
)
def test_generated_key(provider: str, list_path: str) -> None:
    with run_cli(provider) as (proc, info):
        assert info["provider"] == provider
        assert info["url"].startswith("http://127.0.0.1:")
        assert info["base_url"].startswith(info["url"])
        assert info["admin_key_generated"] is True and info["admin_key_source"] == "generated"
        assert info["admin_key_env"] is None
        admin_key = info["admin_key"]
        r = httpx.get(info["base_url"] + list_path, headers={"Authorization": f"Bearer {admin_key}"})
        assert r.status_code == 200
        assert httpx.get(info["base_url"] + list_path).status_code == 401
        assert _stop(proc) == 0
        assert proc.stdout is not None and proc.stdout.read() == ""  # exactly one line


def test_key_from_env_is_not_printed() -> None:
    secret = "sk-or-v1-from-env-test-key"
    with run_cli("openrouter", "--latency", "0.2", env={ENV_NAME: secret}) as (proc, info):
        assert "admin_key" not in info and info["admin_key_generated"] is False
        assert info["admin_key_env"] == ENV_NAME and info["admin_key_source"] == "env"
        r = httpx.get(info["base_url"] + "/keys", headers={"Authorization": f"Bearer {secret}"}, timeout=5)
        assert r.status_code == 200
        assert r.elapsed.total_seconds() >= 0.2  # --latency applies to admin calls
        assert _stop(proc, signal.SIGINT) == 0


def test_key_from_flag_and_port() -> None:
    with run_cli("litellm", "--admin-key", "sk-flag-master", "--port", "0") as (proc, info):
        assert "admin_key" not in info and info["admin_key_source"] == "flag"
        assert info["base_url"] == info["url"]
        r = httpx.get(info["url"] + "/key/list", headers={"Authorization": "Bearer sk-flag-master"})
        assert r.status_code == 200
        assert _stop(proc) == 0
