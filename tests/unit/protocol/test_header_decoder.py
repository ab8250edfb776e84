"""The HPACK decoder against the `hpack` package's encoder and decoder, and its cache's invalidation."""

from __future__ import annotations

import random

import hpack
import pytest
from vaultplugin.transport.header_decoder import HeaderDecoder, HeaderDecodingError

NAMES = [
    b":method",
    b":path",
    b":status",
    b"content-type",
    b"grpc-status",
    b"grpc-message",
    b"x-custom",
    b"te",
]


def random_fields(rng: random.Random) -> list[tuple[bytes, bytes]]:
    fields = []
    for _ in range(rng.randint(1, 8)):
        name = rng.choice(NAMES) if rng.random() < 0.8 else b"x-%d" % rng.randint(0, 50)
        value = rng.choice([b"POST", b"200", b"application/grpc", b"", b"v" * rng.randint(1, 300)])
        fields.append((name, value))
    return fields


@pytest.mark.parametrize("seed", range(20))
def test_a_connection_s_blocks_decode_as_the_hpack_package_decodes_them(seed: int) -> None:
    rng = random.Random(seed)
    encoder, reference, ours = hpack.Encoder(), hpack.Decoder(), HeaderDecoder()
    for step in range(200):
        if step % 50 == 49:
            encoder.header_table_size = rng.choice([0, 256, 4096])  # the next block starts with an update
        fields = random_fields(rng) if rng.random() < 0.6 else [(b":method", b"POST"), (b"te", b"trailers")]
        sensitive = rng.random() < 0.2
        block = encoder.encode(
            [hpack.NeverIndexedHeaderTuple(n, v) if sensitive else (n, v) for n, v in fields]
        )
        assert list(ours.decode(block)) == [tuple(f) for f in reference.decode(block, raw=True)]


def test_a_cached_block_follows_changes_of_the_dynamic_table() -> None:
    decoder = HeaderDecoder()
    first_dynamic = bytes([0x80 | 62])  # "the newest entry of the dynamic table"
    add_a = bytes([0x40, 1]) + b"a" + bytes([1]) + b"1"  # literal with indexing, new name "a": "1"
    add_b = bytes([0x40, 1]) + b"b" + bytes([1]) + b"2"
    assert decoder.decode(add_a) == ((b"a", b"1"),)
    assert decoder.decode(first_dynamic) == ((b"a", b"1"),)
    assert decoder.decode(first_dynamic) == ((b"a", b"1"),)  # from the cache
    decoder.decode(add_b)
    assert decoder.decode(first_dynamic) == ((b"b", b"2"),)


def test_table_size_updates_evict_entries() -> None:
    decoder = HeaderDecoder()
    decoder.decode(bytes([0x40, 1]) + b"a" + bytes([1]) + b"1")
    assert decoder.decode(bytes([0x80 | 62])) == ((b"a", b"1"),)
    decoder.decode(bytes([0x20]))  # size 0: the table empties
    with pytest.raises(HeaderDecodingError, match="out of range"):
        decoder.decode(bytes([0x80 | 62]))


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (bytes([0x80]), "index 0"),
        (bytes([0x80 | 70]), "out of range"),
        (bytes([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]), "integer"),
        (bytes([0x40, 0x05]) + b"ab", "past the end"),
        (bytes([0x00, 0x01]) + b"a", "truncated string"),
        (bytes([0x3F, 0xE2, 0x1F]), "above the allowed maximum"),  # 4097
        (bytes([0x82, 0x20]), "after the first field"),
        (bytes([0x00, 0x81, 0x00, 0x00]), "Huffman"),
    ],
)
def test_malformed_blocks_are_refused(block: bytes, message: str) -> None:
    with pytest.raises(HeaderDecodingError, match=message):
        HeaderDecoder().decode(block)
