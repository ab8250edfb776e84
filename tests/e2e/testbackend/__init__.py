"""A secrets engine for the end-to-end tests of the protocol layer. It knows nothing about LLMs.

Every path exists to make one protocol behaviour observable through Vault's HTTP API:

- ``kv/<name>``, ``kv/``: storage round-trips (create/update/read/delete/list, with an existence check);
- ``config``: the default ``ttl``/``max_ttl`` of leases;
- ``lease``: a lease-issuing read that does exactly ONE storage get (the config); the benchmarks use it;
- ``revocations``: what the ``token`` secret type's revoke handler received (and its renewals);
- ``faults``: make the next N revokes fail with a passing upstream fault (retryable, a 502);
- ``crash``: write a WAL entry, then kill the plugin process (a crash in the middle of an operation);
- ``wal``, ``rollbacks``: the WAL entries left, and what the WAL rollback callback undid;
- ``pid``: the plugin process's id (to kill it from a test);
- ``identity``: what the host's SystemView EntityInfo and GroupsForEntity say of the requesting entity (or of
  the ``entity_id`` asked for), called on the hub as an engine's read would;
- ``errors/...``: one path for each error class (400, 502, 500, and 405 on write);
- and a Setup that refuses a mount with the option ``fail_setup``.

Records are JSON under storage prefixes, keyed so that a listing sorts them in time order.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import uuid
from typing import Any

from vaultplugin.framework import (
    Alias,
    Backend,
    BadRequest,
    Entity,
    Field,
    FieldData,
    FieldType,
    Group,
    Operation,
    OperationSpec,
    Path,
    Request,
    Response,
    SecretType,
    Storage,
    SystemView,
    UpstreamError,
    generic_name_regex,
    get_json,
    list_pattern,
    list_wal,
    put_json,
    put_wal,
)

VERSION = "v0.1.0"
WAL_KIND = "e2e-thing"
FAIL_SETUP_OPTION = "fail_setup"
SETUP_REJECTED = "the e2e test backend refuses this mount: option fail_setup is set"
BAD_REQUEST_MESSAGE = "the e2e test backend rejects this input on purpose"
UPSTREAM_MESSAGE = "the e2e upstream service is unavailable (simulated)"
REVOKE_FAULT_MESSAGE = "the e2e upstream failed during revoke (simulated passing fault)"
INTERNAL_DETAIL = "internal detail that must stay in the log"
STDOUT_NOISE = "e2e-testbackend: noise printed to stdout"

_CONFIG_KEY = "config"
_FAULTS_KEY = "faults"


def _storage(req: Request) -> Storage:
    if req.storage is None:
        raise RuntimeError("request has no storage")
    return req.storage


def _record(storage: Storage, prefix: str, value: dict[str, Any]) -> None:
    """Append a record under `prefix`; keys sort in time order."""
    put_json(storage, f"{prefix}{time.time_ns():020d}-{uuid.uuid4().hex[:8]}", value)


def _records(storage: Storage, prefix: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for key in sorted(storage.list(prefix)):
        value = get_json(storage, prefix + key)
        if value is not None:
            out.append(value)
    return out


class E2EBackend(Backend):
    def __init__(self) -> None:
        self.token = SecretType(
            name="token",
            fields={
                "value": Field(FieldType.STRING, "The issued value (a stand-in for a credential)."),
                "ref": Field(FieldType.STRING, "The reference of the issued value."),
            },
            renew=self._renew,
            revoke=self._revoke,
        )
        name_field = Field(FieldType.NAME, "Name of the key-value entry.")
        ttl_field = Field(
            FieldType.DURATION, "Lease TTL of issued values; 0 uses the config, then the mount."
        )
        max_ttl_field = Field(FieldType.DURATION, "Maximum lease TTL of issued values; 0 uses the config.")
        super().__init__(
            help="A test backend that makes the plugin protocol observable: storage, leases, WAL, errors.",
            paths=[
                Path(
                    list_pattern("kv"),
                    operations={
                        Operation.LIST: OperationSpec(self._kv_list, summary="List the stored names.")
                    },
                    synopsis="List the key-value entries.",
                    description="Lists the names of the entries stored under kv/.",
                ),
                Path(
                    "kv/" + generic_name_regex("name"),
                    fields={
                        "name": name_field,
                        "value": Field(
                            FieldType.STRING, "The value to store under this name.", required=True
                        ),
                        "count": Field(FieldType.INT, "A number stored beside the value."),
                    },
                    operations={
                        Operation.CREATE: OperationSpec(self._kv_write, summary="Create an entry."),
                        Operation.UPDATE: OperationSpec(self._kv_write, summary="Replace an entry."),
                        Operation.READ: OperationSpec(self._kv_read, summary="Read an entry."),
                        Operation.DELETE: OperationSpec(self._kv_delete, summary="Delete an entry."),
                    },
                    existence_check=self._kv_exists,
                    synopsis="Store, read and delete one key-value entry.",
                    description="A storage round-trip through the host's Storage service.",
                ),
                Path(
                    "config",
                    fields={"ttl": ttl_field, "max_ttl": max_ttl_field},
                    operations={
                        Operation.READ: OperationSpec(self._config_read),
                        Operation.UPDATE: OperationSpec(self._config_write),
                    },
                    synopsis="Default TTLs of issued leases.",
                    description="Read by every lease-issuing read (one storage get).",
                ),
                Path(
                    "lease",
                    fields={
                        "ttl": Field(
                            FieldType.DURATION, "Lease TTL for this read; overrides the config.", query=True
                        ),
                        "max_ttl": Field(
                            FieldType.DURATION,
                            "Maximum lease TTL for this read; overrides the config.",
                            query=True,
                        ),
                    },
                    operations={Operation.READ: OperationSpec(self._lease, summary="Issue a leased value.")},
                    synopsis="Issue a renewable leased value.",
                    description="Returns a secret of type 'token' whose internal data revoke records.",
                ),
                Path(
                    "revocations",
                    operations={Operation.READ: self._revocations},
                    synopsis="What the revoke and renew handlers received.",
                    description="Each revoke and renew call, with the lease id, data and internal data.",
                ),
                Path(
                    "faults",
                    fields={
                        "revoke_failures": Field(
                            FieldType.INT,
                            "How many of the next revokes fail with a retryable upstream fault.",
                        )
                    },
                    operations={Operation.READ: self._faults_read, Operation.UPDATE: self._faults_write},
                    synopsis="Inject passing faults into revoke.",
                    description="Failing revokes raise a 502 (Vault retries it), never an irrevocable error.",
                ),
                Path(
                    "crash",
                    fields={
                        "name": Field(FieldType.STRING, "Recorded in the WAL entry written before the crash.")
                    },
                    operations={Operation.UPDATE: self._crash},
                    synopsis="Write a WAL entry, then kill the plugin process.",
                    description="Simulates a crash in the middle of an operation; rollback must undo it.",
                ),
                Path(
                    "wal",
                    operations={Operation.READ: self._wal},
                    synopsis="List the pending WAL entries.",
                    description="The ids of WAL entries not yet rolled back.",
                ),
                Path(
                    "rollbacks",
                    operations={Operation.READ: self._rollbacks},
                    synopsis="What the WAL rollback callback undid.",
                    description="One record per rolled-back WAL entry: its kind and data.",
                ),
                Path(
                    "pid",
                    operations={Operation.READ: self._pid},
                    synopsis="The plugin process's id.",
                    description="Lets a test find and kill the process that serves this mount.",
                ),
                Path(
                    "identity",
                    fields={
                        "entity_id": Field(
                            FieldType.STRING,
                            "Ask about this entity instead of the requesting one.",
                            query=True,
                        )
                    },
                    operations={
                        Operation.READ: OperationSpec(self._identity, summary="Ask the host about an entity.")
                    },
                    synopsis="What the host says of an entity and its groups.",
                    description="The SystemView EntityInfo and GroupsForEntity answers, field by field.",
                ),
                Path(
                    "errors/bad-request",
                    operations={Operation.READ: self._bad_request},
                    synopsis="Always answers 400.",
                    description="Raises BadRequest with a fixed message.",
                ),
                Path(
                    "errors/upstream",
                    operations={Operation.READ: self._upstream},
                    synopsis="Always answers 502.",
                    description="Raises UpstreamError with a fixed message.",
                ),
                Path(
                    "errors/internal",
                    operations={Operation.READ: self._internal},
                    synopsis="Always answers 500.",
                    description="Raises an unexpected exception whose text must not reach the caller.",
                ),
                Path(
                    "errors/read-only",
                    operations={Operation.READ: self._read_only},
                    synopsis="Supports read only.",
                    description="A write here is an unsupported operation (405).",
                ),
            ],
            secrets=[self.token],
            wal_rollback=self._rollback,
            wal_kinds=(WAL_KIND,),
            wal_min_age_seconds=1.0,
            running_version=VERSION,
        )

    def setup(self, config: dict[str, str], system: SystemView) -> None:
        if config.get(FAIL_SETUP_OPTION):
            raise ValueError(SETUP_REJECTED)
        super().setup(config, system)

    # --- kv -------------------------------------------------------------------------------------

    def _kv_list(self, req: Request, d: FieldData) -> Response:
        return Response(data={"keys": _storage(req).list("kv/")})

    def _kv_exists(self, req: Request, d: FieldData) -> bool:
        return _storage(req).get("kv/" + d.get_str("name")) is not None

    def _kv_write(self, req: Request, d: FieldData) -> Response:
        put_json(
            _storage(req),
            "kv/" + d.get_str("name"),
            {"value": d.get_str("value"), "count": d.get_int("count")},
        )
        return Response(data={"operation": req.operation})

    def _kv_read(self, req: Request, d: FieldData) -> Response | None:
        entry = get_json(_storage(req), "kv/" + d.get_str("name"))
        return None if entry is None else Response(data=entry)

    def _kv_delete(self, req: Request, d: FieldData) -> None:
        _storage(req).delete("kv/" + d.get_str("name"))

    # --- config and leases ----------------------------------------------------------------------

    def _config_read(self, req: Request, d: FieldData) -> Response | None:
        config = get_json(_storage(req), _CONFIG_KEY)
        return None if config is None else Response(data=config)

    def _config_write(self, req: Request, d: FieldData) -> None:
        put_json(
            _storage(req), _CONFIG_KEY, {"ttl": d.get_duration("ttl"), "max_ttl": d.get_duration("max_ttl")}
        )

    def _lease(self, req: Request, d: FieldData) -> Response:
        config = get_json(_storage(req), _CONFIG_KEY) or {}  # the one storage call of this read
        ttl, ttl_set = d.get_ok("ttl")
        max_ttl, max_set = d.get_ok("max_ttl")
        ref = uuid.uuid4().hex
        return self.token.response(
            data={"value": "value-" + ref, "ref": ref},
            internal_data={"ref": ref, "nested": {"list": [1, "two", None], "flag": True}},
            ttl=float(ttl if ttl_set else config.get("ttl", 0)),
            max_ttl=float(max_ttl if max_set else config.get("max_ttl", 0)),
        )

    def _renew(self, req: Request, d: FieldData) -> Response:
        secret = req.secret
        assert secret is not None
        _record(
            _storage(req),
            "renewals/",
            {"lease_id": secret.lease_id, "internal_data": secret.internal_data, "data": req.data},
        )
        return self.token.renew_response(req, data=req.data)  # kept: the tests check it survives

    def _revoke(self, req: Request, d: FieldData) -> None:
        secret = req.secret
        assert secret is not None
        storage = _storage(req)
        entry = {"lease_id": secret.lease_id, "internal_data": secret.internal_data, "data": req.data}
        faults = get_json(storage, _FAULTS_KEY) or {}
        remaining = int(faults.get("revoke_failures", 0))
        if remaining > 0:
            put_json(storage, _FAULTS_KEY, {"revoke_failures": remaining - 1})
            _record(storage, "revoke-failures/", entry)
            raise UpstreamError(REVOKE_FAULT_MESSAGE)
        _record(storage, "revocations/", entry)

    def _revocations(self, req: Request, d: FieldData) -> Response:
        storage = _storage(req)
        return Response(
            data={
                "revocations": _records(storage, "revocations/"),
                "failed_revocations": _records(storage, "revoke-failures/"),
                "renewals": _records(storage, "renewals/"),
            }
        )

    def _faults_read(self, req: Request, d: FieldData) -> Response:
        return Response(data=get_json(_storage(req), _FAULTS_KEY) or {"revoke_failures": 0})

    def _faults_write(self, req: Request, d: FieldData) -> None:
        put_json(_storage(req), _FAULTS_KEY, {"revoke_failures": d.get_int("revoke_failures")})

    # --- WAL --------------------------------------------------------------------------------------

    def _crash(self, req: Request, d: FieldData) -> None:
        put_wal(_storage(req), WAL_KIND, {"name": d.get_str("name")})
        os._exit(1)  # a crash between the WAL entry and the end of the operation

    def _wal(self, req: Request, d: FieldData) -> Response:
        return Response(data={"keys": list_wal(_storage(req))})

    def _rollback(self, req: Request, kind: str, data: dict[str, Any]) -> None:
        _record(_storage(req), "rollbacks/", {"kind": kind, "data": data})

    def _rollbacks(self, req: Request, d: FieldData) -> Response:
        return Response(data={"rollbacks": _records(_storage(req), "rollbacks/")})

    # --- process and errors -----------------------------------------------------------------------

    def _pid(self, req: Request, d: FieldData) -> Response:
        return Response(data={"pid": os.getpid(), "ppid": os.getppid()})

    def _identity(self, req: Request, d: FieldData) -> Response:
        entity_id, asked = d.get_ok("entity_id")
        subject = str(entity_id) if asked else req.entity_id
        entity = self.system.entity_info(subject)
        groups = self.system.groups_for_entity(subject)
        return Response(
            data={
                "request_entity_id": req.entity_id,
                "entity": None if entity is None else _entity_json(entity),
                "groups": [_group_json(g) for g in groups],
            }
        )

    def _bad_request(self, req: Request, d: FieldData) -> None:
        raise BadRequest(BAD_REQUEST_MESSAGE)

    def _upstream(self, req: Request, d: FieldData) -> None:
        raise UpstreamError(UPSTREAM_MESSAGE)

    def _internal(self, req: Request, d: FieldData) -> None:
        raise RuntimeError(INTERNAL_DETAIL)

    def _read_only(self, req: Request, d: FieldData) -> Response:
        return Response(data={"read_only": True})


def _alias_json(a: Alias) -> dict[str, Any]:
    return {
        "id": a.id,
        "mount_accessor": a.mount_accessor,
        "mount_type": a.mount_type,
        "name": a.name,
        "metadata": dict(a.metadata),
        "custom_metadata": dict(a.custom_metadata),
        "namespace_id": a.namespace_id,
        "local": a.local,
    }


def _entity_json(e: Entity) -> dict[str, Any]:
    return {
        "id": e.id,
        "name": e.name,
        "metadata": dict(e.metadata),
        "disabled": e.disabled,
        "namespace_id": e.namespace_id,
        "aliases": [_alias_json(a) for a in e.aliases],
    }


def _group_json(g: Group) -> dict[str, Any]:
    return {"id": g.id, "name": g.name, "metadata": dict(g.metadata), "namespace_id": g.namespace_id}


def _print_noise_later() -> None:
    # After serve() has taken stdout for the handshake, a stray print must land on stderr.
    time.sleep(0.5)
    print(STDOUT_NOISE, flush=True)  # on purpose: proves stdout is kept for the handshake


def main() -> None:
    from vaultplugin.serve import serve  # here, so tests can import the constants above cheaply

    if os.environ.get("E2E_PRINT_TO_STDOUT"):
        threading.Thread(target=_print_noise_later, daemon=True).start()
    serve(E2EBackend, VERSION)
    sys.exit(0)  # serve() never returns
