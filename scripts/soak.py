"""See scripts/soak. Figures are printed as JSON lines ({"figure", "value", "unit", ...}), then one line per
check and a final "soak: PASS" or "soak: FAIL: ..." line; the exit status is 1 on FAIL.

The soak: the one-file plugin on a real OpenBao dev server, a provider emulator on loopback (in this
process, so its ledger is read directly), and client processes that each loop
    read llm/creds/<role> -> (every Nth cycle) use the key for a chat completion -> PUT sys/leases/revoke
    -> (when used) check the key no longer works,
while the emulator fails a steady share of admin calls: 429 (with Retry-After), 500, and creates whose
connection drops after the provider made the key (the creds read then fails with a 502 and the key is
the WAL rollback's to delete). Loops stop by themselves at their cycle count or the wall-clock cap.

After the load: the deletion queue must drain, no lease may be left (irrevocable or not), then the
pending creates' WAL entries are settled by Vault's rollback (`sys/remount` runs it at once, keeping the
plugin process), `llm/tidy` runs, and the provider must hold no key. The plugin's RSS (bootloader + Python
child) after a warm-up is compared with its RSS after the load; its PIDs must not change (no restart).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from devkit.bao import BaoServer, kill_leftovers, process_tree
from devkit.build import ENGINE_NAME, build_engine
from llm_emulators import EMULATORS, Emulator
from llm_emulators.core import Fault, FaultKind, Op

MOUNT = "llm"
SETTLED_MOUNT = "llm-settled"  # where sys/remount moves the mount at the end (its rollback runs at once)
ROLE = CONNECTION = "soak"
ROLE_FIELDS: dict[str, dict[str, Any]] = {
    "openrouter": {},
    "openai": {"project_id": "proj_default"},
    "litellm": {},
}
CHAT_PATHS = {
    "openrouter": "/api/v1/chat/completions",
    "openai": "/v1/chat/completions",
    "litellm": "/chat/completions",
}
CHAT_BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "soak"}]}
# A client retries a failed revoke this many times, 1, 2, 4, 8 s apart: by then the plugin's deletion queue
# (which retries 1, 2, 4, 8 s after a failure) has deleted the key, and the revoke succeeds without a call.
REVOKE_TRIES = 5
RSS_GROWTH_LIMIT_PCT = 10.0
FULL_RUN: dict[str, float] = {"cycles": 20_000, "fault_rate": 0.01, "wal_min_age": 45.0}
# Admin operations other than create: each gets 429 and 500 at half the fault rate.
OTHER_OPS: tuple[Op, ...] = ("delete", "list", "get", "update")


def emit(figure: str, value: float, unit: str, **extra: object) -> None:
    print(json.dumps({"figure": figure, "value": round(value, 3), "unit": unit, **extra}), flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else 0.0


# ---------------------------------------------------------------------------------------------------- faults


def fault_plan(rate: float) -> list[Fault]:
    """Every admin call meets a fault with probability about `rate`: a create a 429, a 500 or a dropped
    connection after the key was made (a third each); any other call a 429 or a 500 (half each). The kinds
    are scoped to disjoint ops so that no call is offered two faults of one kind."""
    plan = [
        Fault(FaultKind.RATE_LIMIT, op="create", times=None, rate=rate / 3, retry_after=1.0),
        Fault(FaultKind.SERVER_ERROR, op="create", times=None, rate=rate / 3, status=500),
        Fault(FaultKind.DROP_AFTER_CREATE, op="create", times=None, rate=rate / 3),
    ]
    for op in OTHER_OPS:
        plan.append(Fault(FaultKind.RATE_LIMIT, op=op, times=None, rate=rate / 2, retry_after=1.0))
        plan.append(Fault(FaultKind.SERVER_ERROR, op=op, times=None, rate=rate / 2, status=500))
    return plan


def admin_call_counter() -> Fault:
    """A zero-second latency on every admin call: it changes nothing, and its `hits` count the calls."""
    return Fault(FaultKind.LATENCY, op="all", times=None, seconds=0.0)


# --------------------------------------------------------------------------------------------------- clients
# Each runs in a pool process and returns what it saw; they share nothing but the server.


@dataclass(frozen=True)
class Task:
    addr: str
    chat_url: str
    cycles: int
    stop_at: float  # unix time: the wall-clock cap
    use_every: int  # 0: never use the key


@dataclass
class Outcome:
    cycles: int = 0
    issued: int = 0
    issue_failed: Counter[str] = field(default_factory=Counter)  # by HTTP status (or "transport")
    reasons_502: Counter[str] = field(default_factory=Counter)  # the 502s' messages, names and numbers masked
    revoked: int = 0
    revoke_retries: int = 0
    not_revoked: list[str] = field(default_factory=list)  # lease ids every try failed for
    used: int = 0
    use_failed: int = 0
    alive_after_revoke: int = 0
    issue_seconds: list[float] = field(default_factory=list)
    revoke_seconds: list[float] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)  # the first few unexpected answers

    def note(self, message: str) -> None:
        if len(self.messages) < 5:
            self.messages.append(message[:300])

    def merge(self, other: Outcome) -> None:
        self.cycles += other.cycles
        self.issued += other.issued
        self.issue_failed.update(other.issue_failed)
        self.reasons_502.update(other.reasons_502)
        self.revoked += other.revoked
        self.revoke_retries += other.revoke_retries
        self.not_revoked += other.not_revoked
        self.used += other.used
        self.use_failed += other.use_failed
        self.alive_after_revoke += other.alive_after_revoke
        self.issue_seconds += other.issue_seconds
        self.revoke_seconds += other.revoke_seconds
        for message in other.messages:
            self.note(message)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle


def cycle_worker(task: Task) -> Outcome:
    out = Outcome()
    vault = httpx.Client(base_url=task.addr, headers={"X-Vault-Token": "root"}, timeout=60)
    provider = httpx.Client(timeout=30)
    with vault, provider:
        while out.cycles < task.cycles and time.time() < task.stop_at:
            out.cycles += 1
            began = time.perf_counter()
            try:
                resp = vault.get(f"/v1/{MOUNT}/creds/{ROLE}")
            except httpx.HTTPError as exc:
                out.issue_failed["transport"] += 1
                out.note(f"creds: {exc!r}")
                continue
            if resp.status_code != 200:
                out.issue_failed[str(resp.status_code)] += 1
                if resp.status_code == 502:
                    out.reasons_502[reason_of(resp)] += 1
                else:
                    out.note(f"creds: HTTP {resp.status_code}: {resp.text}")
                continue
            out.issue_seconds.append(time.perf_counter() - began)
            out.issued += 1
            body = resp.json()
            lease_id, api_key = body["lease_id"], body["data"]["api_key"]
            use = task.use_every > 0 and out.issued % task.use_every == 0
            if use:
                out.used += 1
                status = _chat(provider, task.chat_url, api_key)
                if status != 200:
                    out.use_failed += 1
                    out.note(f"a fresh key did not work: chat answered {status}")
            if not _revoke(vault, lease_id, out):
                out.not_revoked.append(lease_id)
                continue
            if use and (status := _chat(provider, task.chat_url, api_key)) != 401:
                out.alive_after_revoke += 1
                out.note(f"a revoked key still answers {status}")
    return out


def reason_of(resp: httpx.Response) -> str:
    """A 502's message with what varies (key names, counts, times) masked, so equal causes count together."""
    try:
        text = " ".join(str(e) for e in resp.json().get("errors", []))
    except ValueError:
        text = resp.text
    text = re.sub(r"vault-[0-9a-f]{8}-\S+", "<key>", " ".join(text.split()))
    return re.sub(r"\d+(\.\d+)?", "N", text)[:240]


