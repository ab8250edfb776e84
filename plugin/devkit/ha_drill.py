"""The engine on real OpenBao servers for fault drills: a 3-node Raft cluster (`devkit.cluster`) or one
node with persistent storage, the engine mounted at `llm/`, wired to a LiteLLM emulator that records every
admin call it answers (when, and which operation). Used by tests/e2e_ha, tests/e2e_restart and
scripts/bench-ha.

LiteLLM, because its keys' provider-side expiry moves with each renewal: a renew is a provider call too,
so "this node made no provider call" covers renewals.

Each server is a process owned by its `BaoNode` / `BaoCluster` and stopped by PID; the emulator runs in
this process.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from llm_emulators import LiteLLMEmulator
from llm_emulators.core import EmulatorServer

from devkit.build import ENGINE_NAME
from devkit.cluster import HEALTH_ACTIVE, BaoNode, InitResult, free_ports, server_env
from devkit.render_config import PluginRef, render_dev
from devkit.waiting import wait_for

MOUNT = "llm"
CONNECTION = "main"
# The plugin's test knob (read from its environment, which OpenBao passes on from the server's): a pending
# create's WAL entry is rolled back once it is this old instead of after 10 minutes.
WAL_MIN_AGE_ENV = "LLMSECRETS_WAL_MIN_AGE_SECONDS"

# LiteLLM admin API: path -> operation.
_OPERATIONS = {
    "/key/generate": "create",
    "/key/update": "update",
    "/key/block": "update",
    "/key/unblock": "update",
    "/key/delete": "delete",
    "/key/info": "get",
    "/key/list": "list",
}


@dataclass(frozen=True)
class AdminCall:
    at: float  # time.monotonic() when the emulator answered
    op: str  # create, update, delete, get, list
    status: int


class Provider:
    """A LiteLLM emulator on loopback that records each admin call."""

    def __init__(self) -> None:
        self.admin_key = f"adm-litellm-{secrets.token_hex(16)}"
        self.emulator = LiteLLMEmulator(self.admin_key)
        self.calls: list[AdminCall] = []
        self._lock = threading.Lock()
        handle = self.emulator.handle

        def recording(request: httpx.Request) -> httpx.Response:
            response = handle(request)
            op = _OPERATIONS.get(request.url.path)
            if op is not None:
                with self._lock:
                    self.calls.append(AdminCall(time.monotonic(), op, response.status_code))
            return response

        self.emulator.handle = recording  # type: ignore[method-assign]
        self.server: EmulatorServer | None = None

    def start(self) -> Provider:
        self.server = self.emulator.serve()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    @property
    def base_url(self) -> str:
        if self.server is None:
            raise RuntimeError("the emulator is not serving")
        return self.server.base_url

    def ops_since(self, since: float) -> Counter[str]:
        """How many admin calls of each operation were answered after `since` (time.monotonic())."""
        with self._lock:
            return Counter(c.op for c in self.calls if c.at > since)

    def live_ids(self) -> set[str]:
        return {k.key_id for k in self.emulator.live_keys()}

    def is_live(self, key_id: str) -> bool:
        return self.emulator.find_key(key_id) is not None


@dataclass
class Lease:
    lease_id: str
    key_id: str
    api_key: str
    issued_at: float  # time.monotonic() when the response arrived
    node: str


@dataclass
class Api:
    """Raw HTTP calls to one node with one token: (status, JSON body) whatever the status."""

    addr: str
    token: str
    timeout: float = 60.0
    _http: httpx.Client = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._http = httpx.Client(
            base_url=f"{self.addr}/v1/", headers={"X-Vault-Token": self.token}, timeout=self.timeout
        )

    def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        resp = self._http.request(method, path, **kwargs)
        try:
            body: dict[str, Any] = resp.json() if resp.content else {}
        except ValueError:
            body = {"errors": [resp.text[:200]]}
        return resp.status_code, body

    def ok(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        status, body = self.call(method, path, **kwargs)
        if status not in (200, 204):
            raise AssertionError(f"{method} {path}: {status} {body}")
        return body

    def creds(self, role: str, node: str = "") -> Lease:
        status, body = self.call("GET", f"{MOUNT}/creds/{role}")
        if status != 200:
            raise AssertionError(f"creds/{role} via {node or self.addr}: {status} {body}")
        data = body["data"]
        return Lease(body["lease_id"], data["key_id"], data["api_key"], time.monotonic(), node)

    def lease_live(self, lease_id: str) -> bool:
        status, body = self.call("PUT", "sys/leases/lookup", json={"lease_id": lease_id})
        if status == 200:
            return True
        if status == 400 and "invalid lease" in str(body):
            return False
        raise AssertionError(f"lease lookup {lease_id}: {status} {body}")

    def leases(self, role: str) -> set[str]:
        """Every lease of `role` Vault holds (`bao list sys/leases/lookup/llm/creds/<role>`)."""
        prefix = f"{MOUNT}/creds/{role}/"
        status, body = self.call("LIST", f"sys/leases/lookup/{prefix}")
        if status == 404:
            return set()
        if status != 200:
            raise AssertionError(f"listing the leases of {role}: {status} {body}")
        return {prefix + key for key in body["data"]["keys"]}

    def irrevocable_leases(self) -> list[str]:
        body = self.ok("GET", "sys/leases", params={"type": "irrevocable"})
        return [str(lease.get("lease_id", lease)) for lease in body["data"].get("leases") or []]

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class Attempt:
    """One creds read of a burst: when, through which node, and what came back (status 0: no answer)."""

    started: float  # time.monotonic()
    ended: float
    node: str
    status: int
    lease_id: str = ""
    key_id: str = ""
    api_key: str = ""
    error: str = ""


class Burst:
    """`clients` threads reading `role`'s creds in a loop, each sending to the `targets` (name -> address)
    in turn, as a load balancer in front of a cluster would, until `total` reads were sent or `stop()`."""

    def __init__(
        self,
        targets: dict[str, str],
        token: str,
        role: str,
        *,
        clients: int,
        total: int | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._targets = list(targets.items())
        self._token = token
        self._role = role
        self._total = total
        self._timeout = timeout
        self._lock = threading.Lock()
        self._sent = 0
        self._stop = threading.Event()
        self.attempts: list[Attempt] = []
        self._threads = [
            threading.Thread(target=self._client, args=(i,), name=f"burst-{i}", daemon=True)
            for i in range(clients)
        ]

    def start(self) -> Burst:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float = 120.0) -> list[Attempt]:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in self._threads):
            raise TimeoutError(f"burst clients still running after {timeout:.0f}s")
        return self.ok()

    def ok(self) -> list[Attempt]:
        with self._lock:
            return [a for a in self.attempts if a.status == 200]

    def _next(self) -> bool:
        with self._lock:
            if self._stop.is_set() or (self._total is not None and self._sent >= self._total):
                return False
            self._sent += 1
            return True

    def _client(self, index: int) -> None:
        headers = {"X-Vault-Token": self._token}
        clients = {
            name: httpx.Client(base_url=f"{addr}/v1/", headers=headers, timeout=self._timeout)
            for name, addr in self._targets
        }
        turn = index
        try:
            while self._next():
                name = self._targets[turn % len(self._targets)][0]
                turn += 1
                self._record(self._read(name, clients[name]))
        finally:
            for client in clients.values():
                client.close()

    def _read(self, node: str, client: httpx.Client) -> Attempt:
        started = time.monotonic()
        try:
            resp = client.get(f"{MOUNT}/creds/{self._role}")
        except httpx.HTTPError as exc:
            time.sleep(0.05)  # a node that is down answers at once: do not spin
            return Attempt(started, time.monotonic(), node, 0, error=type(exc).__name__)
        ended = time.monotonic()
        if resp.status_code != 200:
            return Attempt(started, ended, node, resp.status_code, error=resp.text[:300])
        body = resp.json()
        data = body["data"]
        return Attempt(started, ended, node, 200, body["lease_id"], data["key_id"], data["api_key"])

    def _record(self, attempt: Attempt) -> None:
        with self._lock:
            self.attempts.append(attempt)


def mount_engine(api: Api, provider: Provider, roles: dict[str, dict[str, Any]]) -> None:
    """Enable the engine at llm/ (declared by the config's plugin block: nothing is registered), connect
    it to `provider` and write `roles` (name -> fields; the connection is filled in)."""
    api.ok("POST", f"sys/mounts/{MOUNT}", json={"type": ENGINE_NAME})
    api.ok(
        "POST",
        f"{MOUNT}/config/{CONNECTION}",
        json={"provider": "litellm", "admin_key": provider.admin_key, "base_url": provider.base_url},
    )
    for name, fields in roles.items():
        api.ok("POST", f"{MOUNT}/roles/{name}", json={"connection": CONNECTION, **fields})


def wait_for_mount(api: Api, role: str, timeout: float = 30.0) -> None:
    """Wait until a node serves the engine (a standby learns of a new mount through replication)."""
    wait_for(lambda: api.call("GET", f"{MOUNT}/roles/{role}")[0] == 200, timeout, f"{MOUNT}/ on {api.addr}")


# --- one node with persistent storage -------------------------------------------------------------------


@dataclass
class SingleNode:
    """One `bao server` from vault-config/dev.hcl (single-node Raft, persistent), initialised."""

    node: BaoNode
    init: InitResult

    @property
    def root_token(self) -> str:
        return self.init.root_token

    def api(self) -> Api:
        return Api(self.node.addr, self.root_token)

    def restart(self, down_seconds: float = 0.0) -> float:
        """Stop (SIGTERM), stay down `down_seconds`, start and unseal; returns time.monotonic() at unseal."""
        self.node.stop()
        self.node.reap_orphans()
        time.sleep(down_seconds)
        self.node.start()
        self.node.unseal(self.init.unseal_key)
        unsealed = time.monotonic()
        wait_for(lambda: self.node.health_status() == HEALTH_ACTIVE, 30, "the node to become active")
        return unsealed


@contextlib.contextmanager
def single_node(workdir: Path, plugin: PluginRef, env: dict[str, str] | None = None) -> Iterator[SingleNode]:
    """vault-config/dev.hcl rendered on free loopback ports, started, initialised and unsealed; stopped by
    PID at exit with its plugin processes. `env` is added to the server's (and so the plugin's)
    environment."""
    api_port, cluster_port = free_ports(2)
    config = render_dev(workdir / "server.hcl", plugin, workdir / "data")
    text = config.read_text()
    if ":8200" not in text or ":8201" not in text:
        raise RuntimeError("vault-config/dev.hcl no longer listens on 8200/8201")
    text = text.replace("0.0.0.0:", "127.0.0.1:").replace(":8200", f":{api_port}")
    config.write_text(text.replace(":8201", f":{cluster_port}"))
    node = BaoNode("single", f"http://127.0.0.1:{api_port}", config, workdir, env=server_env(env))
    try:
        node.start()
        init = node.initialize()
        node.unseal(init.unseal_key)
        wait_for(lambda: node.health_status() == HEALTH_ACTIVE, 30, "the node to become active")
        yield SingleNode(node, init)
    finally:
        node.stop()
        survivors = node.reap_orphans()
        if survivors:
            raise RuntimeError(f"plugin processes {survivors} outlived their server (see {node.log_path})")
