"""`config/<name>/rotate`: replace a connection's admin key with a new one the provider makes.

The rules are in rotation.py; this module declares the path and translates its errors."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

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

from llmsecrets import errors, rotation
from llmsecrets.connections import UnusableConnection
from llmsecrets.providers.errors import ProviderError

if TYPE_CHECKING:
    from llmsecrets.backend import LLMBackend

ROTATE_HELP = """\
Rotate the connection's admin key without downtime, where the provider's admin API can make admin keys
(OpenAI: organization admin API keys).

Phase 1 (this request): the engine creates a new admin key at the provider, checks it with a harmless
call, and stores it; creds, renewals and revocations use it from then on. Phase 2: the old key is deleted
at the provider, by id, once the calls made with it have ended (within seconds), and at the latest
rotation_overlap seconds (config/<name>, default 60) after the rotation. A write-ahead log entry and the
periodic rollback tick finish or undo a rotation interrupted at any step (a crash leaves neither two
admin keys alive for ever nor none).

To delete the old key the engine must know its id: OpenAI lists admin keys with only the start and end
of their value visible; if that does not single out the stored key, write its id first
(config/<name> admin_key_id=key_...).

config/<name> rotation_period=30d makes the rollback tick rotate the key when it is older than that.
A read of config/<name> shows admin_key_id, admin_key_rotated_at and, during the overlap,
previous_admin_key_id and previous_admin_key_delete_by.

Providers whose admin API cannot make admin keys (OpenRouter management keys are made in its
dashboard; xAI, Fireworks) answer 400: rotate by hand by writing the new key to config/<name>
admin_key=..., which is checked before it replaces the old one (a key that fails the check changes
nothing), then delete the old key at the provider.

Example:
    bao write -f llm/config/openai/rotate
"""


def paths(b: LLMBackend) -> list[Path]:
    def rotate(req: Request, d: FieldData) -> Response:
        name = d.get_str("name")
        mount = req.mount_point or "<mount>/"
        try:
            done = rotation.rotate(b, b.storage_of(req), name, mount=mount)
        except rotation.RotationError as exc:
            raise BadRequest(str(exc)) from None
        except UnusableConnection as exc:
            raise BadRequest(f"invalid connection settings: {exc.reason}") from None
        except ProviderError as exc:
            raise errors.for_request(exc, connection=name, action="rotating the admin key") from None
        return Response(
            data={
                "admin_key_id": done.admin_key_id,
                "previous_admin_key_id": done.previous_admin_key_id,
                "previous_admin_key_delete_by": datetime.fromtimestamp(done.previous_delete_by, UTC).strftime(
                    "%Y-%m-%dT%H:%M:%SZ"
                ),
            }
        )

    return [
        Path(
            r"config/(?P<name>\w(([\w.-]+)?\w)?)/rotate",
            fields={"name": Field(FieldType.NAME, "Name of the connection whose admin key is rotated.")},
            operations={
                Operation.UPDATE: OperationSpec(rotate, summary="Rotate the connection's admin key."),
            },
            synopsis="Rotate the admin key: a new one from the provider, the old one deleted next.",
            description=ROTATE_HELP,
        )
    ]
