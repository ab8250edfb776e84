"""A 3-node OpenBao cluster on Integrated Storage (Raft), run on loopback from vault-config/ha/.

The node configs are the committed template rendered by `devkit.render_config` (free ports instead of
8210-8231), so a cluster started here is the one the README tells operators to run. `BaoCluster.start()`
starts three `bao server` processes, initialises one (one key share), unseals all three (the other two join
through retry_join when unsealed) and waits until Raft has every node as a voter. The engine is installed
only by the declarative plugin block: nothing here registers a plugin.

Each node is a process owned by this object and stopped by its PID; the plugin processes a node started are
recorded before the node stops or is killed, and killed by PID if they outlive it. Fault drills use
`BaoNode.kill()` (SIGKILL), `BaoNode.start()` and `BaoNode.unseal(cluster.unseal_key)` to restart a node,
and `BaoCluster.active()` to find the node that took over.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import hvac
import psutil

from devkit.bao import bao_binary, free_port
from devkit.render_config import HA_NODES, PluginRef, ha_nodes, render_ha
from devkit.waiting import wait_for

# sys/health answers with the node's state in its status code (the body says the same).
HEALTH_ACTIVE = 200
HEALTH_STANDBY = 429
HEALTH_NOT_INITIALIZED = 501
HEALTH_SEALED = 503


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports on 127.0.0.1 (the OS may hand out a just-released port twice)."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment minus VAULT_* / BAO_* (a developer's token or address must not leak in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    env.update(extra or {})
    return env


@dataclass(frozen=True)
class InitResult:
    root_token: str
    unseal_key: str  # the only key share (threshold 1)


class BaoNode:
    """One `bao server -config=CONFIG` process (a cluster node, or a single server from a rendered config)."""

    def __init__(
        self,
        name: str,
        addr: str,
        config: Path,
        workdir: Path,
        *,
        log_level: str = "info",
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.addr = addr  # the API address, http://127.0.0.1:PORT
        self.config = config  # a file, or a directory of config files
        self.workdir = workdir
        self.log_path = workdir / "bao.log"
        self._log_level = log_level
        self._env = env if env is not None else server_env()
        self.proc: subprocess.Popen[bytes] | None = None
        # Plugin processes this node started, recorded before it stopped: reaped by the cluster. Kept as
        # psutil handles, which refuse to signal a PID that a new process has taken since.
        self.orphans: list[psutil.Process] = []

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 30.0) -> None:
        """Start the process and wait until its API answers (it comes up sealed)."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [bao_binary(), "server", f"-config={self.config}", f"-log-level={self._log_level}"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._env,
                cwd=self.workdir,
            )
        wait_for(lambda: self.health_status() is not None, timeout, f"{self.name}'s API ({self.log_path})")

    def health_status(self) -> int | None:
        """sys/health's status code (HEALTH_*), or None if the node does not answer; raises if it exited."""
        if self.proc is None or self.proc.poll() is not None:
            code = None if self.proc is None else self.proc.returncode
            raise RuntimeError(f"{self.name} is not running (exit {code}); see {self.log_path}")
        try:
            return httpx.get(f"{self.addr}/v1/sys/health", timeout=2.0).status_code
        except httpx.HTTPError:
            return None

    def http(self, token: str | None = None) -> httpx.Client:
        headers = {"X-Vault-Token": token} if token else {}
        return httpx.Client(base_url=f"{self.addr}/v1/", headers=headers, timeout=60)

    def client(self, token: str) -> hvac.Client:
        return hvac.Client(url=self.addr, token=token, timeout=60)

    def plugin_processes(self) -> list[psutil.Process]:
        """Every live process below this node: its plugin processes (and what they started)."""
        if not self.running or self.proc is None:
            return []
        with contextlib.suppress(psutil.NoSuchProcess):
            return list(psutil.Process(self.proc.pid).children(recursive=True))
        return []

    def initialize(self) -> InitResult:
        """`operator init` with one key share: the root token and the unseal key."""
        with self.http() as http:
            resp = http.put("sys/init", json={"secret_shares": 1, "secret_threshold": 1})
            resp.raise_for_status()
            body = resp.json()
        return InitResult(root_token=str(body["root_token"]), unseal_key=str(body["keys_base64"][0]))

    def unseal(self, key: str, timeout: float = 60.0) -> None:
        """Unseal with `key`. A Raft node not yet in a cluster joins it on unseal (through retry_join), which
        takes a few attempts while it finds the leader."""

        def unsealed() -> bool:
            with self.http() as http:
                resp = http.put("sys/unseal", json={"key": key})
                return resp.status_code == 200 and resp.json().get("sealed") is False

        wait_for(unsealed, timeout, f"{self.name} to unseal ({self.log_path})", interval=0.5)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM by PID (SIGKILL after `timeout`); its plugin processes are recorded in `orphans`."""
        self._end(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL by PID, as a crash would; its plugin processes are recorded in `orphans`."""
        self._end(signal.SIGKILL, 10.0)

    def reap_orphans(self, timeout: float = 10.0) -> list[int]:
        """Wait for the plugin processes recorded when the node stopped; SIGKILL those still alive after
        `timeout` and return their PIDs (a plugin should exit on its own once its host is gone)."""
        orphans, self.orphans = self.orphans, []
        _, alive = psutil.wait_procs(orphans, timeout=timeout)
        for proc in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        return [proc.pid for proc in alive]

    def _end(self, sig: signal.Signals, timeout: float) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.orphans.extend(self.plugin_processes())
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None


