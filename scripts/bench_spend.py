"""See scripts/bench-spend: what reading and keeping spend per lease costs a revoke, as A/B phases in one run.

One OpenBao server, the engine, an in-process emulator (OpenRouter by default: its spend is read before the
delete, one more admin call a revoke). Each round issues `--leases` leases and revokes them with `--clients`
concurrent sys/leases/revoke callers, once with spend/config enabled=false (A) and once with true (B), the
order alternating from round to round (A B, B A, A B, ...), so drift in the machine's load hits both alike.
Figures are JSON lines tagged with "spend": "off" | "on" and the round.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import psutil
from devkit.bao import BaoServer, process_tree
from devkit.build import ENGINE_NAME, build_engine
from llm_emulators import EMULATORS

sys.path.insert(0, str(Path(__file__).parent))
from bench_engine import (  # the shared bench helpers live beside this script
    ADMIN_KEY_PREFIX,
    MOUNT,
    ROLE_FIELDS,
    Bench,
    Meter,
    _ignore_sigint,
    check,
    emit,
    lease_worker,
    live,
    percentile,
    plugin_process,
    read_worker,
    split,
    wait_until,
    warm,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="A/B pairs")
    parser.add_argument("--leases", type=int, default=300, help="leases revoked a phase")
    parser.add_argument("--clients", type=int, default=4, help="concurrent revoke callers")
    parser.add_argument("--latency-ms", type=int, default=0, help="admin-API latency of every call")
    parser.add_argument("--provider", choices=sorted(ROLE_FIELDS), default="openrouter")
    parser.add_argument(
        "--expire-leases",
        type=int,
        default=0,
        help="also an expiry burst of this many leases a phase (0: none)",
    )
    parser.add_argument("--expire-after", type=float, default=5.0, help="seconds from renewals to expiry")
    args = parser.parse_args()
    args.seconds = 0.0  # what Bench reads besides expire_after

    admin_key = ADMIN_KEY_PREFIX[args.provider] + "bench-" + secrets.token_urlsafe(24)
    emu = EMULATORS[args.provider](admin_key)
    with (
        tempfile.TemporaryDirectory(prefix="bench-spend-") as tmp,
        emu.serve() as emu_server,
        ProcessPoolExecutor(max_workers=args.clients, initializer=_ignore_sigint) as pool,
    ):
        work = Path(tmp)
        plugin_path, sha256 = build_engine(work / "plugins")
        bao = BaoServer(work / "bao", work / "plugins", log_level="warn")
        plugin_pid = 0
        try:
            bao.start()
            bao.register_plugin(ENGINE_NAME, plugin_path.name, sha256)
            bao.enable(ENGINE_NAME, MOUNT)
            plugin_pid = plugin_process(bao, plugin_path).pid
            client = bao.client()
            client.write(
                f"{MOUNT}/config/bench",
                provider=args.provider,
                admin_key=admin_key,
                base_url=emu_server.base_url,
            )
            for role in ("bench", "expire"):
                client.write(
                    f"{MOUNT}/roles/{role}",
                    connection="bench",
                    ttl="10m",
                    max_ttl="1h",
                    **ROLE_FIELDS[args.provider],
                )
            assert bao.proc is not None
            meter = Meter(process_tree(plugin_pid), psutil.Process(bao.proc.pid))
            list(pool.map(warm, [bao.addr] * args.clients))
            if args.latency_ms:
                emu.faults.latency(args.latency_ms / 1000)
            emit("load_1min_before", os.getloadavg()[0], "load")
            bench = Bench(args, bao.addr, emu, pool, meter)
            for rnd in range(args.rounds):
                order = ("off", "on") if rnd % 2 == 0 else ("on", "off")
                for mode in order:
                    client.write(f"{MOUNT}/spend/config", enabled=mode == "on")
                    per = [
                        args.leases // args.clients + (i < args.leases % args.clients)
                        for i in range(args.clients)
                    ]
                    path = f"/v1/{MOUNT}/creds/bench"
                    runs = list(pool.map(read_worker, [(bao.addr, path, 600.0, k) for k in per if k]))
                    check(runs, "issuing")
                    lease_ids = [lease for r in runs for lease in r.lease_ids]
                    with meter.phase() as cpu:
                        began = time.perf_counter()
                        revokes = list(
                            pool.map(
                                lease_worker,
                                [(bao.addr, "revoke", p, None) for p in split(lease_ids, args.clients)],
                            )
                        )
                        done = wait_until(lambda: live(emu) == 0, 120, "revoked keys to leave the emulator")
                    check(revokes, "revokes")
                    lat = sorted(x for r in revokes for x in r.latencies)
                    n = len(lease_ids)
                    tags: dict[str, object] = {
                        "spend": mode,
                        "round": rnd,
                        "clients": args.clients,
                        "provider_latency_ms": args.latency_ms,
                        "leases": n,
                        "load_1min": round(os.getloadavg()[0], 2),
                    }
                    emit("revoke_per_s", n / (done - began), "leases/s", **tags)
                    emit("revoke_p50", percentile(lat, 0.5) * 1000, "ms", **tags)
                    emit("revoke_p99", percentile(lat, 0.99) * 1000, "ms", **tags)
                    emit(
                        "plugin_cpu_per_revoke",
                        cpu["plugin"] / n * 1000,
                        "ms",
                        bao_cpu_ms=round(cpu["server"] / n * 1000, 3),
                        host_cpu_busy_pct=round(cpu["host_busy_pct"], 1),
                        **tags,
                    )
                    if args.expire_leases:
                        emit("expiry_phase", args.expire_leases, "leases", **tags)  # the lines that follow
                        bench.expiry(args.expire_leases, args.clients, args.latency_ms)
                        if args.latency_ms:
                            emu.faults.latency(args.latency_ms / 1000)  # Bench.expiry clears the faults
            began = time.perf_counter()
            spent = client.adapter.get(f"/v1/{MOUNT}/spend", params={"days": 1})["data"]
            emit("spend_read", (time.perf_counter() - began) * 1000, "ms", leases=spent["leases"])
            expected = args.rounds * (args.leases + args.expire_leases)
            emit("spend_leases_recorded", spent["leases"], "leases", expected=expected)
        finally:
            bao.stop()
            if plugin_pid:
                with contextlib.suppress(psutil.NoSuchProcess):
                    leftover = psutil.Process(plugin_pid)
                    if leftover.status() != psutil.STATUS_ZOMBIE and ENGINE_NAME in " ".join(
                        leftover.cmdline()
                    ):
                        leftover.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
