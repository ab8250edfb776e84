"""What the xAI and Fireworks emulators share: both management APIs are gRPC gateways, so their errors are
gRPC statuses as JSON (`{"code", "message", "details"}`) and their times RFC 3339."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx

from .core import Emulator, gateway_page, json_response

# gRPC status codes, as a gRPC gateway puts them in its error bodies.
INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED, RESOURCE_EXHAUSTED = 3, 5, 7, 8
UNIMPLEMENTED, INTERNAL, UNAVAILABLE, UNAUTHENTICATED = 12, 13, 14, 16


def status_error(status: int, code: int, message: str) -> httpx.Response:
    return json_response(status, {"code": code, "message": message, "details": []})


def parse_rfc3339(value: Any) -> float | None:
    """An RFC 3339 time with a zone (Z or an offset) as epoch seconds; None if it is not one."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.astimezone(UTC).timestamp()


class GatewayEmulator(Emulator):
    """The errors every gRPC-gateway API answers alike: rate limits, server faults, unknown routes."""

    def _err_rate_limited(self, retry_after: float) -> httpx.Response:
        return status_error(429, RESOURCE_EXHAUSTED, "too many requests")

    def _err_server(self, status: int) -> httpx.Response:
        if status == 502:
            return gateway_page(status)
        if status == 503:
            return status_error(503, UNAVAILABLE, "service unavailable")
        return status_error(status, INTERNAL, "internal error")

    def _not_found(self, method: str, path: str, *, method_mismatch: bool) -> httpx.Response:
        if method_mismatch:
            return status_error(405, UNIMPLEMENTED, "Method Not Allowed")
        return status_error(404, NOT_FOUND, "Not Found")
