"""Plain-text help in the style of `bao path-help`: one page per path, and an index for the backend."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable

from vaultplugin.framework.fields import TYPE_LABELS, Field
from vaultplugin.framework.path import Path


def _indent(text: str, width: int) -> str:
    return textwrap.indent(text, " " * width)


def _field_entry(name: str, f: Field) -> str:
    label = TYPE_LABELS[f.type]
    head = f"{name} ({label})"
    notes: list[str] = []
    if f.required:
        notes.append("required")
    # A sensitive field's default is not shown: it could be a real credential.
    if f.default is not None and not f.sensitive:
        notes.append(f"default: {f.default}")
    if f.allowed_values is not None:
        notes.append("one of: " + ", ".join(str(v) for v in f.allowed_values))
    if f.sensitive:
        notes.append("sensitive")
    description = f.description.strip() or "<no description>"
    if f.deprecated:
        description = "(DEPRECATED) " + description
    body = textwrap.fill(" ".join(description.split()), width=72)
    if notes:
        body += "\n[" + "; ".join(notes) + "]"
    return _indent(head, 4) + "\n\n" + _indent(body, 8)


def path_help(path: Path, request_path: str = "") -> str:
    """The man page of one path: request, route, synopsis, parameters, operations, description."""
    synopsis = path.synopsis.strip() or "<no synopsis>"
    description = path.description.strip() or "<no description>"
    lines = [
        f"Request:        {request_path or path.pattern}",
        f"Matching Route: {path.regex.pattern}",
        "",
        synopsis,
        "",
    ]
    if path.fields:
        lines += ["## PARAMETERS", ""]
        for name in sorted(path.fields):
            lines += [_field_entry(name, path.fields[name]), ""]
    if path.specs:
        lines += ["## OPERATIONS", ""]
        for op, spec in path.specs.items():
            summary = spec.summary.strip()
            lines.append(_indent(f"{op.value}" + (f": {summary}" if summary else ""), 4))
        lines.append("")
    if path.deprecated:
        lines += ["This path is DEPRECATED.", ""]
    lines += ["## DESCRIPTION", "", description, ""]
    return "\n".join(lines)


def root_help(backend_help: str, paths: Iterable[Path]) -> str:
    """The backend's index page: its description and every route with its synopsis."""
    entries = sorted((p.regex.pattern, p.synopsis.strip() or "<no synopsis>") for p in paths)
    lines = [
        "## DESCRIPTION",
        "",
        backend_help.strip() or "<no description>",
        "",
        "## PATHS",
        "",
        "The following paths are supported by this backend. To view help for",
        "any of the paths below, use the help command with any route matching",
        "the path pattern. Note that depending on the policy of your auth token,",
        "you may or may not be able to access certain paths.",
        "",
    ]
    for route, synopsis in entries:
        lines += [_indent(route, 4), _indent(synopsis, 8), ""]
    return "\n".join(lines)
