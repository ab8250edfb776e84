"""Helpers for the tests of examples/: the engine on a real OpenBao mounted at llm/ with a role "chatbot"
(short TTLs, so renewals and key switches happen within seconds), an OpenAI emulator that records which
key each chat completion used, and app tokens under the app policy from vault-config/policies.

A uniquely named module (not conftest), so test directories without __init__.py cannot shadow it.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from devkit.bao import BaoServer
from devkit.build import build_engine
from devkit.raw_api import RawApi
from llm_emulators import OpenAIEmulator
from llm_emulators.core import EmulatorServer

REPO = Path(__file__).resolve().parents[2]
APP_POLICY = REPO / "vault-config" / "policies" / "llm-app.hcl"  # for role "chatbot" on llm/
PLUGIN = "vault-plugin-secrets-llm"
MOUNT = "llm"
ROLE = "chatbot"
TTL = 4  # seconds
MAX_TTL = 12


@dataclass(frozen=True)
class Chat:
    at: float
    key_id: str | None  # None: the key was unknown or already deleted
    secret: str
    status: int


class RecordingOpenAI(OpenAIEmulator):
    """The OpenAI emulator, noting for every chat completion which key it came with and the answer."""

    def __init__(self, admin_key: str) -> None:
        super().__init__(admin_key, projects=("proj_default",))
        self.chats: list[Chat] = []
        self._chats_lock = threading.Lock()

    def handle(self, request: httpx.Request) -> httpx.Response:
        is_chat = request.url.path.endswith("/chat/completions")
        secret = request.headers.get("authorization", "").removeprefix("Bearer ")
        key_id = next((k.key_id for k in self.live_keys() if k.secret == secret), None) if is_chat else None
        response = super().handle(request)
        if is_chat:
            with self._chats_lock:
                self.chats.append(Chat(time.time(), key_id, secret, response.status_code))
        return response

    def keys_used(self) -> list[str]:
        """Ids of the keys that served a completion, in the order of their first use."""
        return list(dict.fromkeys(c.key_id for c in self.chats if c.status == 200 and c.key_id))

    def uses_of(self, key_id: str) -> list[float]:
        return [c.at for c in self.chats if c.key_id == key_id and c.status == 200]


class Api(RawApi):
    """Raw calls to the server as root."""

    def __init__(self, server: BaoServer) -> None:
        super().__init__(server.addr, server.root_token)

    def live_leases(self) -> list[str]:
        status, body = self.call("LIST", f"sys/leases/lookup/{MOUNT}/creds/{ROLE}/")
        return list(body.get("data", {}).get("keys", [])) if status == 200 else []

    def app_token(self, *, default_policy: bool) -> str:
        """A token with the app policy for role chatbot (and the built-in default policy, or not)."""
        self.ok("PUT", "sys/policies/acl/llm-app-chatbot", json={"policy": APP_POLICY.read_text()})
        body = self.ok(
            "POST",
            "auth/token/create",
            json={"policies": ["llm-app-chatbot"], "no_default_policy": not default_policy, "ttl": "10m"},
        )
        return str(body["auth"]["client_token"])


def start_engine_server(workdir: Path) -> BaoServer:
    """A dev server with the engine registered by sha256 and mounted at llm/; stopped by PID on failure."""
    path, sha256 = build_engine(workdir / "plugins")
    server = BaoServer(workdir, workdir / "plugins", root_token=f"tok-{secrets.token_hex(12)}").start()
    try:
        server.register_plugin(PLUGIN, path.name, sha256)
        server.enable(PLUGIN, MOUNT)
    except BaseException:
        server.stop()
        raise
    return server


@dataclass
class Provider:
    emulator: RecordingOpenAI
    server: EmulatorServer

    @property
    def base_url(self) -> str:
        """What OPENAI_BASE_URL is set to for the examples: the emulator's OpenAI-compatible API root."""
        return f"{self.server.url}/v1"


@contextlib.contextmanager
def chatbot_provider(api: Api) -> Iterator[Provider]:
    """A new emulator behind the mount's connection `main`, and the role chatbot (TTL 4 s, max 12 s)."""
    admin_key = f"adm-openai-{secrets.token_hex(12)}"
    emulator = RecordingOpenAI(admin_key)
    with emulator.serve() as server:
        api.ok(
            "POST",
            f"{MOUNT}/config/main",
            json={"provider": "openai", "admin_key": admin_key, "base_url": server.base_url},
        )
        api.ok(
            "POST",
            f"{MOUNT}/roles/{ROLE}",
            json={"connection": "main", "ttl": TTL, "max_ttl": MAX_TTL, "project_id": "proj_default"},
        )
        try:
            yield Provider(emulator, server)
        finally:
            api.call("PUT", f"sys/leases/revoke-prefix/{MOUNT}/creds/{ROLE}")  # whatever a failed test left
