"""See scripts/bench-vs-database. Figures are JSON lines: {"figure", "value", "unit", "engine", ...}.

Both engines are mounted on one OpenBao dev server: the LLM engine (the one-file build, at `llm/`) against
an OpenRouter emulator in this process, and OpenBao's builtin database engine (at `db/`) against a private
PostgreSQL 15 cluster on 127.0.0.1. Phases alternate between the two, round after round, so drift on the
machine hits both alike; each figure is the median of the rounds (`per_round` lists them all). With
`--baseline GIT_REF` the plugin built from that commit is mounted too (at `llm-base/`, against an emulator of
its own) and takes part in every round: before and after a change, measured in one run.

CPU is counted per component over each phase: the plugin (bootloader + Python child), the OpenBao server
(which runs the database engine in-process), PostgreSQL (the postmaster and its backends, exited ones
included) and this process (the emulator). The machine's load average is quoted with each phase, because
the other figures mean little on a busy host.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import hvac
import psutil
from bench_engine import (
    ClientResult,
    _ignore_sigint,
    check,
    emit,
    lease_worker,
    percentile,
    plugin_process,
    read_worker,
    rss_mb,
    split,
    wait_until,
    warm,
)
from devkit.bao import BaoServer, free_port, kill_leftovers, process_tree
from devkit.build import ENGINE_ENTRY, ENGINE_NAME, ENGINE_PACKAGES, build_engine
from devkit.onefile import build_onefile
from llm_emulators import OpenRouterEmulator

PG_MAJOR = 15
PG_PACKAGE = f"postgresql-{PG_MAJOR}"
# Where Debian's packages put the server binaries (`pg_config --bindir` of the client may be another major).
DEBIAN_PG_BIN = Path(f"/usr/lib/postgresql/{PG_MAJOR}/bin")
ROOT = Path(__file__).resolve().parent.parent
# The database engine's role: a login role with read access, dropped on revoke (the documented pattern).
DB_CREATION = [
    "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';",
    'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{{name}}";',
]
DB_REVOCATION = [
    'REVOKE ALL PRIVILEGES ON ALL TABLES IN SCHEMA public FROM "{{name}}";',
    'DROP ROLE IF EXISTS "{{name}}";',
]


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# ------------------------------------------------------------------------------------------------ PostgreSQL


class Missing(Exception):
    """Something the benchmark needs is not on this machine; the message says what and how to get it."""


def find_pg_bin(explicit: Path | None) -> Path | None:
    candidates = [explicit] if explicit else [DEBIAN_PG_BIN]
    if not explicit and (initdb := shutil.which("initdb")):
        candidates.append(Path(initdb).resolve().parent)
    for candidate in candidates:
        if candidate is None or not all((candidate / b).exists() for b in ("initdb", "pg_ctl", "postgres")):
            continue
        version = subprocess.run(
            [str(candidate / "postgres"), "--version"], capture_output=True, text=True, check=False
        ).stdout
        if f" {PG_MAJOR}." in version:
            return candidate
    return None


def install_postgres() -> None:
    """apt-get install postgresql-15 (Debian's package; needs root)."""
    log(f"PostgreSQL {PG_MAJOR} not found: installing {PG_PACKAGE} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", PG_PACKAGE],
    ):
        done = subprocess.run(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False
        )
        if done.returncode != 0:
            raise Missing(f"{' '.join(command)} failed: {done.stderr.decode(errors='replace')[-500:]}")


def postgres_binaries(explicit: Path | None, *, may_install: bool) -> Path:
    found = find_pg_bin(explicit)
    if found is not None:
        return found
    if explicit is not None:
        raise Missing(f"--pg-bin {explicit}: no PostgreSQL {PG_MAJOR} initdb/pg_ctl/postgres there")
    hint = f"install Debian's {PG_PACKAGE} (apt-get install {PG_PACKAGE}) or pass --pg-bin DIR"
    if not may_install:
        raise Missing(f"PostgreSQL {PG_MAJOR} server binaries not found: {hint}")
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise Missing(
            f"PostgreSQL {PG_MAJOR} server binaries not found, and this is not root with apt-get: {hint}"
        )
    install_postgres()
    found = find_pg_bin(None)
    if found is None:
        raise Missing(f"{PG_PACKAGE} was installed but {DEBIAN_PG_BIN} has no initdb/pg_ctl/postgres")
    return found


