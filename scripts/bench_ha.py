"""See scripts/bench-ha. Figures are printed as JSON lines: {"figure", "value", "unit", ...}.

A 3-node Raft cluster from vault-config/ha/ (devkit.cluster) with the one-file plugin, the engine at llm/
wired to an in-process LiteLLM emulator (no added latency), and beside it OpenBao's database engine at db/
on a local PostgreSQL 15 (as in scripts/bench-vs-database), measured in alternating phases of the same run.
Load comes from separate client processes (httpx with keep-alive), each reading creds in a loop through
one node.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import httpx
import hvac
from bench_vs_database import Missing, Postgres, configure_db, postgres_binaries
from devkit.build import build_engine
from devkit.cluster import BaoCluster, BaoNode
from devkit.ha_drill import MOUNT, Api, Burst, Provider, mount_engine, wait_for_mount
from devkit.render_config import plugin_from_file
from devkit.waiting import wait_for

ROLE = "bench"


def emit(figure: str, value: float, unit: str, **extra: object) -> None:
    print(json.dumps({"figure": figure, "value": round(value, 3), "unit": unit, **extra}), flush=True)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle


Work = tuple[str, str, float, str]  # node address, token, seconds, creds path


def read_worker(args: Work) -> tuple[int, int, str]:
    """Read creds at `path` through `addr` for `seconds`: (credentials issued, errors, first error)."""
    addr, token, seconds, path = args
    issued = errors = 0
    first_error = ""
    with httpx.Client(base_url=f"{addr}/v1/", headers={"X-Vault-Token": token}, timeout=60) as client:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            resp = client.get(path)
            if resp.status_code == 200:
                issued += 1
                continue
            errors += 1
            first_error = first_error or f"HTTP {resp.status_code}: {resp.text[:200]}"
    return issued, errors, first_error


def kv_worker(args: Work) -> tuple[int, int, str]:
    """Write kv-v1 entries through `addr` for `seconds`: one Raft commit each."""
    addr, token, seconds, _ = args
    done = errors = 0
    first_error = ""
    prefix = secrets.token_hex(4)
    with httpx.Client(base_url=f"{addr}/v1/", headers={"X-Vault-Token": token}, timeout=60) as client:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            resp = client.put(f"kv/{prefix}/{done + errors}", json={"v": "x"})
            if resp.status_code == 204:
                done += 1
                continue
            errors += 1
            first_error = first_error or f"HTTP {resp.status_code}: {resp.text[:200]}"
    return done, errors, first_error


def throughput(
    pool: ProcessPoolExecutor,
    node: BaoNode,
    token: str,
    clients: int,
    seconds: float,
    path: str = f"{MOUNT}/creds/{ROLE}",
    worker: Callable[[Work], tuple[int, int, str]] = read_worker,
) -> float:
    results = list(pool.map(worker, [(node.addr, token, seconds, path)] * clients))
    issued = sum(r[0] for r in results)
    errors = sum(r[1] for r in results)
    if errors:
        print(
            f"note: {errors} errors through {node.name}: {next(r[2] for r in results if r[2])}",
            file=sys.stderr,
        )
    return issued / seconds


def failover(cluster: BaoCluster, clients: int) -> float:
    """Kill the active node during a burst sent to every node; seconds until the first key issued after."""
    old = cluster.active()
    burst = Burst({n.name: n.addr for n in cluster.nodes}, cluster.root_token, ROLE, clients=clients).start()
    time.sleep(2.0)
    killed = time.monotonic()
    old.kill()
    try:
        wait_for(lambda: any(a.started > killed for a in burst.ok()), 60, "a key after the kill")
    finally:
        burst.stop()
        burst.join()
    first = min(a.ended for a in burst.ok() if a.started > killed) - killed
    old.reap_orphans()
    old.start()
    old.unseal(cluster.unseal_key)
    wait_for(lambda: old in cluster.standbys(), 60, f"{old.name} back as a standby")
    cluster.wait_for_peers(len(cluster.nodes), voters=True)
    with Api(old.addr, cluster.root_token) as api:
        wait_for_mount(api, ROLE)
    return first


def main() -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench-ha", description=__doc__)
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients (default 4)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each throughput run")
    parser.add_argument("--rounds", type=int, default=2, help="throughput runs through each node")
    parser.add_argument(
        "--workdir", type=Path, help="keep the nodes' data and logs here (default: a temp dir)"
    )
    parser.add_argument("--failovers", type=int, default=3, help="how many times to kill the active node")
    parser.add_argument(
        "--database",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure OpenBao's database engine (PostgreSQL 15, from Debian if missing) beside ours",
    )
    args = parser.parse_args()
    pg: Postgres | None = None
    if args.database:
        try:
            pg = Postgres(postgres_binaries(None, may_install=True))
        except Missing as exc:
            print(f"{exc}; run with --no-database to measure our engine alone", file=sys.stderr)
            return 2

    with contextlib.ExitStack() as stack:
        if args.workdir is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-ha-")))
        else:
            work = args.workdir
            work.mkdir(parents=True, exist_ok=True)
        path, _ = build_engine(work / "plugins")
        provider = Provider().start()
        cluster = BaoCluster(work / "cluster", plugin_from_file(path))
        if pg is not None:
            pg.start()
            stack.callback(pg.stop)
        try:
            started = time.monotonic()
            cluster.start()
            emit("cluster_ready", time.monotonic() - started, "s", nodes=len(cluster.nodes))
            with Api(cluster.active().addr, cluster.root_token) as api:
                mount_engine(api, provider, {ROLE: {"ttl": "1h"}})
                api.ok("POST", "sys/mounts/kv", json={"type": "kv", "options": {"version": "1"}})
            if pg is not None:
                configure_db(hvac.Client(url=cluster.active().addr, token=cluster.root_token), pg)
            for node in cluster.nodes:
                with Api(node.addr, cluster.root_token) as api:
                    wait_for_mount(api, ROLE)
            with ProcessPoolExecutor(args.clients, initializer=_ignore_sigint) as pool:
                throughput(pool, cluster.active(), cluster.root_token, args.clients, 2.0)  # warm up
                active, standby = cluster.active(), cluster.standbys()[0]
                # Alternated, so that load from elsewhere on the machine weighs on each about the same.
                phases: list[tuple[str, BaoNode, str]] = [
                    ("creds_per_second_via_active", active, f"{MOUNT}/creds/{ROLE}"),
                    ("creds_per_second_via_standby", standby, f"{MOUNT}/creds/{ROLE}"),
                ]
                if pg is not None:
                    phases += [
                        ("database_creds_per_second_via_active", active, "db/creds/bench"),
                        ("database_creds_per_second_via_standby", standby, "db/creds/bench"),
                    ]
                    throughput(pool, active, cluster.root_token, args.clients, 2.0, "db/creds/bench")
                for run in range(1, args.rounds + 1):
                    for figure, node, creds in phases:
                        rate = throughput(pool, node, cluster.root_token, args.clients, args.seconds, creds)
                        note = {"note": "a standby forwards each creds read to the active node"}
                        emit(
                            figure,
                            rate,
                            "1/s",
                            clients=args.clients,
                            run=run,
                            **(note if node is standby else {}),
                        )
                    emit(
                        "kv_writes_per_second_via_active",
                        throughput(
                            pool, active, cluster.root_token, args.clients, args.seconds, worker=kv_worker
                        ),
                        "1/s",
                        clients=args.clients,
                        run=run,
                        note="one Raft commit each: the cluster's commit rate in this run (a creds read of "
                        "ours commits its WAL entry and the key's index entry before its reply, then OpenBao "
                        "the lease; the WAL entry's deletion follows the reply)",
                    )
            firsts = [failover(cluster, args.clients) for _ in range(args.failovers)]
            for i, first in enumerate(firsts, start=1):
                emit("first_key_after_killing_the_active_node", first, "s", run=i)
            if firsts:
                emit("first_key_after_kill_median", statistics.median(firsts), "s", runs=len(firsts))
        finally:
            survivors = cluster.stop()
            provider.stop()
        if survivors:
            print(f"note: plugin processes {survivors} outlived their nodes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
