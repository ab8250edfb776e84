"""scripts/soak, the bounded soak (issue-and-revoke cycles under injected provider faults), run as a user runs
it: a quick run must PASS and print its figures; a run with a key that no lease owns must FAIL on exactly
that check. The full 20,000-cycle run is a command of its own (`scripts/soak`), not a test.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
SOAK = ROOT / "scripts" / "soak.py"


class Run:
    """One run of the script: its exit status, JSON lines by kind, and its last line."""

    def __init__(self, returncode: int, stdout: str) -> None:
        self.returncode = returncode
        lines = stdout.splitlines()
        self.last = lines[-1] if lines else ""
        records = [json.loads(line) for line in lines if line.startswith("{")]
        self.figures: list[dict[str, Any]] = [r for r in records if "figure" in r]
        self.checks: dict[str, bool] = {r["check"]: r["ok"] for r in records if "check" in r}

    def figure(self, name: str) -> dict[str, Any]:
        [found] = [f for f in self.figures if f["figure"] == name]
        return found

    def faults(self, kind: str) -> int:
        return sum(f["value"] for f in self.figures if f["figure"] == "faults_injected" and f["kind"] == kind)


@pytest.fixture
def run_soak(tmp_path: Path) -> Iterator[Any]:
    """Runs the script. Its descendants (server, plugin, client processes) are noted while it runs, and at
    teardown any still alive is killed by PID (psutil checks it is the same process, not a reused PID)."""
    seen: list[psutil.Process] = []

    def run(*args: str, timeout: float) -> Run:
        out, err = tmp_path / "soak.out", tmp_path / "soak.err"
        with out.open("w") as stdout, err.open("w") as stderr:
            # TMPDIR: a failed run keeps its work directory (the server log) under this test's tmp_path.
            env = {**os.environ, "TMPDIR": str(tmp_path)}
            proc = psutil.Popen([sys.executable, str(SOAK), *args], stdout=stdout, stderr=stderr, env=env)
        seen.append(proc)
        deadline = time.monotonic() + timeout
        while proc.poll() is None:
            if time.monotonic() > deadline:
                pytest.fail(f"scripts/soak {' '.join(args)} ran longer than {timeout:.0f} s")
            with contextlib.suppress(psutil.NoSuchProcess):
                known = {p.pid for p in seen}
                seen.extend(c for c in proc.children(recursive=True) if c.pid not in known)
            time.sleep(0.5)
        print(err.read_text(), file=sys.stderr)
        return Run(proc.returncode, out.read_text())

    yield run
    for proc in seen:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()


@pytest.mark.timeout(150)
def test_quick_soak_passes_and_reports(run_soak: Any) -> None:
    run = run_soak("--quick", "--seed", "3", timeout=120)
    assert run.returncode == 0, run.last
    assert run.last == "soak: PASS"
    assert run.checks and all(run.checks.values()), run.checks
    assert run.figure("cycles")["value"] == 400
    # The faults were injected, dropped creates among them, so the rollback path was exercised.
    assert run.faults("drop_after_create") > 0
    assert run.faults("rate_limit") + run.faults("server_error") > 0
    assert run.figure("provider_keys_left")["value"] == 0
    for name in ("cycles_per_s", "issue_p50", "issue_p99", "revoke_p50", "revoke_p99", "plugin_rss_end"):
        assert run.figure(name)["value"] > 0


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_soak_fails_on_a_key_no_lease_owns(run_soak: Any) -> None:
    """The checks are not vacuous: one key at the provider that nothing owns fails the run, on that check."""
    run = run_soak("--quick", "--fault-rate", "0", "--plant-orphan", timeout=120)
    assert run.returncode == 1
    assert run.last == "soak: FAIL: no key left at the provider (0 orphans)"
    assert run.figure("provider_keys_left")["value"] == 1
    assert [name for name, ok in run.checks.items() if not ok] == ["no key left at the provider (0 orphans)"]
