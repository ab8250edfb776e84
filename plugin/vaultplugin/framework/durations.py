"""Durations as Vault accepts them: seconds as a number, or Go-style strings such as "90s" or "1h30m".

Results are whole seconds (int), like the SDK's TypeDurationSecond: sub-second parts are truncated.
"""

from __future__ import annotations

import math
import re

# Go's time.ParseDuration units, plus "d" (days), which Vault's parseutil also accepts.
_UNIT_SECONDS: dict[str, float] = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,  # Go accepts the micro sign
    "μs": 1e-6,  # and the Greek mu
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
_PART_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h|d)")
_NUMBER_RE = re.compile(r"\d+(?:\.\d*)?|\.\d+")

# Far beyond any lease Vault grants, small enough that arithmetic on it stays exact.
MAX_DURATION_SECONDS = 100 * 365 * 86400

DURATION_EXAMPLES = "examples: 30s, 15m, 1h"


class DurationError(ValueError):
    """The value is not a duration; the message never contains the value itself."""


def parse_duration(value: object) -> int:
    """Parse `value` into whole seconds; raise DurationError if it is malformed or negative."""
    if isinstance(value, bool):
        raise DurationError("is not a duration")
    if isinstance(value, int | float):
        return _checked(float(value))
    if not isinstance(value, str):
        raise DurationError("is not a duration")
    text = value.strip()
    if text.startswith("-"):
        raise DurationError("must not be negative")
    text = text.removeprefix("+")
    if not text:
        raise DurationError("is not a duration")
    if _NUMBER_RE.fullmatch(text):
        return _checked(float(text))
    total = 0.0
    pos = 0
    for match in _PART_RE.finditer(text):
        if match.start() != pos:
            raise DurationError("is not a duration")
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text):
        raise DurationError("is not a duration")
    return _checked(total)


def _checked(seconds: float) -> int:
    if math.isnan(seconds) or math.isinf(seconds):
        raise DurationError("is not a duration")
    if seconds < 0:
        raise DurationError("must not be negative")
    if seconds > MAX_DURATION_SECONDS:
        raise DurationError("is too long")
    return int(seconds)


def format_duration(seconds: float) -> str:
    """Render seconds the way Go prints a time.Duration (e.g. 5400 -> "1h30m0s"; 0 -> "0s")."""
    total = int(seconds)
    if total <= 0:
        return "0s"
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"
