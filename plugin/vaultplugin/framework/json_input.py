"""Decoding JSON that a caller wrote, with its nesting bounded before the decoder sees it.

Python's json decoder recurses once per level of nesting, so about 1,000 nested lists raise a
RecursionError (a 500), and values just under that depth break later code that recurses too (json.dumps
in an error message, repr in a log line). Vault itself accepts up to 10,000 levels. No field of a plugin
takes more than a couple of levels, so anything deeper than MAX_JSON_DEPTH is refused up front with a
message that says what to send instead.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

# The request body object is level 1, a list or map value level 2: 32 leaves a wide margin.
MAX_JSON_DEPTH = 32

# A JSON string (its brackets are text, not nesting), and an innermost pair of brackets.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_INNERMOST = re.compile(r"\[\]|\{\}")
# Outside its strings, JSON is ASCII: deleting every other ASCII character leaves the brackets.
_ONLY_BRACKETS = {code: None for code in range(128) if chr(code) not in "[]{}"}


class JsonInputError(ValueError):
    """The text is not JSON this plugin accepts; the message says what to fix."""


def check_depth(text: str, limit: int = MAX_JSON_DEPTH, what: str = "request data") -> None:
    """Raise JsonInputError if `text` nests lists or objects more than `limit` levels deep.

    Works in C-speed passes rather than a Python loop over characters (a 1 MB body is parsed on the
    plugin's hub): the brackets outside strings are kept, then each pass removes the innermost pairs, one
    level a pass. Brackets left after `limit` passes are deeper nesting if a further pass still removes
    some; if none, the text is malformed and json.loads says so.
    """
    # Fewer opening brackets than the limit cannot nest deeper than it (those in strings included).
    if text.count("[") + text.count("{") <= limit:
        return
    brackets = _STRING.sub("", text).translate(_ONLY_BRACKETS)
    if _openers(limit + 1).search(brackets):  # the usual attack, found in one pass
        raise _too_deep(what, limit)
    for _ in range(limit):
        if not brackets:
            return
        brackets = _INNERMOST.sub("", brackets)
    if brackets and _INNERMOST.search(brackets):
        raise _too_deep(what, limit)


@functools.lru_cache(maxsize=8)
def _openers(count: int) -> re.Pattern[str]:
    """`count` opening brackets in a row."""
    return re.compile(r"[\[{]" + f"{{{count}}}")


def _too_deep(what: str, limit: int) -> JsonInputError:
    return JsonInputError(
        f"{what} nests lists or objects more than {limit} levels deep; every field takes "
        "a string, a number, a boolean, a list of strings or a flat map of strings"
    )


def loads(text: str, limit: int = MAX_JSON_DEPTH, what: str = "request data") -> Any:
    """json.loads with nesting bounded by `limit`; every failure is a JsonInputError naming `what`."""
    check_depth(text, limit, what)
    try:
        return json.loads(text)
    except RecursionError:  # cannot happen within the limit; kept so that no input can become a 500
        raise JsonInputError(f"{what} is nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise JsonInputError(f"{what} is not valid JSON ({exc})") from None
    except ValueError:  # an integer of more than 4,300 digits
        raise JsonInputError(f"{what} holds a number with too many digits") from None
