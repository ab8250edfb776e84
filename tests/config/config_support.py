"""Helpers for the tests of vault-config/ and the Dockerfile: the plugin built by scripts/build-plugin, a
single OpenBao node from a rendered config, raw HTTP calls with any token, an OpenRouter emulator wired to
a mount, and a reader for the Dockerfile's stages.

A uniquely named module (not conftest), so test directories without __init__.py cannot shadow it.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from devkit.cluster import HEALTH_ACTIVE, BaoNode, InitResult, free_ports
from devkit.raw_api import RawApi
from devkit.render_config import ENGINE_NAME
from devkit.waiting import wait_for
from llm_emulators import OpenRouterEmulator
from llm_emulators.core import EmulatorServer

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = REPO_ROOT / "scripts"
CONFIG_DIR = REPO_ROOT / "vault-config"
POLICY_DIR = CONFIG_DIR / "policies"
DOCKERFILE = REPO_ROOT / "Dockerfile"


# --- the plugin, as scripts/build-plugin writes it ------------------------------------------------------


@dataclass(frozen=True)
class BuiltPlugin:
    directory: Path
    path: Path
    sha256: str


def build_plugin(outdir: Path) -> BuiltPlugin:
    """Run scripts/build-plugin OUTDIR (the executable, its SBOM and SHA256SUMS) and parse its output."""
    out = subprocess.run(
        [str(SCRIPTS / "build-plugin"), str(outdir)], capture_output=True, text=True, check=True, timeout=900
    ).stdout
    name, sha256 = out.split()[-2:]
    assert name == ENGINE_NAME, out
    return BuiltPlugin(outdir, outdir / name, sha256)


def render_config(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """scripts/render-config ARGS, as an operator runs it (the result's returncode is not checked)."""
    return subprocess.run(
        [str(SCRIPTS / "render-config"), *map(str, args)], capture_output=True, text=True, timeout=60
    )


# --- one node from a rendered config --------------------------------------------------------------------


def on_free_ports(config_text: str, api_port: int, cluster_port: int) -> str:
    """A rendered single-node config moved from 8200/8201 (and 0.0.0.0) to free ports on 127.0.0.1, so the
    test never collides with a server of the developer's. Every occurrence must be one of those."""
    assert ":8200" in config_text and ":8201" in config_text, "the config no longer uses 8200/8201"
    text = config_text.replace("0.0.0.0:", "127.0.0.1:")
    return text.replace(":8200", f":{api_port}").replace(":8201", f":{cluster_port}")


@dataclass
class SingleNode:
    node: BaoNode
    init: InitResult

    @property
    def root_token(self) -> str:
        return self.init.root_token


@contextlib.contextmanager
def single_node(config_text: str, workdir: Path) -> Iterator[SingleNode]:
    """A `bao server` from `config_text` (a rendered config on 8200/8201, moved to free ports), initialised
    with one key share and unsealed; stopped by PID at exit with its plugin processes."""
    api_port, cluster_port = free_ports(2)
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "server.hcl"
    config.write_text(on_free_ports(config_text, api_port, cluster_port))
    node = BaoNode("single", f"http://127.0.0.1:{api_port}", config, workdir)
    try:
        node.start()
        init = node.initialize()
        node.unseal(init.unseal_key)
        wait_for(lambda: node.health_status() == HEALTH_ACTIVE, 30, "the node to become active")
        yield SingleNode(node, init)
    finally:
        node.stop()
        survivors = node.reap_orphans()
    assert not survivors, f"plugin processes {survivors} outlived their server (see {node.log_path})"


# --- HTTP -------------------------------------------------------------------------------------------------


Api = RawApi  # raw calls to a server with one token: (status, JSON body) for any status


def enable_engine(api: Api, mount: str = "llm") -> None:
    """`bao secrets enable -path=MOUNT vault-plugin-secrets-llm`: the catalog entry must already exist (from
    the declarative block; nothing here registers it)."""
    api.ok("POST", f"sys/mounts/{mount}", json={"type": ENGINE_NAME})


def catalog_entry(api: Api, version: str) -> dict[str, Any]:
    return api.ok("GET", f"sys/plugins/catalog/secret/{ENGINE_NAME}", params={"version": version})["data"]


# --- a provider: the OpenRouter emulator --------------------------------------------------------------------


@dataclass
class Provider:
    emulator: OpenRouterEmulator
    server: EmulatorServer
    admin_key: str
    issued: list[str] = field(default_factory=list)

    def connect(self, api: Api, mount: str = "llm", name: str = "main") -> None:
        api.ok(
            "POST",
            f"{mount}/config/{name}",
            json={"provider": "openrouter", "admin_key": self.admin_key, "base_url": self.server.base_url},
        )

    def is_live(self, key_id: str) -> bool:
        return self.emulator.find_key(key_id) is not None

    def chat(self, api_key: str) -> int:
        """Status of one chat completion at the emulator with `api_key`."""
        resp = httpx.post(
            f"{self.server.url}/api/v1/chat/completions",
            headers={"Authorization": f"Bearer {api_key}"},
            json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]},
            timeout=10,
        )
        return resp.status_code


@contextlib.contextmanager
def openrouter() -> Iterator[Provider]:
    admin_key = f"adm-openrouter-{secrets.token_hex(16)}"
    emulator = OpenRouterEmulator(admin_key)
    with emulator.serve() as server:
        yield Provider(emulator, server, admin_key)


# --- the Dockerfile ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]]  # (keyword, arguments), comments and continuations resolved


def dockerfile_stages(text: str) -> list[Stage]:
    """The Dockerfile's stages: enough of its grammar for FROM, RUN, COPY and WORKDIR lines."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        if keyword.upper() == "FROM":
            match = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", args.strip(), re.IGNORECASE)
            assert match, line
            stages.append(Stage(match.group(1), match.group(2) or "", []))
        else:
            stages[-1].instructions.append((keyword.upper(), args.strip()))
    return stages


def copy_sources(args: str) -> tuple[dict[str, str], list[str], str]:
    """A COPY's (--flags, sources, destination)."""
    words = shlex.split(args)
    flags = dict(w[2:].split("=", 1) for w in words if w.startswith("--"))
    paths = [w for w in words if not w.startswith("--")]
    return flags, paths[:-1], paths[-1]
