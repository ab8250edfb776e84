"""The leased secret `llm_anthropic_checkout`: a key of a check-out set, lent to one lease at a time.

Renew extends the lease up to the set's max TTL from the check-out (the key stays active); revoke and expiry
deactivate the key at Anthropic and return it to the set. The work, and the revoke contract, are in
checkout_sets.py. Both run on the plugin's hub, like the other secret type's (a set's lock is taken on a pool
thread there).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vaultplugin.framework import Field, FieldData, FieldType, Request, Response, SecretType, VaultError

from llmsecrets import checkout_sets
from llmsecrets.checkout_sets import SECRET_TYPE
from llmsecrets.leases import RENEWED_AT

if TYPE_CHECKING:
    from llmsecrets.backend import LLMBackend

RESPONSE_FIELDS: dict[str, Field] = {
    "api_key": Field(
        FieldType.STRING,
        "The Anthropic API key lent to this lease. The same value is lent to later leases once this one "
        "ends (it is inactive in between): a check-out set is weaker than a key per lease.",
        sensitive=True,
    ),
    "key_id": Field(FieldType.STRING, "Anthropic's id of the key (apikey_...)."),
    "key_name": Field(FieldType.STRING, "The key's name in Anthropic's console."),
    "set": Field(FieldType.STRING, "The check-out set the key belongs to."),
    "connection": Field(FieldType.STRING, "The connection whose admin key switches the key on and off."),
    "provider": Field(FieldType.STRING, "anthropic."),
}


def checkout_secret(b: LLMBackend) -> SecretType:
    def renew(req: Request, d: FieldData) -> Response:
        lease = req.secret
        if lease is None:
            raise VaultError("renew request carries no lease")
        now = b.clock()
        ttl = checkout_sets.renew(b, b.storage_of(req), lease)
        # Vault replaces the internal data with the renew response's: revoke learns when the TTL restarted.
        lease.internal_data = {**lease.internal_data, RENEWED_AT: now}
        return b.checkout.renew_response(req, ttl=ttl)

    def revoke(req: Request, d: FieldData) -> None:
        lease = req.secret
        if lease is None:
            raise VaultError("revoke request carries no lease")
        checkout_sets.revoke(b, b.storage_of(req), lease, mount_point=req.mount_point)

    return SecretType(name=SECRET_TYPE, fields=RESPONSE_FIELDS, renew=renew, revoke=revoke)