class BaoCluster:
    """Three nodes from vault-config/ha/node.hcl on free loopback ports, initialised and unsealed."""

    def __init__(
        self,
        workdir: Path,
        plugin: PluginRef,
        *,
        log_level: str = "info",
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.plugin = plugin
        flat = free_ports(2 * HA_NODES)
        ports = [(flat[2 * i], flat[2 * i + 1]) for i in range(HA_NODES)]
        specs = ha_nodes(workdir, ports)
        self.audit_log = workdir / "audit.log"  # one path on every node (the audit table is cluster-wide)
        configs = render_ha(workdir, plugin, specs, self.audit_log)
        env = server_env(extra_env)
        self.nodes = [
            BaoNode(spec.node_id, spec.api_addr, config, spec.data_dir, log_level=log_level, env=env)
            for spec, config in zip(specs, configs, strict=True)
        ]
        self.root_token = ""
        self.unseal_key = ""

    def start(self, timeout: float = 120.0) -> BaoCluster:
        """Start every node, initialise the first, unseal all, and wait until Raft has all of them as voters
        (a node joins as a non-voter; autopilot promotes it once it has been healthy for a while, which is
        set to 1 s here instead of 10 s). Only then can any node take over from the active one."""
        deadline = time.monotonic() + timeout

        def left() -> float:
            return max(deadline - time.monotonic(), 1.0)

        try:
            for node in self.nodes:
                node.start()
            first = self.nodes[0]
            init = first.initialize()
            self.root_token, self.unseal_key = init.root_token, init.unseal_key
            first.unseal(self.unseal_key, timeout=left())
            with self.active(timeout=left()).http(self.root_token) as http:
                resp = http.post(
                    "sys/storage/raft/autopilot/configuration", json={"server_stabilization_time": "1s"}
                )
                resp.raise_for_status()
            for node in self.nodes[1:]:
                node.unseal(self.unseal_key, timeout=left())
            self.wait_for_peers(len(self.nodes), timeout=left(), voters=True)
        except BaseException:
            self.stop()
            raise
        return self

    def active(self, timeout: float = 30.0) -> BaoNode:
        """The node that is active now (waits for one, e.g. during a failover)."""

        def find() -> BaoNode | None:
            for node in self.nodes:
                if node.running and node.health_status() == HEALTH_ACTIVE:
                    return node
            return None

        node = wait_for(find, timeout, "an active node")
        assert node is not None  # wait_for returns only a truthy result
        return node

    def standbys(self) -> list[BaoNode]:
        """The running nodes that answer as unsealed standbys now."""
        return [n for n in self.nodes if n.running and n.health_status() == HEALTH_STANDBY]

    def raft_servers(self) -> list[dict[str, Any]]:
        """Raft's view of the cluster, from the active node: node_id, address, leader, voter per server."""
        with self.active().http(self.root_token) as http:
            resp = http.get("sys/storage/raft/configuration")
            resp.raise_for_status()
            servers: list[dict[str, Any]] = resp.json()["data"]["config"]["servers"]
            return servers

    def wait_for_peers(self, count: int, timeout: float = 60.0, *, voters: bool = False) -> None:
        """Wait until Raft lists `count` servers (all of them voters, if `voters`)."""

        def enough() -> bool:
            servers = self.raft_servers()
            return len(servers) >= count and (not voters or all(s.get("voter") for s in servers))

        wait_for(enough, timeout, f"{count} raft peers", interval=0.5)

    def stop(self) -> list[int]:
        """Stop every node by PID; SIGKILL any plugin process still alive 10 s later; return their PIDs."""
        for node in self.nodes:
            node.stop()
        return [pid for node in self.nodes for pid in node.reap_orphans()]

    def __enter__(self) -> BaoCluster:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
