"""Helpers for running the shipped Vault Agent configs (vault-config/agent/) with a real `bao agent`.

The stack: a real OpenBao dev server with the engine mounted at `llm` (the path the shipped templates read),
an OpenAI emulator behind connection `main`, role `chatbot` with short TTLs, and the `kubernetes` auth method
pointed at a fake TokenReview API, so the shipped `auto_auth` block logs in unchanged. The agent configs are
the shipped files with only the server address, the token path, the destination and the command replaced.

A `Timeline` thread watches what a user would: the leases under llm/creds/chatbot (issue, renewals, expiry),
the keys at the provider (created, deleted), and the key the application currently has.

A uniquely named module (not conftest), so test directories without __init__.py cannot shadow it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from agent_kube_api import FakeKubernetesApi, new_service_account, throwaway_ca_pem
from devkit.bao import BaoServer, bao_binary, stop_process
from devkit.build import ENGINE_NAME, build_engine
from devkit.raw_api import RawApi
from llm_emulators import OpenAIEmulator
from llm_emulators.core import EmulatorServer

REPO_ROOT = Path(__file__).resolve().parents[2]
AGENT_CONFIG_DIR = REPO_ROOT / "vault-config" / "agent"

MOUNT = "llm"
ROLE = "chatbot"  # the engine role, the kubernetes auth role and the service account, as in the shipped files
NAMESPACE = "chatbot"
PROJECT = "proj_default"
DELETE_DEADLINE = 15  # a superseded key must be gone at the provider this long after its lease ends

# The literals the test replaces in the shipped files (each must occur exactly once).
SHIPPED_ADDRESS = '"https://openbao.openbao.svc:8200"'
SHIPPED_TOKEN_PATH = '"/var/run/secrets/kubernetes.io/serviceaccount/token"'
SHIPPED_DESTINATION = '"/vault/secrets/openai.env"'
SHIPPED_COMMAND = '["/app/bin/chatbot"]'

# The app persona's shipped policy (for role chatbot): what the agent's token gets, with "default" (which lets
# a token renew a lease by id in the body, as the agent does).
APP_POLICY_FILE = REPO_ROOT / "vault-config" / "policies" / "llm-app.hcl"
APP_POLICY_NAME = f"llm-app-{ROLE}"

CHAT_BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}


def hcl_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def from_shipped(name: str, replacements: dict[str, str]) -> str:
    """The shipped vault-config/agent/NAME with each literal replaced; a literal that is missing or appears
    more than once fails the test (the shipped file changed: update the test, do not test something else)."""
    text = (AGENT_CONFIG_DIR / name).read_text()
    for old, new in replacements.items():
        count = text.count(old)
        assert count == 1, f"{name}: expected {old!r} once, found it {count} times"
        text = text.replace(old, new)
    return text


def parse_time(value: str) -> float:
    """An RFC 3339 time from Vault (nanoseconds, Z or offset) as a Unix timestamp."""
    head, _, frac = value.partition(".")
    if frac:
        digits = "".join(c for c in frac if c.isdigit())
        zone = frac[len(digits) :]
        value = f"{head}.{digits[:6]}{zone}"
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


# --- the server, the emulator and the auth method --------------------------------------------------------


@dataclass
class AgentStack:
    server: BaoServer
    engine_path: Path
    emulator: OpenAIEmulator
    emu_server: EmulatorServer
    kube: FakeKubernetesApi
    token_file: Path
    api: RawApi  # as root

    def infer(self, api_key: str) -> int:
        """Status of one chat completion at the emulator with `api_key` (200 works, 401 deleted)."""
        resp = httpx.post(
            f"{self.emu_server.url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {api_key}"},
            json=CHAT_BODY,
            timeout=10,
        )
        return resp.status_code

    def key_id_of(self, api_key: str) -> str | None:
        for key in self.emulator.live_keys():
            if key.secret == api_key:
                return key.key_id
        return None

    def lease_ids(self) -> list[str]:
        status, body = self.api.call("LIST", f"sys/leases/lookup/{MOUNT}/creds/{ROLE}/")
        if status == 404:
            return []
        assert status == 200, (status, body)
        return [f"{MOUNT}/creds/{ROLE}/{k}" for k in body["data"]["keys"]]

    def set_role_ttls(self, ttl: int, max_ttl: int) -> None:
        """TTLs of role `chatbot` for the leases read from now on."""
        self.api.ok(
            "POST",
            f"{MOUNT}/roles/{ROLE}",
            json={"connection": "main", "ttl": f"{ttl}s", "max_ttl": f"{max_ttl}s", "project_id": PROJECT},
        )

    def revoke_all(self) -> None:
        self.api.ok("PUT", f"sys/leases/revoke-prefix/{MOUNT}/creds/{ROLE}")


@dataclass(frozen=True)
class BuiltEngine:
    path: Path
    sha256: str


def build(plugin_dir: Path) -> BuiltEngine:
    path, sha256 = build_engine(plugin_dir)
    return BuiltEngine(path, sha256)


def start_stack(workdir: Path, engine: BuiltEngine) -> AgentStack:
    """Start everything with the built engine and configure it; on failure stop what was started (by PID)."""
    with contextlib.ExitStack() as undo:
        server = BaoServer(workdir / "bao", engine.path.parent).start()
        undo.callback(server.stop)
        emulator = OpenAIEmulator(f"adm-openai-{secrets.token_hex(16)}", projects=(PROJECT,))
        emu_server = emulator.serve()
        undo.callback(emu_server.stop)
        kube = FakeKubernetesApi()
        undo.callback(kube.stop)
        api = RawApi(server.addr, server.root_token)
        undo.callback(api.close)
        account = new_service_account(NAMESPACE, ROLE)
        token_file = workdir / "serviceaccount-token"
        token_file.write_text(kube.issue_token(account))
        stack = AgentStack(server, engine.path, emulator, emu_server, kube, token_file, api)
        _configure(stack, engine.sha256)
        undo.pop_all()
        return stack
    raise AssertionError("unreachable")  # ExitStack does not swallow exceptions; this keeps mypy content


def _configure(stack: AgentStack, sha256: str) -> None:
    catalog = {"sha256": sha256, "command": ENGINE_NAME}
    stack.api.ok("PUT", f"sys/plugins/catalog/secret/{ENGINE_NAME}", json=catalog)
    stack.api.ok("POST", f"sys/mounts/{MOUNT}", json={"type": ENGINE_NAME})
    stack.api.ok(
        "POST",
        f"{MOUNT}/config/main",
        json={
            "provider": "openai",
            "admin_key": stack.emulator.admin_key,
            "base_url": stack.emu_server.base_url,
        },
    )
    stack.set_role_ttls(600, 3600)
    stack.api.ok("PUT", f"sys/policies/acl/{APP_POLICY_NAME}", json={"policy": APP_POLICY_FILE.read_text()})
    stack.api.ok("POST", "sys/auth/kubernetes", json={"type": "kubernetes"})
    stack.api.ok(
        "POST",
        "auth/kubernetes/config",
        json={
            "kubernetes_host": stack.kube.url,
            "kubernetes_ca_cert": throwaway_ca_pem(),
            "disable_local_ca_jwt": True,
        },
    )
    stack.api.ok(
        "POST",
        f"auth/kubernetes/role/{ROLE}",
        json={
            "bound_service_account_names": [ROLE],
            "bound_service_account_namespaces": [NAMESPACE],
            "token_policies": [APP_POLICY_NAME],
            "token_ttl": "1h",
        },
    )


def stop_stack(stack: AgentStack) -> list[int]:
    """Stop the server (and SIGKILL, by PID, plugin processes still alive 10 s later), the emulator and the
    fake API; return the PIDs that had to be killed."""
    stack.api.close()
    survivors = stack.server.stop_with_plugins()
    stack.emu_server.stop()
    stack.kube.stop()
    return survivors


# --- the agent process -----------------------------------------------------------------------------------


class AgentProcess:
    """One `bao agent` run with a config text, logging to a file; stopped by its PID."""

    def __init__(self, config_text: str, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "agent.hcl"
        self.config_path.write_text(config_text)
        self.log_path = workdir / "agent.log"
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> AgentProcess:
        # No BAO_*/VAULT_* from the test's environment: the config alone says where the server is.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [bao_binary(), "agent", f"-config={self.config_path}", "-log-level=debug"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=self.workdir,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def assert_running(self) -> None:
        assert self.proc is not None
        code = self.proc.poll()
        assert code is None, f"bao agent exited with {code}:\n{self.log_tail()}"

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
        self.proc = None


@contextlib.contextmanager
def running_agent(config_text: str, workdir: Path) -> Iterator[AgentProcess]:
    agent = AgentProcess(config_text, workdir).start()
    try:
        yield agent
    finally:
        agent.stop()


def wait_until(
    condition: Callable[[], Any], timeout: float, what: str, agent: AgentProcess, interval: float = 0.1
) -> Any:
    """Poll `condition` until truthy (and return it), failing early, with its log, if the agent dies."""
    deadline = time.monotonic() + timeout
    while True:
        agent.assert_running()
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}\n{agent.log_tail()}")
        time.sleep(interval)


def read_env_file(path: Path, *required: str) -> dict[str, str] | None:
    """The KEY=value lines of a rendered dotenv file, or None until it exists with every `required` key
    (a reader may catch the agent between opening the file and finishing the write)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    pairs = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    if not pairs or any(not pairs.get(name) for name in required):
        return None
    return pairs


