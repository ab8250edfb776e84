"""A call's cancellation by the host, visible to the code the call runs.

When Vault gives up on a request (its client went away, or its own request time limit passed), grpc-go
cancels the plugin call: an HTTP/2 RST_STREAM arrives for its stream (measured on OpenBao 2.7: code 8,
CANCEL, the moment the HTTP client disconnects). The gRPC server then cancels that call's `Cancellation`,
and `current()` gives the code of a call its own, on whatever thread or greenlet it runs, so a slow
provider call can stop instead of going on for nobody.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
from collections.abc import Callable, Iterator

log = logging.getLogger(__name__)

Callback = Callable[[], None]


class Cancellation:
    """Set once, by the host's side; callbacks run on the thread that cancels (the hub: keep them quick)."""

    __slots__ = ("_callbacks", "_cancelled", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancelled = False
        self._callbacks: list[Callback] = []

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        with self._lock:
            if self._cancelled:
                return
            self._cancelled = True
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.exception("a cancellation callback failed")

    def on_cancel(self, callback: Callback) -> Callback:
        """Run `callback` when the call is cancelled (at once if it already is); returns its remover."""
        with self._lock:
            if not self._cancelled:
                self._callbacks.append(callback)
                return lambda: self._remove(callback)
        callback()
        return lambda: None

    def _remove(self, callback: Callback) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._callbacks.remove(callback)


_current: contextvars.ContextVar[Cancellation | None] = contextvars.ContextVar(
    "vaultplugin_call", default=None
)


def current() -> Cancellation | None:
    """The cancellation of the call running here, or None outside a call."""
    return _current.get()


@contextlib.contextmanager
def running(cancellation: Cancellation) -> Iterator[None]:
    """Make `cancellation` the current one for the duration of a call."""
    token = _current.set(cancellation)
    try:
        yield
    finally:
        _current.reset(token)
