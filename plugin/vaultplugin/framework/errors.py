"""Errors a backend raises, and the one place that maps them to Vault's wire error types.

Vault turns the wire `err_type` into an HTTP status (see the protocol notes):
bad request -> 400, unsupported path -> 404, unsupported operation -> 405,
permission denied -> 403, coded -> the given code, anything else -> 500.

Revoke handlers must never raise `UnsupportedPath`, `UnsupportedOperation`, `InvalidRequest` or
`Unrecoverable` for a passing fault: Vault marks the lease irrevocable at once for those.
"""

from __future__ import annotations

from enum import IntEnum

from vaultplugin.framework.logical import StorageError


class ErrType(IntEnum):
    """The wire values of `pb.ProtoError.err_type` (order fixed by the SDK)."""

    UNKNOWN = 0
    USER_ERROR = 1
    INTERNAL = 2
    CODED = 3
    BAD_REQUEST = 4
    UNSUPPORTED_OPERATION = 5
    UNSUPPORTED_PATH = 6
    INVALID_REQUEST = 7
    PERMISSION_DENIED = 8
    MULTI_AUTHZ_PENDING = 9
    UNRECOVERABLE = 10


class VaultError(Exception):
    """Base of every error a backend may raise on purpose. The message reaches the caller."""

    err_type: ErrType = ErrType.INTERNAL
    code: int = 0

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(VaultError):
    """400: the caller's input is wrong; the message says what to fix."""

    err_type = ErrType.BAD_REQUEST


class PermissionDenied(VaultError):
    """403."""

    err_type = ErrType.PERMISSION_DENIED


class UnsupportedPath(VaultError):
    """404: no path matches. Never raised from a revoke or renew."""

    err_type = ErrType.UNSUPPORTED_PATH


class UnsupportedOperation(VaultError):
    """405: the path exists but not with this operation."""

    err_type = ErrType.UNSUPPORTED_OPERATION


class Unrecoverable(VaultError):
    """Tells Vault to stop retrying (a lease becomes irrevocable at once). Use with great care."""

    err_type = ErrType.UNRECOVERABLE


class CodedError(VaultError):
    """An HTTP status of the backend's choosing, e.g. 502 when an upstream API fails."""

    err_type = ErrType.CODED

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class UpstreamError(CodedError):
    """502: a remote API this backend depends on failed (rate limit, outage, bad credentials).

    From a revoke handler this is a retryable error: Vault backs off and tries again.
    """

    def __init__(self, message: str) -> None:
        super().__init__(502, message)


# Texts the host's HTTP layer looks for in an error (`logical.ShouldForward`, by substring): it then sends
# the request to the active node instead of answering it. The first is Vault's `logical.ErrReadOnly`.
READ_ONLY_MESSAGE = "cannot write to readonly storage"
FORWARD_MESSAGES = (
    READ_ONLY_MESSAGE,
    "please forward to the active node",
    "node is not the leader",
    "Vault is in standby mode",
)


class ReadOnlyStorage(StorageError, VaultError):
    """This node cannot write: an HA standby (or a node losing leadership). Its message keeps one of
    FORWARD_MESSAGES intact, so the host forwards the request to the active node, which answers it."""

    def __init__(self, message: str = READ_ONLY_MESSAGE) -> None:
        super().__init__(message)


def asks_to_forward(text: str) -> bool:
    """Would the host forward a request that failed with `text` to the active node?"""
    return any(marker in text for marker in FORWARD_MESSAGES)


INTERNAL_ERROR_MESSAGE = "internal error; see the plugin's log for details"


def to_wire(exc: BaseException) -> tuple[ErrType, str, int]:
    """Map any exception to (err_type, message, code) for `pb.ProtoError`.

    Unexpected exceptions become a generic 500: their text may hold details a caller must not see,
    so it goes to the log (by the caller of this function), never onto the wire.
    """
    if isinstance(exc, VaultError):
        return exc.err_type, exc.message or type(exc).__name__, exc.code
    return ErrType.INTERNAL, INTERNAL_ERROR_MESSAGE, 0
