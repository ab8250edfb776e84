"""A test harness for the engine: the backend on an in-memory storage, a fake SystemView, a fake clock,
and the three provider emulators behind in-process transports.

A uniquely named module (not conftest) so other test directories cannot shadow it on import."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from llm_emulators import LiteLLMEmulator, OpenAIEmulator, OpenRouterEmulator
from llm_emulators.core import Emulator, LiveKey
from llmsecrets.backend import LLMBackend, new_backend
from llmsecrets.providers import RetryPolicy
from vaultplugin.framework import InMemoryStorage, LeaseInfo, Operation, Request, Response

MOUNT_UUID = "1a2b3c4d-5e6f-4a5b-8c9d-0e1f2a3b4c5d"
MOUNT_PREFIX = "vault-1a2b3c4d-"
OTHER_MOUNT_PREFIX = "vault-99999999-"
# Obviously fake admin keys: the emulators accept exactly these.
ADMIN_KEYS = {
    "openai": "sk-admin-FAKE-TEST-openai-0000000000",
    "openrouter": "sk-or-v1-FAKE-TEST-management-000000",
    "litellm": "sk-FAKE-TEST-litellm-master-00000000",
}
LITELLM_URL = "http://litellm.emulator.invalid"
PROJECT = "proj_default"
MOUNT_DEFAULT_TTL = 3600
MOUNT_MAX_TTL = 86400


@dataclass
class FakeClock:
    now: float = field(default_factory=time.time)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakeSystem:
    default_ttl: float = MOUNT_DEFAULT_TTL
    max_ttl: float = MOUNT_MAX_TTL
    calls: int = 0
    # consts.ReplicationState bits the host reports (REPLICATION_PERFORMANCE_STANDBY on an HA standby).
    replication: int = 0
    replication_calls: int = 0

    def default_lease_ttl(self) -> float:
        self.calls += 1
        return self.default_ttl

    def max_lease_ttl(self) -> float:
        self.calls += 1
        return self.max_ttl

    def replication_state(self) -> int:
        self.replication_calls += 1
        return self.replication


class Env:
    """One mount of the engine plus emulators for every provider."""

    def __init__(self, *, backend_uuid: str = MOUNT_UUID, **backend_args: Any) -> None:
        self.clock = FakeClock()
        self.storage = InMemoryStorage()
        self.system = FakeSystem()
        self.emus: dict[str, Emulator] = {
            "openai": OpenAIEmulator(
                ADMIN_KEYS["openai"], clock=self.clock, projects=(PROJECT, "proj_other")
            ),
            "openrouter": OpenRouterEmulator(ADMIN_KEYS["openrouter"], clock=self.clock),
            "litellm": LiteLLMEmulator(ADMIN_KEYS["litellm"], clock=self.clock),
        }
        self.transport_calls: list[tuple[str, str | None]] = []
        # No retrier thread: tests run the deletion queue's passes themselves, on the fake clock.
        backend_args.setdefault("background_deletions", False)
        self.backend: LLMBackend = new_backend(
            transport_factory=self._transport,
            clock=self.clock,
            retry=RetryPolicy(max_attempts=2, sleep=lambda _s: None, jitter=lambda _lo, _hi: 0.0),
            **backend_args,
        )
        self.backend.setup({"backend_uuid": backend_uuid, "plugin_name": "llm"}, self.system)
        self.backend.initialize(self.storage)

    def _transport(self, provider: str, base_url: str | None) -> httpx.BaseTransport:
        self.transport_calls.append((provider, base_url))
        return httpx.MockTransport(self.emus[provider].handle)

    # --- requests ---------------------------------------------------------------------------------------

    def request(self, op: str, path: str, **data: Any) -> Response | None:
        req = Request(
            operation=op,
            path=path,
            data=data,
            storage=self.storage,
            mount_point="llm/",
            display_name="token-my app",
        )
        return self.backend.handle_request(req)

    def write(self, path: str, **data: Any) -> Response | None:
        exists = False
        routed = self.backend.route(path)
        if routed is not None and routed[0].existence_check is not None:
            _, exists = self.backend.handle_existence_check(
                Request(operation=Operation.UPDATE, path=path, data=data, storage=self.storage)
            )
        return self.request(Operation.UPDATE if exists else Operation.CREATE, path, **data)

    def read(self, path: str) -> Response | None:
        return self.request(Operation.READ, path)

    def delete(self, path: str) -> Response | None:
        return self.request(Operation.DELETE, path)

    def list_keys(self, path: str) -> Response | None:
        return self.request(Operation.LIST, path)

    def creds(self, role: str) -> Response:
        resp = self.read(f"creds/{role}")
        assert resp is not None and resp.secret is not None
        return resp

    def lease(self, resp: Response, *, increment: float = 0.0) -> LeaseInfo:
        assert resp.secret is not None
        return LeaseInfo(
            internal_data=dict(resp.secret.internal_data),
            ttl=resp.secret.ttl,
            max_ttl=resp.secret.max_ttl,
            increment=increment,
            renewable=resp.secret.renewable,
            issue_time=resp.secret.issue_time or datetime.now(UTC),
            lease_id="llm/creds/x/abc",
        )

    def revoke(self, resp: Response, role: str = "x") -> Response | None:
        req = Request(
            operation=Operation.REVOKE,
            path=f"creds/{role}",
            data=dict(resp.data),
            storage=self.storage,
            secret=self.lease(resp),
        )
        return self.backend.handle_request(req)

    def renew(self, resp: Response, *, increment: float = 0.0) -> Response:
        req = Request(
            operation=Operation.RENEW,
            path="creds/x",
            data=dict(resp.data),
            storage=self.storage,
            secret=self.lease(resp, increment=increment),
        )
        out = self.backend.handle_request(req)
        assert out is not None
        return out

    def rollback(self) -> None:
        self.backend.handle_request(Request(operation=Operation.ROLLBACK, path="", storage=self.storage))

    # --- setup helpers ----------------------------------------------------------------------------------

    def connect(self, provider: str, name: str | None = None, **extra: Any) -> str:
        name = name or provider
        data: dict[str, Any] = {"provider": provider, "admin_key": ADMIN_KEYS[provider]}
        if provider == "litellm":
            data["base_url"] = LITELLM_URL
        data.update(extra)
        self.write(f"config/{name}", **data)
        return name

    def role(
        self, provider: str, name: str | None = None, connection: str | None = None, **extra: Any
    ) -> str:
        name = name or f"{provider}-role"
        data: dict[str, Any] = {"connection": connection or provider, "ttl": "10m", "max_ttl": "1h"}
        if provider == "openai":
            data["project_id"] = PROJECT
        data.update(extra)
        self.write(f"roles/{name}", **data)
        return name

    def setup_provider(self, provider: str, **role_extra: Any) -> str:
        self.connect(provider)
        return self.role(provider, **role_extra)

    def live(self, provider: str) -> list[LiveKey]:
        return self.emus[provider].live_keys()

    def live_ids(self, provider: str) -> set[str]:
        return {k.key_id for k in self.live(provider)}

    def storage_dump(self) -> str:
        keys = self.storage.keys()
        return "\n".join(f"{key}={(self.storage.get(key) or b'').decode()}" for key in keys)
