"""Paths: a backend's routes declared as data (pattern, fields, operations, help).

Patterns are Python regular expressions, anchored at both ends, whose named groups are fields; they are
compiled with re.ASCII, so their word and digit classes match ASCII only, as in Go's RE2.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vaultplugin.framework.fields import Field, FieldData
from vaultplugin.framework.logical import Operation, Request, Response

Handler = Callable[[Request, FieldData], Response | None]
ExistenceCheck = Callable[[Request, FieldData], bool]


def generic_name_regex(name: str) -> str:
    """A named segment of word characters, '-' and '.', starting and ending with a word character."""
    return rf"(?P<{name}>\w(([\w.-]+)?\w)?)"


def optional_generic_name_regex(name: str) -> str:
    """`/<name>` or nothing."""
    return rf"(/(?P<{name}>\w(([\w.-]+)?\w)?))?"


def optional_param_regex(name: str) -> str:
    """`/<anything>` or nothing."""
    return rf"(/(?P<{name}>.+))?"


def match_all_regex(name: str) -> str:
    """Capture the rest of the path, slashes included."""
    return rf"(?P<{name}>.*)"


def options_regex(name: str, options: Iterable[str]) -> str:
    """A named group matching exactly one of `options`."""
    return rf"(?P<{name}>{'|'.join(re.escape(o) for o in options)})"


def list_pattern(prefix: str) -> str:
    """The pattern of a LIST endpoint: Vault sends LIST with a trailing '/', help without one."""
    return prefix.rstrip("/") + "/?$"


@dataclass(frozen=True)
class OperationSpec:
    """A handler with its documentation; a bare handler in `Path.operations` is wrapped in one."""

    handler: Handler
    summary: str = ""
    description: str = ""
    unpublished: bool = False  # left out of OpenAPI
    deprecated: bool = False


# Go's `[\w-.]` is an error in Python's re; a '-' right after '\w' is always a literal hyphen.
_GO_CLASS_HYPHEN = re.compile(r"(?<!\\)\\w-(?!\])")


def _compile(pattern: str) -> re.Pattern[str]:
    source = _GO_CLASS_HYPHEN.sub(r"\\w\\-", pattern)
    source = source.removeprefix("^")
    if not source.endswith("$") or source.endswith(r"\$"):
        source += "$"
    # ASCII: in Go's RE2, \w and \d are ASCII only; in Python they would also match other scripts' letters
    # and digits, so a route would take names a Go plugin refuses (and a provider may reject).
    return re.compile("^" + source, re.ASCII)


@dataclass(frozen=True)
class Path:
    """One route. `operations` maps an Operation to a handler `(req, data) -> Response | None`.

    Every named group of `pattern` must be declared in `fields`; captures override body values.
    `existence_check` lets Vault tell create from update (ACL `create` vs `update` capability).
    """

    pattern: str
    fields: Mapping[str, Field] = field(default_factory=dict)
    operations: Mapping[Operation, Handler | OperationSpec] = field(default_factory=dict)
    existence_check: ExistenceCheck | None = None
    synopsis: str = ""
    description: str = ""
    deprecated: bool = False
    takes_arbitrary_input: bool = False  # no "unrecognized parameters" warning
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)
    specs: dict[Operation, OperationSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.pattern:
            raise ValueError("a path pattern cannot be blank")
        try:
            regex = _compile(self.pattern)
        except re.error as exc:
            raise ValueError(f"path pattern {self.pattern!r} is not a valid regex: {exc}") from None
        undeclared = sorted(set(regex.groupindex) - set(self.fields))
        if undeclared:
            raise ValueError(f"path pattern {self.pattern!r} captures undeclared fields: {undeclared}")
        specs = {
            Operation(op): h if isinstance(h, OperationSpec) else OperationSpec(handler=h)
            for op, h in self.operations.items()
        }
        object.__setattr__(self, "regex", regex)
        object.__setattr__(self, "specs", specs)

    def match(self, path: str) -> dict[str, str] | None:
        """The named captures if `path` matches (groups that did not take part are left out)."""
        m = self.regex.fullmatch(path)
        if m is None:
            return None
        return {k: v for k, v in m.groupdict().items() if v is not None}

    def handler_for(self, operation: str) -> Handler | None:
        """The handler for `operation`; create and update stand in for each other, as in the Go SDK."""
        spec = self.spec_for(operation)
        return None if spec is None else spec.handler

    def spec_for(self, operation: str) -> OperationSpec | None:
        try:
            op = Operation(operation)
        except ValueError:
            return None
        spec = self.specs.get(op)
        if spec is None and op is Operation.CREATE:
            spec = self.specs.get(Operation.UPDATE)
        elif spec is None and op is Operation.UPDATE:
            spec = self.specs.get(Operation.CREATE)
        return spec

    def field_data(self, req: Request, captures: Mapping[str, str]) -> FieldData:
        raw: dict[str, Any] = dict(req.data)
        raw.update(captures)
        return FieldData(raw, self.fields)


def path_append(*groups: Iterable[Path]) -> list[Path]:
    """Concatenate lists of paths (declaration order is routing order)."""
    return [p for group in groups for p in group]
