"""`sets/<name>`, `LIST sets` and `sets/<name>/creds`: the paths of Anthropic check-out sets (the rules are in
checkout_sets.py). A set's key values are write-only: reads show ids and states, never a value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vaultplugin.framework import (
    BadRequest,
    Field,
    FieldData,
    FieldType,
    Operation,
    OperationSpec,
    Path,
    Request,
    Response,
)

from llmsecrets import checkout_sets, errors
from llmsecrets.checkout_sets import InvalidSet, SetInUse
from llmsecrets.providers.errors import ProviderError

if TYPE_CHECKING:
    from llmsecrets.backend import LLMBackend

NAME = r"(?P<name>\w(([\w.-]+)?\w)?)"

FIELDS: dict[str, Field] = {
    "name": Field(FieldType.NAME, "Name of the check-out set."),
    "connection": Field(
        FieldType.STRING,
        "The anthropic connection (config/<name>) whose admin key switches the set's keys on and off. "
        "Required on create; it cannot change while a key is checked out.",
        max_length=128,
    ),
    "ttl": Field(FieldType.DURATION, "Lease TTL of a check-out (default: the mount's default lease TTL)."),
    "max_ttl": Field(
        FieldType.DURATION,
        "How long a check-out can be renewed for, at most (default: the mount's max lease TTL).",
    ),
    "keys": Field(
        FieldType.MAP,
        "The whole set of keys: a JSON object of Anthropic key id -> key value, e.g. "
        '{"apikey_01Ab...": "sk-ant-api03-..."} (or id=value,id2=value2). Replaces the stored keys; keys '
        "left out are removed (a key that is checked out cannot be). Write-only: never returned.",
        sensitive=True,
    ),
    "add_keys": Field(
        FieldType.MAP,
        "Keys to add, as for `keys` (id -> value), leaving the others as they are. Write-only.",
        sensitive=True,
    ),
    "remove_keys": Field(
        FieldType.COMMA_STRING_LIST,
        "Ids of keys to remove from the set (none of them may be checked out). They stay inactive at "
        "Anthropic.",
    ),
    "verify": Field(
        FieldType.BOOL,
        "Look every added key up at Anthropic before storing the set: it must exist and be usable, and its "
        "value must fit the key's hint; an active key is made inactive (a key at rest in a set is never "
        "active). With false nothing is checked, and the sweep deactivates an active key later.",
        default=True,
    ),
}

SET_HELP = """\
A check-out set lends pre-made Anthropic API keys to leases, one key per lease, for providers that cannot
create a key per lease: Anthropic's Admin API can only switch a key between active and inactive.

Make the keys in Anthropic's console (one per workload that may hold a key at once, plus a few spare), then
write them here with their ids: the values are write-only. The engine keeps every key of the set inactive
while no lease holds it. Reading sets/<name>/creds checks a free key out: the engine activates it and
returns it under a lease; renew extends the lease up to max_ttl; revoke or expiry deactivates the key and
returns it to the set. A key the engine cannot deactivate is retried every few seconds, and lent to no one
until it is inactive.

How this differs from creds/<role> (a key per lease):
  - the SAME key value comes back: a later lease may get the key an earlier lease held. A leaked key is usable
    only while some lease holds it, not forever, but it is not dead after its lease either;
  - so rotate the set's keys in Anthropic's console now and then (make new keys, add_keys them, remove_keys
    the old ones once they are free, archive the old ones in the console);
  - no spend limit, model list or provider-side expiry per key.

A read shows each key's id and state (free, checked_out with its lease end, deactivating with its last
error, unusable when Anthropic refused to activate it), never a value.

Example:
    bao write llm/config/anthropic provider=anthropic admin_key=@anthropic-admin-key.txt
    bao write llm/sets/team connection=anthropic ttl=1h max_ttl=8h keys=@team-keys.json
    bao write llm/sets/team add_keys=apikey_01Xy...=sk-ant-api03-...
    bao read llm/sets/team
    bao write llm/sets/team remove_keys=apikey_01Ab...

