"""Helpers for the slow-provider end-to-end tests: one real OpenBao with the engine (a short provider-call
budget, debug logs, a hashed file audit device), mounts wired to misbehaving emulators, and the plugin's
memory.

A uniquely named module (not conftest), so test directories without __init__.py cannot shadow it.
"""

from __future__ import annotations

import contextlib
import itertools
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from devkit.bao import BaoServer
from devkit.build import build_engine
from devkit.waiting import wait_for
from llm_emulators import OpenRouterEmulator
from llm_emulators.core import EmulatorServer

PLUGIN_NAME = "llm"
# The plugin's provider-call budget here (production: 30 s), so a test waits seconds, not half a minute.
BUDGET_SECONDS = 4
PLUGIN_ENV = [f"LLMSECRETS_PROVIDER_TIMEOUT_SECONDS={BUDGET_SECONDS}", "VAULT_PLUGIN_LOG_LEVEL=debug"]

AUDIT_STANZA = """
audit "file" "hashed" {{
  options {{
    file_path = "{path}"
  }}
}}
"""


@dataclass
class SlowServer:
    """The server, its API, the plugin file and the hashed audit log."""

    server: BaoServer
    api: httpx.Client
    engine: Path
    audit_log: Path
    _unmounts: list[threading.Thread] = field(default_factory=list)

    def unmount_later(self, path: str) -> None:
        """Disable a mount in the background (an unmount waits ~6 s for the plugin's Cleanup)."""
        thread = threading.Thread(target=self.api.delete, args=(f"sys/mounts/{path}",), daemon=True)
        thread.start()
        self._unmounts.append(thread)

    def plugin_rss(self) -> int:
        """Resident memory of every plugin process of this server (a one-file build runs as two)."""
        total = 0
        for proc in self.server.plugin_processes(self.engine):
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
                total += sum(child.memory_info().rss for child in proc.children(recursive=True))
        return total


def start(workdir: Path) -> SlowServer:
    """Build the engine, start a dev server with it registered as `llm`, enable a hashed audit device."""
    plugin_dir = workdir / "plugins"
    engine, sha256 = build_engine(plugin_dir)
    server = BaoServer(workdir / "bao", plugin_dir).start()
    api = httpx.Client(
        base_url=f"{server.addr}/v1/", headers={"X-Vault-Token": server.root_token}, timeout=120
    )
    try:
        server.register_plugin(PLUGIN_NAME, engine.name, sha256, env=PLUGIN_ENV)
        # OpenBao 2.7 takes audit devices only from its config file, on SIGHUP.
        audit_log = workdir / "audit-hashed.log"
        with (workdir / "bao" / "server.hcl").open("a") as config:
            config.write(AUDIT_STANZA.format(path=audit_log))
        assert server.proc is not None
        server.proc.send_signal(signal.SIGHUP)
        wait_for(
            lambda: "hashed/" in api.get("sys/audit").json().get("data", {}),
            timeout=20,
            what="the audit device from the config file",
        )
    except BaseException:
        api.close()
        server.stop()
        raise
    return SlowServer(server, api, engine, audit_log)


def stop(slow: SlowServer) -> list[int]:
    """Stop the server; SIGKILL (by PID) plugin processes still alive 10 s later; return those."""
    for thread in slow._unmounts:
        thread.join(timeout=30)
    slow.api.close()
    return slow.server.stop_with_plugins()


# --- mounts --------------------------------------------------------------------------------------------

_counter = itertools.count(1)


def odd_admin_key() -> str:
    """An admin key no generic rule recognises as one: not sk-..., no long hex or base64 run."""
    return f"mgmt~{secrets.token_hex(4)}.Zq!{secrets.token_hex(5)}:x/{secrets.token_hex(4)}"


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    text: str
    seconds: float

    @property
    def errors(self) -> str:
        return " ".join(str(e) for e in self.body.get("errors", []))


@dataclass
class Mount:
    """One mount of the engine and the emulators behind its connections (stopped at the end)."""

    api: httpx.Client
    path: str
    emulators: dict[str, OpenRouterEmulator] = field(default_factory=dict)
    servers: list[EmulatorServer] = field(default_factory=list)

    def call(self, method: str, sub: str, *, timeout: float = 120, **kwargs: Any) -> Answer:
        started = time.monotonic()
        resp = self.api.request(method, f"{self.path}/{sub}", timeout=timeout, **kwargs)
        body: dict[str, Any] = resp.json() if resp.content else {}
        return Answer(resp.status_code, body, resp.text, time.monotonic() - started)

    def connect(self, name: str, *, admin_key: str | None = None, verify: bool = True) -> OpenRouterEmulator:
        """A connection `name` to a new OpenRouter emulator (and a role of the same name using it)."""
        emulator = OpenRouterEmulator(admin_key or f"adm-{name}-{secrets.token_hex(12)}")
        srv = emulator.serve()
        self.servers.append(srv)
        self.emulators[name] = emulator
        answer = self.write_config(name, emulator.admin_key, srv.base_url, verify=verify)
        assert answer.status in (200, 204), answer
        role = self.call("POST", f"roles/{name}", json={"connection": name, "ttl": "10m", "max_ttl": "1h"})
        assert role.status in (200, 204), role
        return emulator

    def write_config(self, name: str, admin_key: str, base_url: str, *, verify: bool = True) -> Answer:
        body = {"provider": "openrouter", "admin_key": admin_key, "base_url": base_url, "verify": verify}
        return self.call("POST", f"config/{name}", json=body)

    def creds(self, role: str, *, timeout: float = 120) -> Answer:
        return self.call("GET", f"creds/{role}", timeout=timeout)


@contextlib.contextmanager
def mount(slow: SlowServer, hint: str) -> Iterator[Mount]:
    """A fresh mount; at exit its emulators' faults are cleared, its leases revoked, it is disabled and the
    emulators stop."""
    path = f"slow{next(_counter)}-{hint}"[:40]
    slow.server.enable(PLUGIN_NAME, path)
    m = Mount(slow.api, path)
    try:
        yield m
    finally:
        for emulator in m.emulators.values():
            emulator.set_faults()
        slow.api.put(f"sys/leases/revoke-prefix/{path}")
        for srv in m.servers:
            srv.stop()
        slow.unmount_later(path)