def _chat(client: httpx.Client, url: str, api_key: str) -> int | str:
    try:
        return client.post(url, headers={"Authorization": f"Bearer {api_key}"}, json=CHAT_BODY).status_code
    except httpx.HTTPError as exc:
        return repr(exc)


def _revoke(client: httpx.Client, lease_id: str, out: Outcome) -> bool:
    for attempt in range(REVOKE_TRIES):
        if attempt:
            out.revoke_retries += 1
            time.sleep(2.0 ** (attempt - 1))
        began = time.perf_counter()
        try:
            resp = client.put("/v1/sys/leases/revoke", json={"lease_id": lease_id})
        except httpx.HTTPError as exc:
            out.note(f"revoke: {exc!r}")
            continue
        if resp.is_success:
            out.revoke_seconds.append(time.perf_counter() - began)
            out.revoked += 1
            return True
        out.note(f"revoke: HTTP {resp.status_code}: {resp.text}")
    return False


# ------------------------------------------------------------------------------------------------ measuring


def rss_mb(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            total += psutil.Process(pid).memory_info().rss / 1e6
    return total


def thread_count(pids: list[int]) -> int:
    """Threads of the plugin: its calls pool grows under load and shrinks when idle (stacks count in RSS)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            total += psutil.Process(pid).num_threads()
    return total


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            total += sum(psutil.Process(pid).cpu_times()[:2])
    return total


class RssSampler:
    """Samples the plugin's RSS every second in a thread, for the peak and the trend."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self.samples.append(rss_mb(self.pids))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


# --------------------------------------------------------------------------------------------------- checks


@dataclass
class Checks:
    results: list[tuple[str, bool, str]] = field(default_factory=list)

    def check(self, name: str, ok: bool, detail: object) -> None:
        self.results.append((name, ok, str(detail)))
        print(json.dumps({"check": name, "ok": ok, "detail": str(detail)}), flush=True)

    @property
    def failed(self) -> list[str]:
        return [name for name, ok, _ in self.results if not ok]


class Vault:
    """Raw calls to the server's HTTP API as root: (status, JSON body)."""

    def __init__(self, addr: str) -> None:
        self._http = httpx.Client(base_url=f"{addr}/v1/", headers={"X-Vault-Token": "root"}, timeout=120)

    def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        resp = self._http.request(method, path, **kwargs)
        return resp.status_code, (resp.json() if resp.content else {})

    def ok(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        status, body = self.call(method, path, **kwargs)
        if status not in (200, 204):
            raise RuntimeError(f"{method} {path}: HTTP {status}: {body}")
        return body

    def leases_under(self, prefix: str) -> list[str]:
        status, body = self.call("LIST", f"sys/leases/lookup/{prefix}")
        return [] if status == 404 else list(body["data"]["keys"])

    def irrevocable(self) -> int:
        return int(self.ok("GET", "sys/leases", params={"type": "irrevocable"})["data"]["lease_count"])

    def pending_deletions(self, mount: str) -> int:
        status, body = self.call("LIST", f"{mount}/deletions")
        if status == 404:
            return 0
        info = body["data"].get("key_info") or {}
        return sum(1 for entry in info.values() if entry.get("state") != "deleted")


# --------------------------------------------------------------------------------------------------- the run


@dataclass
class Soak:
    args: argparse.Namespace
    vault: Vault
    emu: Emulator
    pool: ProcessPoolExecutor
    addr: str
    chat_url: str

    def load(self, cycles: int, stop_at: float) -> tuple[Outcome, float]:
        """`cycles` cycles over the clients; (what they saw, seconds it took)."""
        n = self.args.clients
        shares = [cycles // n + (1 if i < cycles % n else 0) for i in range(n)]
        tasks = [Task(self.addr, self.chat_url, k, stop_at, self.args.use_every) for k in shares if k]
        began = time.perf_counter()
        total = Outcome()
        for part in self.pool.map(cycle_worker, tasks):
            total.merge(part)
        return total, time.perf_counter() - began


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, help="issue-and-revoke cycles in all (default 20000)")
    parser.add_argument(
        "--warmup",
        type=int,
        help="of them, cycles before the RSS baseline (default: 1000, at most a quarter)",
    )
    parser.add_argument("--clients", type=int, default=8, help="client processes")
    parser.add_argument("--fault-rate", type=float, help="share of admin calls that fail (default 0.01)")
    parser.add_argument("--use-every", type=int, default=5, help="use every Nth key, before and after revoke")
    parser.add_argument("--provider", choices=sorted(ROLE_FIELDS), default="openrouter")
    parser.add_argument("--max-seconds", type=float, default=3600, help="wall-clock cap of the load")
    parser.add_argument(
        "--wal-min-age",
        type=float,
        help="seconds before a pending create's WAL entry may be rolled back (default 45: above the 30 s "
        "provider-call budget, so no create in flight is rolled back; production: 600)",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the fault draws (repeatable counts)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run (~20 s): defaults of 400 cycles, a 5 %% fault rate and a WAL min age of 5 s",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (server log) on PASS")
    parser.add_argument(
        "--plant-orphan",
        action="store_true",
        help="self-check of the checks: plant a key at the provider that no lease owns; the run must FAIL",
    )
    args = parser.parse_args()
    defaults = {"cycles": 400, "fault_rate": 0.05, "wal_min_age": 5.0} if args.quick else FULL_RUN
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.warmup is None:
        args.warmup = min(1000, args.cycles // 4)
    if not 0 < args.warmup < args.cycles:
        parser.error("--warmup must be between 0 and --cycles")
    if not 0 <= args.fault_rate <= 0.5:
        parser.error("--fault-rate must be in [0, 0.5]")
    return args


def main() -> int:
    args = parse_args()
    admin_key = f"adm-soak-{secrets.token_hex(16)}"
    emu = EMULATORS[args.provider](admin_key)
    if args.seed is not None:
        emu.faults.seed(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    plugin_pids: list[int] = []
    passed = False
    bao = BaoServer(workdir / "bao", workdir / "plugins", log_level="info")
    try:
        with (
            emu.serve() as emu_server,
            ProcessPoolExecutor(max_workers=args.clients, initializer=_ignore_sigint) as pool,
        ):
            plugin_path, sha256 = build_engine(workdir / "plugins")
            bao.start()
            env = [f"LLMSECRETS_WAL_MIN_AGE_SECONDS={args.wal_min_age:g}"]
            bao.register_plugin(ENGINE_NAME, plugin_path.name, sha256, env=env)
            bao.enable(ENGINE_NAME, MOUNT)
            [boot] = bao.plugin_processes(plugin_path)
            plugin_pids = [p.pid for p in process_tree(boot.pid)]
            vault = Vault(bao.addr)
            vault.ok(
                "POST",
                f"{MOUNT}/config/{CONNECTION}",
                json={"provider": args.provider, "admin_key": admin_key, "base_url": emu_server.base_url},
            )
            role = {"connection": CONNECTION, "ttl": "10m", "max_ttl": "1h", **ROLE_FIELDS[args.provider]}
            vault.ok("POST", f"{MOUNT}/roles/{ROLE}", json=role)
            # The periodic sweep off: the revoke path, the deletion queue and the WAL rollback must leave
            # nothing behind by themselves; the final tidy is then an orphan detector.
            vault.ok("POST", f"{MOUNT}/tidy/config", json={"interval": "0"})

            if args.plant_orphan:
                emu.seed_key("vault-planted-orphan")
            counter = admin_call_counter()
            faults = fault_plan(args.fault_rate) if args.fault_rate > 0 else []
            emu.faults.extend([counter, *faults])
            soak = Soak(args, vault, emu, pool, bao.addr, emu_server.url + CHAT_PATHS[args.provider])
            checks = run(soak, plugin_pids, plugin_path, bao)
            emu.faults.clear()

            for fault in faults:
                emit("faults_injected", fault.hits, "calls", kind=fault.kind.value, op=fault.op)
            emit(
                "faults_injected_total",
                sum(f.hits for f in faults),
                "calls",
                admin_calls=counter.hits,
                share_pct=round(100 * sum(f.hits for f in faults) / max(1, counter.hits), 3),
            )
        passed = not checks.failed
        print("soak: PASS" if passed else f"soak: FAIL: {', '.join(checks.failed)}", flush=True)
    finally:
        bao.stop()
        survivors = kill_leftovers(plugin_pids, timeout=10)
        if survivors:
            print(f"soak: killed plugin processes {survivors}, which outlived the server", file=sys.stderr)
        if passed and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"soak: work directory kept: {workdir} (server log: bao/bao.log)", file=sys.stderr)
    return 0 if passed else 1


def run(soak: Soak, plugin_pids: list[int], plugin_path: Path, bao: BaoServer) -> Checks:
    args, vault, emu = soak.args, soak.vault, soak.emu
    checks = Checks()
    stop_at = time.time() + args.max_seconds

    warm, _ = soak.load(args.warmup, stop_at)
    time.sleep(2)  # let the calls pool's idle threads settle before the baseline
    rss_start, threads_start = rss_mb(plugin_pids), thread_count(plugin_pids)
    cpu_start = cpu_seconds(plugin_pids)
    with RssSampler(plugin_pids) as sampler:
        main, seconds = soak.load(args.cycles - args.warmup, stop_at)
    plugin_cpu = cpu_seconds(plugin_pids) - cpu_start
    load_ended = time.monotonic()
    time.sleep(2)
    rss_end, threads_end = rss_mb(plugin_pids), thread_count(plugin_pids)
    total = Outcome()
    total.merge(warm)
    total.merge(main)

    common = {"clients": args.clients, "provider": args.provider, "fault_rate": args.fault_rate}
    emit("cycles", total.cycles, "cycles", requested=args.cycles, **common)
    emit("cycles_per_s", main.cycles / seconds, "cycles/s", cycles=main.cycles, seconds=round(seconds, 1))
    emit("issue_p50", percentile(main.issue_seconds, 0.5) * 1000, "ms", issued=main.issued)
    emit("issue_p99", percentile(main.issue_seconds, 0.99) * 1000, "ms", issued=main.issued)
    emit("revoke_p50", percentile(main.revoke_seconds, 0.5) * 1000, "ms", revoked=main.revoked)
    emit("revoke_p99", percentile(main.revoke_seconds, 0.99) * 1000, "ms", revoked=main.revoked)
    emit("plugin_cpu_per_cycle", plugin_cpu / max(1, main.cycles) * 1000, "ms")
    emit("issued", total.issued, "leases")
    for status, count in sorted(total.issue_failed.items()):
        emit("issue_failed", count, "reads", status=status)
    for reason, count in total.reasons_502.most_common():
        emit("issue_502_reason", count, "reads", reason=reason)
    emit("revoked", total.revoked, "leases", client_retries=total.revoke_retries)
    emit(
        "keys_used", total.used, "keys", failed=total.use_failed, alive_after_revoke=total.alive_after_revoke
    )
    growth = 100 * (rss_end - rss_start) / rss_start
    peak = max(sampler.samples, default=rss_end)
    emit("plugin_rss_start", rss_start, "MB", after_cycles=warm.cycles, threads=threads_start)
    emit(
        "plugin_rss_end",
        rss_end,
        "MB",
        peak_mb=round(peak, 1),
        growth_pct=round(growth, 2),
        threads=threads_end,
    )
    if sampler.samples:  # a leak grows steadily; a warm-up step does not
        n = len(sampler.samples)
        trend = [round(sampler.samples[min(n - 1, n * q // 4)], 1) for q in range(5)]
        emit("plugin_rss_trend", trend[-1] - trend[0], "MB", samples_mb=trend, sample_every_s=1)

    checks.check("all cycles ran", total.cycles == args.cycles, f"{total.cycles} of {args.cycles}")
    failed_not_502 = {s: n for s, n in total.issue_failed.items() if s != "502"}
    checks.check(
        "creds failed only with 502 (a provider fault)", not failed_not_502, failed_not_502 or "none"
    )
    checks.check("every issued lease revoked", not total.not_revoked, total.not_revoked[:5] or "all")
    checks.check("keys worked while leased", total.use_failed == 0, f"{total.use_failed} of {total.used}")
    checks.check("no key worked after its revoke", total.alive_after_revoke == 0, total.alive_after_revoke)
    for message in total.messages:
        print(json.dumps({"note": message}), flush=True)

    # Settle: the deletion queue drains, no lease is left, then Vault's rollback settles the dropped creates.
    drained = wait_until(lambda: vault.pending_deletions(MOUNT) == 0, 120)
    checks.check("deletion queue drained", drained, f"{vault.pending_deletions(MOUNT)} pending")
    leases_left = vault.leases_under(f"{MOUNT}/")
    checks.check("no lease left under the mount", not leases_left, leases_left[:5] or "none")
    irrevocable = vault.irrevocable()
    checks.check("no irrevocable lease", irrevocable == 0, irrevocable)
    unsettled = len(emu.live_keys())  # keys of dropped creates whose WAL entry the rollback has not reached
    time.sleep(max(0.0, args.wal_min_age + 1 - (time.monotonic() - load_ended)))
    idle = time.monotonic() - load_ended
    emit(
        "plugin_rss_idle", rss_mb(plugin_pids), "MB", idle_s=round(idle, 1), threads=thread_count(plugin_pids)
    )
    began = time.monotonic()
    moved = vault.ok("POST", "sys/remount", json={"from": MOUNT, "to": SETTLED_MOUNT})["data"]["migration_id"]

    def migration() -> str:
        return str(vault.ok("GET", f"sys/remount/status/{moved}")["data"]["migration_info"]["status"])

    wait_until(lambda: migration() != "in-progress", 60)
    settled = migration() == "success"
    emit("rollback_at_end", time.monotonic() - began, "s", unsettled_before=unsettled, settled=settled)
    tidy = vault.ok("POST", f"{SETTLED_MOUNT}/tidy")["data"]
    emit(
        "tidy",
        tidy["orphans_deleted_count"] + tidy["expired_deleted_count"],
        "keys deleted",
        orphans_too_young=tidy["orphans_too_young"],
        failures=tidy["failure_count"],
        deletions_pending=tidy["deletions_pending"],
    )
    live = emu.live_keys()
    emit("provider_keys_left", len(live), "keys", created=emu.create_count, deleted=emu.delete_count)

    checks.check("no key left at the provider (0 orphans)", not live, [k.name for k in live[:5]] or "none")
    found = tidy["orphans_deleted_count"] + tidy["expired_deleted_count"] + tidy["orphans_too_young"]
    checks.check("the final tidy found nothing to delete", found == 0 and tidy["failure_count"] == 0, tidy)
    accounted = emu.create_count - total.issued
    checks.check(
        "every created key was issued or its create failed",
        0 <= accounted <= total.issue_failed.get("502", 0),
        f"created {emu.create_count}, issued {total.issued}, 502s {total.issue_failed.get('502', 0)}",
    )
    checks.check(
        f"plugin RSS growth <= {RSS_GROWTH_LIMIT_PCT:g} %",
        growth <= RSS_GROWTH_LIMIT_PCT,
        f"{rss_start:.1f} -> {rss_end:.1f} MB ({growth:+.1f} %)",
    )
    now = [p.pid for boot in bao.plugin_processes(plugin_path) for p in process_tree(boot.pid)]
    checks.check("the plugin never restarted", now == plugin_pids, f"PIDs {plugin_pids} -> {now}")
    return checks


if __name__ == "__main__":
    sys.exit(main())
