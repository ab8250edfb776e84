"""OpenAPI 3 documents for a backend's paths, in the shape Vault merges into `sys/internal/specs/openapi`.

Vault decodes the plugin's document (keys `openapi`, `info`, `paths`, `components`) and prefixes each
path with the mount, so paths here are relative to the mount. Response codes are string keys, as
they are after a JSON round trip.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from vaultplugin.framework.fields import Field, FieldType
from vaultplugin.framework.logical import Operation, SpecialPaths
from vaultplugin.framework.path import OperationSpec, Path

OAS_VERSION = "3.0.2"

_TYPES: dict[FieldType, tuple[str, str, str]] = {  # (type, items type, format)
    FieldType.STRING: ("string", "", ""),
    FieldType.NAME: ("string", "", ""),
    FieldType.INT: ("integer", "", ""),
    FieldType.FLOAT: ("number", "", "float"),
    FieldType.BOOL: ("boolean", "", ""),
    FieldType.DURATION: ("integer", "", "seconds"),
    FieldType.COMMA_STRING_LIST: ("array", "string", ""),
    FieldType.MAP: ("object", "", "kvpairs"),
}
_NAME_PATTERN = r"\w([\w.-]*\w)?"
_NON_WORD = re.compile(r"[^\w]+")
_PATH_PARAM = re.compile(r"{(\w+)}")


def new_document(version: str = "unknown") -> dict[str, Any]:
    return {
        "openapi": OAS_VERSION,
        "info": {
            "title": "OpenBao API",
            "description": "HTTP API that gives you full access to OpenBao. "
            "All API routes are prefixed with `/v1/`.",
            "version": version,
            "license": {"name": "Mozilla Public License 2.0", "url": "https://www.mozilla.org/en-US/MPL/2.0"},
        },
        "paths": {},
        "components": {"schemas": {}},
    }


def document_paths(
    paths: Iterable[Path],
    special: SpecialPaths,
    prefix: str,
    tags: Sequence[str] = ("secrets",),
    version: str = "unknown",
) -> dict[str, Any]:
    doc = new_document(version)
    for path in paths:
        add_path(doc, path, special, prefix, tags)
    return doc


def add_path(
    doc: dict[str, Any], path: Path, special: SpecialPaths, prefix: str, tags: Sequence[str]
) -> None:
    """Add one Path (possibly several OpenAPI paths, one per optional part) to `doc`."""
    try:
        variants = expand_pattern(path.pattern)
        publish = True
    except UnsupportedPattern:
        # Keep the raw pattern so readers see the endpoint exists, but document no operations.
        variants, publish = [path.pattern], False
    for index, variant in enumerate(variants):
        item: dict[str, Any] = {"description": _clean(path.synopsis)}
        if _special_match(variant, special.root):
            item["x-vault-sudo"] = True
        if _special_match(variant, special.unauthenticated):
            item["x-vault-unauthenticated"] = True
        in_path = set(_PATH_PARAM.findall(variant))
        params = [_parameter(n, f, "path") for n, f in path.fields.items() if n in in_path]
        params += [_parameter(n, f, "query") for n, f in path.fields.items() if n not in in_path and f.query]
        if params:
            item["parameters"] = sorted(params, key=lambda p: str(p["name"]).lower())
        body = {n: f for n, f in path.fields.items() if n not in in_path and not f.query}
        if publish:
            _add_operations(
                doc, item=item, path=path, variant=variant, index=index, body=body, prefix=prefix, tags=tags
            )
        doc["paths"]["/" + variant] = item


def _add_operations(
    doc: dict[str, Any],
    *,
    item: dict[str, Any],
    path: Path,
    variant: str,
    index: int,
    body: dict[str, Field],
    prefix: str,
    tags: Sequence[str],
) -> None:
    specs = path.specs
    for op, spec in specs.items():
        if spec.unpublished:
            continue
        if op is Operation.CREATE:
            item["x-vault-createSupported"] = True
            if Operation.UPDATE in specs:
                continue  # documented once, as update
        if op is Operation.LIST and Operation.READ in specs:
            continue  # documented as read with ?list=true
        method = _METHODS.get(op)
        if method is None:
            continue
        operation_id = _operation_id(prefix, op, variant, index)
        out = _operation(op, spec, path, operation_id, tags)
        if op is Operation.LIST:
            out["parameters"] = [_list_param("Must be set to `true`", required=True)]
        elif op is Operation.READ and Operation.LIST in specs:
            out["parameters"] = [_list_param("Return a list if `true`", required=False)]
        if op in (Operation.CREATE, Operation.UPDATE, Operation.PATCH) and body:
            name = _title(operation_id) + "Request"
            doc["components"]["schemas"][name] = _body_schema(body)
            out["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}},
            }
        item[method] = out


_METHODS: dict[Operation, str] = {
    Operation.CREATE: "post",
    Operation.UPDATE: "post",
    Operation.READ: "get",
    Operation.LIST: "get",
    Operation.DELETE: "delete",
    Operation.PATCH: "patch",
}


def _operation(
    op: Operation, spec: OperationSpec, path: Path, operation_id: str, tags: Sequence[str]
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "summary": _clean(spec.summary or path.synopsis),
        "operationId": operation_id,
        "tags": list(tags),
        "responses": {"204": {"description": "empty body"}}
        if op is Operation.DELETE
        else {"200": {"description": "OK"}},
    }
    description = _clean(spec.description or path.description)
    if description:
        out["description"] = description
    if spec.deprecated or path.deprecated:
        out["deprecated"] = True
    return out


def _list_param(description: str, *, required: bool) -> dict[str, Any]:
    param: dict[str, Any] = {"name": "list", "description": description, "in": "query"}
    if required:
        param["required"] = True
        param["schema"] = {"type": "string", "enum": ["true"]}
    else:
        param["schema"] = {"type": "string"}
    return param


def field_schema(f: Field) -> dict[str, Any]:
    base, items, fmt = _TYPES[f.type]
    schema: dict[str, Any] = {"type": base}
    if f.description:
        schema["description"] = _clean(f.description)
    if fmt:
        schema["format"] = fmt
    if items:
        schema["items"] = {"type": items}
    if f.type is FieldType.NAME:
        schema["pattern"] = _NAME_PATTERN
    if f.allowed_values is not None:
        schema["enum"] = list(f.allowed_values)
    if f.default is not None and not f.sensitive:
        schema["default"] = f.default
    if f.deprecated:
        schema["deprecated"] = True
    attrs: dict[str, Any] = {}
    if f.display_name:
        attrs["name"] = f.display_name
    if f.sensitive:
        attrs["sensitive"] = True
    if attrs:
        schema["x-vault-displayAttrs"] = attrs
    return schema


def _parameter(name: str, f: Field, location: str) -> dict[str, Any]:
    schema = field_schema(f)
    param: dict[str, Any] = {"name": name, "in": location, "schema": schema}
    description = schema.pop("description", "")
    if description:
        param["description"] = description
    if location == "path":
        param["required"] = True
    if f.deprecated:
        param["deprecated"] = True
    return param


def _body_schema(body: dict[str, Field]) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {name: field_schema(f) for name, f in sorted(body.items())},
    }
    required = sorted(name for name, f in body.items() if f.required)
    if required:
        schema["required"] = required
    return schema


def _operation_id(prefix: str, op: Operation, variant: str, index: int) -> str:
    verb = "write" if op is Operation.UPDATE else op.value
    parts = [prefix, verb, *_NON_WORD.split(variant)]
    if index:
        parts.append(str(index + 1))  # keeps ids unique when one Path expands to several
    return "-".join(p for p in parts if p).lower()


def _title(operation_id: str) -> str:
    return "".join(w[:1].upper() + w[1:] for w in operation_id.split("-"))


def _clean(text: str) -> str:
    return " ".join(text.split())


def _special_match(path: str, patterns: Sequence[str]) -> bool:
    """Vault's special-path matching: exact, trailing '*' prefix, and '+' for one segment."""
    parts = path.split("/")
    for pattern in patterns:
        if pattern == path or (pattern.endswith("*") and path.startswith(pattern[:-1])):
            return True
        if "+" in pattern and _match_segments(parts, pattern.split("/")):
            return True
    return False


