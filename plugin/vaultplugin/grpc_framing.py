"""gRPC over HTTP/2, the parts both our server and our client need: message framing, statuses, h2 settings."""

from __future__ import annotations

import struct
from enum import IntEnum

import h2.config


class Status(IntEnum):
    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    DEADLINE_EXCEEDED = 4
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14


def frame(message: bytes) -> bytes:
    """A length-prefixed, uncompressed gRPC message."""
    return b"\x00" + struct.pack(">I", len(message)) + message


class MessageReader:
    """Collects DATA bytes and yields whole gRPC messages as they complete."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        out: list[bytes] = []
        while len(self._buf) >= 5:
            if self._buf[0] != 0:
                raise ValueError("compressed gRPC messages are not supported")
            (length,) = struct.unpack_from(">I", self._buf, 1)
            if len(self._buf) < 5 + length:
                break
            out.append(bytes(self._buf[5 : 5 + length]))
            del self._buf[: 5 + length]
        return out

    @property
    def pending(self) -> int:
        return len(self._buf)


def h2_config(*, client_side: bool) -> h2.config.H2Configuration:
    # Header validation and normalisation cost more than the rest of a call; both peers are gRPC stacks
    # on a private mutual-TLS connection, and h2 still enforces the framing rules.
    return h2.config.H2Configuration(
        client_side=client_side,
        header_encoding=None,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
        validate_inbound_headers=False,
        normalize_inbound_headers=False,
    )
