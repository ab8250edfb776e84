"""What a handler may use of the call it runs in, whatever runs it: the engine's one way to the transport.

- `wait_readable` / `wait_writable`: wait for a socket; on the hub the call is suspended meanwhile (other
  calls run), elsewhere a plain poll. An HTTP client built on these never holds the hub.
- `run_blocking(fn, deadline)`: anything that blocks otherwise (DNS, a library's own waits) runs on a pool
  thread while a call on the hub is suspended; elsewhere right here.
- `on_hub()`: is the running call on the hub (so a blocking call must go through `run_blocking`)?
- `CallLock`: a mutex a handler may hold across its calls to Vault (a `threading.Lock` held across one
  deadlocks the hub when a second call on the hub asks for it).
- `defer(fn)`: work left for after the call's reply has been sent.
- `current_cancellation()`: the host's cancellation of the running call (None outside a call).
- `CALL_THREADS`: how many pool threads run calls (a bound for per-connection bulkheads).

The engine imports these from here, never from `vaultplugin.transport`: the transport can change under the
framework without the engine noticing, and tests/unit/test_import_layers.py holds the line.
"""

from __future__ import annotations

from vaultplugin.transport.after_reply import defer
from vaultplugin.transport.cancellation import Cancellation
from vaultplugin.transport.cancellation import current as current_cancellation
from vaultplugin.transport.grpc_server import CALL_THREADS
from vaultplugin.transport.hub import CallLock, current_hub, run_blocking, wait_readable, wait_writable


def on_hub() -> bool:
    """True when the running call is on the hub: it must not block except through this module."""
    return current_hub() is not None


__all__ = [
    "CALL_THREADS",
    "CallLock",
    "Cancellation",
    "current_cancellation",
    "defer",
    "on_hub",
    "run_blocking",
    "wait_readable",
    "wait_writable",
]
