"""The provider clients by name, with their default base URLs, and the one factory the engine calls.

Where a provider's keys live besides its admin key (xAI: a team; Fireworks: an account and a user) is
given by the connection's account fields (`ACCOUNT_FIELDS`). The connection stores them joined into one
string, its `organization_id` slot (`join_account` / `split_account`), which `make_client` takes apart:
OpenAI's organization id, xAI's team id, or Fireworks' `accounts/<account id>/users/<user id>`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx

from . import fireworks, openai, openrouter, xai
from .base import ProviderClient, SecretStr
from .fireworks import FireworksClient
from .http import CallGuards
from .litellm import LiteLLMClient
from .openai import OpenAIClient
from .openrouter import OpenRouterClient
from .retry import RetryPolicy
from .xai import XAIClient


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
    "xai": ProviderInfo("xai", xai.DEFAULT_BASE_URL, XAIClient),
    "fireworks": ProviderInfo("fireworks", fireworks.DEFAULT_BASE_URL, FireworksClient),
}

# The connection fields that say where a provider's keys live, all required for that provider.
ACCOUNT_FIELDS: dict[str, tuple[str, ...]] = {"xai": ("team_id",), "fireworks": ("account_id", "user_id")}
# Ids that go into URL paths: no "/", no spaces, nothing a path segment must escape.
ACCOUNT_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}")


def join_account(provider: str, values: Mapping[str, str]) -> str:
    """The one stored string for `provider`'s account fields (all of them must be in `values`)."""
    if provider == "xai":
        return values["team_id"]
    if provider == "fireworks":
        return fireworks.user_scope(values["account_id"], values["user_id"])
    raise ValueError(f"{provider} has no account fields")


def split_account(provider: str, joined: str | None) -> dict[str, str]:
    """The account fields of `provider` from their stored string ({} for a provider without any)."""
    fields = ACCOUNT_FIELDS.get(provider, ())
    if not fields:
        return {}
    if not joined:
        return dict.fromkeys(fields, "")
    if provider == "fireworks":
        account, user = fireworks.split_scope(joined)
        return {"account_id": account, "user_id": user}
    return {"team_id": joined}


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
    LiteLLM base URL, or an `organization_id` that does not fit the provider: OpenAI's organization id,
    xAI's team id, Fireworks' `accounts/<account id>/users/<user id>` (`join_account`), nothing for others."""
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
    if provider == "xai":
        team = split_account(provider, organization_id)["team_id"]
        return XAIClient(
            admin_key=admin_key, team_id=team, base_url=url, transport=transport, retry=retry, guards=guards
        )
    if provider == "fireworks":
        ids = split_account(provider, organization_id)
        return FireworksClient(
            admin_key=admin_key,
            account_id=ids["account_id"],
            user_id=ids["user_id"],
            base_url=url,
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