@dataclass
class Postgres:
    """A private PostgreSQL cluster in a temporary directory, on 127.0.0.1 and a free port.

    PostgreSQL refuses to run as root: as root, every server command runs as the `postgres` user (created
    by Debian's package). Stopped by pg_ctl, then by the postmaster's PID if it is still there.
    """

    bin_dir: Path
    password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    port: int = field(default_factory=free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bench-pg-")))
    durable: bool = False
    pid: int = 0

    @property
    def data(self) -> Path:
        return self.root / "data"

    def _as_server_user(self, argv: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return argv
        return ["runuser", "-u", "postgres", "--", *argv]

    def _run(self, argv: list[str], what: str) -> None:
        done = subprocess.run(self._as_server_user(argv), capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{what} failed ({done.returncode}): {(done.stderr or done.stdout)[-800:]}")

    def start(self) -> Postgres:
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                raise Missing(
                    "running as root, and there is no 'postgres' user to run PostgreSQL as"
                ) from None
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self.root.chmod(0o700)
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if os.geteuid() == 0:
            os.chown(pwfile, pwd.getpwnam("postgres").pw_uid, -1)
        pwfile.chmod(0o600)
        self._run(
            [
                str(self.bin_dir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                f"--pwfile={pwfile}",
                "--auth-local=scram-sha-256",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            "initdb",
        )
        pwfile.unlink()
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.root} "
            "-c max_connections=200"
        )
        if not self.durable:
            # Commits do not wait for the WAL flush (still crash-safe): the disk's fsync rate is not what
            # this compares, and it makes the database engine's figures the harder target.
            options += " -c synchronous_commit=off"
        self._run(
            [
                str(self.bin_dir / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.root / "server.log"),
                "-w",
                "-t",
                "60",
                "-o",
                options,
                "start",
            ],
            "pg_ctl start",
        )
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])
        return self

    def cpu_seconds(self) -> float:
        """User + system CPU of the postmaster, its live backends and the backends it has reaped."""
        try:
            postmaster = psutil.Process(self.pid)
            times = postmaster.cpu_times()
            total = times.user + times.system + times.children_user + times.children_system
            for child in postmaster.children(recursive=True):
                with contextlib.suppress(psutil.NoSuchProcess):
                    total += sum(child.cpu_times()[:2])
            return total
        except psutil.NoSuchProcess:
            return 0.0

    def count_roles(self, pattern: str) -> int:
        done = subprocess.run(
            [
                str(self.bin_dir / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-tAc",
                f"SELECT count(*) FROM pg_roles WHERE rolname LIKE '{pattern}'",
            ],
            env={**os.environ, "PGPASSWORD": self.password},
            capture_output=True,
            text=True,
            check=True,
        )
        return int(done.stdout.strip())

    def stop(self) -> None:
        if self.pid:
            with contextlib.suppress(RuntimeError):
                self._run(
                    [str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"], "stop"
                )
            if kill_leftovers([self.pid], timeout=10):
                log(f"killed the postmaster {self.pid}, which outlived pg_ctl stop")
        shutil.rmtree(self.root, ignore_errors=True)


# ------------------------------------------------------------------------------------------------ metering


@dataclass
class Components:
    plugins: dict[str, list[psutil.Process]]  # mount -> the plugin's processes
    server: psutil.Process
    postgres: Postgres

    def snapshot(self, engine: str) -> dict[str, float]:
        host = psutil.cpu_times()
        return {
            "plugin": sum(sum(p.cpu_times()[:2]) for p in self.plugins.get(engine, [])),
            "bao": sum(self.server.cpu_times()[:2]),  # not children: those are the plugins
            "postgres": self.postgres.cpu_seconds(),
            "emulator": sum(psutil.Process().cpu_times()[:2]),
            "host_busy": host.user + host.system + host.nice + getattr(host, "softirq", 0.0),
            "wall": time.perf_counter(),
        }

    @contextlib.contextmanager
    def phase(self, engine: str) -> Iterator[dict[str, float]]:
        result: dict[str, float] = {}
        before = self.snapshot(engine)
        yield result
        after = self.snapshot(engine)
        result.update({k: after[k] - before[k] for k in before})
        result["host_busy_pct"] = 100 * result["host_busy"] / (result["wall"] * (psutil.cpu_count() or 1))
        result["load1"] = os.getloadavg()[0]


def per_op_ms(cpu: dict[str, float], n: int) -> dict[str, float]:
    return {f"{k}_cpu_ms": round(cpu[k] / n * 1000, 3) for k in ("plugin", "bao", "postgres", "emulator")}


# ----------------------------------------------------------------------------------------------------- phases


@dataclass
class Figures:
    """Per-round values of each (figure, engine)."""

    values: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    extra: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)

    def add(self, figure: str, engine: str, value: float, **extra: Any) -> None:
        self.values.setdefault((figure, engine), []).append(value)
        self.extra.setdefault((figure, engine), []).append(extra)

    def median(self, figure: str, engine: str) -> float:
        return statistics.median(self.values[(figure, engine)])


@dataclass
class Bench:
    args: argparse.Namespace
    addr: str
    pool: ProcessPoolExecutor
    meter: Components
    emus: dict[str, OpenRouterEmulator]  # LLM mount -> its emulator
    pg: Postgres
    figures: Figures = field(default_factory=Figures)

    def live(self, engine: str) -> int:
        """Credentials still alive at the backend: keys at the emulator, or login roles in PostgreSQL."""
        if engine in self.emus:
            return self.emus[engine].create_count - self.emus[engine].delete_count
        return self.pg.count_roles("v-%")

    def issue(self, engine: str, role: str, count: int) -> list[str]:
        clients = self.args.clients
        per = [count // clients + (1 if i < count % clients else 0) for i in range(clients)]
        path = f"/v1/{engine}/creds/{role}"
        runs = list(self.pool.map(read_worker, [(self.addr, path, 600.0, k) for k in per if k]))
        check(runs, f"issuing {count} leases on {engine}/creds/{role}")
        return [lease for r in runs for lease in r.lease_ids]

    def creds(self, engine: str) -> list[str]:
        path = f"/v1/{engine}/creds/bench"
        job = (self.addr, path, self.args.seconds, 0)
        with self.meter.phase(engine) as cpu:
            runs: list[ClientResult] = list(self.pool.map(read_worker, [job] * self.args.clients))
        check(runs, f"creds reads on {engine}")
        lat = sorted(x for r in runs for x in r.latencies)
        n = len(lat)
        self.figures.add("creds_per_s", engine, n / cpu["wall"], load1=round(cpu["load1"], 2))
        self.figures.add("creds_p50_ms", engine, percentile(lat, 0.5) * 1000)
        self.figures.add("cpu_per_issue", engine, 0.0, **per_op_ms(cpu, n))
        return [lease for r in runs for lease in r.lease_ids]

    def revoke_each(self, engine: str, leases: list[str]) -> None:
        with self.meter.phase(engine) as cpu:
            runs = list(
                self.pool.map(
                    lease_worker, [(self.addr, "revoke", p, None) for p in split(leases, self.args.clients)]
                )
            )
        check(runs, f"per-lease revokes on {engine}")
        left = self.live(engine)
        if left:
            raise RuntimeError(f"{engine}: {left} credentials still live after every lease was revoked")
        lat = sorted(x for r in runs for x in r.latencies)
        n = len(leases)
        self.figures.add("revoke_per_s", engine, n / cpu["wall"], leases=n, load1=round(cpu["load1"], 2))
        self.figures.add("revoke_p50_ms", engine, percentile(lat, 0.5) * 1000)
        self.figures.add("cpu_per_revoke", engine, 0.0, **per_op_ms(cpu, n))

    def revoke_prefix(self, engine: str, count: int) -> None:
        self.issue(engine, "prefix", count)
        with (
            httpx.Client(base_url=self.addr, headers={"X-Vault-Token": "root"}, timeout=600) as client,
            self.meter.phase(engine) as cpu,
        ):
            client.put(
                f"/v1/sys/leases/revoke-prefix/{engine}/creds/prefix", json={"sync": True}
            ).raise_for_status()
        left = self.live(engine)
        if left:
            raise RuntimeError(f"{engine}: {left} credentials still live after a sync revoke-prefix")
        self.figures.add("revoke_prefix_per_s", engine, count / cpu["wall"], leases=count)
        self.figures.add("cpu_per_prefix_revoke", engine, 0.0, **per_op_ms(cpu, count))

    # --- the slow provider (LLM engine only)

    def slow_async_prefix(self, engine: str, count: int, latency: float) -> None:
        """revoke-prefix -sync=false of `count` leases against a provider that takes `latency` per call."""
        self.issue(engine, "slow", count)
        emu = self.emus[engine]
        emu.faults.latency(latency)
        try:
            with (
                httpx.Client(base_url=self.addr, headers={"X-Vault-Token": "root"}, timeout=600) as client,
                self.meter.phase(engine) as cpu,
            ):
                began = time.perf_counter()
                client.put(
                    f"/v1/sys/leases/revoke-prefix/{engine}/creds/slow", json={"sync": False}
                ).raise_for_status()
                answered = time.perf_counter()
                done = wait_until(lambda: self.live(engine) == 0, 300, "every key of the async revoke-prefix")
        finally:
            emu.faults.clear()
        emit(
            "slow_async_revoke_prefix_all_deleted",
            done - began,
            "s",
            engine=engine,
            leases=count,
            provider_latency_ms=round(latency * 1000),
            call_answered_s=round(answered - began, 3),
            target="<= 5",
            load1=round(cpu["load1"], 2),
            **per_op_ms(cpu, count),
        )

    def slow_sync_prefix(self, count: int, latency: float) -> None:
        """The default (synchronous) revoke-prefix against the slow provider: Vault revokes one at a time."""
        self.issue("llm", "slow", count)
        emu = self.emus["llm"]
        emu.faults.latency(latency)
        try:
            with httpx.Client(base_url=self.addr, headers={"X-Vault-Token": "root"}, timeout=600) as client:
                began = time.perf_counter()
                client.put(
                    "/v1/sys/leases/revoke-prefix/llm/creds/slow", json={"sync": True}
                ).raise_for_status()
                took = time.perf_counter() - began
        finally:
            emu.faults.clear()
        emit(
            "slow_sync_revoke_prefix_per_s",
            count / took,
            "leases/s",
            engine="llm",
            leases=count,
            provider_latency_ms=round(latency * 1000),
            seconds_for_1000=round(1000 / (count / took), 1),
        )

    def slow_kill(self, count: int, latency: float) -> None:
        """`roles/<name>/revoke-keys` (every key of the role, now), then the leases' sync revoke-prefix."""
        leases = self.issue("llm", "slow", count)
        emu = self.emus["llm"]
        emu.faults.latency(latency)
        try:
            with httpx.Client(base_url=self.addr, headers={"X-Vault-Token": "root"}, timeout=600) as client:
                began = time.perf_counter()
                resp = client.post("/v1/llm/roles/slow/revoke-keys")
                if resp.status_code in (404, 405) or "unsupported" in resp.text:
                    log("llm/roles/<name>/revoke-keys is not in this build: kill phase skipped")
                    client.put("/v1/sys/leases/revoke-prefix/llm/creds/slow", json={"sync": False})
                    wait_until(lambda: self.live("llm") == 0, 300, "cleanup of the skipped kill phase")
                    return
                resp.raise_for_status()
                answered = time.perf_counter()
                done = wait_until(lambda: self.live("llm") == 0, 300, "every key of revoke-keys")
                cleanup_began = time.perf_counter()
                client.put(
                    "/v1/sys/leases/revoke-prefix/llm/creds/slow", json={"sync": True}
                ).raise_for_status()
                cleanup = time.perf_counter() - cleanup_began
                deletes_during_cleanup = emu.delete_count
        finally:
            emu.faults.clear()
        emit(
            "slow_revoke_keys_all_deleted",
            done - began,
            "s",
            engine="llm",
            keys=len(leases),
            provider_latency_ms=round(latency * 1000),
            call_answered_s=round(answered - began, 3),
            answer=resp.json().get("data", {}),
        )
        emit(
            "slow_revoke_keys_then_sync_revoke_prefix",
            cleanup,
            "s",
            engine="llm",
            leases=len(leases),
            provider_latency_ms=round(latency * 1000),
            provider_deletes_total=deletes_during_cleanup,
        )


# --------------------------------------------------------------------------------------------------- setup


def build_baseline(ref: str, work: Path) -> tuple[Path, str]:
    """The one-file plugin built from the engine's sources at git `ref` (for before/after in one run)."""
    source = work / "baseline-src"
    source.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref, "plugin/vaultplugin", "plugin/llmsecrets"],
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        raise SystemExit(
            f"bench: git archive {ref} failed: {archive.stderr.decode(errors='replace').strip()}"
        )
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive.stdout, check=True)
    packages = {name: source / "plugin" / name for name in ENGINE_PACKAGES}
    return build_onefile(work / "plugins", f"{ENGINE_NAME}-baseline", ENGINE_ENTRY, packages)


def configure_llm(bao: BaoServer, mount: str, emu_url: str, admin_key: str, *, spend: bool) -> None:
    client = bao.client()
    client.write(f"{mount}/config/bench", provider="openrouter", admin_key=admin_key, base_url=emu_url)
    for role in ("bench", "prefix", "slow"):
        client.write(f"{mount}/roles/{role}", connection="bench", ttl="10m", max_ttl="1h")
    if not spend:
        try:
            client.write(f"{mount}/spend/config", enabled=False)
        except hvac.exceptions.InvalidPath:
            log(f"{mount}: this build has no spend per lease")


def configure_db(client: hvac.Client, pg: Postgres) -> None:
    """OpenBao's database engine at db/, on `pg`, with the roles bench and prefix."""
    client.sys.enable_secrets_engine(backend_type="database", path="db")
    client.write(
        "db/config/pg",
        plugin_name="postgresql-database-plugin",
        connection_url=f"postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{pg.port}/postgres?sslmode=disable",
        username="postgres",
        password=pg.password,
        allowed_roles="bench,prefix",
    )
    for role in ("bench", "prefix"):
        client.write(
            f"db/roles/{role}",
            db_name="pg",
            creation_statements=DB_CREATION,
            revocation_statements=DB_REVOCATION,
            default_ttl="10m",
            max_ttl="1h",
        )


def report(figures: Figures, rounds: int, llm_engines: list[str]) -> None:
    ratios = {
        "creds_per_s": ("creds/s at 4 clients", ">= 2"),
        "revoke_per_s": ("per-lease revoke/s at 4 clients", ">= 1"),
        "revoke_prefix_per_s": ("sync revoke-prefix leases/s", ">= 1"),
    }
    for (figure, engine), values in sorted(figures.values.items()):
        extras = figures.extra[(figure, engine)]
        if figure.startswith("cpu_per"):
            for key in ("plugin_cpu_ms", "bao_cpu_ms", "postgres_cpu_ms", "emulator_cpu_ms"):
                per_round = [e[key] for e in extras]
                target = (
                    "<= 1.0" if (figure, engine, key) == ("cpu_per_issue", "llm", "plugin_cpu_ms") else None
                )
                emit(
                    f"{figure}_{key.removesuffix('_cpu_ms')}",
                    statistics.median(per_round),
                    "ms",
                    engine=engine,
                    rounds=rounds,
                    per_round=per_round,
                    **({"target": target} if target else {}),
                )
            continue
        unit = "ms" if figure.endswith("_ms") else "1/s"
        emit(
            figure,
            statistics.median(values),
            unit,
            engine=engine,
            rounds=rounds,
            per_round=[round(v, 1) for v in values],
        )
    pairs = [(engine, "db") for engine in llm_engines] + [("llm", e) for e in llm_engines if e != "llm"]
    for figure, (what, target) in ratios.items():
        for mine, theirs in pairs:
            per_round = [
                round(a / b, 2)
                for a, b in zip(figures.values[(figure, mine)], figures.values[(figure, theirs)], strict=True)
            ]
            emit(
                f"{figure}_ratio",
                figures.median(figure, mine) / figures.median(figure, theirs),
                "x",
                what=f"{what}, {mine} / {'database engine' if theirs == 'db' else theirs}",
                per_round=per_round,
                **({"target": target} if (mine, theirs) == ("llm", "db") else {}),
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of the side-by-side phases")
    parser.add_argument("--seconds", type=float, default=6.0, help="duration of each creds phase")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--prefix-leases", type=int, default=1000, help="leases per sync revoke-prefix phase")
    parser.add_argument("--slow-leases", type=int, default=1000, help="leases in the 200 ms phases (0: skip)")
    parser.add_argument(
        "--slow-latency-ms", type=int, default=200, help="admin-API latency of the slow phases"
    )
    parser.add_argument(
        "--slow-sync-leases", type=int, default=20, help="leases of the slow sync revoke-prefix"
    )
    parser.add_argument("--pg-bin", type=Path, help=f"directory of the PostgreSQL {PG_MAJOR} server binaries")
    parser.add_argument("--no-install", action="store_true", help="never apt-get install PostgreSQL")
    parser.add_argument(
        "--baseline",
        metavar="GIT_REF",
        help="also mount the plugin built from this commit (at llm-base/, with an emulator of its own) in "
        "the same rounds: before and after a change in one run",
    )
    parser.add_argument(
        "--spend",
        choices=("on", "off"),
        default="on",
        help="spend per lease (read before each revoke's delete) as a mount has it by default, or off",
    )
    parser.add_argument(
        "--pg-durable",
        action="store_true",
        help="PostgreSQL waits for the WAL flush at each commit (default: off)",
    )
    args = parser.parse_args()

    try:
        pg_bin = postgres_binaries(args.pg_bin, may_install=not args.no_install)
    except Missing as exc:
        log(str(exc))
        return 2
    emit(
        "host",
        psutil.cpu_count() or 0,
        "cpus",
        load_average=load_average(),
        postgres=str(pg_bin),
        synchronous_commit="on" if args.pg_durable else "off",
    )

    admin_key = "sk-or-v1-bench-" + secrets.token_urlsafe(24)
    llm_engines = ["llm", "llm-base"] if args.baseline else ["llm"]
    engines = [*llm_engines, "db"]
    emus = {engine: OpenRouterEmulator(admin_key) for engine in llm_engines}
    pg = Postgres(pg_bin, durable=args.pg_durable)
    pids: list[int] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-vs-database-") as tmp,
        contextlib.ExitStack() as servers,
        ProcessPoolExecutor(max_workers=args.clients, initializer=_ignore_sigint) as pool,
    ):
        emu_urls = {engine: servers.enter_context(emu.serve()).base_url for engine, emu in emus.items()}
        work = Path(tmp)
        builds = {"llm": build_engine(work / "plugins")}
        if args.baseline:
            builds["llm-base"] = build_baseline(args.baseline, work)
        bao = BaoServer(work / "bao", work / "plugins", log_level="warn")
        try:
            try:
                pg.start()
            except Missing as exc:
                log(str(exc))
                return 2
            bao.start()
            assert bao.proc is not None
            trees: dict[str, list[psutil.Process]] = {}
            for engine, (plugin_path, sha256) in builds.items():
                bao.register_plugin(plugin_path.name, plugin_path.name, sha256)
                bao.enable(plugin_path.name, engine)
                trees[engine] = process_tree(plugin_process(bao, plugin_path).pid)
                pids += [p.pid for p in trees[engine]]
                configure_llm(bao, engine, emu_urls[engine], admin_key, spend=args.spend == "on")
            configure_db(bao.client(), pg)
            list(pool.map(warm, [bao.addr] * args.clients))
            meter = Components(trees, psutil.Process(bao.proc.pid), pg)
            bench = Bench(args, bao.addr, pool, meter, emus, pg)

            for engine in engines:  # warm every path (connections, caches) outside the figures
                bench.revoke_each(engine, bench.issue(engine, "bench", 40))
            bench.figures = Figures()
            for round_no in range(args.rounds):
                leases: dict[str, list[str]] = {}
                order = engines if round_no % 2 == 0 else engines[::-1]
                for engine in order:
                    leases[engine] = bench.creds(engine)
                for engine in order:
                    bench.revoke_each(engine, leases[engine])
                for engine in order:
                    bench.revoke_prefix(engine, args.prefix_leases)
                log(f"round {round_no + 1}/{args.rounds} done, load {load_average()}")
            report(bench.figures, args.rounds, llm_engines)

            if args.slow_leases:
                latency = args.slow_latency_ms / 1000
                for engine in llm_engines:
                    bench.slow_async_prefix(engine, args.slow_leases, latency)
                if args.slow_sync_leases:
                    bench.slow_sync_prefix(args.slow_sync_leases, latency)
                bench.slow_kill(args.slow_leases, latency)

            for engine in llm_engines:
                current, peak = rss_mb(trees[engine])
                emit("plugin_rss", current, "MB", engine=engine, peak_mb=round(peak, 1))
                emit(
                    "provider_keys_left",
                    bench.live(engine),
                    "keys",
                    engine=engine,
                    created=emus[engine].create_count,
                )
            emit("postgres_roles_left", bench.live("db"), "roles")
            emit("host_end", psutil.cpu_count() or 0, "cpus", load_average=load_average())
        finally:
            bao.stop()
            pg.stop()
            if pids and kill_leftovers(pids, timeout=10):
                log("killed plugin processes that outlived the server")
    return 0


if __name__ == "__main__":
    sys.exit(main())
