"""Typed request fields: the Python twin of the SDK's FieldSchema, FieldType and FieldData.

A `Field` parses one raw value (from JSON, a form post or a path capture) into a typed Python value.
Every parse error is a `BadRequest` that names the field and says what to send; a `sensitive` field's value
is never echoed. Numbers, names and durations take ASCII only, as Go's parsers do: Python's int(), float()
and regex word class would also take other scripts' digits and letters (Arabic-Indic "12" as 12).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar, cast

from vaultplugin.framework import json_input
from vaultplugin.framework.durations import DURATION_EXAMPLES, DurationError, parse_duration
from vaultplugin.framework.errors import BadRequest

MAX_STRING_LENGTH = 4096
MAX_ITEMS = 256
MAX_NAME_LENGTH = 128
_T = TypeVar("_T")
_ECHO_LIMIT = 60  # long values are cut in error messages; the caller knows what they sent

NAME_RE = re.compile(r"\w([\w.-]*\w)?", re.ASCII)
# Go's int (int64) range, as the SDK's TypeInt parses it.
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
_INT_RE = re.compile(r"[+-]?[0-9]+")
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_SPACE = " \t\r\n"
# A map sent as a JSON string holds strings: one level, plus a margin for a helpful error.
_MAP_JSON_DEPTH = 4
_TRUE = frozenset({"1", "t", "true", "yes", "y", "on"})
_FALSE = frozenset({"0", "f", "false", "no", "n", "off"})


class FieldType(StrEnum):
    STRING = "string"
    INT = "int"
    BOOL = "bool"
    FLOAT = "float"
    DURATION = "duration"  # whole seconds (int); accepts 90, "90", "90s", "1h30m"
    COMMA_STRING_LIST = "comma_string_list"  # list[str]; accepts a list or "a,b,c"
    STRING_LIST = "comma_string_list"  # alias
    MAP = "map"  # dict[str, str]; accepts an object, a JSON object string, "k=v,k2=v2" or ["k=v"]
    KV_PAIRS = "map"  # alias
    NAME = "name"  # one path segment: \w([\w.-]*\w)?, at most 128 characters


# How `bao path-help` shows each type.
TYPE_LABELS: dict[FieldType, str] = {
    FieldType.STRING: "string",
    FieldType.INT: "int",
    FieldType.BOOL: "bool",
    FieldType.FLOAT: "float",
    FieldType.DURATION: "duration (sec)",
    FieldType.COMMA_STRING_LIST: "comma-separated strings",
    FieldType.MAP: "map[string]string",
    FieldType.NAME: "name string",
}


class _Invalid(Exception):
    """Raised by the parsers with a phrase such as "is not an integer" (no value inside)."""


@dataclass(frozen=True)
class Field:
    """The schema of one field of a path (or of a secret type's response data)."""

    type: FieldType
    description: str = ""
    default: Any = None  # None = no default; `get` then returns the type's zero value
    required: bool = False  # a create/update without it is a 400
    allowed_values: Sequence[Any] | None = None
    max_length: int | None = None  # characters for strings/names, items for lists/maps
    sensitive: bool = False  # the value never appears in errors, warnings, help or OpenAPI examples
    display_name: str = ""
    deprecated: bool = False
    query: bool = False  # documented as a query parameter in OpenAPI
    _parsed_default: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Parse the default once, so a bad default fails when the backend is defined, not per request.
        if self.default is not None:
            object.__setattr__(self, "_parsed_default", self.parse("<default>", self.default))

    def parse(self, name: str, value: Any) -> Any:
        """Parse a raw value into this field's Python type, or raise BadRequest naming `name`."""
        try:
            parsed = _PARSERS[self.type](self, value)
            self._check_allowed(parsed)
        except _Invalid as exc:
            shown = "value" if self.sensitive else _show(value)
            raise BadRequest(f'invalid value for "{name}": {shown} {exc}') from None
        return parsed

    def default_value(self) -> Any:
        """The parsed default, or the zero value of the type (a fresh copy for lists and maps)."""
        value = self._parsed_default if self.default is not None else _ZERO[self.type]
        if isinstance(value, list | dict):
            return value.copy()
        return value

    def _check_allowed(self, parsed: Any) -> None:
        if self.allowed_values is None:
            return
        items = parsed if isinstance(parsed, list) else [parsed]
        for item in items:
            if item not in self.allowed_values:
                choices = ", ".join(str(v) for v in self.allowed_values)
                raise _Invalid(f"is not one of: {choices}")

    def limit(self, fallback: int) -> int:
        return self.max_length if self.max_length is not None else fallback


def _show(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) > _ECHO_LIMIT:
        text = text[: _ECHO_LIMIT - 3] + "..."
    return text


def _parse_string(f: Field, value: Any) -> str:
    # Vault decodes weakly: numbers and booleans sent for a string field become their text.
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str | int | float):
        text = str(value)
    else:
        raise _Invalid("is not a string")
    limit = f.limit(MAX_STRING_LENGTH)
    if len(text) > limit:
        raise _Invalid(f"is longer than {limit} characters")
    return text


