"""Templates: provider-side key names (`<mount prefix><rendered name_template>`) and metadata values.

Every name starts with the mount prefix `vault-<first 8 hex digits of the mount's backend UUID>-`,
so the engine can tell its own keys from everyone else's at the provider (the orphan sweep and the
WAL rollback rely on it). The rest comes from the role's `name_template`. Placeholders:

    {{role}}                    the role name
    {{connection}}              the connection name
    {{unix_time}}               seconds since the epoch at issue
    {{random}}                  8 random lowercase letters and digits (required in a name template: names
                                must be unique, so an interrupted create can be found by its exact name)
    {{token.display_name}}      the requesting token's display name ({{display_name}} is the same)
    {{request.id}}              the request's id (as in the audit log)
    {{mount.path}}              the mount's path, e.g. llm
    {{identity.entity.id}}      the requesting entity's id
    {{identity.entity.name}}    its name
    {{identity.entity.metadata.<key>}}
    {{identity.entity.aliases.<mount accessor>.name}}        its login name at that auth mount
    {{identity.entity.aliases.<mount accessor>.metadata.<key>}}         (set by the auth method)
    {{identity.entity.aliases.<mount accessor>.custom_metadata.<key>}}  (set by an operator)
    {{identity.groups.names}}   its groups' names, direct and inherited, sorted, comma-joined
    {{identity.groups.ids}}     their ids, likewise

Templates are checked when a role is written (an unknown placeholder is an error listing the known ones);
rendering at issue never fails: a value that is missing (no entity, no such key, no alias at that mount,
no groups) renders as `unknown`. Rendering is one pass: a value is never read as a template.

Two render modes sanitise substituted values differently:
- NAME: `[A-Za-z0-9._-]` only (unsafe runs become '-'), at most 32 characters, `x` if nothing is left;
  the literal text of a name template may use the same characters.
- METADATA (metadata values, user and team ids): printable characters only (control and format characters
  dropped, whitespace made a space), each value at most 256 characters, the whole value at most 512.
"""

from __future__ import annotations

import functools
import re
import secrets
import string
from dataclasses import dataclass, field
from enum import StrEnum

from llmsecrets.identity import NO_NEEDS, IdentityNeeds, RequestIdentity

DEFAULT_NAME_TEMPLATE = "{{role}}-{{unix_time}}-{{random}}"
MAX_TEMPLATE_LENGTH = 256  # the whole name template
MAX_LITERAL_LENGTH = 64  # its text outside placeholders
MAX_NAME_LENGTH = 256  # the longest a name template may render to (after the mount prefix)
MAX_VALUE_LENGTH = 32  # one substituted value in a name
MAX_METADATA_VALUE_LENGTH = 256  # one substituted value in a metadata value
MAX_METADATA_LENGTH = 512  # a whole rendered metadata value (and its template)
MISSING = "unknown"
RANDOM_LENGTH = 8
PREFIX_HEX_DIGITS = 8
UNKNOWN_MOUNT_HEX = "0" * PREFIX_HEX_DIGITS
# How much of a value is looked at: a huge metadata value costs no more than this to sanitise.
_MAX_INPUT = 4096

_TOKEN_RE = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_LITERAL_RE = re.compile(r"[A-Za-z0-9._-]*")
_UNSAFE_RE = re.compile(r"[^A-Za-z0-9._-]+")
_KEY_RE = re.compile(r"[^\s{}]{1,128}")  # a metadata key: no whitespace or braces; dots allowed
_ACCESSOR_RE = re.compile(r"[^\s{}.]{1,128}")  # a mount accessor, e.g. auth_userpass_1a2b3c4d
_RANDOM_ALPHABET = string.ascii_lowercase + string.digits


class TemplateError(ValueError):
    """A template is malformed; the message says what to fix."""


class RenderMode(StrEnum):
    NAME = "name"
    METADATA = "metadata"


