"""Fixtures for the spend-per-lease end-to-end tests: one OpenBao server with the built engine for the
session, one mount and one emulator per test (engine_support from tests/e2e_engine). Everything started is
stopped by PID at teardown."""

from __future__ import annotations

import sys
from pathlib import Path

# The engine suite's helpers (a uniquely named module) and this suite's own, importable under any import mode.
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "e2e_engine"))
from engine_fixtures import api, bao, engine_plugin, unmounter  # noqa: F401 (fixtures)
