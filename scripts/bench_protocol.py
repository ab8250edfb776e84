"""See scripts/bench-protocol. Figures are printed as JSON lines: {"figure", "value", "unit", ...}."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import httpx
import psutil
from devkit.bao import BaoServer
from devkit.build import build_zipapp, project_packages
from vaultplugin.transport.tls import generate_plugin_certificate

ROOT = Path(__file__).resolve().parent.parent
TESTBACKEND = ROOT / "tests" / "e2e" / "testbackend"
PHASES = (("kv2_read", "/v1/kv/data/bench"), ("lease_read", "/v1/bench/lease"))
MAGIC = {"VAULT_BACKEND_PLUGIN": "6669da05-b1c8-4f49-97d9-c8e5bed98e20", "PLUGIN_PROTOCOL_VERSIONS": "5"}


def emit(figure: str, value: float, unit: str, **extra: object) -> None:
    print(json.dumps({"figure": figure, "value": round(value, 3), "unit": unit, **extra}), flush=True)


def client_worker(args: tuple[str, str, float]) -> list[float]:
    addr, path, seconds = args
    latencies: list[float] = []
    with httpx.Client(base_url=addr, headers={"X-Vault-Token": "root"}, timeout=30) as client:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            start = time.perf_counter()
            client.get(path).raise_for_status()
            latencies.append(time.perf_counter() - start)
    return latencies


def cold_start(plugin: Path, runs: int) -> list[float]:
    """Exec to handshake line, with the environment a host gives (a P-521 host certificate)."""
    host_pem = generate_plugin_certificate().cert_pem.decode()  # any certificate will do for a start
    env = {**os.environ, **MAGIC, "PLUGIN_CLIENT_CERT": host_pem}
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.Popen([str(plugin)], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        times.append(time.perf_counter() - start)
        proc.terminate()
        proc.wait(10)
        if not line.startswith(b"1|5|unix|"):
            raise RuntimeError("the plugin did not print a handshake line")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=4.0, help="duration of each load phase")
    parser.add_argument("--rounds", type=int, default=3, help="kv-v2/lease phase pairs per client count")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-protocol-") as tmp:
        work = Path(tmp)
        packages = {"testbackend": TESTBACKEND, **project_packages("vaultplugin")}
        plugin, sha256 = build_zipapp(work / "plugins", "bench-backend", "testbackend:main", packages)

        starts = cold_start(plugin, 7)
        emit(
            "cold_start_exec_to_handshake",
            statistics.median(starts) * 1000,
            "ms",
            runs=len(starts),
            target="<= 500",
        )

        with BaoServer(work / "bao", work / "plugins", log_level="warn") as bao:
            bao.register_plugin("bench", plugin.name, sha256)
            bao.enable("bench", "bench")
            client = bao.client()
            client.write("bench/config", ttl="1h", max_ttl="2h")
            client.sys.enable_secrets_engine("kv", path="kv", options={"version": "2"})
            client.secrets.kv.v2.create_or_update_secret("bench", secret={"k": "v"}, mount_point="kv")
            client.read("bench/lease")  # spawn the plugin process
            (plug,) = bao.plugin_processes(plugin)
            assert bao.proc is not None
            server = psutil.Process(bao.proc.pid)

            # kv-v2 and lease phases alternate, several rounds, and medians are reported: this 2-core
            # machine drifts by tens of percent over minutes, which a single pass would read as a result.
            with ProcessPoolExecutor(max_workers=4) as pool:
                list(pool.map(client_worker, [(bao.addr, "/v1/sys/health", 0.5)] * 4))  # warm the workers
                for clients in (1, 4):
                    rates: dict[str, list[float]] = {label: [] for label, _ in PHASES}
                    latencies: dict[str, list[float]] = {label: [] for label, _ in PHASES}
                    cpu = {label: 0.0 for label, _ in PHASES}
                    server_cpu = {label: 0.0 for label, _ in PHASES}
                    for _round in range(args.rounds):
                        for label, path in PHASES:
                            cpu0, server_cpu0 = sum(plug.cpu_times()[:2]), sum(server.cpu_times()[:2])
                            began = time.perf_counter()
                            runs = pool.map(client_worker, [(bao.addr, path, args.seconds)] * clients)
                            lat = [x for run in runs for x in run]
                            rates[label].append(len(lat) / (time.perf_counter() - began))
                            cpu[label] += sum(plug.cpu_times()[:2]) - cpu0
                            server_cpu[label] += sum(server.cpu_times()[:2]) - server_cpu0
                            latencies[label] += lat
                    for label, _ in PHASES:
                        lat = sorted(latencies[label])
                        common = {"clients": clients, "requests": len(lat), "rounds": args.rounds}
                        emit(f"{label}_per_s", statistics.median(rates[label]), "req/s", **common)
                        emit(f"{label}_p50", lat[len(lat) // 2] * 1000, "ms", **common)
                        emit(
                            f"{label}_p99",
                            lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
                            "ms",
                            **common,
                        )
                        emit(
                            f"{label}_server_cpu_per_request",
                            server_cpu[label] / len(lat) * 1000,
                            "ms",
                            **common,
                        )
                        if label == "lease_read":
                            emit(
                                "plugin_cpu_per_request",
                                cpu[label] / len(lat) * 1000,
                                "ms",
                                target="<= 1.0",
                                **common,
                            )
                    if clients == 4:
                        ratios = [
                            lease / kv
                            for lease, kv in zip(rates["lease_read"], rates["kv2_read"], strict=True)
                        ]
                        emit(
                            "lease_read_vs_kv2_read_at_4_clients",
                            statistics.median(ratios),
                            "ratio",
                            target=">= 0.4",
                            per_round=[round(r, 3) for r in ratios],
                        )
            emit("plugin_rss", plug.memory_info().rss / 1e6, "MB", target="<= 80")


if __name__ == "__main__":
    main()
