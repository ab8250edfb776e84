"""A background thread that runs an engine's retry passes (owed deletions, owed deactivations).

It runs a pass at once when woken (news: an entry queued, the provider answered again), otherwise when the
pass said its next entry is due, and looks again after a minute when nothing is; a pass that fails is tried
again after `failure_pause`. It acts only while the node may act on providers (the active node): elsewhere it
idles, so due entries never spin on a standby. A daemon: if a pass is stuck in a provider call when the
plugin exits, it dies with the process; the entries stay in storage for the next process.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vaultplugin.framework import Storage

log = logging.getLogger(__name__)

IDLE_SECONDS = 60.0  # the longest wait between passes
STOP_WAIT_SECONDS = 2.0  # how long `stop` waits for a pass to end


class Retrier:
    """`run_pass(storage)` returns the seconds until its next entry is due, or None when none waits."""

    def __init__(
        self,
        name: str,
        run_pass: Callable[[Storage], float | None],
        *,
        may_act: Callable[[Storage], bool],
        failure_pause: float,
    ) -> None:
        self._name = name
        self._run_pass = run_pass
        self._may_act = may_act
        self._failure_pause = failure_pause
        self._lock = threading.Lock()
        self._storage: Storage | None = None
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()

    def start(self, storage: Storage) -> None:
        """Make sure the thread runs, with this storage (Vault's Initialize, every rollback tick); wake it."""
        with self._lock:
            self._storage = storage
            if not self._stop.is_set() and (self._thread is None or not self._thread.is_alive()):
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
        self.wake()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        """Stop the thread (Vault's Cleanup: unmount, reload, seal); waits a moment for a running pass."""
        self._stop.set()
        self._wake.set()
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=STOP_WAIT_SECONDS)

    def _loop(self) -> None:
        timeout = 0.0
        while True:
            self._wake.wait(timeout)
            self._wake.clear()
            if self._stop.is_set():
                return
            with self._lock:
                storage = self._storage
            try:
                if storage is None or not self._may_act(storage):
                    timeout = IDLE_SECONDS
                    continue
                due_in = self._run_pass(storage)
                timeout = IDLE_SECONDS if due_in is None else min(IDLE_SECONDS, max(0.05, due_in))
            except Exception:
                log.exception("%s: a retry pass failed", self._name)
                timeout = self._failure_pause
