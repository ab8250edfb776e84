"""The plugin process's entry point: `python -m llmsecrets.main` (or the built zipapp) under Vault."""

from __future__ import annotations

import logging
import math
import os

from vaultplugin.serve import serve

from llmsecrets.backend import WAL_MIN_AGE, LLMBackend, new_backend
from llmsecrets.version import VERSION

log = logging.getLogger(__name__)

# Test knob, set through the plugin catalog's `env`: lowers how old a pending create's WAL entry must be
# before Vault's rollback tick settles it, so an end-to-end test need not wait 10 minutes. Production
# leaves it unset (a value below a create's request deadline could roll back a create still in flight).
WAL_MIN_AGE_ENV = "LLMSECRETS_WAL_MIN_AGE_SECONDS"
WAL_MIN_AGE_RANGE = (1.0, 3600.0)


def wal_min_age_from_env() -> float:
    """The WAL min age from WAL_MIN_AGE_ENV, or the default (a bad value is logged and ignored)."""
    raw = os.environ.get(WAL_MIN_AGE_ENV, "").strip()
    if not raw:
        return WAL_MIN_AGE
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    low, high = WAL_MIN_AGE_RANGE
    if not low <= value <= high:  # also false for NaN
        log.warning("ignoring %s=%r: want seconds in [%g, %g]", WAL_MIN_AGE_ENV, raw[:20], low, high)
        return WAL_MIN_AGE
    log.warning(
        "%s=%g: WAL entries are rolled back after %gs (a test setting)", WAL_MIN_AGE_ENV, value, value
    )
    return value


def main() -> None:
    """Serve the engine as a Vault / OpenBao external plugin until the host stops it."""

    def factory() -> LLMBackend:
        return new_backend(wal_min_age_seconds=wal_min_age_from_env())

    serve(factory, VERSION)


if __name__ == "__main__":
    main()
