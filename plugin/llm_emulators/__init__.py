"""Fake admin APIs of LLM providers (OpenAI, OpenRouter, LiteLLM, Anthropic, xAI, Fireworks) for tests
and demos.

Each emulator is the provider's key-management API as a pure function (``emu.handle``), usable in-process with
``httpx.MockTransport`` or over a loopback HTTP server (``emu.serve()``), with fault knobs (rate limits,
5xx, latency, lost responses, revoked admin key) and a ledger of the keys it issued. The emulators follow the
shapes in ``docs/provider-admin-apis.md`` and are never kinder than the real APIs.
"""

from .anthropic import AnthropicEmulator
from .core import Emulator, EmulatorServer, Fault, FaultKind, FaultSet, LiveKey, Op
from .fireworks import FireworksEmulator
from .litellm import LiteLLMEmulator
from .openai import OpenAIEmulator
from .openrouter import OpenRouterEmulator
from .xai import XAIEmulator

__all__ = [
    "EMULATORS",
    "AnthropicEmulator",
    "Emulator",
    "EmulatorServer",
    "Fault",
    "FaultKind",
    "FaultSet",
    "FireworksEmulator",
    "LiteLLMEmulator",
    "LiveKey",
    "Op",
    "OpenAIEmulator",
    "OpenRouterEmulator",
    "XAIEmulator",
]

EMULATORS: dict[str, type[Emulator]] = {
    "openai": OpenAIEmulator,
    "openrouter": OpenRouterEmulator,
    "litellm": LiteLLMEmulator,
    "anthropic": AnthropicEmulator,
    "xai": XAIEmulator,
    "fireworks": FireworksEmulator,
}
