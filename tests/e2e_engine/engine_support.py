"""Helpers for the engine's end-to-end tests: the engine plugin on a real OpenBao, provider emulators on
loopback, one mount per test, raw HTTP calls, and polling with deadlines.

A uniquely named module (not conftest), so test directories without __init__.py cannot shadow it.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from devkit.bao import BaoServer, kill_leftovers
from devkit.build import build_engine
from llm_emulators import LiteLLMEmulator, OpenAIEmulator, OpenRouterEmulator
from llm_emulators.core import Emulator, EmulatorServer

PLUGIN_NAME = "llm"
# How old a pending create's WAL entry must be before the rollback settles it (the plugin's test knob;
# production waits 10 minutes). Set through the catalog's env, so only the plugin process sees it.
WAL_MIN_AGE_SECONDS = 2
PLUGIN_ENV = [f"LLMSECRETS_WAL_MIN_AGE_SECONDS={WAL_MIN_AGE_SECONDS}"]

CHAT_BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}


# --- the plugin and the server -----------------------------------------------------------------------


@dataclass(frozen=True)
class BuiltEngine:
    plugin_dir: Path
    path: Path
    sha256: str


def build(plugin_dir: Path) -> BuiltEngine:
    path, sha256 = build_engine(plugin_dir)
    return BuiltEngine(plugin_dir=plugin_dir, path=path, sha256=sha256)


def start_server(workdir: Path, engine: BuiltEngine, env: list[str] | None = None) -> BaoServer:
    """A dev server with the engine registered as `llm` (with `env`, default PLUGIN_ENV); stopped by PID
    on failure."""
    server = BaoServer(workdir, engine.plugin_dir).start()
    try:
        server.register_plugin(
            PLUGIN_NAME, engine.path.name, engine.sha256, env=PLUGIN_ENV if env is None else env
        )
    except BaseException:
        server.stop()
        raise
    return server


def plugin_pids(server: BaoServer, engine: BuiltEngine) -> list[int]:
    """PIDs of the live children of `server` that run the engine file."""
    return [p.pid for p in server.plugin_processes(engine.path)]


def stop_server(server: BaoServer, engine: BuiltEngine) -> list[int]:
    """Stop `server`; SIGKILL (by PID) any of its plugin processes still alive 10 s later; return those."""
    pids: list[int] = []
    with contextlib.suppress(psutil.Error):
        pids = plugin_pids(server, engine)
    server.stop()
    return kill_leftovers(pids, timeout=10)


# --- HTTP ----------------------------------------------------------------------------------------------


class VaultApi:
    """Raw calls to the server's HTTP API: (status, JSON body) for any status, for error assertions."""

    def __init__(self, server: BaoServer) -> None:
        self._http = httpx.Client(
            base_url=f"{server.addr}/v1/", headers={"X-Vault-Token": server.root_token}, timeout=90
        )

    def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        resp = self._http.request(method, path, **kwargs)
        body: dict[str, Any] = resp.json() if resp.content else {}
        return resp.status_code, body

    def ok(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        status, body = self.call(method, path, **kwargs)
        assert status in (200, 202, 204), (method, path, status, body)
        return body

    def close(self) -> None:
        self._http.close()


def errors_of(body: dict[str, Any]) -> str:
    return " ".join(str(e) for e in body.get("errors", []))


# --- providers -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProviderSpec:
    """How to run one provider's emulator and talk to it, and what its keys can do."""

    name: str
    emulator: Callable[[str], Emulator]  # admin key -> emulator
    chat_path: str  # inference endpoint, relative to the server's root URL
    role_fields: dict[str, Any] = field(default_factory=dict)  # what every role of this provider needs
    expiry: str = "none"  # provider-side expiry: none | fixed (max_ttl + grace) | extends (ttl + grace)


PROVIDERS: dict[str, ProviderSpec] = {
    "openai": ProviderSpec(
        "openai",
        lambda key: OpenAIEmulator(key, projects=("proj_default", "proj_other")),
        "/v1/chat/completions",
        role_fields={"project_id": "proj_default"},
        expiry="fixed",
    ),
    "openrouter": ProviderSpec(
        "openrouter", lambda key: OpenRouterEmulator(key), "/api/v1/chat/completions", expiry="fixed"
    ),
    "litellm": ProviderSpec(
        "litellm", lambda key: LiteLLMEmulator(key), "/chat/completions", expiry="extends"
    ),
}
PROVIDER_NAMES = tuple(PROVIDERS)
PROVIDER_EXPIRY_GRACE = 300  # the engine's provider-side expiry grace (backend.PROVIDER_EXPIRY_GRACE)


def new_admin_key(provider: str) -> str:
    # Not shaped like sk-...: the plugin's log filter masks sk- strings, and a log scan must catch a leak
    # by the code itself, not rely on that backstop.
    return f"adm-{provider}-{secrets.token_hex(16)}"


# --- one mount of the engine, wired to one emulator ----------------------------------------------------

_counter = itertools.count(1)


PREFIX_RE = re.compile(r"vault-[0-9a-f]{8}-")


def prefix_of(key_name: str) -> str:
    match = PREFIX_RE.match(key_name)
    assert match is not None, f"{key_name!r} does not start with vault-<8 hex>-"
    return match.group(0)


def unique_mount_name(hint: str) -> str:
    return f"llm{next(_counter)}-{re.sub(r'[^a-z0-9]+', '-', hint.lower())[:28].strip('-')}"


@dataclass
class Lease:
    """A creds read: Vault's lease fields and the plugin's data."""

    lease_id: str
    lease_duration: int
    renewable: bool
    data: dict[str, Any]

    @property
    def api_key(self) -> str:
        return str(self.data["api_key"])

    @property
    def key_id(self) -> str:
        return str(self.data["key_id"])


@dataclass
class EngineMount:
    """A mount of the engine on a shared server, its provider's emulator (served on loopback), and helpers."""

    server: BaoServer
    api: VaultApi
    path: str
    spec: ProviderSpec
    emulator: Emulator
    emu_server: EmulatorServer
    admin_key: str
    _prefix: str | None = None

    # --- calls under the mount

    def call(self, method: str, sub: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        return self.api.call(method, f"{self.path}/{sub}", **kwargs)

    def write(self, sub: str, **data: Any) -> tuple[int, dict[str, Any]]:
        return self.call("POST", sub, json=data)

    def read(self, sub: str) -> tuple[int, dict[str, Any]]:
        return self.call("GET", sub)

    def must_write(self, sub: str, **data: Any) -> dict[str, Any]:
        status, body = self.write(sub, **data)
        assert status in (200, 204), (sub, status, body)
        return body

    def configure(self, name: str = "main", **fields: Any) -> None:
        body = {"provider": self.spec.name, "admin_key": self.admin_key, "base_url": self.emu_server.base_url}
        self.must_write(f"config/{name}", **{**body, **fields})

    def add_role(self, name: str, connection: str = "main", **fields: Any) -> None:
        self.must_write(f"roles/{name}", connection=connection, **{**self.spec.role_fields, **fields})

    def creds(self, role: str) -> Lease:
        status, body = self.read(f"creds/{role}")
        assert status == 200, (status, body)
        return Lease(body["lease_id"], body["lease_duration"], body["renewable"], body["data"])

    def tidy(self) -> dict[str, Any]:
        status, body = self.write("tidy")
        assert status == 200, (status, body)
        return body["data"]

    # --- what the user sees

    def prefix(self) -> str:
        """`vault-<8 hex>-`, the start of every key name this mount creates, learnt from an issued key.

        The 8 hex digits come from the mount's backend UUID, which Vault sends the plugin but does not
        show in `sys/mounts` (that `uuid` is a different one), so the test reads it off a key's name.
        """
        if self._prefix is None:
            names = [k.name for k in self.emulator.live_keys() if PREFIX_RE.match(k.name)]
            assert names, "issue a key on this mount first"
            self._prefix = prefix_of(names[0])
        return self._prefix

    def infer(self, api_key: str) -> int:
        """Status of one chat completion at the emulator's inference endpoint with `api_key`."""
        resp = httpx.post(
            self.emu_server.url + self.spec.chat_path,
            headers={"Authorization": f"Bearer {api_key}"},
            json=CHAT_BODY,
            timeout=10,
        )
        return resp.status_code

    def lookup(self, lease_id: str) -> tuple[int, dict[str, Any]]:
        return self.api.call("PUT", "sys/leases/lookup", json={"lease_id": lease_id})

    def irrevocable_leases(self) -> list[str]:
        body = self.api.ok("GET", "sys/leases", params={"type": "irrevocable"})
        return [str(lease.get("lease_id", lease)) for lease in body["data"].get("leases") or []]

    def is_deleted_at_provider(self, key_id: str) -> bool:
        return self.emulator.find_key(key_id) is None and key_id in self.emulator.deleted_key_ids()


class Unmounter:
    """Disables mounts in the background, so a test's teardown does not wait for it.

    Why: every unmount costs about 6 s in Cleanup (the host's gRPC GracefulStop waits for the plugin's idle
    broker connection, which never answers the host's GOAWAY/PING; see the report). The mount's leases are
    revoked synchronously before, while its emulator still runs; only the slow tail is left to the thread.
    """

    def __init__(self, api: VaultApi) -> None:
        self._api = api
        self._threads: list[threading.Thread] = []
        self.failures: list[str] = []

    def unmount(self, path: str) -> None:
        thread = threading.Thread(target=self._disable, args=(path,), name=f"unmount-{path}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _disable(self, path: str) -> None:
        try:
            status, body = self._api.call("DELETE", f"sys/mounts/{path}")
        except httpx.HTTPError as exc:
            self.failures.append(f"{path}: {exc!r}")
            return
        if status not in (200, 204):
            self.failures.append(f"{path}: {status} {body}")

    def join(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = [t for t in self._threads if t.is_alive()]


@contextlib.contextmanager
def engine_mount(
    server: BaoServer,
    api: VaultApi,
    unmounter: Unmounter,
    provider: str,
    hint: str,
    spec: ProviderSpec | None = None,
) -> Iterator[EngineMount]:
    """A new mount wired to a new emulator of `provider` (described by `spec`, default PROVIDERS[provider]);
    at exit its leases are revoked (keys deleted at the emulator), the emulator stops and the mount is
    disabled in the background."""
    spec = spec or PROVIDERS[provider]
    admin_key = new_admin_key(provider)
    emulator = spec.emulator(admin_key)
    with emulator.serve() as emu_server:
        path = unique_mount_name(f"{provider}-{hint}")
        server.enable(PLUGIN_NAME, path)
        mount = EngineMount(server, api, path, spec, emulator, emu_server, admin_key)
        try:
            yield mount
        finally:
            emulator.set_faults()  # a revoke fault left armed would stall the revokes
            status, body = api.call("PUT", f"sys/leases/revoke-prefix/{path}")
            if status not in (200, 204):
                print(f"note: revoking the leases of {path} failed: {status} {body}")
            unmounter.unmount(path)
