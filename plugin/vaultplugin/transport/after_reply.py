"""Work a call leaves for after its reply: `defer(fn)` runs `fn` once the call's reply has been sent, on the
call's own thread (or greenlet), so the host does not wait for housekeeping.

Only for work the reply does not depend on, whose failure changes nothing the caller was told (the
engine's lease revoke defers clearing a deletion tombstone it has just used). Outside a call (unit tests,
background threads) `fn` runs at once, so code behaves the same everywhere but for the wait.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Callable, Iterator

log = logging.getLogger(__name__)

_pending: contextvars.ContextVar[list[Callable[[], None]] | None] = contextvars.ContextVar(
    "vaultplugin_after_reply", default=None
)


def defer(fn: Callable[[], None]) -> None:
    """Run `fn` after the running call's reply has been sent; at once outside a call."""
    pending = _pending.get()
    if pending is None:
        fn()
    else:
        pending.append(fn)


@contextlib.contextmanager
def collecting() -> Iterator[list[Callable[[], None]]]:
    """Collect what the code run inside defers (the gRPC server wraps each call in this)."""
    pending: list[Callable[[], None]] = []
    token = _pending.set(pending)
    try:
        yield pending
    finally:
        _pending.reset(token)


def run(pending: list[Callable[[], None]]) -> None:
    """Run deferred work in order; a failure is logged and the rest still runs."""
    for fn in pending:
        try:
            fn()
        except Exception:
            log.exception("work deferred until after a reply failed")
