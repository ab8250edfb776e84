"""Read a provider's answer without letting its size decide how much memory the plugin uses.

An admin API answers in kilobytes (a page of 100 keys is tens of KB). A body is read as a stream and
given up past a cap (`MAX_BODY_BYTES` for an answer the engine parses; a smaller one, truncated, for an
error whose message is all we need), counting *decoded* bytes: a gzip or deflate body is inflated in
bounded steps, so a small compressed answer cannot expand to gigabytes. Requests ask for an identity
encoding; other encodings are refused.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

import httpx

MAX_BODY_BYTES = 4 * 1024 * 1024
ERROR_BODY_BYTES = 64 * 1024

# zlib wbits: 32 + 15 accepts a gzip or a zlib header; -15 is raw deflate (what some servers send).
_GZIP_OR_ZLIB = 32 + zlib.MAX_WBITS
_RAW_DEFLATE = -zlib.MAX_WBITS


class BodyTooLarge(Exception):
    """The answer is larger than the cap; `limit` is the cap in bytes."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"answer larger than {describe_size(limit)}")
        self.limit = limit


class BadEncoding(Exception):
    """The answer's Content-Encoding is not one we read, or its compressed data is corrupt."""


def describe_size(n: int) -> str:
    if n >= 1024 * 1024 and n % (1024 * 1024) == 0:
        return f"{n // (1024 * 1024)} MB"
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024} KB"
    return f"{n} bytes"


def read_body(response: httpx.Response, limit: int, *, truncate: bool = False) -> bytes:
    """The decoded body of a streamed `response`, at most `limit` bytes.

    Past the cap: with `truncate`, the first `limit` bytes (reading stops there); otherwise BodyTooLarge.
    A declared Content-Length over the cap fails before a byte is read.
    """
    declared = response.headers.get("Content-Length", "")
    if not truncate and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    if response.is_stream_consumed:
        # Built whole in memory (an in-process transport) and already decoded by httpx.
        chunks: Iterable[bytes] = [response.content]
        decoder = None
    else:
        chunks = response.iter_raw()
        decoder = _decoder(response.headers.get("Content-Encoding", ""))
    out = bytearray()
    for chunk in chunks:
        room = limit - len(out) + 1  # one byte over the cap tells "too large" from "exactly the cap"
        out += decoder(chunk, room) if decoder is not None else chunk[:room]
        if len(out) > limit:
            if truncate:
                return bytes(out[:limit])
            raise BodyTooLarge(limit)
    return bytes(out)


def _decoder(encoding: str) -> _Inflater | None:
    value = encoding.strip().lower()
    if value in ("", "identity"):
        return None
    if value in ("gzip", "x-gzip"):
        return _Inflater(_GZIP_OR_ZLIB)
    if value == "deflate":
        return _Inflater(_GZIP_OR_ZLIB, fallback=_RAW_DEFLATE)
    raise BadEncoding(f"unsupported Content-Encoding {encoding[:40]!r}")


class _Inflater:
    """Inflates chunk by chunk, never producing more than asked for at once."""

    def __init__(self, wbits: int, fallback: int | None = None) -> None:
        self._inflate = zlib.decompressobj(wbits)
        self._fallback = fallback
        self._started = False

    def __call__(self, chunk: bytes, room: int) -> bytes:
        try:
            out = self._inflate.decompress(chunk, room)
        except zlib.error:
            if self._fallback is None or self._started:
                raise BadEncoding("the compressed answer is corrupt") from None
            # "deflate" is sometimes sent raw, without the zlib header.
            self._inflate = zlib.decompressobj(self._fallback)
            self._fallback = None
            return self(chunk, room)
        self._started = True
        return out