def _match_segments(parts: list[str], pattern: list[str]) -> bool:
    if len(parts) < len(pattern):
        return False
    for part, want in zip(parts, pattern, strict=False):
        if want == "+":
            continue
        if want == "*" or (want.endswith("*") and part.startswith(want[:-1])):
            return True
        if want != part:
            return False
    return len(parts) == len(pattern)


# --- Turning a route regex into OpenAPI paths -------------------------------------------------
#
# Only a small regex subset has an OpenAPI meaning: literals, groups, alternation and '?'. Named groups
# become {name} (their inside is skipped). Anything else outside a named group (classes, '.', '*',
# '+', repeats) makes the pattern unpublishable, as in the Go SDK.


class UnsupportedPattern(ValueError):
    """The pattern uses regex syntax that has no OpenAPI path equivalent."""


@dataclass(frozen=True)
class _Lit:
    text: str


@dataclass(frozen=True)
class _Seq:
    items: tuple[_Node, ...]


@dataclass(frozen=True)
class _Alt:
    branches: tuple[_Node, ...]


@dataclass(frozen=True)
class _Opt:
    node: _Node


_Node = _Lit | _Seq | _Alt | _Opt
_ZERO_WIDTH_ESCAPES = frozenset("AZbBz")


def expand_pattern(pattern: str) -> list[str]:
    """All OpenAPI paths a route pattern stands for, e.g. r"roles/?$" -> ["roles"],
    r"creds/(?P<name>\\w+)(/(?P<x>\\w+))?" -> ["creds/{name}", "creds/{name}/{x}"]."""
    node, pos = _parse_alt(pattern, 0)
    if pos != len(pattern):
        raise UnsupportedPattern(f"unbalanced ')' at {pos}")
    # Each variant is (text, length at which an optional "/" was appended, or -1).
    variants = _expand(node, [("", -1)])
    result: list[str] = []
    for text, slash_at in variants:
        # A trailing optional slash ("roles/?") is dropped: "roles/" and "roles" are one endpoint.
        if slash_at != len(text) and text not in result:
            result.append(text)
    return result


