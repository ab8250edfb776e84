"""The framework a backend is written with: paths, fields, secret types and a WAL, declared as data.

A Python twin of `sdk/framework` in OpenBao's Go plugin SDK. It knows nothing about gRPC.
"""

from vaultplugin.framework.backend import (
    Backend,
    BackendType,
    CleanFunc,
    InitializeFunc,
    InvalidateFunc,
    PeriodicFunc,
)
from vaultplugin.framework.durations import format_duration, parse_duration
from vaultplugin.framework.errors import (
    BadRequest,
    CodedError,
    ErrType,
    PermissionDenied,
    ReadOnlyStorage,
    Unrecoverable,
    UnsupportedOperation,
    UnsupportedPath,
    UpstreamError,
    VaultError,
    to_wire,
)
from vaultplugin.framework.fields import Field, FieldData, FieldType
from vaultplugin.framework.help import path_help, root_help
from vaultplugin.framework.logical import (
    LeaseInfo,
    Operation,
    Request,
    Response,
    Secret,
    SpecialPaths,
    Storage,
    StorageError,
    SystemView,
)
from vaultplugin.framework.openapi import document_paths, expand_pattern
from vaultplugin.framework.path import (
    ExistenceCheck,
    Handler,
    OperationSpec,
    Path,
    generic_name_regex,
    list_pattern,
    match_all_regex,
    optional_generic_name_regex,
    optional_param_regex,
    options_regex,
    path_append,
)
from vaultplugin.framework.secret import SECRET_TYPE_KEY, SecretType
from vaultplugin.framework.storage import InMemoryStorage, get_json, list_leaves, put_json
from vaultplugin.framework.wal import WalEntry, WalRollback, delete_wal, get_wal, list_wal, put_wal

__all__ = [
    "SECRET_TYPE_KEY",
    "Backend",
    "BackendType",
    "BadRequest",
    "CleanFunc",
    "CodedError",
    "ErrType",
    "ExistenceCheck",
    "Field",
    "FieldData",
    "FieldType",
    "Handler",
    "InMemoryStorage",
    "InitializeFunc",
    "InvalidateFunc",
    "LeaseInfo",
    "Operation",
    "OperationSpec",
    "Path",
    "PeriodicFunc",
    "PermissionDenied",
    "ReadOnlyStorage",
    "Request",
    "Response",
    "Secret",
    "SecretType",
    "SpecialPaths",
    "Storage",
    "StorageError",
    "SystemView",
    "Unrecoverable",
    "UnsupportedOperation",
    "UnsupportedPath",
    "UpstreamError",
    "VaultError",
    "WalEntry",
    "WalRollback",
    "delete_wal",
    "document_paths",
    "expand_pattern",
    "format_duration",
    "generic_name_regex",
    "get_json",
    "get_wal",
    "list_leaves",
    "list_pattern",
    "list_wal",
    "match_all_regex",
    "optional_generic_name_regex",
    "optional_param_regex",
    "options_regex",
    "parse_duration",
    "path_append",
    "path_help",
    "put_json",
    "put_wal",
    "root_help",
    "to_wire",
]
