"""See scripts/demo: the LLM secrets engine end to end against a local provider emulator.

Steps: start an emulator (a separate process, `python -m llm_emulators`), start a real OpenBao dev server,
build the plugin and register it by sha256, enable it at llm/, write a connection and a 30-second role,
read a key and use it, revoke its lease and see it rejected, read a second key and let its lease expire.
With `--provider anthropic` (which cannot mint keys) the role is a check-out set of two keys made "in the
console" instead: a check-out activates a key, revoke and expiry deactivate it and return it to the set.
Keys are never printed in full. Everything started here is stopped by PID in `finally` (also on Ctrl-C).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import hvac
import psutil
from devkit.bao import BaoServer
from devkit.build import ENGINE_NAME, build_engine

MOUNT = "llm"
ROLE = "demo"
LEASE_TTL = 30  # seconds: the role's ttl, waited out once
EXPIRY_SLACK = 30.0  # seconds allowed after the lease's expire time for the key to be deleted


@dataclass(frozen=True)
class Provider:
    title: str
    admin_key_prefix: str
    model: str
    connection: dict[str, Any] = field(default_factory=dict)
    role: dict[str, Any] = field(default_factory=dict)
    admin_key_name: str = "admin key"
    serves: str = "the provider's key-management API and chat completions"


PROVIDERS: dict[str, Provider] = {
    "openrouter": Provider(
        "OpenRouter",
        "sk-or-v1-",
        "openai/gpt-4o-mini",
        role={"spend_limit": 1},
        admin_key_name="management key",
    ),
    "openai": Provider("OpenAI", "sk-admin-", "gpt-4o-mini", role={"project_id": "proj_default"}),
    "litellm": Provider(
        "LiteLLM proxy",
        "sk-",
        "gpt-4o-mini",
        role={"spend_limit": 1, "models": "gpt-4o-mini"},
        admin_key_name="master key",
    ),
    # No roles: a check-out set of pre-made keys (run_anthropic).
    "anthropic": Provider(
        "Anthropic",
        "sk-ant-admin01-",
        "claude-sonnet-4-5",
        serves="the Admin API (list, get, switch keys on and off) and /v1/messages",
    ),
}
SET = "team"


class DemoError(Exception):
    """A step did not do what the demo expects; the message says what."""


def mask(key: str) -> str:
    """Never a full key: its first 8 characters and an ellipsis."""
    return key[:8] + "…"


# --------------------------------------------------------------------------------------------------- output


class Out:
    def __init__(self, total_steps: int) -> None:
        self.total = total_steps
        self.n = 0
        self.tty = sys.stdout.isatty()
        self._in_progress = False

    def step(self, title: str) -> None:
        self.n += 1
        print(f"\n[{self.n}/{self.total}] {title}", flush=True)

    def say(self, text: str) -> None:
        print(f"      {text}", flush=True)

    def ok(self, text: str) -> None:
        print(f"      ✓ {text}", flush=True)

    def progress(self, text: str) -> None:
        """A line rewritten in place on a terminal (the countdown)."""
        if self.tty:
            print(f"\r      {text}\033[K", end="", flush=True)
            self._in_progress = True

    def end_progress(self) -> None:
        if self._in_progress:
            print(flush=True)
            self._in_progress = False


# --------------------------------------------------------------------------------------------------- emulator


class EmulatorProcess:
    """`python -m llm_emulators PROVIDER` in its own session, stopped by its PID."""

    def __init__(self, provider: str, admin_key: str, log_path: Path) -> None:
        self.provider = provider
        self._admin_key = admin_key
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.base_url = ""
        self._http = httpx.Client(timeout=10)

    def start(self, timeout: float = 20.0) -> None:
        env = {**os.environ, "LLM_EMULATOR_ADMIN_KEY": self._admin_key}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "llm_emulators", self.provider],
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,  # Ctrl-C reaches the demo only; the demo stops it
            )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if self.proc.poll() is not None:
                raise DemoError(f"the emulator exited with {self.proc.returncode}; see {self.log_path}")
            if left <= 0:
                raise DemoError(f"the emulator printed no address in {timeout:.0f}s; see {self.log_path}")
            ready, _, _ = select.select([self.proc.stdout], [], [], min(left, 0.5))
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    continue
                line += chunk
        info = json.loads(line)
        self.url, self.base_url = info["url"], info["base_url"]

    def ledger(self) -> dict[str, int]:
        state = self._http.get(f"{self.url}/_emulator/state").raise_for_status().json()
        return {
            "created": int(state["create_count"]),
            "deleted": int(state["delete_count"]),
            "live": len(state["live_keys"]),
        }

    def ledger_text(self) -> str:
        led = self.ledger()
        return f"provider ledger: {led['created']} created, {led['deleted']} deleted, {led['live']} live"

    def add_console_key(self, name: str) -> tuple[str, str]:
        """Make an API key as an operator does in Anthropic's console (the emulator's control endpoint):
        (its id, its value)."""
        resp = self._http.post(f"{self.url}/_emulator/keys", json={"name": name, "status": "active"})
        body = resp.raise_for_status().json()
        return str(body["id"]), str(body["value"])

    def key_status(self, key_id: str) -> str:
        resp = self._http.get(f"{self.url}/_emulator/keys/{key_id}")
        return str(resp.raise_for_status().json()["status"])

    def statuses_text(self) -> str:
        state = self._http.get(f"{self.url}/_emulator/state").raise_for_status().json()
        keys = state["anthropic_keys"]
        active = sum(k["status"] == "active" for k in keys)
        return f"provider: {len(keys)} keys, {active} active, {len(keys) - active} inactive"

    def message(self, api_key: str, model: str) -> httpx.Response:
        return self._http.post(
            f"{self.url}/v1/messages",
            headers={"x-api-key": api_key, "anthropic-version": "2023-06-01"},
            json={"model": model, "max_tokens": 32, "messages": [{"role": "user", "content": "Say hello."}]},
        )

    def chat(self, api_key: str, model: str) -> httpx.Response:
        return self._http.post(
            f"{self.base_url}/chat/completions",
            headers={"Authorization": f"Bearer {api_key}"},
            json={"model": model, "messages": [{"role": "user", "content": "Say hello."}]},
        )

    def stop(self) -> None:
        self._http.close()
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None


# --------------------------------------------------------------------------------------------------- helpers


def describe(resp: httpx.Response) -> str:
    """Status and the provider's message (error shapes differ: {"error": {"message"}} or {"error": "..."})."""
    try:
        body = resp.json()
    except ValueError:
        return f"HTTP {resp.status_code}"
    if resp.is_success:
        if "content" in body:  # Anthropic's Messages API
            return f"HTTP {resp.status_code}, the model says {body['content'][0].get('text', '')!r}"
        text = body.get("choices", [{}])[0].get("message", {}).get("content", "")
        return f"HTTP {resp.status_code}, the model says {text!r}"
    err = body.get("error", body.get("detail", body))
    message = err.get("message", err) if isinstance(err, dict) else err
    return f"HTTP {resp.status_code}: {str(message)[:100]}"


