"""Fixtures: every emulator test runs both in-process (MockTransport) and over a real loopback server."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The shared helpers live beside this file; make them importable under any pytest import mode.
sys.path.insert(0, str(Path(__file__).parent))
from emu_support import PROVIDERS, FakeClock, Harness, Provider, harness
from llm_emulators import LiteLLMEmulator, OpenAIEmulator, OpenRouterEmulator


@pytest.fixture(params=["inproc", "server"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def openai_h(mode: str, clock: FakeClock) -> Iterator[Harness]:
    yield from harness(OpenAIEmulator(clock=clock, projects=("proj_default", "proj_other")), mode)


@pytest.fixture
def openrouter_h(mode: str, clock: FakeClock) -> Iterator[Harness]:
    yield from harness(OpenRouterEmulator(clock=clock), mode)


@pytest.fixture
def litellm_h(mode: str, clock: FakeClock) -> Iterator[Harness]:
    yield from harness(LiteLLMEmulator(clock=clock), mode)


@pytest.fixture(params=PROVIDERS, ids=[p.name for p in PROVIDERS])
def provider(request: pytest.FixtureRequest) -> Provider:
    p: Provider = request.param
    return p


@pytest.fixture
def any_h(provider: Provider, mode: str, clock: FakeClock) -> Iterator[Harness]:
    yield from harness(provider.make(clock), mode)
