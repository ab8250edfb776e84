"""Fixtures for the hostile-input suite: one OpenBao dev server for the session with the engine (the one-file
build) mounted at `llm`, healthy emulators of the three providers, and the plugin's own OpenAPI document.
Everything started here is stopped by PID at teardown.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# A development dependency (pyproject's dev extra); until an environment has it, say so rather than fail.
pytest.importorskip("hypothesis", reason="hypothesis is not installed: run scripts/bootstrap")

# The shared helpers live beside this file; make them importable under any pytest import mode.
sys.path.insert(0, str(Path(__file__).parent))
from fuzz_support import (
    FIGURES,
    PLUGIN_NAME,
    TALLY,
    ApiOperation,
    Target,
    fetch_openapi,
    operations_from_openapi,
    running_target,
)


@pytest.fixture(scope="session")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    with running_target(tmp_path_factory.mktemp("fuzz")) as t:
        yield t


@pytest.fixture(scope="session")
def openapi(target: Target) -> dict[str, Any]:
    return fetch_openapi(target)


@pytest.fixture(scope="session")
def operations(openapi: dict[str, Any]) -> dict[str, ApiOperation]:
    """The document's operations by id, without the plugin-name prefix OpenBao puts on each."""
    return {op.operation_id.removeprefix(f"{PLUGIN_NAME}-"): op for op in operations_from_openapi(openapi)}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not TALLY.requests:
        return
    write = terminalreporter.write_line
    terminalreporter.section("hostile input (tests/fuzz)")
    write(f"requests sent: {TALLY.requests}; statuses: {TALLY.by_status()}")
    for (label, status), count in sorted(TALLY.statuses.items()):
        write(f"  {label:40} {status}: {count}")
    for name, value in FIGURES.items():
        write(f"{name}: {value}")