def _expand(node: _Node, variants: list[tuple[str, int]]) -> list[tuple[str, int]]:
    if isinstance(node, _Lit):
        return [(text + node.text, at) for text, at in variants]
    if isinstance(node, _Seq):
        for item in node.items:
            variants = _expand(item, variants)
        return variants
    if isinstance(node, _Alt):
        return [v for branch in node.branches for v in _expand(branch, variants)]
    taken = _expand(node.node, variants)
    if node.node == _Lit("/"):
        taken = [(text, len(text)) for text, _ in taken]
    return variants + taken


def _parse_alt(s: str, i: int) -> tuple[_Node, int]:
    branches: list[_Node] = []
    node, i = _parse_seq(s, i)
    branches.append(node)
    while i < len(s) and s[i] == "|":
        node, i = _parse_seq(s, i + 1)
        branches.append(node)
    return (branches[0] if len(branches) == 1 else _Alt(tuple(branches))), i


def _parse_seq(s: str, i: int) -> tuple[_Node, int]:
    items: list[_Node] = []
    while i < len(s) and s[i] not in "|)":
        atom, i = _parse_atom(s, i)
        if i < len(s) and s[i] == "?":
            atom, i = _Opt(atom), i + 1
            if i < len(s) and s[i] in "?+":
                raise UnsupportedPattern("lazy or possessive '?'")
        elif i < len(s) and s[i] in "*+{":
            raise UnsupportedPattern(f"repetition {s[i]!r}")
        items.append(atom)
    return _Seq(tuple(items)), i


def _parse_atom(s: str, i: int) -> tuple[_Node, int]:
    c = s[i]
    if c == "(":
        if s.startswith("(?P<", i):
            end = s.index(">", i)
            return _Lit("{" + s[i + 4 : end] + "}"), _skip_group(s, i)
        start = i + 3 if s.startswith("(?:", i) else i + 1
        if s.startswith("(?", i) and start == i + 1:
            raise UnsupportedPattern("group flags or lookaround")
        inner, j = _parse_alt(s, start)
        if j >= len(s) or s[j] != ")":
            raise UnsupportedPattern("unclosed group")
        return inner, j + 1
    if c == "\\":
        if i + 1 >= len(s):
            raise UnsupportedPattern("trailing backslash")
        nxt = s[i + 1]
        if nxt in _ZERO_WIDTH_ESCAPES:
            return _Seq(()), i + 2
        if nxt.isalnum():
            raise UnsupportedPattern(f"escape \\{nxt}")
        return _Lit(nxt), i + 2
    if c in "^$":
        return _Seq(()), i + 1
    if c in ".[*+?{":
        raise UnsupportedPattern(f"{c!r} outside a named group")
    return _Lit(c), i + 1


def _skip_group(s: str, i: int) -> int:
    """The index just past the group that opens at s[i], honouring escapes and [classes]."""
    depth, in_class = 0, False
    while i < len(s):
        c = s[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
            if s.startswith("[]", i) or s.startswith("[^]", i):
                i += 2 if s[i + 1] == "]" else 3  # a leading ']' is a literal
                continue
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise UnsupportedPattern("unclosed named group")