# --- what happened, seen from outside ---------------------------------------------------------------------


@dataclass
class LeaseSeen:
    lease_id: str
    issue_time: float
    renewals: list[float] = field(default_factory=list)  # distinct last_renewal times, in order
    expire_times: list[float] = field(default_factory=list)  # distinct expire_time values, in order
    gone_at: float | None = None  # when a lookup first found it no longer there

    @property
    def end(self) -> float:
        """When the lease ends (its last known expire time)."""
        return self.expire_times[-1]


@dataclass
class KeySeen:
    key_id: str
    api_key: str = field(repr=False)
    created_at: float
    deleted_seen_at: float | None = None


@dataclass
class AppKeySeen:
    api_key: str = field(repr=False)
    seen_at: float
    detail: dict[str, Any] = field(default_factory=dict)


class Timeline:
    """Polls, every `interval` seconds: the leases under llm/creds/chatbot (via sys/leases/lookup), the keys
    at the emulator, and `current_key()` (the key the application has now, with details). Times are Unix."""

    def __init__(
        self,
        stack: AgentStack,
        current_key: Callable[[], tuple[str, dict[str, Any]] | None],
        interval: float = 0.2,
    ) -> None:
        self.stack = stack
        self._current_key = current_key
        self._interval = interval
        self.leases: dict[str, LeaseSeen] = {}
        self.keys: dict[str, KeySeen] = {}
        self.app_keys: list[AppKeySeen] = []
        self._known_before = {k.key_id for k in stack.emulator.live_keys()} | set(
            stack.emulator.deleted_key_ids()
        )
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="agent-timeline", daemon=True)

    def __enter__(self) -> Timeline:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def check(self) -> None:
        if self._error is not None:
            raise AssertionError(f"the timeline thread failed: {self._error!r}") from self._error

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._poll()
                self._stop.wait(self._interval)
        except BaseException as exc:
            self._error = exc

    def _poll(self) -> None:
        now = time.time()
        for lease_id in self.stack.lease_ids():
            status, body = self.stack.api.call("PUT", "sys/leases/lookup", json={"lease_id": lease_id})
            with self._lock:
                seen = self.leases.get(lease_id)
                if status != 200:
                    if seen is not None and seen.gone_at is None:
                        seen.gone_at = now
                    continue
                data = body["data"]
                if seen is None:
                    seen = self.leases[lease_id] = LeaseSeen(lease_id, parse_time(data["issue_time"]))
                _append_new(seen.expire_times, parse_time(data["expire_time"]))
                if data.get("last_renewal"):
                    _append_new(seen.renewals, parse_time(data["last_renewal"]))
        # Leases no longer listed have ended.
        listed = set(self.stack.lease_ids())
        with self._lock:
            for seen in self.leases.values():
                if seen.gone_at is None and seen.lease_id not in listed:
                    seen.gone_at = now
        emulator = self.stack.emulator
        live = emulator.live_keys()
        deleted = set(emulator.deleted_key_ids())
        with self._lock:
            for key in live:
                if key.key_id not in self._known_before and key.key_id not in self.keys:
                    self.keys[key.key_id] = KeySeen(key.key_id, key.secret, key.created_at)
            for key_id, key_seen in self.keys.items():
                if key_seen.deleted_seen_at is None and key_id in deleted:
                    key_seen.deleted_seen_at = now
        current = self._current_key()
        if current is not None:
            api_key, detail = current
            with self._lock:
                if not self.app_keys or self.app_keys[-1].api_key != api_key:
                    self.app_keys.append(AppKeySeen(api_key, now, detail))

    # --- views (copies, safe while the thread runs)

    def snapshot(self) -> tuple[list[LeaseSeen], list[KeySeen], list[AppKeySeen]]:
        with self._lock:
            leases = sorted(
                (
                    LeaseSeen(s.lease_id, s.issue_time, list(s.renewals), list(s.expire_times), s.gone_at)
                    for s in self.leases.values()
                ),
                key=lambda s: s.issue_time,
            )
            keys = sorted(
                (KeySeen(k.key_id, k.api_key, k.created_at, k.deleted_seen_at) for k in self.keys.values()),
                key=lambda k: k.created_at,
            )
            return leases, keys, list(self.app_keys)

    def distinct_app_keys(self) -> int:
        with self._lock:
            return len({k.api_key for k in self.app_keys})

    def key_deleted(self, api_key: str) -> bool:
        with self._lock:
            return any(k.api_key == api_key and k.deleted_seen_at is not None for k in self.keys.values())


