"""Helpers for the tests of scripts/install: two releases of the engine (v0.1.0 and v0.2.0, built as
scripts/build-plugin builds them), a real OpenBao dev server with an empty plugin directory, the script run
as an operator runs it, and an OpenAI emulator to prove a mount issues and deletes keys.

A uniquely named module (not conftest), so test directories without __init__.py cannot shadow it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from devkit.bao import BaoServer
from devkit.raw_api import RawApi
from devkit.release import Release, build_release
from llm_emulators import OpenAIEmulator
from llm_emulators.core import EmulatorServer
from llmsecrets.version import VERSION as VERSION_A

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "scripts" / "install"
VERSION_B = "v0.2.0" if VERSION_A != "v0.2.0" else "v0.3.0"  # any other version
CHAT_BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}


@dataclass(frozen=True)
class Releases:
    a: Release
    b: Release


def build_releases(root: Path) -> Releases:
    """Release A reports this checkout's version (the default build, shared with other suites' cache),
    release B another one; each in its own directory with its SBOM and SHA256SUMS."""
    return Releases(a=build_release(root / "a"), b=build_release(root / "b", VERSION_B))


def start_server(workdir: Path, extra_config: str = "") -> BaoServer:
    """A dev server with a plugin directory of its own (empty unless the caller filled it) and a root token
    that appears in no other text, so a test can assert the script never prints it."""
    token = f"tok-{secrets.token_hex(12)}"
    return BaoServer(workdir, workdir / "plugins", root_token=token, extra_config=extra_config).start()


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_install(
    server: BaoServer | None, *args: str | Path, home: Path, env: dict[str, str | None] | None = None
) -> Run:
    """scripts/install with only what an operator's shell would set: PATH, HOME, and BAO_ADDR and
    BAO_TOKEN (root) for `server`; `env` adds to that, and a None value removes a variable."""
    base = {"PATH": os.environ["PATH"], "HOME": str(home), "LANG": "C.UTF-8"}
    if server is not None:
        base["BAO_ADDR"] = server.addr
        base["BAO_TOKEN"] = server.root_token
    for key, value in (env or {}).items():
        if value is None:
            base.pop(key, None)
        else:
            base[key] = value
    proc = subprocess.run(
        [str(INSTALL), *map(str, args)], env=base, capture_output=True, text=True, timeout=120, check=False
    )
    return Run(proc.returncode, proc.stdout, proc.stderr)


class Api(RawApi):
    """Raw calls to the server as root (or `token`): (status, body) for any status."""

    def __init__(self, server: BaoServer, token: str | None = None) -> None:
        super().__init__(server.addr, token or server.root_token)

    def mount(self, path: str) -> dict[str, Any]:
        return dict(self.ok("GET", f"sys/mounts/{path}")["data"])

    def catalog_entry(self, name: str, version: str) -> dict[str, Any] | None:
        status, body = self.call("GET", f"sys/plugins/catalog/secret/{name}", params={"version": version})
        return dict(body["data"]) if status == 200 else None

    def close(self) -> None:
        self._http.close()


@dataclass
class Provider:
    """An OpenAI emulator on loopback, and a mount's connection and role wired to it."""

    emulator: OpenAIEmulator
    server: EmulatorServer
    admin_key: str

    def configure(self, api: Api, mount: str, ttl: str = "1m", max_ttl: str = "10m") -> None:
        api.ok(
            "POST",
            f"{mount}/config/main",
            json={"provider": "openai", "admin_key": self.admin_key, "base_url": self.server.base_url},
        )
        api.ok(
            "POST",
            f"{mount}/roles/app",
            json={"connection": "main", "ttl": ttl, "max_ttl": max_ttl, "project_id": "proj_default"},
        )

    def chat_status(self, api_key: str) -> int:
        resp = httpx.post(
            f"{self.server.url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {api_key}"},
            json=CHAT_BODY,
            timeout=10,
        )
        return resp.status_code

    def is_deleted(self, key_id: str) -> bool:
        return self.emulator.find_key(key_id) is None and key_id in self.emulator.deleted_key_ids()


@contextlib.contextmanager
def openai_provider() -> Iterator[Provider]:
    admin_key = f"adm-openai-{secrets.token_hex(12)}"
    emulator = OpenAIEmulator(admin_key, projects=("proj_default",))
    with emulator.serve() as server:
        yield Provider(emulator, server, admin_key)


@dataclass(frozen=True)
class Creds:
    lease_id: str
    key_id: str
    api_key: str


def issue(api: Api, mount: str) -> Creds:
    body = api.ok("GET", f"{mount}/creds/app")
    return Creds(body["lease_id"], body["data"]["key_id"], body["data"]["api_key"])


def processes_running(server: BaoServer, executable: Path) -> list[int]:
    return [p.pid for p in server.plugin_processes(executable)]
