"""The provider clients by name, with their default base URLs and account fields, and the one factory the
engine calls.

Where a provider's keys live besides its admin key is said by its account fields (`ProviderInfo.account`):
OpenAI's organization (optional, sent as a header), xAI's team, Fireworks' account and user (required, they
go into URL paths). A connection stores them by name, and `make_client` hands them to the client's
constructor as the keyword arguments of the same names.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

import httpx

from . import anthropic, fireworks, openai, openrouter, xai
from .anthropic import AnthropicClient
from .base import ProviderClient, SecretStr
from .fireworks import FireworksClient
from .http import CallGuards
from .litellm import LiteLLMClient
from .openai import OpenAIClient
from .openrouter import OpenRouterClient
from .retry import RetryPolicy
from .xai import XAIClient

# Ids that go into URL paths: no "/", no spaces, nothing a path segment must escape.
ACCOUNT_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}")


class Carrier(StrEnum):
    """Where an account field travels, which decides what a valid value is."""

    HEADER = "header"  # an HTTP header value: printable ASCII without spaces
    PATH = "path"  # a URL path segment: ACCOUNT_ID_RE


@dataclass(frozen=True)
class AccountField:
    """One account field of a provider: also the keyword argument of its client's constructor."""

    name: str
    required: bool
    carrier: Carrier


@dataclass(frozen=True)
class ProviderInfo:
    """`default_base_url` None means the base URL must be configured (LiteLLM: the proxy's own URL)."""

    name: str
    default_base_url: str | None
    factory: Callable[..., ProviderClient]
    account: tuple[AccountField, ...] = ()

    @property
    def account_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.account)


PROVIDERS: dict[str, ProviderInfo] = {
    # No roles: its keys are leased through check-out sets (capabilities.checkout_only).
    "anthropic": ProviderInfo("anthropic", anthropic.DEFAULT_BASE_URL, AnthropicClient),
    "openai": ProviderInfo(
        "openai",
        openai.DEFAULT_BASE_URL,
        OpenAIClient,
        (AccountField("organization_id", required=False, carrier=Carrier.HEADER),),
    ),
    "openrouter": ProviderInfo("openrouter", openrouter.DEFAULT_BASE_URL, OpenRouterClient),
    "litellm": ProviderInfo("litellm", None, LiteLLMClient),
    "xai": ProviderInfo(
        "xai",
        xai.DEFAULT_BASE_URL,
        XAIClient,
        (AccountField("team_id", required=True, carrier=Carrier.PATH),),
    ),
    "fireworks": ProviderInfo(
        "fireworks",
        fireworks.DEFAULT_BASE_URL,
        FireworksClient,
        (
            AccountField("account_id", required=True, carrier=Carrier.PATH),
            AccountField("user_id", required=True, carrier=Carrier.PATH),
        ),
    ),
}
PROVIDER_NAMES = tuple(sorted(PROVIDERS))


def account_owners() -> dict[str, tuple[str, ...]]:
    """Every account field name -> the providers that declare it."""
    owners: dict[str, tuple[str, ...]] = {}
    for info in PROVIDERS.values():
        for f in info.account:
            owners[f.name] = (*owners.get(f.name, ()), info.name)
    return owners


def make_client(
    provider: str,
    *,
    admin_key: SecretStr | str,
    base_url: str | None = None,
    account: Mapping[str, str] | None = None,
    transport: httpx.BaseTransport | None = None,
    retry: RetryPolicy | None = None,
    guards: CallGuards | None = None,
) -> ProviderClient:
    """Build the client for `provider`. Raises ValueError for an unknown provider, a missing LiteLLM base
    URL, a required account field that is missing, or an account field `provider` does not have."""
    info = PROVIDERS.get(provider)
    if info is None:
        raise ValueError(f"unknown provider {provider!r}; expected one of: {', '.join(PROVIDER_NAMES)}")
    url = base_url or info.default_base_url
    if not url:
        raise ValueError(f"{provider}: base_url is required")
    given = {k: v for k, v in (account or {}).items() if v}
    for name in given:
        if name not in info.account_names:
            owners = account_owners().get(name)
            where = f"applies to {' and '.join(owners)} only" if owners else "is not an account field"
            raise ValueError(f"{provider}: {name} {where}")
    for f in info.account:
        if f.required and not given.get(f.name, "").strip():
            raise ValueError(f"{provider}: {f.name} is required")
    return info.factory(
        admin_key=admin_key, base_url=url, transport=transport, retry=retry, guards=guards, **given
    )
