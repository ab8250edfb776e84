"""gRPC over HTTP/2, the parts both our server and our client need: message framing and statuses."""

from __future__ import annotations

import struct
from enum import IntEnum


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
