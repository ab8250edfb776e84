"""Provider clients: each LLM provider's admin API behind one `ProviderClient` protocol.

from llmsecrets.providers import make_client, KeySpec
client = make_client("openrouter", admin_key=...)
issued = client.create_key(KeySpec(name="vault-..."), deadline=time.monotonic() + 30)
client.delete_key(issued.key_id, scope=issued.scope, deadline=time.monotonic() + 30)
"""

from .base import Capabilities, IssuedKey, KeySpec, ProviderClient, ProviderKey, SecretStr
from .bulkhead import Bulkhead
from .errors import (
    CreateOutcomeUnknown,
    ProviderAuthError,
    ProviderBadResponse,
    ProviderBusy,
    ProviderCallCancelled,
    ProviderError,
    ProviderNotFound,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
    scrub,
)
from .http import CallGuards
from .litellm import LiteLLMClient
from .openai import OpenAIClient
from .openrouter import OpenRouterClient
from .registry import PROVIDERS, ProviderInfo, make_client
from .retry import RetryPolicy

__all__ = [
    "PROVIDERS",
    "Bulkhead",
    "CallGuards",
    "Capabilities",
    "CreateOutcomeUnknown",
    "IssuedKey",
    "KeySpec",
    "LiteLLMClient",
    "OpenAIClient",
    "OpenRouterClient",
    "ProviderAuthError",
    "ProviderBadResponse",
    "ProviderBusy",
    "ProviderCallCancelled",
    "ProviderClient",
    "ProviderError",
    "ProviderInfo",
    "ProviderKey",
    "ProviderNotFound",
    "ProviderRateLimited",
    "ProviderRejected",
    "ProviderUnavailable",
    "RetryPolicy",
    "SecretStr",
    "make_client",
    "scrub",
]
