"""The provider clients by name, with their default base URLs, and the one factory the engine calls."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import httpx

from . import openai, openrouter
from .base import ProviderClient, SecretStr
from .http import CallGuards
from .litellm import LiteLLMClient
from .openai import OpenAIClient
from .openrouter import OpenRouterClient
from .retry import RetryPolicy


@dataclass(frozen=True)
class ProviderInfo:
    """`default_base_url` None means the base URL must be configured (LiteLLM: the proxy's own URL)."""

    name: str
    default_base_url: str | None
    factory: Callable[..., ProviderClient]


PROVIDERS: dict[str, ProviderInfo] = {
    "openai": ProviderInfo("openai", openai.DEFAULT_BASE_URL, OpenAIClient),
    "openrouter": ProviderInfo("openrouter", openrouter.DEFAULT_BASE_URL, OpenRouterClient),
    "litellm": ProviderInfo("litellm", None, LiteLLMClient),
}


def make_client(
    provider: str,
    *,
    admin_key: SecretStr | str,
    base_url: str | None = None,
    organization_id: str | None = None,
    transport: httpx.BaseTransport | None = None,
    retry: RetryPolicy | None = None,
    guards: CallGuards | None = None,
) -> ProviderClient:
    """Build the client for `provider`. Raises ValueError for an unknown provider, a missing
    LiteLLM base URL, or an `organization_id` given to a provider other than OpenAI."""
    info = PROVIDERS.get(provider)
    if info is None:
        raise ValueError(f"unknown provider {provider!r}; expected one of: {', '.join(sorted(PROVIDERS))}")
    url = base_url or info.default_base_url
    if not url:
        raise ValueError(f"{provider}: base_url is required")
    if provider == "openai":
        return OpenAIClient(
            admin_key=admin_key,
            base_url=url,
            organization_id=organization_id,
            transport=transport,
            retry=retry,
            guards=guards,
        )
    if organization_id:
        raise ValueError(f"{provider}: organization_id applies to openai only")
    if provider == "openrouter":
        return OpenRouterClient(
            admin_key=admin_key, base_url=url, transport=transport, retry=retry, guards=guards
        )
    return LiteLLMClient(admin_key=admin_key, base_url=url, transport=transport, retry=retry, guards=guards)
