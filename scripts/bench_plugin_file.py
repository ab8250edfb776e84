"""See scripts/bench-plugin-file. Figures are JSON lines: {"figure", "value", "unit", "build", ...}.

The shipped one-file executable and the developer zipapp (run by this checkout's interpreter) are built from
the same sources and compared in one run: file size; exec-to-handshake start (the very first start of a
freshly copied file with its pages dropped from the cache, then warm starts); and, mounted side by side on one
OpenBao server against one emulator, creds reads/s at 4 clients and plugin CPU per issue in alternating
phases, then the RSS of each plugin (summed over its processes).

The control: each build is mounted twice (two copies of the same file, two plugin processes), and the
figures of the two copies of one build are compared like the two builds are. A difference between the builds
no larger than the one between two copies of the same build is noise, not a difference.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import psutil
from bench_engine import (
    Meter,
    _ignore_sigint,
    check,
    emit,
    percentile,
    plugin_process,
    process_tree,
    read_worker,
    rss_mb,
    warm,
)
from devkit.bao import BaoServer, kill_leftovers
from devkit.build import ENGINE_NAME, build_engine, build_engine_zipapp
from llm_emulators import OpenRouterEmulator
from vaultplugin.transport.tls import generate_plugin_certificate

HOST_ENV = {"VAULT_BACKEND_PLUGIN": "6669da05-b1c8-4f49-97d9-c8e5bed98e20", "PLUGIN_PROTOCOL_VERSIONS": "5"}


def start_once(plugin: Path, env: dict[str, str]) -> float:
    """Seconds from exec to the handshake line."""
    start = time.perf_counter()
    proc = subprocess.Popen([str(plugin)], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    elapsed = time.perf_counter() - start
    proc.terminate()
    proc.wait(10)
    if not line.startswith(b"1|5|unix|"):
        raise RuntimeError(f"{plugin.name} printed no handshake line")
    return elapsed


def drop_from_page_cache(path: Path) -> None:
    """Ask the kernel to forget the file's cached pages, so its next start reads it from disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def starts(builds: dict[str, Path], work: Path, runs: int) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "TMPDIR": str(work),
        "PLUGIN_CLIENT_CERT": generate_plugin_certificate().cert_pem.decode(),
        **HOST_ENV,
    }
    for build, path in builds.items():
        fresh = work / f"fresh-{build}"
        shutil.copyfile(path, fresh)
        fresh.chmod(0o755)
        drop_from_page_cache(fresh)
        emit("cold_start_first", start_once(fresh, env) * 1000, "ms", build=build, target="<= 500")
    warm_times: dict[str, list[float]] = {build: [] for build in builds}
    for _ in range(runs):  # alternate, so drift hits both alike
        for build, path in builds.items():
            warm_times[build].append(start_once(path, env))
    for build, times in warm_times.items():
        emit(
            "cold_start_warm",
            statistics.median(times) * 1000,
            "ms",
            build=build,
            runs=runs,
            min_ms=round(min(times) * 1000, 1),
            max_ms=round(max(times) * 1000, 1),
            target="<= 500",
        )


