"""Fixtures for the Vault Agent tests: one OpenBao server with the engine at `llm`, an OpenAI emulator and
the `kubernetes` auth method (against a fake TokenReview API) for the whole session; each test runs a real
`bao agent` with a shipped config. Everything started here is stopped by PID at teardown.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The shared helpers live beside this file; make them importable under any pytest import mode.
sys.path.insert(0, str(Path(__file__).parent))
from agent_support import AgentStack, BuiltEngine, build, start_stack, stop_stack


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> BuiltEngine:
    """The shipped one-file plugin (built once; the build is cached by source digest)."""
    return build(tmp_path_factory.mktemp("agent-engine"))


@pytest.fixture(scope="session")
def agent_stack(tmp_path_factory: pytest.TempPathFactory, engine: BuiltEngine) -> Iterator[AgentStack]:
    stack = start_stack(tmp_path_factory.mktemp("agent-stack"), engine)
    try:
        yield stack
    finally:
        survivors = stop_stack(stack)
    assert not survivors, f"plugin processes {survivors} outlived the stopped server"


@pytest.fixture
def stack(agent_stack: AgentStack) -> Iterator[AgentStack]:
    """The session's stack; the test's leases are revoked (their keys deleted) when it ends."""
    yield agent_stack
    agent_stack.revoke_all()
