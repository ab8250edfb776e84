"""Conversions between the gRPC messages (pb.*) and the framework's types.

Facts that shape this module (see the protocol notes): JSON fields must never be empty strings (send "{}");
durations are int64 nanoseconds; a secret's `issue_time` must be set or Vault answers 500. Request data is
the caller's JSON, passed on by Vault as it came (up to 10,000 levels deep): it is decoded with its nesting
bounded, and anything wrong with it is a 400 (BadRequest), on every call that carries it.
"""

from __future__ import annotations

import datetime
import json
import logging
from typing import Any

from vaultplugin.framework import json_input
from vaultplugin.framework.errors import BadRequest, ErrType, to_wire
from vaultplugin.framework.logical import LeaseInfo, Request, Response, Secret, Storage
from vaultplugin.proto import backend_pb2 as pb

log = logging.getLogger(__name__)

_NS = 1_000_000_000


def seconds_to_ns(seconds: float) -> int:
    return round(seconds * _NS)


def ns_to_seconds(ns: int) -> float:
    return ns / _NS


def _loads_object(text: str, what: str) -> dict[str, Any]:
    """A JSON object ("" and null are {}); JsonInputError (a ValueError) names `what` otherwise."""
    if not text:
        return {}
    value = json_input.loads(text, what=what)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise json_input.JsonInputError(f"{what} is not a JSON object")
    return value


def _request_data(text: str) -> dict[str, Any]:
    try:
        return _loads_object(text, "request data")
    except json_input.JsonInputError as exc:
        raise BadRequest(str(exc)) from None


def _dumps(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"))


def request_from_pb(msg: Any, storage: Storage | None) -> Request:
    secret: LeaseInfo | None = None
    if msg.HasField("secret"):
        opts = msg.secret.lease_options
        secret = LeaseInfo(
            internal_data=_loads_object(msg.secret.internal_data, "secret internal data"),
            ttl=ns_to_seconds(opts.TTL),
            max_ttl=ns_to_seconds(opts.MaxTTL),
            increment=ns_to_seconds(opts.increment),
            renewable=opts.renewable,
            issue_time=opts.issue_time.ToDatetime(datetime.UTC) if opts.HasField("issue_time") else None,
            lease_id=msg.secret.lease_id,
        )
    return Request(
        operation=msg.operation,
        path=msg.path,
        data=_request_data(msg.data),
        storage=storage,
        secret=secret,
        id=msg.id,
        mount_point=msg.mount_point,
        mount_type=msg.mount_type,
        client_token=msg.client_token,
        display_name=msg.display_name,
        entity_id=msg.entity_id,
        unauthenticated=msg.unauthenticated,
        headers={k: list(v.header) for k, v in msg.headers.items()},
    )


def _secret_to_pb(secret: Secret) -> Any:
    out = pb.Secret(internal_data=_dumps(secret.internal_data))
    opts = out.lease_options
    opts.TTL = seconds_to_ns(secret.ttl)
    opts.MaxTTL = seconds_to_ns(secret.max_ttl)
    opts.renewable = secret.renewable
    opts.increment = seconds_to_ns(secret.increment)
    opts.issue_time.FromDatetime(secret.issue_time or datetime.datetime.now(datetime.UTC))
    return out


def response_to_pb(resp: Response) -> Any:
    out = pb.Response(data=_dumps(resp.data), warnings=resp.warnings)
    if resp.secret is not None:
        out.secret.CopyFrom(_secret_to_pb(resp.secret))
    for name, values in resp.headers.items():
        out.headers[name].header.extend(values)
    return out


def error_to_pb(exc: BaseException, context: str) -> Any:
    """The one place an exception becomes a wire error. Unexpected ones are logged with their traceback."""
    err_type, message, code = to_wire(exc)
    if err_type == ErrType.INTERNAL and type(exc).__module__ != "vaultplugin.framework.errors":
        log.error("unexpected error in %s", context, exc_info=exc)
    return pb.ProtoError(err_type=int(err_type), err_msg=message, err_code=code)
