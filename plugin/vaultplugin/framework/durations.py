"""Durations as Vault accepts them: seconds as a number, or Go-style strings such as "90s" or "1h30m".

Results are whole seconds (int), like the SDK's TypeDurationSecond, but stricter than Go's parser on
purpose: where Go truncates "500ms" or "1ns" to 0 (which a TTL field reads as "the mount default", so a
typo would give a 32-day lease), a value that is not a whole number of seconds is refused. Zero itself
("0", "0s", 0) is accepted: each field documents what 0 means there. Digits must be ASCII (12 in Arabic-Indic
digits is not 12 seconds), and the arithmetic is exact (no float rounding), bounded by MAX_DURATION_SECONDS.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

# Go's time.ParseDuration units in nanoseconds, plus "d" (days), which Vault's parseutil also accepts.
_UNIT_NANOSECONDS: dict[str, int] = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # Go accepts the micro sign
    "μs": 1_000,  # and the Greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
    "d": 86400 * 1_000_000_000,
}
_NS_PER_SECOND = 1_000_000_000
# [0-9], not \d: \d matches any Unicode digit.
_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_PART_RE = re.compile(rf"({_NUMBER})(ns|us|µs|μs|ms|s|m|h|d)")
_NUMBER_RE = re.compile(_NUMBER)
_SPACE = " \t\r\n"

# Far beyond any lease Vault grants; keeps every duration well inside Vault's int64 nanoseconds.
MAX_DURATION_SECONDS = 100 * 365 * 86400
# Longer text is no duration anyone means (and parsing it would be work for nothing).
MAX_DURATION_TEXT = 64

DURATION_EXAMPLES = "examples: 30s, 15m, 1h"


class DurationError(ValueError):
    """The value is not a duration; the message never contains the value itself."""


def parse_duration(value: object) -> int:
    """Parse `value` into whole seconds; raise DurationError if it is malformed, negative, too long or
    not a whole number of seconds."""
    if isinstance(value, bool):
        raise DurationError("is not a duration")
    if isinstance(value, int):
        return _checked(Fraction(value))
    if isinstance(value, float):
        if not math.isfinite(value):
            raise DurationError("is not a duration")
        return _checked(Fraction(value))
    if not isinstance(value, str):
        raise DurationError("is not a duration")
    return _checked(_parse_text(value))


def _parse_text(value: str) -> Fraction:
    """Seconds as an exact fraction."""
    text = value.strip(_SPACE)
    if len(text) > MAX_DURATION_TEXT:
        raise DurationError(f"is longer than {MAX_DURATION_TEXT} characters, so not a duration")
    if text.startswith("-"):
        raise DurationError("must not be negative")
    text = text.removeprefix("+")
    if not text:
        raise DurationError("is not a duration")
    if _NUMBER_RE.fullmatch(text):
        return Fraction(text)
    nanoseconds = Fraction(0)
    pos = 0
    for match in _PART_RE.finditer(text):
        if match.start() != pos:
            break
        nanoseconds += Fraction(match.group(1)) * _UNIT_NANOSECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text):
        if not text.isascii() and any(c.isdigit() and not c.isascii() for c in text):
            raise DurationError("is not a duration: write its digits as ASCII 0-9")
        raise DurationError("is not a duration")
    return nanoseconds / _NS_PER_SECOND


def _checked(seconds: Fraction) -> int:
    if seconds < 0:
        raise DurationError("must not be negative")
    if seconds > MAX_DURATION_SECONDS:
        raise DurationError(f"is longer than the maximum of {MAX_DURATION_SECONDS // 3600}h")
    if seconds.denominator != 1:
        raise DurationError(
            "is not a whole number of seconds (sub-second values such as 500ms are refused, not rounded to 0)"
        )
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