KNOWN_PLACEHOLDERS = (
    "{{role}}",
    "{{connection}}",
    "{{unix_time}}",
    "{{random}}",
    "{{token.display_name}}",
    "{{display_name}}",
    "{{request.id}}",
    "{{mount.path}}",
    "{{identity.entity.id}}",
    "{{identity.entity.name}}",
    "{{identity.entity.metadata.<key>}}",
    "{{identity.entity.aliases.<mount accessor>.name}}",
    "{{identity.entity.aliases.<mount accessor>.metadata.<key>}}",
    "{{identity.entity.aliases.<mount accessor>.custom_metadata.<key>}}",
    "{{identity.groups.names}}",
    "{{identity.groups.ids}}",
)
# For field descriptions (path_roles): one line naming them all.
PLACEHOLDER_HELP = ", ".join(KNOWN_PLACEHOLDERS)

# Placeholders taking no argument: their spelling -> kind.
_SIMPLE = {
    "role": "role",
    "connection": "connection",
    "unix_time": "unix_time",
    "random": "random",
    "display_name": "display_name",
    "token.display_name": "display_name",
    "request.id": "request_id",
    "mount.path": "mount_path",
    "identity.entity.id": "entity_id",
    "identity.entity.name": "entity_name",
    "identity.groups.names": "group_names",
    "identity.groups.ids": "group_ids",
}
_ALIAS_FIELDS = {"metadata": "alias_metadata", "custom_metadata": "alias_custom_metadata"}
_NEEDS_ENTITY = frozenset(
    {"entity_name", "entity_metadata", "alias_name", "alias_metadata", "alias_custom_metadata"}
)
_NEEDS_GROUPS = frozenset({"group_names", "group_ids"})
# The longest a value of each kind renders to in a name (all others: MAX_VALUE_LENGTH).
_NAME_WIDTH = {"random": RANDOM_LENGTH, "unix_time": 10}
_UNKNOWN = "unknown_placeholder"  # only from a lenient parse, at render time


@dataclass(frozen=True)
class Placeholder:
    kind: str
    accessor: str = ""
    key: str = ""


@dataclass(frozen=True)
class ParsedTemplate:
    parts: tuple[str | Placeholder, ...]  # literal text and placeholders, in order

    @property
    def placeholders(self) -> tuple[Placeholder, ...]:
        return tuple(p for p in self.parts if isinstance(p, Placeholder))

    @property
    def literal_length(self) -> int:
        return sum(len(p) for p in self.parts if isinstance(p, str))

    @property
    def needs(self) -> IdentityNeeds:
        kinds = {p.kind for p in self.placeholders}
        return IdentityNeeds(entity=bool(kinds & _NEEDS_ENTITY), groups=bool(kinds & _NEEDS_GROUPS))


def _placeholder(expr: str) -> Placeholder | None:
    """The placeholder spelled `expr` (inside the braces, whitespace stripped), or None if unknown."""
    kind = _SIMPLE.get(expr)
    if kind is not None:
        return Placeholder(kind)
    head = "identity.entity.metadata."
    if expr.startswith(head):
        key = expr[len(head) :]
        return Placeholder("entity_metadata", key=key) if _KEY_RE.fullmatch(key) else None
    head = "identity.entity.aliases."
    if expr.startswith(head):
        accessor, _, rest = expr[len(head) :].partition(".")
        if not _ACCESSOR_RE.fullmatch(accessor):
            return None
        if rest == "name":
            return Placeholder("alias_name", accessor=accessor)
        which, _, key = rest.partition(".")
        if which in _ALIAS_FIELDS and _KEY_RE.fullmatch(key):
            return Placeholder(_ALIAS_FIELDS[which], accessor=accessor, key=key)
    return None


def _shown(text: str) -> str:
    """User input echoed in an error: short and printable."""
    cut = text[:48]
    return "".join(c if c.isprintable() else "?" for c in cut) + ("..." if len(text) > 48 else "")