A set with keys checked out or awaiting deactivation cannot be deleted: revoke its leases first
(bao lease revoke -prefix llm/sets/team/creds).
"""

CREDS_HELP = """\
Reading sets/<name>/creds checks one free key of the set out: the engine activates it at Anthropic and returns
it under a lease. No two leases ever hold the same key at once (also under concurrent reads and across
restarts). When the lease ends (expiry or revoke) the key is deactivated and returned to the set.

This is NOT a new key: the same value was lent before and will be lent again. Read once per workload and
renew (Vault Agent does this), not once per request.

Returns:
    api_key      the Anthropic API key (its value is the same for every lease that gets this key)
    key_id       Anthropic's id of the key
    key_name     its name in the console
    set, connection, provider

Errors:
    400  unknown set, or the set's connection is missing or not an anthropic connection; or Anthropic refused
         to activate the key (archived or deleted in the console: remove it from the set)
    429  no key of the set is free: the message says how many are checked out or await deactivation
    502  Anthropic failed or refused the admin key (no key was lent)
"""


def paths(b: LLMBackend) -> list[Path]:
    def exists(req: Request, d: FieldData) -> bool:
        return checkout_sets.get_set(b.storage_of(req), d.get_str("name")) is not None

    def read(req: Request, d: FieldData) -> Response | None:
        storage = b.storage_of(req)
        s = checkout_sets.get_set(storage, d.get_str("name"))
        if s is None:
            return None
        return Response(data=checkout_sets.view(s, checkout_sets.holds_of(storage, s.name)))

    def write(req: Request, d: FieldData) -> Response | None:
        name = d.get_str("name")
        try:
            checkout_sets.write(b, b.storage_of(req), name, _sent(d), verify=d.get_bool("verify"))
        except (InvalidSet, SetInUse) as exc:
            raise BadRequest(str(exc)) from None
        except ProviderError as exc:
            raise errors.for_verify(exc, connection=_connection_name(b, req, d)) from None
        return None

    def delete(req: Request, d: FieldData) -> None:
        try:
            checkout_sets.delete(b, b.storage_of(req), d.get_str("name"))
        except SetInUse as exc:
            raise BadRequest(str(exc)) from None

    def list_sets(req: Request, d: FieldData) -> Response:
        return Response(data={"keys": checkout_sets.set_names(b.storage_of(req))})

    def creds(req: Request, d: FieldData) -> Response:
        b.require_active()
        out = checkout_sets.check_out(b, b.storage_of(req), d.get_str("name"))
        return b.checkout.response(out.data, out.internal, ttl=out.ttl, max_ttl=out.max_ttl)

    return [
        Path(
            "sets/?$",
            operations={Operation.LIST: OperationSpec(list_sets, summary="List check-out sets.")},
            synopsis="List the Anthropic check-out sets.",
            description="Lists the names of the sets written to sets/<name>.",
        ),
        Path(
            f"sets/{NAME}/creds",
            fields={"name": FIELDS["name"]},
            operations={
                Operation.READ: OperationSpec(creds, summary="Check a key of the set out under a lease.")
            },
            synopsis="Check out one key of an Anthropic check-out set under a lease.",
            description=CREDS_HELP,
        ),
        Path(
            f"sets/{NAME}",
            fields=FIELDS,
            operations={
                Operation.READ: OperationSpec(read, summary="Read a set: key ids and states, never values."),
                Operation.CREATE: OperationSpec(write, summary="Create a check-out set."),
                Operation.UPDATE: OperationSpec(write, summary="Update a check-out set or its keys."),
                Operation.DELETE: OperationSpec(delete, summary="Delete a set with no key checked out."),
            },
            existence_check=exists,
            synopsis="Manage an Anthropic check-out set: its connection, lease TTLs and pre-made keys.",
            description=SET_HELP,
        ),
    ]


def _sent(d: FieldData) -> dict[str, Any]:
    """The set fields this request sent, parsed."""
    names = ("connection", "ttl", "max_ttl", "keys", "add_keys", "remove_keys")
    return {name: d.get(name) for name in names if d.is_set(name)}


def _connection_name(b: LLMBackend, req: Request, d: FieldData) -> str:
    if d.is_set("connection"):
        return d.get_str("connection")
    s = checkout_sets.get_set(b.storage_of(req), d.get_str("name"))
    return s.connection if s is not None else "?"
