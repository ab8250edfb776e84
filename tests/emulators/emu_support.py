"""Support code shared by the emulator tests (harness, fake clock, per-provider adapters)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from llm_emulators import Emulator, EmulatorServer, LiteLLMEmulator, OpenAIEmulator, OpenRouterEmulator

T0 = 1_800_000_000.0


class FakeClock:
    def __init__(self, start: float = T0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Harness:
    emu: Emulator
    mode: str
    base_url: str
    root_url: str
    server: EmulatorServer | None = None
    _clients: list[httpx.Client] = field(default_factory=list)

    def client(self, token: str | None = None, *, root: bool = False) -> httpx.Client:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        base = self.root_url if root else self.base_url
        if self.server is None:
            c = httpx.Client(transport=httpx.MockTransport(self.emu.handle), base_url=base, headers=headers)
        else:
            c = httpx.Client(base_url=base, headers=headers, timeout=10)
        self._clients.append(c)
        return c

    def admin(self) -> httpx.Client:
        return self.client(self.emu.admin_key)

    def control(self) -> httpx.Client:
        return self.client(root=True)

    def close(self) -> None:
        for c in self._clients:
            c.close()


def harness(emu: Emulator, mode: str) -> Iterator[Harness]:
    if mode == "inproc":
        root = emu.base_path.removesuffix(emu.path_prefix)
        h = Harness(emu, mode, emu.base_path, root)
        try:
            yield h
        finally:
            h.close()
        return
    server = emu.serve()
    try:
        h = Harness(emu, mode, server.base_url, server.url, server)
        try:
            yield h
        finally:
            h.close()
    finally:
        server.stop()


def sha256(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


# ---- one adapter per provider, for the cross-provider fault tests


@dataclass(frozen=True)
class Provider:
    name: str
    make: Callable[[FakeClock], Emulator]
    create: Callable[[httpx.Client, str], httpx.Response]
    list: Callable[[httpx.Client], httpx.Response]
    delete: Callable[[httpx.Client, str], httpx.Response]
    key_id: Callable[[dict[str, Any]], str]
    secret: Callable[[dict[str, Any]], str]
    chat_path: str
    create_ok: int

    def error_status_and_shape(self, resp: httpx.Response, status: int) -> None:
        assert resp.status_code == status, resp.text
        err = resp.json()["error"]
        if self.name == "openrouter":
            assert set(err) == {"code", "message"}
            assert err["code"] == status
        else:
            assert set(err) == {"message", "type", "param", "code"}
            if self.name == "litellm":
                assert err["code"] == str(status)


_SA = "/organization/projects/proj_default/service_accounts"

PROVIDERS = [
    Provider(
        "openai",
        lambda c: OpenAIEmulator(clock=c),
        lambda cl, n: cl.post(_SA, json={"name": n}),
        lambda cl: cl.get(_SA),
        lambda cl, i: cl.delete(f"{_SA}/{i}"),
        lambda b: str(b["id"]),
        lambda b: str(b["api_key"]["value"]),
        "/chat/completions",
        200,
    ),
    Provider(
        "openrouter",
        lambda c: OpenRouterEmulator(clock=c),
        lambda cl, n: cl.post("/keys", json={"name": n}),
        lambda cl: cl.get("/keys"),
        lambda cl, i: cl.delete(f"/keys/{i}"),
        lambda b: str(b["data"]["hash"]),
        lambda b: str(b["key"]),
        "/chat/completions",
        201,
    ),
    Provider(
        "litellm",
        lambda c: LiteLLMEmulator(clock=c),
        lambda cl, n: cl.post("/key/generate", json={"key_alias": n}),
        lambda cl: cl.get("/key/list"),
        lambda cl, i: cl.post("/key/delete", json={"keys": [i]}),
        lambda b: str(b["token_id"]),
        lambda b: str(b["key"]),
        "/chat/completions",
        200,
    ),
]
