"""Helpers for the declarative-install tests: the committed config snippets filled in, a real OpenBao server
started from them, the engine used end to end against a provider emulator, and cleanup by PID.

A uniquely named module (not conftest), so test directories without __init__.py cannot shadow it.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
from devkit.bao import BaoServer, kill_leftovers
from devkit.raw_api import RawApi
from llm_emulators import OpenRouterEmulator
from llm_emulators.core import EmulatorServer

CONFIG_DIR = Path(__file__).resolve().parents[2] / "vault-config"
FILE_SNIPPET = CONFIG_DIR / "plugin-file.hcl"
OCI_SNIPPET = CONFIG_DIR / "plugin-oci.hcl"
PLUGIN_NAME = "vault-plugin-secrets-llm"  # the name in the snippets' plugin block
REPOSITORY = "plugins/vault-plugin-secrets-llm"
MOUNT = "llm"
CHAT_BODY = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}
PLACEHOLDER_RE = re.compile(r"\{\{([A-Z][A-Z0-9_]*)\}\}")


@dataclass(frozen=True)
class BuiltPlugin:
    path: Path
    sha256: str
    version: str


def fill(snippet: Path, values: Mapping[str, str]) -> str:
    """The snippet with every {{NAME}} replaced; fails if the snippet wants a value not given."""
    text = snippet.read_text()
    missing = set(PLACEHOLDER_RE.findall(text)) - set(values)
    assert not missing, f"{snippet.name} has placeholders {sorted(missing)} the test does not fill"
    return PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], text)


# --- the server --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def running_server(workdir: Path, plugin_dir: Path, config: str) -> Iterator[BaoServer]:
    """A dev server with `config` appended; stopped at exit, then its plugin processes by PID."""
    server = BaoServer(workdir, plugin_dir, extra_config=config)
    pids: list[int] = []
    try:
        server.start()
        yield server
    finally:
        with contextlib.suppress(psutil.Error):
            pids = server.plugin_pids(plugin_dir)
        server.stop()
        survivors = kill_leftovers(pids, timeout=10)
    assert not survivors, f"plugin processes {survivors} outlived the server (see {server.log_path})"


def failed_start(workdir: Path, plugin_dir: Path, config: str) -> str:
    """Start a server that must refuse to start; return what it printed (its log)."""
    server = BaoServer(workdir, plugin_dir, extra_config=config)
    try:
        server.start(timeout=30)
    except RuntimeError as exc:
        assert "exited with" in str(exc), exc
        return server.log_path.read_text(errors="replace")
    finally:
        server.stop()
    raise AssertionError("the server started")


def processes_running_from(plugin_dir: Path) -> list[int]:
    """Every live process on this machine whose command line names `plugin_dir` (a test's own tmp path),
    whoever its parent is: a server that died leaves its plugins orphaned."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        with contextlib.suppress(psutil.Error):
            cmdline = proc.info["cmdline"] or []
            if proc.info["status"] != psutil.STATUS_ZOMBIE and any(str(plugin_dir) in a for a in cmdline):
                found.append(proc.pid)
    return found


def log_of(server: BaoServer) -> str:
    return server.log_path.read_text(errors="replace")


# --- the engine, end to end -----------------------------------------------------------------------------


class Api(RawApi):
    """Raw calls to the server's HTTP API with the root token: (status, JSON body)."""

    def __init__(self, server: BaoServer) -> None:
        super().__init__(server.addr, server.root_token)


@contextlib.contextmanager
def api_of(server: BaoServer) -> Iterator[Api]:
    api = Api(server)
    try:
        yield api
    finally:
        api.close()


def enable_engine(api: Api) -> dict[str, Any]:
    """`bao secrets enable -path=llm vault-plugin-secrets-llm` (no version: the one declared is used);
    returns the mount as sys/mounts shows it."""
    api.ok("POST", f"sys/mounts/{MOUNT}", json={"type": PLUGIN_NAME})
    return api.ok("GET", f"sys/mounts/{MOUNT}")["data"]


def chat_status(emu_server: EmulatorServer, api_key: str) -> int:
    resp = httpx.post(
        f"{emu_server.base_url}/chat/completions",
        headers={"Authorization": f"Bearer {api_key}"},
        json=CHAT_BODY,
        timeout=10,
    )
    return resp.status_code


def issue_use_revoke(api: Api) -> None:
    """Against an OpenRouter emulator: write a connection and a role, read a key, use it, revoke its lease,
    and see the key gone at the provider."""
    admin_key = f"adm-openrouter-{secrets.token_hex(16)}"
    emulator = OpenRouterEmulator(admin_key)
    with emulator.serve() as emu_server:
        api.ok(
            "POST",
            f"{MOUNT}/config/main",
            json={"provider": "openrouter", "admin_key": admin_key, "base_url": emu_server.base_url},
        )
        api.ok("POST", f"{MOUNT}/roles/app", json={"connection": "main", "ttl": "5m", "max_ttl": "1h"})
        creds = api.ok("GET", f"{MOUNT}/creds/app")
        key_id = creds["data"]["key_id"]
        api_key = creds["data"]["api_key"]
        assert creds["lease_id"].startswith(f"{MOUNT}/creds/app/"), creds["lease_id"]
        assert emulator.find_key(key_id) is not None
        assert chat_status(emu_server, api_key) == 200

        api.ok("PUT", "sys/leases/revoke", json={"lease_id": creds["lease_id"]})
        assert emulator.find_key(key_id) is None
        assert key_id in emulator.deleted_key_ids()
        assert chat_status(emu_server, api_key) == 401
