"""The Backend: routes Vault's requests to the handlers of declared Paths and SecretTypes.

The gRPC server converts wire messages into `logical` types and calls the methods below; every
error a handler should show a caller is a `VaultError` (see errors.py for the wire mapping).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Sequence
from enum import IntEnum
from typing import Any

from vaultplugin.framework.errors import (
    BadRequest,
    UnsupportedOperation,
    UnsupportedPath,
    VaultError,
)
from vaultplugin.framework.fields import FieldData
from vaultplugin.framework.help import path_help, root_help
from vaultplugin.framework.logical import Operation, Request, Response, SpecialPaths, Storage, SystemView
from vaultplugin.framework.openapi import add_path, document_paths, new_document
from vaultplugin.framework.path import Path
from vaultplugin.framework.secret import SECRET_TYPE_KEY, SecretType
from vaultplugin.framework.wal import WalRollback, rollback_wal

logger = logging.getLogger(__name__)

PeriodicFunc = Callable[[Request], None]
InitializeFunc = Callable[[Storage], None]
InvalidateFunc = Callable[[str], None]
CleanFunc = Callable[[], None]

_WRITES = (Operation.CREATE, Operation.UPDATE)
_PATH_OPERATIONS = frozenset(
    (Operation.CREATE, Operation.READ, Operation.UPDATE, Operation.PATCH, Operation.DELETE, Operation.LIST)
)
_ON_HUB = _PATH_OPERATIONS | {Operation.RENEW, Operation.REVOKE, Operation.RESOLVE_PATH}


class BackendType(IntEnum):
    """Wire values of `logical.BackendType`."""

    UNKNOWN = 0
    LOGICAL = 1
    CREDENTIAL = 2


class Backend:
    """A secrets engine declared as data. Paths are tried in order; the first full match wins."""

    def __init__(
        self,
        *,
        paths: Sequence[Path],
        secrets: Sequence[SecretType] = (),
        special_paths: SpecialPaths | None = None,
        help: str = "",
        periodic: PeriodicFunc | None = None,
        wal_rollback: WalRollback | None = None,
        wal_kinds: Collection[str] = (),
        wal_min_age_seconds: float = 600.0,
        invalidate: InvalidateFunc | None = None,
        initialize: InitializeFunc | None = None,
        clean: CleanFunc | None = None,
        backend_type: BackendType = BackendType.LOGICAL,
        running_version: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        names = [s.name for s in secrets]
        if len(set(names)) != len(names):
            raise ValueError(f"secret type names must be unique: {names}")
        if wal_rollback is not None and not wal_kinds:
            raise ValueError("wal_rollback needs the WAL kinds it understands (wal_kinds)")
        self.paths: tuple[Path, ...] = tuple(paths)
        self.secrets: dict[str, SecretType] = {s.name: s for s in secrets}
        self.help = help
        self.backend_type = backend_type
        self.running_version = running_version
        self.wal_kinds = frozenset(str(k) for k in wal_kinds)
        self.wal_min_age_seconds = wal_min_age_seconds
        self.clock = clock  # injectable so tests can age WAL entries without sleeping
        self._special_paths = special_paths or SpecialPaths()
        self._periodic = periodic
        self._wal_rollback = wal_rollback
        self._invalidate = invalidate
        self._initialize = initialize
        self._clean = clean
        self._config: dict[str, str] = {}
        self._system: SystemView | None = None

    # --- lifecycle (called by the gRPC server) ---------------------------------------------------

    def setup(self, config: dict[str, str], system: SystemView) -> None:
        self._config = dict(config)
        self._system = system

    @property
    def config(self) -> dict[str, str]:
        """The mount's plugin config from Vault (e.g. "plugin_name", "plugin_version")."""
        return self._config

    @property
    def system(self) -> SystemView:
        if self._system is None:
            raise VaultError("backend is not set up yet")
        return self._system

    def initialize(self, storage: Storage) -> None:
        if self._initialize is not None:
            self._initialize(storage)

    def cleanup(self) -> None:
        if self._clean is not None:
            self._clean()

    def invalidate(self, key: str) -> None:
        if self._invalidate is not None:
            self._invalidate(key)

    def special_paths(self) -> SpecialPaths:
        return self._special_paths

    # --- lookup ---------------------------------------------------------------------------------

    def route(self, path: str) -> tuple[Path, dict[str, str]] | None:
        for candidate in self.paths:
            captures = candidate.match(path)
            if captures is not None:
                return candidate, captures
        return None

    def runs_on_hub(self, operation: str) -> bool:
        """May this request run on the plugin's hub? Every handler an engine writes does (path operations,
        renew, revoke), and so does routing: a handler blocks only through `framework.runtime`, whose waits
        suspend it there, so no handler needs to say where it runs. The rollback (periodic work that may run
        long) and help (large documents) run on pool threads."""
        return operation in _ON_HUB

    def secret(self, name: str) -> SecretType | None:
        return self.secrets.get(name)

    # --- requests -------------------------------------------------------------------------------

    def handle_request(self, req: Request) -> Response | None:
        op = req.operation
        if op in (Operation.RENEW, Operation.REVOKE):
            return self._handle_secret(req)
        if op == Operation.ROLLBACK:
            self._handle_rollback(req)
            return None
        if op == Operation.HELP:
            return self._handle_help(req)
        path, captures = self._route_or_404(req.path)
        if op == Operation.RESOLVE_PATH:
            # OpenBao 2.7 asks this before every client request and then uses the answer as the request's
            # path (for ACLs, the existence check and the operation): answer the request path itself.
            return Response(data={"path": req.path})
        handler = path.handler_for(op)
        if handler is None:
            raise UnsupportedOperation("unsupported operation")
        data = path.field_data(req, captures)
        data.validate(check_required=op in _WRITES)
        resp = handler(req, data)
        if resp is not None:
            resp.warnings.extend(_input_warnings(path, req.data, captures))
        return resp

    def handle_existence_check(self, req: Request) -> tuple[bool, bool]:
        """(check_found, exists). Vault asks before a write to choose between create and update."""
        if req.operation not in _WRITES:
            raise VaultError(f"incorrect operation type {req.operation!r} for an existence check")
        path, captures = self._route_or_404(req.path)
        if path.existence_check is None:
            return False, False
        data = path.field_data(req, captures)
        data.validate()
        return True, bool(path.existence_check(req, data))

    def _route_or_404(self, path: str) -> tuple[Path, dict[str, str]]:
        routed = self.route(path)
        if routed is None:
            raise UnsupportedPath("unsupported path")
        return routed

    def _handle_help(self, req: Request) -> Response:
        prefix = req.data.get("requestResponsePrefix")
        prefix = prefix if isinstance(prefix, str) else ""
        version = self.running_version or "unknown"
        tags = ["auth"] if self.backend_type is BackendType.CREDENTIAL else ["secrets"]
        if req.path == "":
            # Never fail here: an error breaks Vault's whole sys/internal/specs/openapi endpoint.
            try:
                text = root_help(self.help, self.paths)
                doc = document_paths(self.paths, self._special_paths, prefix, tags, version)
            except Exception:
                logger.exception("generating the backend's help failed")
                text, doc = self.help, new_document(version)
            return Response(data={"help": text, "openapi": doc})
        path, _ = self._route_or_404(req.path)
        doc = new_document(version)
        try:
            add_path(doc, path, self._special_paths, prefix, tags)
        except Exception:
            logger.exception("generating OpenAPI for %s failed", path.pattern)
        return Response(data={"help": path_help(path, req.path), "openapi": doc})

    def _handle_secret(self, req: Request) -> Response | None:
        # Errors here are plain VaultErrors (internal, retried by Vault): a 404/405 from a revoke
        # would make the lease irrevocable at once.
        if req.secret is None:
            raise VaultError(f"{req.operation} request carries no secret")
        name = req.secret.internal_data.get(SECRET_TYPE_KEY)
        if not isinstance(name, str) or not name:
            raise VaultError(f"lease has no {SECRET_TYPE_KEY}; it was not issued by this backend")
        secret_type = self.secrets.get(name)
        if secret_type is None:
            raise VaultError(f"secret type {name!r} is not supported by this backend")
        data = FieldData(req.data, secret_type.fields)
        if req.operation == Operation.RENEW:
            if secret_type.renew is None:
                raise BadRequest(f"secret type {name!r} is not renewable")
            return secret_type.renew(req, data)
        try:
            return secret_type.revoke(req, data)
        except (UnsupportedPath, UnsupportedOperation) as exc:
            raise VaultError(exc.message) from exc

    def _handle_rollback(self, req: Request) -> None:
        # Periodic work and WAL rollback are independent: a failure in one must not skip the other.
        if self._periodic is not None:
            try:
                self._periodic(req)
            except Exception:
                logger.exception("periodic function failed")
        if self._wal_rollback is None:
            return
        if req.storage is None:
            logger.error("rollback request has no storage; skipping WAL rollback")
            return
        try:
            failed = rollback_wal(
                req,
                storage=req.storage,
                kinds=self.wal_kinds,
                callback=self._wal_rollback,
                min_age_seconds=self.wal_min_age_seconds,
                now=self.clock(),
            )
        except Exception:
            logger.exception("WAL rollback failed")
            return
        if failed:
            logger.warning("%d WAL entries were kept for a later rollback", failed)


def _input_warnings(path: Path, data: dict[str, Any], captures: dict[str, str]) -> list[str]:
    """Vault's warnings for body keys the path does not declare, and for keys the URL overrode."""
    warnings: list[str] = []
    ignored = sorted(k for k in data if k not in path.fields)
    if ignored and not path.takes_arbitrary_input:
        warnings.append(f"Endpoint ignored these unrecognized parameters: [{' '.join(ignored)}]")
    replaced = sorted(k for k in captures if data.get(k) is not None)
    if replaced:
        warnings.append(
            "Endpoint replaced the value of these parameters with the values captured from "
            f"the endpoint's path: [{' '.join(replaced)}]"
        )
    return warnings