def _parse_name(f: Field, value: Any) -> str:
    if not isinstance(value, str):
        raise _Invalid("is not a name")
    limit = f.limit(MAX_NAME_LENGTH)
    if len(value) > limit:
        raise _Invalid(f"is longer than {limit} characters")
    if not NAME_RE.fullmatch(value):
        raise _Invalid(
            "is not a valid name (use ASCII letters, digits, '_', '-' and '.', starting and ending "
            "with a letter or digit)"
        )
    return value


def _parse_int(_f: Field, value: Any) -> int:
    result: int | None = None
    if isinstance(value, bool):
        pass
    elif isinstance(value, int):
        result = value
    elif isinstance(value, float) and value.is_integer():
        result = int(value)  # JSON numbers arrive as floats (Vault decodes them as float64)
    elif isinstance(value, str):
        text = value.strip(_SPACE)
        if _INT_RE.fullmatch(text):
            if len(text) > 21:  # int64 has at most 19 digits; int() of thousands of digits is slow
                raise _Invalid(f"is out of range ({INT_MIN} to {INT_MAX})")
            result = int(text, 10)
    if result is None:
        raise _Invalid("is not an integer (use ASCII digits, e.g. 42)")
    if not INT_MIN <= result <= INT_MAX:
        raise _Invalid(f"is out of range ({INT_MIN} to {INT_MAX})")
    return result


def _parse_float(_f: Field, value: Any) -> float:
    result: float | None = None
    if isinstance(value, bool):
        pass
    elif isinstance(value, int):
        try:
            result = float(value)
        except OverflowError:
            raise _Invalid("is out of range") from None
    elif isinstance(value, float):
        result = value
    elif isinstance(value, str):
        text = value.strip(_SPACE)
        if len(text) <= 64 and _FLOAT_RE.fullmatch(text):
            result = float(text)
    if result is None:
        raise _Invalid("is not a number (use ASCII digits, e.g. 2.5)")
    if not math.isfinite(result):
        raise _Invalid("is out of range")
    return result