def _append_new(values: list[float], value: float) -> None:
    if not values or abs(values[-1] - value) > 1e-6:
        values.append(value)


def lease_of_key(key: KeySeen, leases: list[LeaseSeen]) -> LeaseSeen:
    """The lease issued for `key`: Vault stamps issue_time right after the engine created the key."""
    best = min(leases, key=lambda lease: abs(lease.issue_time - key.created_at))
    assert abs(best.issue_time - key.created_at) < 2, f"no lease issued with key {key.key_id}"
    return best


def describe(leases: list[LeaseSeen], keys: list[KeySeen], app_keys: list[AppKeySeen], t0: float) -> str:
    """A readable timeline relative to t0 (printed by the tests: pytest -s shows the measured figures)."""
    lines = []
    for lease in leases:
        renewals = ", ".join(f"{r - lease.issue_time:.1f}" for r in lease.renewals)
        lines.append(
            f"lease {lease.lease_id.rsplit('/', 1)[-1][:8]}: issued {lease.issue_time - t0:.1f}s, "
            f"renewed at +[{renewals}]s, ends {lease.end - t0:.1f}s "
            f"(issue + {lease.end - lease.issue_time:.1f}s)"
        )
    for key in keys:
        deleted = "-" if key.deleted_seen_at is None else f"{key.deleted_seen_at - t0:.1f}s"
        lines.append(f"key {key.key_id}: created {key.created_at - t0:.1f}s, deleted seen {deleted}")
    for app in app_keys:
        lines.append(f"application got key ...{app.api_key[-6:]} at {app.seen_at - t0:.1f}s {app.detail}")
    return "\n".join(lines)
