"""The leased secret `llm_api_key`: its response fields and its renew and revoke handlers.

The work is in leases.py (the revoke contract is described there).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vaultplugin.framework import Field, FieldData, FieldType, Request, Response, SecretType

from llmsecrets import leases
from llmsecrets.providers.registry import PROVIDER_NAMES

if TYPE_CHECKING:
    from llmsecrets.backend import LLMBackend

SECRET_TYPE = "llm_api_key"  # noqa: S105 - a type name, not a password

RESPONSE_FIELDS: dict[str, Field] = {
    "api_key": Field(FieldType.STRING, "The provider API key. Shown once; never stored.", sensitive=True),
    "key_id": Field(FieldType.STRING, "The provider's id of the key (what revoke deletes)."),
    "key_name": Field(FieldType.STRING, "The key's name at the provider."),
    "provider": Field(FieldType.STRING, f"The provider: {', '.join(PROVIDER_NAMES)}."),
    "role": Field(FieldType.STRING, "The role the key was issued for."),
    "connection": Field(FieldType.STRING, "The connection the key was minted through."),
    "expires_at": Field(
        FieldType.STRING,
        "When the provider itself expires the key (ISO-8601 UTC); only where the provider enforces expiry.",
    ),
}


def api_key_secret(b: LLMBackend) -> SecretType:
    def renew(req: Request, d: FieldData) -> Response:
        return leases.renew(b, req)

    def revoke(req: Request, d: FieldData) -> None:
        leases.revoke(b, req)

    return SecretType(name=SECRET_TYPE, fields=RESPONSE_FIELDS, renew=renew, revoke=revoke)