def parse_vault_time(value: str) -> float:
    """An RFC 3339 time from Vault (nanoseconds and all) as unix seconds."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", value)
    if m is None:
        raise DemoError(f"unexpected time format from Vault: {value!r}")
    base, frac, zone = m.groups()
    stamp = datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone)).timestamp()
    return stamp + (float("0." + frac) if frac else 0.0)


def plugin_process(bao: BaoServer, plugin_path: Path) -> psutil.Process | None:
    return next(iter(bao.plugin_processes(plugin_path)), None)


def expect_rejected(emu: EmulatorProcess, api_key: str, model: str, out: Out) -> None:
    resp = emu.chat(api_key, model)
    if resp.status_code not in (400, 401):
        raise DemoError(f"the dead key {mask(api_key)} was not rejected: {describe(resp)}")
    out.ok(f"the provider rejects {mask(api_key)}: {describe(resp)}")


def expect_working(emu: EmulatorProcess, api_key: str, model: str, out: Out) -> None:
    resp = emu.chat(api_key, model)
    if resp.status_code != 200:
        raise DemoError(f"the fresh key {mask(api_key)} did not work: {describe(resp)}")
    out.ok(f"POST {emu.base_url}/chat/completions with {mask(api_key)}: {describe(resp)}")


def read_creds(client: hvac.Client, out: Out) -> tuple[str, str]:
    began = time.perf_counter()
    secret = client.read(f"{MOUNT}/creds/{ROLE}")
    took = (time.perf_counter() - began) * 1000
    if not secret or "data" not in secret or not secret.get("lease_id"):
        raise DemoError(f"reading {MOUNT}/creds/{ROLE} returned no lease")
    data = secret["data"]
    lease_id: str = secret["lease_id"]
    out.say(
        f"OpenBao: lease {lease_id[: len(MOUNT) + len(ROLE) + 13]}… for {secret['lease_duration']} s "
        f"(renewable: {str(secret['renewable']).lower()}), answered in {took:.0f} ms"
    )
    extra = f", provider-side expiry {data['expires_at']} (a backstop)" if data.get("expires_at") else ""
    out.say(f"plugin: minted {data['provider']} key {data['key_name']!r} (id {data['key_id'][:12]}){extra}")
    out.say(f"app gets api_key {mask(data['api_key'])}")
    return lease_id, data["api_key"]


# --------------------------------------------------------------------------------------------------- the demo


@dataclass
class Started:
    """What this run started, stopped in reverse order by `cleanup`."""

    workdir: Path
    emulator: EmulatorProcess | None = None
    bao: BaoServer | None = None
    plugin_pids: set[int] = field(default_factory=set)


def run(provider_name: str, started: Started, out: Out) -> None:
    provider = PROVIDERS[provider_name]
    admin_key = provider.admin_key_prefix + "demo-" + secrets.token_urlsafe(24)
    emu, bao = start_stack(provider_name, admin_key, started, out)
    client = bao.client()

    out.step("Configuring a connection and a 30-second role")
    conn_fields: dict[str, Any] = {"provider": provider_name, "base_url": emu.base_url, **provider.connection}
    client.write(f"{MOUNT}/config/{provider_name}", admin_key=admin_key, **conn_fields)
    out.say(
        f"{MOUNT}/config/{provider_name}: provider={provider_name} base_url={emu.base_url} "
        f"admin_key={mask(admin_key)}"
    )
    out.say("  the plugin checked the admin key with a harmless provider call; it is write-only from now on")
    role_fields: dict[str, Any] = {
        "connection": provider_name,
        "ttl": f"{LEASE_TTL}s",
        "max_ttl": "2m",
        **provider.role,
    }
    client.write(f"{MOUNT}/roles/{ROLE}", **role_fields)
    out.say(f"{MOUNT}/roles/{ROLE}: " + " ".join(f"{k}={v}" for k, v in role_fields.items()))
    out.say(emu.ledger_text())

    out.step(f"An app reads {MOUNT}/creds/{ROLE} (hvac)")
    lease_id, api_key = read_creds(client, out)
    out.say(emu.ledger_text())
    expect_working(emu, api_key, provider.model, out)

    out.step("Revoking that lease (sys/leases/revoke)")
    began = time.perf_counter()
    client.sys.revoke_lease(lease_id)
    took = (time.perf_counter() - began) * 1000
    led = emu.ledger()
    if led["deleted"] < 1 or led["live"] != 0:
        raise DemoError(f"after the revoke the provider still has {led['live']} live key(s)")
    out.say(f"OpenBao revoked the lease; the plugin deleted the key at the provider ({took:.0f} ms)")
    out.say(emu.ledger_text())
    expect_rejected(emu, api_key, provider.model, out)

    out.step(f"A second key, left alone until its {LEASE_TTL}-second lease expires")
    lease_id, api_key = read_creds(client, out)
    expect_working(emu, api_key, provider.model, out)
    lease = client.sys.read_lease(lease_id)["data"]
    expire_at = parse_vault_time(lease["expire_time"])
    deleted_at = wait_for_expiry(emu, expire_at, out)
    out.say(
        f"OpenBao's expiration manager revoked the lease on time; the plugin deleted the key "
        f"{max(0.0, deleted_at - expire_at):.1f} s after the expire time"
    )
    out.say(emu.ledger_text())
    expect_rejected(emu, api_key, provider.model, out)


def start_stack(
    provider_name: str, admin_key: str, started: Started, out: Out
) -> tuple[EmulatorProcess, BaoServer]:
    """Steps 1-3: the emulator, OpenBao, the plugin built, registered and enabled."""
    provider = PROVIDERS[provider_name]
    work = started.workdir
    out.step(f"Starting a local {provider.title} emulator")
    emu = started.emulator = EmulatorProcess(provider_name, admin_key, work / "emulator.log")
    emu.start()
    assert emu.proc is not None
    out.say(f"{emu.base_url} (pid {emu.proc.pid}): {provider.serves}")
    out.say(f"its {provider.admin_key_name} {mask(admin_key)} was generated for this run")

    out.step("Starting OpenBao in dev mode (in memory, unsealed, loopback only)")
    bao = started.bao = BaoServer(work / "bao", work / "plugins", log_level="info")
    began = time.perf_counter()
    bao.start()
    assert bao.proc is not None
    out.say(f"{bao.addr} (pid {bao.proc.pid}), healthy after {time.perf_counter() - began:.1f} s")

    out.step("Building the plugin and registering it by sha256")
    plugin_path, sha256 = build_engine(work / "plugins")
    bao.register_plugin(ENGINE_NAME, plugin_path.name, sha256)
    size_mb = plugin_path.stat().st_size / 1e6
    out.say(
        f"{plugin_path.name}: one self-contained executable ({size_mb:.0f} MB: Python, the engine and its"
        " libraries), what scripts/build-plugin ships"
    )
    out.say(f"sha256 {sha256[:16]}…: OpenBao runs only a file with this digest")
    began = time.perf_counter()
    bao.enable(ENGINE_NAME, MOUNT)
    plug = plugin_process(bao, plugin_path)
    if plug is not None:
        started.plugin_pids.add(plug.pid)
    out.say(
        f"enabled at {MOUNT}/ in {time.perf_counter() - began:.1f} s; OpenBao started the plugin process"
        + (f" (pid {plug.pid}) and talks gRPC to it" if plug else "")
    )
    return emu, bao


def run_anthropic(started: Started, out: Out) -> None:
    """Anthropic cannot mint a key per lease: two keys made "in the console" form a check-out set."""
    provider = PROVIDERS["anthropic"]
    admin_key = provider.admin_key_prefix + "demo-" + secrets.token_urlsafe(24)
    emu, bao = start_stack("anthropic", admin_key, started, out)
    client = bao.client()

    out.step(f"Configuring a connection and a check-out set of two keys, {LEASE_TTL}-second leases")
    client.write(f"{MOUNT}/config/anthropic", provider="anthropic", base_url=emu.url, admin_key=admin_key)
    out.say(f"{MOUNT}/config/anthropic: provider=anthropic base_url={emu.url} admin_key={mask(admin_key)}")
    keys = dict(emu.add_console_key(f"{SET}-{i}") for i in (1, 2))
    out.say(
        f"an operator made two API keys in Anthropic's console: {', '.join(keys)} ({emu.statuses_text()})"
    )
    client.write(f"{MOUNT}/sets/{SET}", connection="anthropic", ttl=f"{LEASE_TTL}s", max_ttl="2m", keys=keys)
    out.say(f"{MOUNT}/sets/{SET}: connection=anthropic ttl={LEASE_TTL}s max_ttl=2m keys=<2 ids and values>")
    out.say("  the values are write-only; the engine switched both keys off: a key at rest is inactive")
    out.say(emu.statuses_text())
    if any(emu.key_status(key_id) != "inactive" for key_id in keys):
        raise DemoError("a key of the set is still active before any check-out")

    out.step(f"An app checks a key out: {MOUNT}/sets/{SET}/creds (hvac)")
    lease_id, key_id, api_key = check_out(client, out)
    out.say(emu.statuses_text())
    expect_message(emu, api_key, provider.model, out, works=True)

    out.step("Revoking that lease (sys/leases/revoke)")
    began = time.perf_counter()
    client.sys.revoke_lease(lease_id)
    took = (time.perf_counter() - began) * 1000
    if emu.key_status(key_id) != "inactive":
        raise DemoError(f"after the revoke key {key_id} is still {emu.key_status(key_id)}")
    out.say(f"OpenBao revoked the lease; the plugin switched key {key_id} off ({took:.0f} ms)")
    out.say(emu.statuses_text())
    expect_message(emu, api_key, provider.model, out, works=False)

    out.step(f"A second check-out, left alone until its {LEASE_TTL}-second lease expires")
    lease_id, second_id, api_key = check_out(client, out)
    if second_id == key_id:
        out.say(
            "  the same key as before: a set lends its keys again (rotate them in the console now and then)"
        )
    expect_message(emu, api_key, provider.model, out, works=True)
    lease = client.sys.read_lease(lease_id)["data"]
    expire_at = parse_vault_time(lease["expire_time"])
    off_at = wait_for_expiry(emu, expire_at, out, finished=lambda: emu.key_status(second_id) == "inactive")
    out.say(
        f"OpenBao's expiration manager revoked the lease on time; the plugin switched the key off "
        f"{max(0.0, off_at - expire_at):.1f} s after the expire time"
    )
    out.say(emu.statuses_text())
    expect_message(emu, api_key, provider.model, out, works=False)


def check_out(client: hvac.Client, out: Out) -> tuple[str, str, str]:
    began = time.perf_counter()
    secret = client.read(f"{MOUNT}/sets/{SET}/creds")
    took = (time.perf_counter() - began) * 1000
    if not secret or "data" not in secret or not secret.get("lease_id"):
        raise DemoError(f"reading {MOUNT}/sets/{SET}/creds returned no lease")
    data = secret["data"]
    lease_id: str = secret["lease_id"]
    out.say(
        f"OpenBao: lease {lease_id[: len(MOUNT) + len(SET) + 20]}… for {secret['lease_duration']} s "
        f"(renewable: {str(secret['renewable']).lower()}), answered in {took:.0f} ms"
    )
    out.say(
        f"plugin: lent key {data['key_id']} ({data['key_name']!r}) of set {data['set']!r} and switched it on"
    )
    out.say(f"app gets api_key {mask(data['api_key'])}")
    return lease_id, str(data["key_id"]), str(data["api_key"])


def expect_message(emu: EmulatorProcess, api_key: str, model: str, out: Out, *, works: bool) -> None:
    resp = emu.message(api_key, model)
    if works and resp.status_code != 200:
        raise DemoError(f"the lent key {mask(api_key)} did not work: {describe(resp)}")
    if not works and resp.status_code not in (401, 403):
        raise DemoError(f"the returned key {mask(api_key)} was not rejected: {describe(resp)}")
    out.ok(f"POST {emu.url}/v1/messages with {mask(api_key)}: {describe(resp)}")


def wait_for_expiry(
    emu: EmulatorProcess, expire_at: float, out: Out, finished: Callable[[], bool] | None = None
) -> float:
    """Show a countdown to the lease's expiry, then wait for the key to leave the provider (or `finished`);
    when it did."""
    width = 30
    last_line = 0.0
    deadline = expire_at + EXPIRY_SLACK
    while True:
        now = time.time()
        left = expire_at - now
        if left > 0:
            done = int(width * (1 - left / LEASE_TTL))
            bar = "#" * max(0, min(width, done)) + "." * max(0, width - done)
            out.progress(f"lease expires in {left:4.1f} s [{bar}]")
            if not out.tty and now - last_line >= 10:
                out.say(f"lease expires in {left:.0f} s …")
                last_line = now
            time.sleep(min(0.25, max(left, 0.01)))
            continue
        if finished() if finished is not None else emu.ledger()["live"] == 0:
            what = "key switched off" if finished is not None else "key deleted"
            out.progress(f"lease expired; {what} at the provider (+{now - expire_at:.1f} s)")
            out.end_progress()
            return now
        if now > deadline:
            out.end_progress()
            raise DemoError(
                f"the key was still live at the provider {EXPIRY_SLACK:.0f} s after its lease expired"
            )
        out.progress(f"lease expired {-left:.1f} s ago; waiting for OpenBao to revoke it …")
        time.sleep(0.1)


def cleanup(started: Started, out: Out, *, keep_workdir: bool) -> list[str]:
    """Stop everything by PID (plugin via its server, then the server, then the emulator); problems found."""
    problems: list[str] = []
    bao, emu = started.bao, started.emulator
    if bao is not None:
        if bao.proc is not None:
            plug = plugin_process(bao, bao.plugin_dir / ENGINE_NAME)
            if plug is not None:
                started.plugin_pids.add(plug.pid)
        began = time.perf_counter()
        try:
            bao.stop()
        except Exception as exc:
            problems.append(f"stopping OpenBao: {exc}")
        out.say(f"OpenBao stopped ({time.perf_counter() - began:.1f} s; it stops the plugin process first)")
    for pid in sorted(started.plugin_pids):
        with contextlib.suppress(psutil.NoSuchProcess):
            proc = psutil.Process(pid)
            if proc.status() != psutil.STATUS_ZOMBIE and ENGINE_NAME in " ".join(proc.cmdline()):
                proc.kill()
                problems.append(f"the plugin process {pid} outlived OpenBao; killed it")
    if emu is not None:
        try:
            emu.stop()
            out.say("emulator stopped")
        except Exception as exc:
            problems.append(f"stopping the emulator: {exc}")
    if keep_workdir:
        out.say(f"logs kept in {started.workdir} (bao/bao.log, emulator.log)")
    else:
        shutil.rmtree(started.workdir, ignore_errors=True)
    return problems


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    """While cleaning up, a second Ctrl-C must not leave processes behind."""
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--provider", choices=sorted(PROVIDERS), default="openrouter", help="the provider to emulate"
    )
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep the work directory (logs) even on success"
    )
    args = parser.parse_args()
    with contextlib.suppress(AttributeError, ValueError):
        sys.stdout.reconfigure(errors="replace")  # type: ignore[union-attr]
    signal.signal(signal.SIGTERM, _raise_interrupt)

    out = Out(total_steps=8)
    title = PROVIDERS[args.provider].title
    print(f"vault-plugin-secrets-llm demo: short-lived {title} keys under OpenBao leases")
    began = time.monotonic()
    started = Started(Path(tempfile.mkdtemp(prefix="llm-demo-")))
    failure: str | None = None
    code = 0
    try:
        if args.provider == "anthropic":
            run_anthropic(started, out)
        else:
            run(args.provider, started, out)
    except KeyboardInterrupt:
        failure, code = "interrupted", 130
    except DemoError as exc:
        failure, code = str(exc), 1
    except hvac.exceptions.VaultError as exc:
        reasons = "; ".join(" ".join(str(e).split()) for e in (exc.errors or [exc]))
        failure, code = f"OpenBao refused a request ({type(exc).__name__}): {reasons}", 1
    except httpx.HTTPError as exc:
        failure, code = f"an HTTP call failed: {type(exc).__name__}: {exc}", 1
    except Exception as exc:
        failure, code = f"{type(exc).__name__}: {exc}", 1
    finally:
        failed_step = out.n
        with signals_ignored():
            out.end_progress()
            out.n = out.total - 1
            out.step("Cleaning up everything this demo started")
            problems = cleanup(started, out, keep_workdir=code == 1 or args.keep_logs)
    for problem in problems:
        print(f"      ! {problem}", file=sys.stderr)
    if code == 130:
        print(f"\ndemo interrupted at step {failed_step}; everything it started was stopped", file=sys.stderr)
        return code
    if failure is not None:
        print(f"\ndemo FAILED at step {failed_step}: {failure}", file=sys.stderr)
        return code
    if problems:
        return 1
    took = time.monotonic() - began
    if args.provider == "anthropic":
        print(f"\nDone in {took:.0f} s: two check-outs, one revoked, one expired, no key left active.")
    else:
        print(f"\nDone in {took:.0f} s: two keys issued, one revoked, one expired, none left live.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
