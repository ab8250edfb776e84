"""Fixtures for the admin-key rotation's end-to-end tests: one OpenBao dev server with the engine registered
serves the session; each test gets its own mount (its own plugin process) and its own provider emulator on
loopback. Everything started here is stopped by PID at teardown."""

from __future__ import annotations

import sys
from pathlib import Path

# The engine suite's helpers (server, mounts, emulators) and this suite's own, under any import mode.
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "e2e_engine"))
from engine_fixtures import api, bao, engine_plugin, unmounter  # noqa: F401 (fixtures)