def _parse(template: str, mode: RenderMode, *, strict: bool) -> ParsedTemplate:
    parts: list[str | Placeholder] = []

    def literal(text: str) -> None:
        if not text:
            return
        if strict:
            if "{{" in text or "}}" in text:
                raise TemplateError(f"has an unmatched '{{{{' or '}}}}' (in {_shown(text)!r})")
            if mode is RenderMode.NAME and not _LITERAL_RE.fullmatch(text):
                raise TemplateError(
                    "may contain only placeholders and the characters A-Z a-z 0-9 '.' '_' '-' "
                    f"(found {_shown(text)!r})"
                )
        parts.append(text)

    pos = 0
    for match in _TOKEN_RE.finditer(template):
        literal(template[pos : match.start()])
        expr = match.group(1).strip()
        found = _placeholder(expr)
        if found is None:
            if strict:
                raise TemplateError(
                    f"has an unknown placeholder {{{{{_shown(expr)}}}}} (known: {PLACEHOLDER_HELP})"
                )
            found = Placeholder(_UNKNOWN)
        parts.append(found)
        pos = match.end()
    literal(template[pos:])
    return ParsedTemplate(tuple(parts))


@functools.lru_cache(maxsize=512)
def parse_template(template: str, mode: RenderMode = RenderMode.NAME) -> ParsedTemplate:
    """The parts of `template`; TemplateError if it has an unknown placeholder, unmatched braces, or (in a
    name) a character keys cannot carry. Cached: roles render the same few templates again and again."""
    return _parse(template, mode, strict=True)


@functools.lru_cache(maxsize=512)
def _parse_for_render(template: str, mode: RenderMode) -> ParsedTemplate:
    try:
        return parse_template(template, mode)
    except TemplateError:
        # A template stored before a rule tightened: render what can be, never fail an issue.
        return _parse(template, mode, strict=False)


def template_needs(*templates: str) -> IdentityNeeds:
    """Which identity calls rendering `templates` needs (unparsable ones need none)."""
    needs = NO_NEEDS
    for template in templates:
        if "{{" in template:  # the common case, plain text, costs no parse
            needs = needs | _parse_for_render(template, RenderMode.METADATA).needs
    return needs


def validate_template(template: str) -> None:
    """Raise TemplateError unless `template` is a usable name template: known placeholders, safe text, at
    most MAX_TEMPLATE_LENGTH characters (MAX_LITERAL_LENGTH outside placeholders), {{random}} in it, and
    never rendering longer than MAX_NAME_LENGTH."""
    if not template:
        raise TemplateError("must not be empty")
    if len(template) > MAX_TEMPLATE_LENGTH:
        raise TemplateError(f"is longer than {MAX_TEMPLATE_LENGTH} characters")
    parsed = parse_template(template, RenderMode.NAME)
    if parsed.literal_length > MAX_LITERAL_LENGTH:
        raise TemplateError(f"has more than {MAX_LITERAL_LENGTH} characters outside placeholders")
    kinds = [p.kind for p in parsed.placeholders]
    if "random" not in kinds:
        raise TemplateError(
            "must contain {{random}}: every key name must be unique so that an interrupted create "
            "can be found at the provider by its name"
        )
    longest = parsed.literal_length + sum(_NAME_WIDTH.get(k, MAX_VALUE_LENGTH) for k in kinds)
    if longest > MAX_NAME_LENGTH:
        raise TemplateError(
            f"may render longer than {MAX_NAME_LENGTH} characters (each placeholder may add up to "
            f"{MAX_VALUE_LENGTH}): use fewer placeholders"
        )


def validate_metadata_template(template: str) -> None:
    """Raise TemplateError unless `template` (a metadata value, user or team id) is usable: known
    placeholders, matched braces, at most MAX_METADATA_LENGTH characters. Any literal text is allowed
    (rendering makes it printable)."""
    if len(template) > MAX_METADATA_LENGTH:
        raise TemplateError(f"is longer than {MAX_METADATA_LENGTH} characters")
    parse_template(template, RenderMode.METADATA)


def mount_hex(backend_uuid: str) -> str:
    """The first 8 hex digits of the mount's UUID, or zeros when the host gave none."""
    digits = "".join(c for c in backend_uuid.lower() if c in string.hexdigits)
    return digits[:PREFIX_HEX_DIGITS] if len(digits) >= PREFIX_HEX_DIGITS else UNKNOWN_MOUNT_HEX


def mount_prefix(backend_uuid: str) -> str:
    """`vault-<8 hex>-`: the start of every key name this mount creates."""
    return f"vault-{mount_hex(backend_uuid)}-"


