"""See scripts/bench. Figures are printed as JSON lines: {"figure", "value", "unit", ...}.

Load comes from separate client processes (httpx with keep-alive, X-Vault-Token), as in bench_protocol.py.
The emulator runs in this process (its ledger is read directly); its admin-API latency is a fault knob.
CPU figures are deltas of psutil cpu_times (user + system) over a phase, divided by the operations done.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import re
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
from devkit.bao import BaoServer, process_tree
from devkit.build import ENGINE_NAME, build_engine
from llm_emulators import EMULATORS, Emulator

MOUNT = "llm"
ROLE_FIELDS: dict[str, dict[str, Any]] = {
    "openrouter": {},
    "openai": {"project_id": "proj_default"},
    "litellm": {},
}
ADMIN_KEY_PREFIX = {"openrouter": "sk-or-v1-", "openai": "sk-admin-", "litellm": "sk-"}


def emit(figure: str, value: float, unit: str, **extra: object) -> None:
    print(json.dumps({"figure": figure, "value": round(value, 3), "unit": unit, **extra}), flush=True)


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * q))]


# --------------------------------------------------------------------------------------------------- clients
# Each runs in a pool process. They return what they measured and the CPU they used themselves.


@dataclass
class ClientResult:
    latencies: list[float]
    lease_ids: list[str]
    cpu: float
    errors: int = 0
    first_error: str = ""


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle


def _client(addr: str) -> httpx.Client:
    return httpx.Client(base_url=addr, headers={"X-Vault-Token": "root"}, timeout=60)


def warm(addr: str) -> int:
    with _client(addr) as client:
        client.get("/v1/sys/health").raise_for_status()
    return 0


def read_worker(args: tuple[str, str, float, int]) -> ClientResult:
    """GET `path` until `seconds` have passed or `count` leases were issued (0 = no count limit)."""
    addr, path, seconds, count = args
    cpu0 = time.process_time()
    out = ClientResult([], [], 0.0)
    with _client(addr) as client:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end and (count == 0 or len(out.lease_ids) < count):
            start = time.perf_counter()
            resp = client.get(path)
            if resp.status_code != 200:
                out.errors += 1
                out.first_error = out.first_error or f"HTTP {resp.status_code}: {resp.text[:200]}"
                if out.errors > 20:
                    break
                continue
            out.latencies.append(time.perf_counter() - start)
            out.lease_ids.append(resp.json()["lease_id"])
    out.cpu = time.process_time() - cpu0
    return out


def lease_worker(args: tuple[str, str, list[str], float | None]) -> ClientResult:
    """PUT sys/leases/<op> for each lease: op "revoke", "lookup" (returns expire times as text) or "renew".

    For renew, `target` is the unix time every lease should end at: increment = ceil(target - now).
    """
    addr, op, lease_ids, target = args
    cpu0 = time.process_time()
    out = ClientResult([], [], 0.0)
    with _client(addr) as client:
        for lease_id in lease_ids:
            body: dict[str, Any] = {"lease_id": lease_id}
            if op == "renew" and target is not None:
                body["increment"] = max(1, math.ceil(target - time.time()))
            start = time.perf_counter()
            resp = client.put(f"/v1/sys/leases/{op}", json=body)
            if not resp.is_success:
                out.errors += 1
                out.first_error = out.first_error or f"HTTP {resp.status_code}: {resp.text[:200]}"
                continue
            out.latencies.append(time.perf_counter() - start)
            if op == "lookup":
                out.lease_ids.append(resp.json()["data"]["expire_time"])
    out.cpu = time.process_time() - cpu0
    return out


def split(items: list[str], parts: int) -> list[list[str]]:
    return [items[i::parts] for i in range(parts) if items[i::parts]]


# ------------------------------------------------------------------------------------------------ measuring


class Meter:
    """CPU of the plugin (all its processes), the server and this process (the emulator's threads), and host
    busy time."""

    def __init__(self, plugin: list[psutil.Process], server: psutil.Process) -> None:
        self.plugin, self.server, self.me = plugin, server, psutil.Process()

    def snapshot(self) -> tuple[float, float, float, float, float]:
        host = psutil.cpu_times()
        busy = host.user + host.system + host.nice + getattr(host, "softirq", 0.0) + getattr(host, "irq", 0.0)
        return (
            sum(sum(p.cpu_times()[:2]) for p in self.plugin),
            sum(self.server.cpu_times()[:2]),
            sum(self.me.cpu_times()[:2]),
            busy,
            time.perf_counter(),
        )

    @contextlib.contextmanager
    def phase(self) -> Iterator[dict[str, float]]:
        result: dict[str, float] = {}
        before = self.snapshot()
        yield result
        after = self.snapshot()
        plugin, server, emulator, busy, wall = (a - b for a, b in zip(after, before, strict=True))
        result.update(
            plugin=plugin,
            server=server,
            emulator=emulator,
            host_busy_pct=100 * busy / (wall * (psutil.cpu_count() or 1)),
            wall=wall,
        )


def rss_mb(processes: list[psutil.Process]) -> tuple[float, float]:
    """(current RSS, peak RSS) in MB summed over `processes`; the peak from /proc (VmHWM) where available."""
    current = peak = 0.0
    for proc in processes:
        rss = proc.memory_info().rss / 1e6
        current += rss
        hwm = rss
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    hwm = int(line.split()[1]) * 1024 / 1e6
        peak += hwm
    return current, peak


def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.02) -> float:
    """Poll until `condition()`; return the perf_counter time it first held."""
    deadline = time.perf_counter() + timeout
    while True:
        if condition():
            return time.perf_counter()
        if time.perf_counter() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def live(emu: Emulator) -> int:
    """Keys the provider still holds (creates minus deletes: no ledger copy, no lock)."""
    return emu.create_count - emu.delete_count


def check(results: list[ClientResult], what: str) -> None:
    errors = sum(r.errors for r in results)
    if errors:
        first = next(r.first_error for r in results if r.errors)
        raise RuntimeError(f"{what}: {errors} failed request(s), first: {first}")


# --------------------------------------------------------------------------------------------------- phases


@dataclass
class Bench:
    args: argparse.Namespace
    addr: str
    emu: Emulator
    pool: ProcessPoolExecutor
    meter: Meter

    def reads(self, clients: int, latency_ms: int) -> list[str]:
        path = f"/v1/{MOUNT}/creds/bench"
        with self.meter.phase() as cpu:
            runs = list(self.pool.map(read_worker, [(self.addr, path, self.args.seconds, 0)] * clients))
        check(runs, f"creds reads at {clients} clients")
        lat = sorted(x for r in runs for x in r.latencies)
        n = len(lat)
        common: dict[str, object] = {"clients": clients, "provider_latency_ms": latency_ms, "requests": n}
        emit("creds_read_per_s", n / cpu["wall"], "req/s", **common)
        emit("creds_read_p50", percentile(lat, 0.5) * 1000, "ms", **common)
        emit("creds_read_p99", percentile(lat, 0.99) * 1000, "ms", **common)
        emit(
            "plugin_cpu_per_issue",
            cpu["plugin"] / n * 1000,
            "ms",
            bao_cpu_ms=round(cpu["server"] / n * 1000, 3),
            emulator_cpu_ms=round(cpu["emulator"] / n * 1000, 3),
            client_cpu_ms=round(sum(r.cpu for r in runs) / n * 1000, 3),
            host_cpu_busy_pct=round(cpu["host_busy_pct"], 1),
            **common,
        )
        return [lease for r in runs for lease in r.lease_ids]

    def revoke(self, lease_ids: list[str], clients: int, latency_ms: int) -> None:
        """Revoke with `clients` concurrent sys/leases/revoke callers; done when the provider holds no key."""
        with self.meter.phase() as cpu:
            began = time.perf_counter()
            runs = list(
                self.pool.map(
                    lease_worker, [(self.addr, "revoke", p, None) for p in split(lease_ids, clients)]
                )
            )
            done = wait_until(lambda: live(self.emu) == 0, 60, "revoked keys to leave the emulator")
        check(runs, "revokes")
        lat = sorted(x for r in runs for x in r.latencies)
        n = len(lease_ids)
        common: dict[str, object] = {"clients": clients, "provider_latency_ms": latency_ms, "leases": n}
        emit("revoke_per_s", n / (done - began), "leases/s", **common)
        emit("revoke_p50", percentile(lat, 0.5) * 1000, "ms", **common)
        emit("revoke_p99", percentile(lat, 0.99) * 1000, "ms", **common)
        emit(
            "plugin_cpu_per_revoke",
            cpu["plugin"] / n * 1000,
            "ms",
            bao_cpu_ms=round(cpu["server"] / n * 1000, 3),
            host_cpu_busy_pct=round(cpu["host_busy_pct"], 1),
            **common,
        )

    def expiry(self, count: int, clients: int, latency_ms: int) -> None:
        """Issue `count` leases, renew them all to end at one instant, then time their keys' deletion."""
        path = f"/v1/{MOUNT}/creds/expire"
        per = [count // clients + (1 if i < count % clients else 0) for i in range(clients)]
        began = time.perf_counter()
        runs = list(self.pool.map(read_worker, [(self.addr, path, 600.0, k) for k in per if k]))
        check(runs, "issuing the expiry batch")
        lease_ids = [lease for r in runs for lease in r.lease_ids]
        issued_in = time.perf_counter() - began
        # Renew every lease to end at `target`: each increment is ceil(target - now), so all end in [target,
        # target + 1 s) however long the renewals take (the renew window must end before target).
        renew_window = max(5.0, issued_in * 1.5)
        target = time.time() + renew_window + self.args.expire_after
        runs = list(
            self.pool.map(lease_worker, [(self.addr, "renew", p, target) for p in split(lease_ids, clients)])
        )
        check(runs, "renewing the expiry batch")
        runs = list(
            self.pool.map(lease_worker, [(self.addr, "lookup", p, None) for p in split(lease_ids, clients)])
        )
        check(runs, "looking up the expiry batch")
        expires = sorted(_vault_time(t) for r in runs for t in r.lease_ids)
        first, last = expires[0], expires[-1]
        if time.time() > first - 1:
            raise RuntimeError("renewing took longer than planned; raise --expire-after")
        if latency_ms:
            self.emu.faults.latency(latency_ms / 1000, op="delete")
        with self.meter.phase() as cpu:
            wait_until(lambda: time.time() >= first - 0.5, 120, "the leases' expiry", interval=0.05)
            started = wait_until(
                lambda: live(self.emu) < count, 120, "the first expiry revoke", interval=0.005
            )
            started_unix = time.time() - (time.perf_counter() - started)
            done = wait_until(lambda: live(self.emu) == 0, 300, "all expired keys to leave the emulator")
            done_unix = time.time() - (time.perf_counter() - done)
        self.emu.faults.clear()
        common: dict[str, object] = {
            "leases": count,
            "provider_latency_ms": latency_ms,
            "expiry_spread_s": round(last - first, 3),
            "issued_in_s": round(issued_in, 1),
        }
        emit("expiry_burst_all_deleted", done_unix - first, "s", **common)
        emit("expiry_burst_first_deleted", started_unix - first, "s", **common)
        emit("expiry_burst_delete_per_s", count / max(1e-3, done_unix - started_unix), "keys/s", **common)
        emit(
            "plugin_cpu_per_expiry_revoke",
            cpu["plugin"] / count * 1000,
            "ms",
            bao_cpu_ms=round(cpu["server"] / count * 1000, 3),
            host_cpu_busy_pct=round(cpu["host_busy_pct"], 1),
            **common,
        )


def _vault_time(value: str) -> float:
    """Vault's RFC 3339 time (nanoseconds, Z or an offset) as unix seconds."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", value)
    if m is None:
        raise RuntimeError(f"unexpected time format from Vault: {value!r}")
    base, frac, zone = m.groups()
    stamp = datetime.fromisoformat(base + ("+00:00" if zone == "Z" else zone)).timestamp()
    return stamp + (float("0." + frac) if frac else 0.0)


# --------------------------------------------------------------------------------------------------- main


def plugin_process(bao: BaoServer, plugin_path: Path) -> psutil.Process:
    found = bao.plugin_processes(plugin_path)
    if not found:
        raise RuntimeError("the plugin process was not found among the server's children")
    return found[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="duration of each creds-read phase")
    parser.add_argument("--clients", default="1,4,16", help="client counts for the read phases")
    parser.add_argument("--latency-ms", type=int, default=200, help="admin-API latency of the slow phases")
    parser.add_argument("--provider", choices=sorted(ROLE_FIELDS), default="openrouter")
    parser.add_argument(
        "--expire-leases", type=int, default=1000, help="leases in the expiry burst (0: skip)"
    )
    parser.add_argument(
        "--expire-after", type=float, default=5.0, help="seconds between the end of renewals and expiry"
    )
    parser.add_argument(
        "--expire-latency-ms", type=int, default=0, help="admin-API latency while the expiry burst drains"
    )
    parser.add_argument("--skip-latency", action="store_true", help="skip the slow-provider phases")
    args = parser.parse_args()
    client_counts = [int(c) for c in args.clients.split(",")]
    workers = max(client_counts)

    admin_key = ADMIN_KEY_PREFIX[args.provider] + "bench-" + secrets.token_urlsafe(24)
    emu = EMULATORS[args.provider](admin_key)
    with (
        tempfile.TemporaryDirectory(prefix="bench-engine-") as tmp,
        emu.serve() as emu_server,
        ProcessPoolExecutor(max_workers=workers, initializer=_ignore_sigint) as pool,
    ):
        work = Path(tmp)
        plugin_path, sha256 = build_engine(work / "plugins")
        plugin_pid = 0
        bao = BaoServer(work / "bao", work / "plugins", log_level="warn")
        try:
            bao.start()
            bao.register_plugin(ENGINE_NAME, plugin_path.name, sha256)
            began = time.perf_counter()
            bao.enable(ENGINE_NAME, MOUNT)
            plug = plugin_process(bao, plugin_path)
            plugin_pid = plug.pid
            emit("mount_enable", (time.perf_counter() - began) * 1000, "ms")
            client = bao.client()
            client.write(
                f"{MOUNT}/config/bench",
                provider=args.provider,
                admin_key=admin_key,
                base_url=emu_server.base_url,
            )
            extra = ROLE_FIELDS[args.provider]
            client.write(f"{MOUNT}/roles/bench", connection="bench", ttl="10m", max_ttl="1h", **extra)
            client.write(f"{MOUNT}/roles/expire", connection="bench", ttl="10m", max_ttl="1h", **extra)
            assert bao.proc is not None
            meter = Meter(process_tree(plug.pid), psutil.Process(bao.proc.pid))
            list(pool.map(warm, [bao.addr] * workers))
            bench = Bench(args, bao.addr, emu, pool, meter)

            leases: list[str] = []
            for clients in client_counts:
                leases += bench.reads(clients, 0)
            bench.revoke(leases, max(client_counts), 0)

            if not args.skip_latency and args.latency_ms > 0:
                emu.faults.latency(args.latency_ms / 1000)  # every admin call: create, delete, ...
                leases = []
                for clients in client_counts:
                    leases += bench.reads(clients, args.latency_ms)
                bench.revoke(leases, max(client_counts), args.latency_ms)
                emu.faults.clear()

            if args.expire_leases > 0:
                bench.expiry(args.expire_leases, max(client_counts), args.expire_latency_ms)

            current, peak = rss_mb(process_tree(plug.pid))
            emit("plugin_rss", current, "MB", peak_mb=round(peak, 1))
            emit("provider_keys_left", live(emu), "keys", created=emu.create_count, deleted=emu.delete_count)
        finally:
            bao.stop()
            if plugin_pid:
                with contextlib.suppress(psutil.NoSuchProcess):
                    leftover = psutil.Process(plugin_pid)
                    if leftover.status() != psutil.STATUS_ZOMBIE and ENGINE_NAME in " ".join(
                        leftover.cmdline()
                    ):
                        leftover.kill()
                        print(
                            f"bench: killed plugin process {plugin_pid}, which outlived the server",
                            file=sys.stderr,
                        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
