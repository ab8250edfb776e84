"""Loopback servers that misbehave below HTTP (for the slow-provider tests), and a timer for assertions.

Every server binds 127.0.0.1, runs on daemon threads and is stopped (its sockets closed) by `close()`.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator


class SilentServer:
    """Accepts connections and never sends a byte (for a TLS handshake that never completes)."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self.closed_by_client: list[float] = []  # monotonic times a client closed its connection
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self._sock.settimeout(0.05)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self._held.append(conn)
            threading.Thread(target=self._watch, args=(conn,), daemon=True).start()

    def _watch(self, conn: socket.socket) -> None:
        conn.settimeout(0.05)
        while not self._stop.is_set():
            try:
                if not conn.recv(65536):
                    self.closed_by_client.append(time.monotonic())
                    return
            except TimeoutError:
                continue
            except OSError:
                self.closed_by_client.append(time.monotonic())
                return

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        for conn in self._held:
            conn.close()


class FullBacklog:
    """A listening port whose accept queue is full, so a new connect hangs (its SYN is dropped)."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(0)
        self.port: int = self._sock.getsockname()[1]
        self._filler = socket.create_connection(("127.0.0.1", self.port), timeout=2)  # fills the queue

    def close(self) -> None:
        self._filler.close()
        self._sock.close()


class RecordingProxy:
    """An HTTP forward proxy stand-in: records each request line and answers it itself with `body`."""

    def __init__(self, body: bytes = b'{"data": []}') -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self.request_lines: list[str] = []
        self._body = body
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        self._sock.settimeout(0.05)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                self.request_lines.append(data.split(b"\r\n", 1)[0].decode("latin-1"))
                head = (
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(self._body)
                )
                with contextlib.suppress(OSError):
                    conn.sendall(head + self._body)

    def close(self) -> None:
        self._stop.set()
        self._sock.close()


@contextlib.contextmanager
def timed() -> Iterator[Callable[[], float]]:
    """`with timed() as elapsed:` ... `elapsed()` is the seconds since the block started."""
    started = time.monotonic()
    yield lambda: time.monotonic() - started
