"""Helpers of the admin-key rotation suite: load from client threads, the admin calls a key is let into at
the emulator, and the one plugin process that serves a mount.

A uniquely named module (not conftest), so test directories without __init__.py cannot shadow it."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import psutil
from devkit.bao import BaoServer
from engine_support import BuiltEngine, EngineMount

ADMIN_PROBE = "/v1/organization/projects?limit=1"  # an OpenAI admin read: 200 with a live admin key


def admin_status(mount: EngineMount, key: str) -> int:
    """Status of one admin call at the emulator's HTTP server with `key` (what the provider would answer)."""
    resp = httpx.get(
        mount.emu_server.url + ADMIN_PROBE, headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    return resp.status_code


def wait_until(what: str, check: Callable[[], bool], timeout: float, step: float = 0.1) -> float:
    """Seconds until `check()` held; AssertionError naming `what` after `timeout`."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for: {what}")
        time.sleep(step)
    return time.monotonic() - started


@dataclass
class Load:
    """`clients` threads, each issuing creds for `role` and revoking the lease at once, until stopped."""

    mount: EngineMount
    role: str
    clients: int = 4
    done: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Load:
        for n in range(self.clients):
            thread = threading.Thread(target=self._run, name=f"load-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            status, body = self.mount.read(f"creds/{self.role}")
            if status != 200:
                self._fail(f"creds: {status} {body}")
                continue
            status, body = self.mount.api.call(
                "PUT", "sys/leases/revoke", json={"lease_id": body["lease_id"], "sync": True}
            )
            if status not in (200, 204):
                self._fail(f"revoke: {status} {body}")
                continue
            with self._lock:
                self.done += 1

    def _fail(self, what: str) -> None:
        with self._lock:
            self.failures.append(what)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)


def plugin_roots(server: BaoServer, engine: BuiltEngine) -> set[int]:
    """PIDs of the server's direct children that run the engine (one per mount: the one-file bootloader)."""
    return {p.pid for p in server.plugin_processes(engine.path)}


def kill_tree(pid: int) -> None:
    """SIGKILL a plugin process and its children (the bootloader and its Python child), as the OOM killer
    might, and wait for them."""
    root = psutil.Process(pid)
    procs = [root, *root.children(recursive=True)]
    for proc in procs:
        proc.send_signal(signal.SIGKILL)
    psutil.wait_procs(procs, timeout=10)