def sanitise(value: str) -> str:
    """A value made safe for a key name: unsafe runs become '-', cut to 32 characters."""
    cleaned = _UNSAFE_RE.sub("-", value[:_MAX_INPUT]).strip("-")
    return cleaned[:MAX_VALUE_LENGTH] or "x"


def printable(value: str) -> str:
    """A value made safe for metadata: whitespace becomes a space, other unprintable characters (control,
    format such as bidi overrides, unassigned, surrogates) are dropped; trimmed."""
    text = value[:_MAX_INPUT]
    if text.isprintable():  # the common case: one C-level scan
        return text.strip()
    return "".join(c if c.isprintable() else " " for c in text if c.isprintable() or c.isspace()).strip()


def random_suffix() -> str:
    # One draw for the whole suffix: secrets.choice per character made ~14 getrandom syscalls a key.
    n = secrets.randbelow(len(_RANDOM_ALPHABET) ** RANDOM_LENGTH)
    chars = []
    for _ in range(RANDOM_LENGTH):
        n, digit = divmod(n, len(_RANDOM_ALPHABET))
        chars.append(_RANDOM_ALPHABET[digit])
    return "".join(chars)


@dataclass(frozen=True)
class IssueContext:
    """Everything the templates of one issued key may show. `random` is drawn once, so a key's name and
    its metadata carry the same suffix."""

    role: str
    connection: str
    unix_time: float
    identity: RequestIdentity = field(default_factory=RequestIdentity)
    random: str = field(default_factory=random_suffix)


def _value(p: Placeholder, ctx: IssueContext) -> str | None:
    ident = ctx.identity
    kind = p.kind
    if kind == "role":
        return ctx.role
    if kind == "connection":
        return ctx.connection
    if kind == "unix_time":
        return str(int(ctx.unix_time))
    if kind == "random":
        return ctx.random
    if kind == "display_name":
        return ident.display_name
    if kind == "request_id":
        return ident.request_id
    if kind == "mount_path":
        return ident.mount_path
    if kind == "entity_id":
        return ident.entity_id
    if kind == "group_names":
        return ",".join(sorted(g.name for g in ident.groups))
    if kind == "group_ids":
        return ",".join(sorted(g.id for g in ident.groups))
    entity = ident.entity
    if entity is None:
        return None
    if kind == "entity_name":
        return entity.name
    if kind == "entity_metadata":
        return entity.metadata.get(p.key)
    alias = ident.alias_for(p.accessor)
    if alias is None:
        return None
    if kind == "alias_name":
        return alias.name
    if kind == "alias_metadata":
        return alias.metadata.get(p.key)
    if kind == "alias_custom_metadata":
        return alias.custom_metadata.get(p.key)
    return None  # an unknown placeholder of a stored template


def _clean(value: str | None, mode: RenderMode) -> str:
    if not value:
        return MISSING
    if mode is RenderMode.NAME:
        return sanitise(value)
    return printable(value)[:MAX_METADATA_VALUE_LENGTH] or MISSING


def render(template: str, ctx: IssueContext, mode: RenderMode) -> str:
    """`template` with every placeholder replaced by its sanitised value. Never raises for a template that
    parsed at validation, nor for one that did not (unknown placeholders render as MISSING)."""
    out = []
    for part in _parse_for_render(template, mode).parts:
        out.append(part if isinstance(part, str) else _clean(_value(part, ctx), mode))
    text = "".join(out)
    if mode is RenderMode.NAME:
        # A no-op for a validated template; keeps names key-safe for one stored under older rules.
        return _UNSAFE_RE.sub("-", text)
    return printable(text)[:MAX_METADATA_LENGTH]


def render_metadata(template: str, ctx: IssueContext) -> str:
    """A metadata value (or user / team id) for one key."""
    return render(template, ctx, RenderMode.METADATA)


def key_name(prefix: str, template: str, ctx: IssueContext) -> str:
    """The full provider-side name for one key: the mount prefix, then `template` rendered as a name."""
    return prefix + render(template or DEFAULT_NAME_TEMPLATE, ctx, RenderMode.NAME)
