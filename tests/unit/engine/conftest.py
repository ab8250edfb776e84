from __future__ import annotations

import pytest
from engine_env import Env

PROVIDERS = ("openai", "openrouter", "litellm")


@pytest.fixture
def env() -> Env:
    return Env()


@pytest.fixture(params=PROVIDERS)
def provider(request: pytest.FixtureRequest) -> str:
    return str(request.param)
