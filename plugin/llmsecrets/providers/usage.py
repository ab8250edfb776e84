"""Reading money out of provider answers: the one check every spend reader shares."""

from __future__ import annotations

import math
from typing import Any

from .http import bad_response


def usd_of(value: Any, provider: str, op: str) -> float:
    """A USD amount as a float: a JSON number or a decimal string (OpenAI's costs have been both), finite and
    not negative; anything else is a bad response, never a silent 0."""
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    if number is None or not math.isfinite(number) or number < 0:
        raise bad_response(provider, op, f"an amount in USD is not a number >= 0 ({type(value).__name__})")
    return number
