"""The subset of HTTP/2 (RFC 9113) that gRPC between a plugin and its host uses, as a sans-I/O state machine.

Why not the `h2` library: it is general and careful, and so costs ~120 us of CPU per call on each side,
a third of the plugin's whole budget per request. The peers here are fixed (Vault's grpc-go and this
plugin, over a private mutual-TLS connection), so this module does only what gRPC needs: SETTINGS and
their acknowledgement, PING replies, flow control in both directions, HEADERS (+CONTINUATION) decoded
by `header_decoder`, DATA, RST_STREAM and GOAWAY. It never pushes, never prioritises, and encodes headers as
literals without indexing (valid HPACK that needs no encoder state).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from vaultplugin.transport.header_decoder import HeaderDecoder, HeaderDecodingError

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = (
    range(10)
)
FLAG_END_STREAM = 0x1
FLAG_ACK = 0x1
FLAG_END_HEADERS = 0x4
FLAG_PADDED = 0x8
FLAG_PRIORITY = 0x20

SETTINGS_ENABLE_PUSH = 0x2
SETTINGS_INITIAL_WINDOW_SIZE = 0x4
SETTINGS_MAX_FRAME_SIZE = 0x5

DEFAULT_WINDOW = 65_535
RECEIVE_WINDOW = 16 * 1024 * 1024  # what we grant the peer, per stream and for the connection
_HEADER = struct.Struct(">BHBBI")  # length as 1+2 bytes, type, flags, stream id


class ProtocolError(Exception):
    """The peer broke the HTTP/2 rules: the connection must be dropped."""


def encode_frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    n = len(payload)
    return _HEADER.pack(n >> 16, n & 0xFFFF, kind, flags, stream_id) + payload


def _hpack_int(value: int, prefix_bits: int, first: int) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = bytearray([first | limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# Static-table indexes (RFC 7541, appendix A) of the names we send.
_STATIC_NAME = {
    b":authority": 1,
    b":method": 2,
    b":path": 4,
    b":scheme": 6,
    b":status": 8,
    b"content-type": 31,
}
# Whole fields that are in the static table.
_STATIC_FIELD = {(b":method", b"POST"): 3, (b":scheme", b"https"): 7, (b":status", b"200"): 8}


def encode_headers(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """An HPACK block of literals without indexing (no encoder state; any decoder accepts it)."""
    out = bytearray()
    for name, value in headers:
        full = _STATIC_FIELD.get((name, value))
        if full is not None:
            out += _hpack_int(full, 7, 0x80)
            continue
        index = _STATIC_NAME.get(name, 0)
        out += _hpack_int(index, 4, 0x00)
        if not index:
            out += _hpack_int(len(name), 7, 0x00) + name
        out += _hpack_int(len(value), 7, 0x00) + value
    return bytes(out)


class Connection:
    """One side of an HTTP/2 connection. Feed received bytes to `receive`; send what `take_output` returns.

    `receive` returns events: ("headers", stream_id, [(name, value)], end_stream),
    ("data", stream_id, bytes, end_stream), ("reset", stream_id, error_code), ("goaway",).
    Callers serialise access (the server holds a lock; the client uses a connection from one thread).
    """

    def __init__(self, *, client_side: bool) -> None:
        self.client_side = client_side
        self._buf = bytearray()
        self._out = bytearray()
        self._ping_acks = bytearray()
        self._decoder = HeaderDecoder()
        self._continuing: tuple[int, int, bytearray] | None = (
            None  # (stream, flags, block) of an open header block
        )
        self._preface_pending = not client_side
        self.max_frame_size = 16_384
        self.peer_initial_window = DEFAULT_WINDOW
        self.send_window = DEFAULT_WINDOW  # connection-level window the peer granted us
        self.stream_send_window: dict[int, int] = {}
        self._recv_unacked: dict[int, int] = {}
        self._next_stream = 1
        self.closed = False
        if client_side:
            self._out += PREFACE
        settings = struct.pack(
            ">HIHIHI",
            SETTINGS_ENABLE_PUSH,
            0,
            SETTINGS_INITIAL_WINDOW_SIZE,
            RECEIVE_WINDOW,
            SETTINGS_MAX_FRAME_SIZE,
            16_384,
        )
        self._out += encode_frame(SETTINGS, 0, 0, settings)
        self._out += encode_frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", RECEIVE_WINDOW - DEFAULT_WINDOW))

    def take_output(self) -> bytes:
        # PING acknowledgements go last. grpc-go pings after every DATA frame it receives unless a ping is
        # outstanding (its bandwidth estimator); an acknowledgement read after the data in the same write
        # means that data started no new ping.
        out = bytes(self._out + self._ping_acks)
        self._out.clear()
        self._ping_acks.clear()
        return out

    @property
    def output_can_wait(self) -> bool:
        """True when all that is queued is PING acknowledgements, which may ride on the next write.

        grpc-go sends a ping after each message it receives, for its bandwidth estimate. Answering each at
        once costs both sides a TLS record, a write and a wake-up per message; an answer that waits for the
        next reply costs nothing, and grpc-go sends no new ping until it has it. Nothing waits on our
        answer: the host sets no keepalive on plugin connections, so only the estimate is delayed.
        """
        return not self._out

    @property
    def ping_acks_pending(self) -> bool:
        return bool(self._ping_acks)

    # ---- sending ------------------------------------------------------------------------------------------

    def new_stream(self) -> int:
        stream_id = self._next_stream
        self._next_stream += 2
        self.open_stream(stream_id)
        return stream_id

    def open_stream(self, stream_id: int) -> None:
        self.stream_send_window[stream_id] = self.peer_initial_window

    def close_stream(self, stream_id: int) -> None:
        self.stream_send_window.pop(stream_id, None)
        self._recv_unacked.pop(stream_id, None)

    def send_headers(self, stream_id: int, block: bytes, *, end_stream: bool = False) -> None:
        flags = FLAG_END_HEADERS | (FLAG_END_STREAM if end_stream else 0)
        if len(block) <= self.max_frame_size:
            self._out += encode_frame(HEADERS, flags, stream_id, block)
            return
        first, rest = block[: self.max_frame_size], block[self.max_frame_size :]
        self._out += encode_frame(HEADERS, flags & ~FLAG_END_HEADERS, stream_id, first)
        while rest:
            chunk, rest = rest[: self.max_frame_size], rest[self.max_frame_size :]
            self._out += encode_frame(CONTINUATION, 0 if rest else FLAG_END_HEADERS, stream_id, chunk)

    def sendable(self, stream_id: int) -> int:
        """How many DATA bytes flow control lets us send on the stream now."""
        return max(0, min(self.send_window, self.stream_send_window.get(stream_id, 0)))

    def send_data(self, stream_id: int, data: bytes, *, end_stream: bool = False) -> int:
        """Queue as much of `data` as the windows allow; return how many bytes were queued.

        END_STREAM is set only on the frame that carries the last byte (or on an empty frame for no data).
        """
        allowed = min(len(data), self.sendable(stream_id))
        sent = 0
        while sent < allowed:
            chunk = data[sent : sent + min(self.max_frame_size, allowed - sent)]
            sent += len(chunk)
            flags = FLAG_END_STREAM if end_stream and sent == len(data) else 0
            self._out += encode_frame(DATA, flags, stream_id, chunk)
        if not data and end_stream:
            self._out += encode_frame(DATA, FLAG_END_STREAM, stream_id)
        self.send_window -= sent
        if stream_id in self.stream_send_window:
            self.stream_send_window[stream_id] -= sent
        return sent

    def reset_stream(self, stream_id: int, code: int = 0x8) -> None:
        self._out += encode_frame(RST_STREAM, 0, stream_id, struct.pack(">I", code))
        self.close_stream(stream_id)

    # ---- receiving ----------------------------------------------------------------------------------------

    def receive(self, data: bytes) -> list[tuple[object, ...]]:
        self._buf += data
        if self._preface_pending:
            if len(self._buf) < len(PREFACE):
                return []
            if bytes(self._buf[: len(PREFACE)]) != PREFACE:
                raise ProtocolError("the client did not send the HTTP/2 preface")
            del self._buf[: len(PREFACE)]
            self._preface_pending = False
        events: list[tuple[object, ...]] = []
        buf = self._buf
        pos = 0
        while len(buf) - pos >= 9:
            hi, lo, kind, flags, stream_id = _HEADER.unpack_from(buf, pos)
            length = (hi << 16) | lo
            if len(buf) - pos - 9 < length:
                break
            payload = bytes(buf[pos + 9 : pos + 9 + length])
            pos += 9 + length
            self._on_frame(kind, flags, stream_id & 0x7FFFFFFF, payload, events)
        del buf[:pos]
        return events

    def _on_frame(
        self, kind: int, flags: int, stream_id: int, payload: bytes, events: list[tuple[object, ...]]
    ) -> None:
        if self._continuing is not None and kind != CONTINUATION:
            raise ProtocolError("a header block was interrupted")
        if kind == DATA:
            self._on_data(flags, stream_id, payload, events)
        elif kind in (HEADERS, CONTINUATION):
            self._on_headers(kind, flags, stream_id, payload, events)
        elif kind == SETTINGS:
            if not flags & FLAG_ACK:
                self._apply_settings(payload)
                self._out += encode_frame(SETTINGS, FLAG_ACK, 0)
        elif kind == WINDOW_UPDATE:
            (increment,) = struct.unpack(">I", payload)
            increment &= 0x7FFFFFFF
            if stream_id == 0:
                self.send_window += increment
            elif stream_id in self.stream_send_window:
                self.stream_send_window[stream_id] += increment
        elif kind == PING:
            if not flags & FLAG_ACK:
                self._ping_acks += encode_frame(PING, FLAG_ACK, 0, payload)
        elif kind == RST_STREAM:
            (code,) = struct.unpack(">I", payload)
            self.close_stream(stream_id)
            events.append(("reset", stream_id, code))
        elif kind == GOAWAY:
            self.closed = True
            events.append(("goaway",))
        elif kind == PUSH_PROMISE:
            raise ProtocolError("push is disabled")
        # PRIORITY and unknown frame types are ignored, as the RFC requires.

    def _on_data(self, flags: int, stream_id: int, payload: bytes, events: list[tuple[object, ...]]) -> None:
        flow_length = len(payload)
        if flags & FLAG_PADDED:
            payload = payload[1 : len(payload) - payload[0]]
        # Give the window back once half of it is used, for the connection and for the stream.
        for key in (0, stream_id):
            used = self._recv_unacked.get(key, 0) + flow_length
            if used >= RECEIVE_WINDOW // 2:
                self._out += encode_frame(WINDOW_UPDATE, 0, key, struct.pack(">I", used))
                used = 0
            self._recv_unacked[key] = used
        events.append(("data", stream_id, payload, bool(flags & FLAG_END_STREAM)))

    def _on_headers(
        self, kind: int, flags: int, stream_id: int, payload: bytes, events: list[tuple[object, ...]]
    ) -> None:
        if kind == HEADERS:
            if flags & FLAG_PADDED:
                payload = payload[1 : len(payload) - payload[0]]
            if flags & FLAG_PRIORITY:
                payload = payload[5:]
            self._continuing = (stream_id, flags, bytearray(payload))
        else:
            if self._continuing is None or self._continuing[0] != stream_id:
                raise ProtocolError("unexpected CONTINUATION frame")
            self._continuing[2].extend(payload)
        if not flags & FLAG_END_HEADERS:
            return
        assert self._continuing is not None
        stream, first_flags, block = self._continuing
        self._continuing = None
        try:
            headers = self._decoder.decode(bytes(block))
        except HeaderDecodingError as exc:
            raise ProtocolError(f"bad header block: {exc}") from None
        events.append(("headers", stream, headers, bool(first_flags & FLAG_END_STREAM)))

    def _apply_settings(self, payload: bytes) -> None:
        for offset in range(0, len(payload) - 5, 6):
            ident, value = struct.unpack_from(">HI", payload, offset)
            if ident == SETTINGS_INITIAL_WINDOW_SIZE:
                delta = value - self.peer_initial_window
                self.peer_initial_window = value
                for sid in self.stream_send_window:
                    self.stream_send_window[sid] += delta
            elif ident == SETTINGS_MAX_FRAME_SIZE:
                self.max_frame_size = value
