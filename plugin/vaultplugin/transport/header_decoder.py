"""HPACK (RFC 7541) header-block decoding, with a cache for the blocks grpc-go sends over and over.

Why not `hpack.Decoder`: it costs about 20 Python calls and a debug-log call per header field, which made
it the largest single item of the plugin's CPU per request. grpc-go indexes every header it sends, so from
the second call on a connection its header blocks are byte-for-byte repeats (`8387bfcac9c8c7c3` for each
HandleRequest, `88c0` and `bfbe` for each Storage reply). A block that leaves the dynamic table as it was
decodes to the same fields for as long as the table stays unchanged, so it is decoded once and looked up
after that; any change to the table empties the cache. The `hpack` package still provides the static table
and Huffman decoding, which only literals need.
"""

from __future__ import annotations

from hpack.huffman_table import decode_huffman
from hpack.table import HeaderTable

Field = tuple[bytes, bytes]

_STATIC: tuple[Field, ...] = tuple(HeaderTable.STATIC_TABLE)
_ENTRY_OVERHEAD = 32  # RFC 7541 section 4.1
DEFAULT_TABLE_SIZE = 4096  # SETTINGS_HEADER_TABLE_SIZE; we never announce another
_CACHE_LIMIT = 64


class HeaderDecodingError(Exception):
    """The block breaks HPACK: the connection must be dropped (a COMPRESSION_ERROR)."""


class HeaderDecoder:
    """The decoding side of one connection's HPACK context."""

    def __init__(self, max_table_size: int = DEFAULT_TABLE_SIZE) -> None:
        self._max_allowed = max_table_size  # what we allow the peer (our setting)
        self._max_size = max_table_size  # what the peer currently uses
        self._size = 0
        self._dynamic: list[Field] = []  # newest first
        self._cache: dict[bytes, tuple[Field, ...]] = {}

    def decode(self, block: bytes) -> tuple[Field, ...]:
        cached = self._cache.get(block)
        if cached is not None:
            return cached
        fields, changed_table = self._decode(block)
        if changed_table:
            self._cache.clear()
        else:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[block] = fields
        return fields

    # ---- decoding -----------------------------------------------------------------------------------------

    def _decode(self, block: bytes) -> tuple[tuple[Field, ...], bool]:
        fields: list[Field] = []
        changed = False
        pos = 0
        end = len(block)
        while pos < end:
            byte = block[pos]
            if byte & 0x80:  # indexed field
                index, pos = _integer(block, pos, 7)
                fields.append(self._entry(index))
            elif byte & 0x40:  # literal with incremental indexing
                field, pos = self._literal(block, pos, 6)
                fields.append(field)
                self._add(field)
                changed = True
            elif byte & 0x20:  # dynamic table size update
                if fields:
                    raise HeaderDecodingError("a table size update after the first field")
                size, pos = _integer(block, pos, 5)
                if size > self._max_allowed:
                    raise HeaderDecodingError("table size update above the allowed maximum")
                self._max_size = size
                self._evict()
                changed = True
            else:  # literal without indexing (0000) or never indexed (0001)
                field, pos = self._literal(block, pos, 4)
                fields.append(field)
        return tuple(fields), changed

    def _literal(self, block: bytes, pos: int, prefix: int) -> tuple[Field, int]:
        index, pos = _integer(block, pos, prefix)
        if index:
            name = self._entry(index)[0]
        else:
            name, pos = _string(block, pos)
        value, pos = _string(block, pos)
        return (name, value), pos

    def _entry(self, index: int) -> Field:
        if 0 < index <= len(_STATIC):
            return _STATIC[index - 1]
        dynamic = index - len(_STATIC) - 1
        if 0 <= dynamic < len(self._dynamic):
            return self._dynamic[dynamic]
        raise HeaderDecodingError(f"header index {index} is out of range")

    def _add(self, field: Field) -> None:
        size = len(field[0]) + len(field[1]) + _ENTRY_OVERHEAD
        if size > self._max_size:  # an entry larger than the table empties it (RFC 7541 section 4.4)
            self._dynamic.clear()
            self._size = 0
            return
        self._dynamic.insert(0, field)
        self._size += size
        self._evict()

    def _evict(self) -> None:
        while self._size > self._max_size:
            name, value = self._dynamic.pop()
            self._size -= len(name) + len(value) + _ENTRY_OVERHEAD


def _integer(block: bytes, pos: int, prefix: int) -> tuple[int, int]:
    """An HPACK integer with a `prefix`-bit prefix at block[pos] (RFC 7541 section 5.1)."""
    limit = (1 << prefix) - 1
    value = block[pos] & limit
    pos += 1
    if value < limit:
        return value, pos
    shift = 0
    while True:
        if pos >= len(block) or shift > 28:
            raise HeaderDecodingError("a truncated or oversized integer")
        byte = block[pos]
        pos += 1
        value += (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _string(block: bytes, pos: int) -> tuple[bytes, int]:
    if pos >= len(block):
        raise HeaderDecodingError("a truncated string")
    huffman = block[pos] & 0x80
    length, pos = _integer(block, pos, 7)
    if pos + length > len(block):
        raise HeaderDecodingError("a string runs past the end of the block")
    raw = block[pos : pos + length]
    pos += length
    if not huffman:
        return raw, pos
    try:
        return decode_huffman(raw), pos
    except Exception as exc:  # hpack raises its own HPACKDecodingError
        raise HeaderDecodingError("bad Huffman coding") from exc