def _emit_control(
    builds: dict[str, Path], rates: dict[str, list[float]], cpu_per_issue: dict[str, list[float]]
) -> None:
    """The difference between the builds beside the difference between two copies of one build (noise)."""

    def gap(a: list[float], b: list[float]) -> float:
        return (statistics.median(a) / statistics.median(b) - 1) * 100

    def pooled(figures: dict[str, list[float]], build: str) -> list[float]:
        return figures[f"{build}-a"] + figures[f"{build}-b"]

    for figure, figures in (("cpu_per_issue", cpu_per_issue), ("creds_per_s", rates)):
        emit(
            f"onefile_vs_zipapp_{figure}",
            gap(pooled(figures, "onefile"), pooled(figures, "zipapp")),
            "%",
            copies_of_one_build_differ_by=[
                round(abs(gap(figures[f"{b}-a"], figures[f"{b}-b"])), 1) for b in builds
            ],
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="duration of each creds-read phase")
    parser.add_argument("--rounds", type=int, default=3, help="alternating phase pairs")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--starts", type=int, default=9, help="warm starts of each build")
    args = parser.parse_args()

    admin_key = "adm-bench-" + secrets.token_urlsafe(24)
    emu = OpenRouterEmulator(admin_key)
    with (
        tempfile.TemporaryDirectory(prefix="bench-plugin-file-") as tmp,
        emu.serve() as emu_server,
        ProcessPoolExecutor(max_workers=args.clients, initializer=_ignore_sigint) as pool,
    ):
        work = Path(tmp)
        onefile_dir, zipapp_dir = work / "plugins", work / "zipapp"
        onefile, onefile_sha = build_engine(onefile_dir)
        zipapp, zipapp_sha = build_engine_zipapp(zipapp_dir)
        zipapp = zipapp.rename(onefile_dir / f"{ENGINE_NAME}-zipapp")  # one plugin_directory for both
        builds = {"onefile": onefile, "zipapp": zipapp}
        for build, path in builds.items():
            emit("file_size", path.stat().st_size / 1e6, "MB", build=build)
        starts(builds, work, args.starts)

        bao = BaoServer(work / "bao", onefile_dir, log_level="warn")
        pids: list[int] = []
        try:
            bao.start()
            assert bao.proc is not None
            client = bao.client()
            meters: dict[str, Meter] = {}
            trees: dict[str, list[psutil.Process]] = {}
            mounts = {f"{build}-{copy}": builds[build] for copy in ("a", "b") for build in builds}
            for mount, original in mounts.items():
                path = onefile_dir / f"{ENGINE_NAME}-{mount}"
                shutil.copyfile(original, path)  # a file of its own: one plugin process per mount
                path.chmod(0o755)
                bao.register_plugin(
                    f"llm-{mount}", path.name, onefile_sha if "onefile" in mount else zipapp_sha
                )
                bao.enable(f"llm-{mount}", mount)
                trees[mount] = process_tree(plugin_process(bao, path).pid)
                pids += [p.pid for p in trees[mount]]
                meters[mount] = Meter(trees[mount], psutil.Process(bao.proc.pid))
                client.write(
                    f"{mount}/config/bench",
                    provider="openrouter",
                    admin_key=admin_key,
                    base_url=emu_server.base_url,
                )
                client.write(f"{mount}/roles/bench", connection="bench", ttl="10m", max_ttl="1h")
            list(pool.map(warm, [bao.addr] * args.clients))

            rates: dict[str, list[float]] = {m: [] for m in mounts}
            cpu_per_issue: dict[str, list[float]] = {m: [] for m in mounts}
            p50: dict[str, list[float]] = {m: [] for m in mounts}
            for round_no in range(args.rounds):
                order = list(mounts) if round_no % 2 == 0 else list(reversed(mounts))  # none always first
                for mount in order:
                    job = (bao.addr, f"/v1/{mount}/creds/bench", args.seconds, 0)
                    with meters[mount].phase() as cpu:
                        runs = list(pool.map(read_worker, [job] * args.clients))
                    check(runs, f"creds reads on {mount}")
                    lat = sorted(x for r in runs for x in r.latencies)
                    rates[mount].append(len(lat) / cpu["wall"])
                    cpu_per_issue[mount].append(cpu["plugin"] / len(lat) * 1000)
                    p50[mount].append(percentile(lat, 0.5) * 1000)
                    client.sys.revoke_prefix(f"{mount}/creds/bench")  # keep the server's lease count low
            for build in builds:
                copies = [f"{build}-a", f"{build}-b"]
                common: dict[str, object] = {"build": build, "clients": args.clients, "rounds": args.rounds}
                both_rates = [r for m in copies for r in rates[m]]
                both_cpu = [c for m in copies for c in cpu_per_issue[m]]
                emit(
                    "creds_read_per_s",
                    statistics.median(both_rates),
                    "req/s",
                    per_copy=[round(statistics.median(rates[m])) for m in copies],
                    **common,
                )
                emit("creds_read_p50", statistics.median([x for m in copies for x in p50[m]]), "ms", **common)
                emit(
                    "plugin_cpu_per_issue",
                    statistics.median(both_cpu),
                    "ms",
                    per_copy=[round(statistics.median(cpu_per_issue[m]), 3) for m in copies],
                    **common,
                )
                current, peak = rss_mb(trees[copies[0]])
                emit(
                    "plugin_rss",
                    current,
                    "MB",
                    build=build,
                    peak_mb=round(peak, 1),
                    processes=len(trees[copies[0]]),
                    target="<= 80",
                )
            _emit_control(builds, rates, cpu_per_issue)
            emit("provider_keys_left", emu.create_count - emu.delete_count, "keys", created=emu.create_count)
        finally:
            bao.stop()
            if kill_leftovers(pids, timeout=10):
                print("bench: killed plugin processes that outlived the server", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
