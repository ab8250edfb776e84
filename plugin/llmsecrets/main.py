"""The plugin process's entry point: `python -m llmsecrets.main` (or the built zipapp) under Vault."""

from __future__ import annotations

import logging
import math
import os

from vaultplugin.serve import serve

from llmsecrets.backend import REQUEST_TIMEOUT, WAL_MIN_AGE, LLMBackend, new_backend
from llmsecrets.version import VERSION

log = logging.getLogger(__name__)

# Test knob, set through the plugin catalog's `env`: lowers how old a pending create's WAL entry must be
# before Vault's rollback tick settles it, so an end-to-end test need not wait 10 minutes. Production
# leaves it unset (a value below a create's request deadline could roll back a create still in flight).
WAL_MIN_AGE_ENV = "LLMSECRETS_WAL_MIN_AGE_SECONDS"
WAL_MIN_AGE_RANGE = (1.0, 3600.0)

# Operator setting, through the catalog's `env`: the wall-clock budget of one provider call, retries
# included (default 30 s). Keep it below Vault's max_request_duration (90 s by default), so a slow
# provider ends in the plugin's own 502 that says what happened, not in Vault's timeout.
PROVIDER_TIMEOUT_ENV = "LLMSECRETS_PROVIDER_TIMEOUT_SECONDS"
PROVIDER_TIMEOUT_RANGE = (1.0, 300.0)


def _seconds_from_env(name: str, bounds: tuple[float, float]) -> float | None:
    """Seconds from the environment variable `name`; None when unset; a bad value is logged and ignored."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    low, high = bounds
    if not low <= value <= high:  # also false for NaN
        log.warning("ignoring %s=%r: want seconds in [%g, %g]", name, raw[:20], low, high)
        return None
    return value


def wal_min_age_from_env() -> float:
    """The WAL min age from WAL_MIN_AGE_ENV, or the default (a bad value is logged and ignored)."""
    value = _seconds_from_env(WAL_MIN_AGE_ENV, WAL_MIN_AGE_RANGE)
    if value is None:
        return WAL_MIN_AGE
    log.warning(
        "%s=%g: WAL entries are rolled back after %gs (a test setting)", WAL_MIN_AGE_ENV, value, value
    )
    return value


def provider_timeout_from_env() -> float:
    """The provider call budget from PROVIDER_TIMEOUT_ENV, or the default."""
    value = _seconds_from_env(PROVIDER_TIMEOUT_ENV, PROVIDER_TIMEOUT_RANGE)
    if value is None:
        return REQUEST_TIMEOUT
    log.info("%s=%g: every provider call ends within %gs", PROVIDER_TIMEOUT_ENV, value, value)
    return value


def main() -> None:
    """Serve the engine as a Vault / OpenBao external plugin until the host stops it."""

    def factory() -> LLMBackend:
        return new_backend(
            wal_min_age_seconds=wal_min_age_from_env(), request_timeout=provider_timeout_from_env()
        )

    serve(factory, VERSION)


if __name__ == "__main__":
    main()