def _parse_bool(_f: Field, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    raise _Invalid("is not a boolean (use true or false)")


def _parse_duration(_f: Field, value: Any) -> int:
    try:
        return parse_duration(value)
    except DurationError as exc:
        raise _Invalid(f"{exc} ({DURATION_EXAMPLES})") from None


def _parse_list(f: Field, value: Any) -> list[str]:
    if isinstance(value, str):
        items: list[Any] = [part.strip() for part in value.split(",")]
        items = [item for item in items if item]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise _Invalid("is not a list of strings or a comma-separated string")
    limit = f.limit(MAX_ITEMS)
    if len(items) > limit:
        raise _Invalid(f"has more than {limit} items")
    result: list[str] = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise _Invalid("is not a list of strings")
        text = str(item)
        if len(text) > MAX_STRING_LENGTH:
            raise _Invalid(f"has an item longer than {MAX_STRING_LENGTH} characters")
        result.append(text)
    return result


def _parse_map(f: Field, value: Any) -> dict[str, str]:
    pairs: list[tuple[Any, Any]]
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            value = json_input.loads(value, limit=_MAP_JSON_DEPTH, what="the JSON text")
        except json_input.JsonInputError:
            raise _Invalid("is not a JSON object of strings") from None
    if isinstance(value, Mapping):
        pairs = list(value.items())
    elif isinstance(value, str | list | tuple):
        parts = value.split(",") if isinstance(value, str) else list(value)
        pairs = []
        for part in parts:
            if not isinstance(part, str):
                raise _Invalid("is not a map of strings (use a JSON object or k=v,k2=v2)")
            if not part.strip():
                continue
            key, sep, val = part.partition("=")
            if not sep or not key.strip():
                raise _Invalid("is not a map of strings (use a JSON object or k=v,k2=v2)")
            pairs.append((key.strip(), val.strip()))
    else:
        raise _Invalid("is not a map of strings (use a JSON object or k=v,k2=v2)")
    limit = f.limit(MAX_ITEMS)
    if len(pairs) > limit:
        raise _Invalid(f"has more than {limit} entries")
    result: dict[str, str] = {}
    for key, val in pairs:
        if not isinstance(key, str) or isinstance(val, bool) or not isinstance(val, str | int | float):
            raise _Invalid("is not a map of strings")
        text = str(val)
        if len(key) > MAX_STRING_LENGTH or len(text) > MAX_STRING_LENGTH:
            raise _Invalid(f"has a key or value longer than {MAX_STRING_LENGTH} characters")
        result[key] = text
    return result


_PARSERS: dict[FieldType, Callable[[Field, Any], Any]] = {
    FieldType.STRING: _parse_string,
    FieldType.NAME: _parse_name,
    FieldType.INT: _parse_int,
    FieldType.FLOAT: _parse_float,
    FieldType.BOOL: _parse_bool,
    FieldType.DURATION: _parse_duration,
    FieldType.COMMA_STRING_LIST: _parse_list,
    FieldType.MAP: _parse_map,
}

_ZERO: dict[FieldType, Any] = {
    FieldType.STRING: "",
    FieldType.NAME: "",
    FieldType.INT: 0,
    FieldType.FLOAT: 0.0,
    FieldType.BOOL: False,
    FieldType.DURATION: 0,
    FieldType.COMMA_STRING_LIST: [],
    FieldType.MAP: {},
}


class FieldData:
    """Typed access to a request's fields: path captures and body data, parsed by the path's schema.

    `get` returns the parsed value, else the default, else the type's zero value. Asking for a name
    the schema does not declare is a programming error (KeyError), as in the Go SDK.
    """

    def __init__(self, raw: Mapping[str, Any], schema: Mapping[str, Field]) -> None:
        self._raw = dict(raw)
        self._schema = schema
        self._parsed: dict[str, Any] = {}

    @property
    def raw(self) -> dict[str, Any]:
        """The unparsed input, including keys the schema does not declare."""
        return self._raw

    @property
    def schema(self) -> Mapping[str, Field]:
        return self._schema

    def validate(self, *, check_required: bool = False) -> None:
        """Parse every declared field that was sent, so errors surface before a handler runs."""
        for name in self._schema:
            self.get_ok(name)
        if check_required:
            missing = sorted(n for n, f in self._schema.items() if f.required and not self.is_set(n))
            if missing:
                names = ", ".join(f'"{n}"' for n in missing)
                raise BadRequest(f"missing required field(s): {names}")

    def is_set(self, name: str) -> bool:
        return self._raw.get(name) is not None

    def get_ok(self, name: str) -> tuple[Any, bool]:
        """(parsed value, True) if the request set the field, else (default or zero, False)."""
        spec = self._field(name)
        if not self.is_set(name):
            return spec.default_value(), False
        if name not in self._parsed:
            self._parsed[name] = spec.parse(name, self._raw[name])
        value = self._parsed[name]
        return (value.copy() if isinstance(value, list | dict) else value), True

    def get(self, name: str) -> Any:
        return self.get_ok(name)[0]

    def get_str(self, name: str) -> str:
        return self._typed(name, str)

    def get_int(self, name: str) -> int:
        return self._typed(name, int)

    def get_bool(self, name: str) -> bool:
        return self._typed(name, bool)

    def get_float(self, name: str) -> float:
        return self._typed(name, float)

    def get_duration(self, name: str) -> int:
        """Whole seconds."""
        return self._typed(name, int)

    def get_list(self, name: str) -> list[str]:
        return cast(list[str], self._typed(name, list))

    def get_map(self, name: str) -> dict[str, str]:
        return cast(dict[str, str], self._typed(name, dict))

    def _typed(self, name: str, kind: type[_T]) -> _T:
        value = self.get(name)
        if not isinstance(value, kind):
            raise TypeError(f"field {name!r} is a {self._schema[name].type}, not a {kind.__name__}")
        return value

    def _field(self, name: str) -> Field:
        try:
            return self._schema[name]
        except KeyError:
            raise KeyError(f"field {name!r} is not declared in this path's schema") from None
