"""Provider-side key names: `<mount prefix><rendered name_template>`.

Every name starts with the mount prefix `vault-<first 8 hex digits of the mount's backend UUID>-`,
so the engine can tell its own keys from everyone else's at the provider (the orphan sweep and the
WAL rollback rely on it). The rest comes from the role's `name_template`, whose placeholders are:

    {{role}}          the role name
    {{connection}}    the connection name
    {{display_name}}  the requesting token's display name
    {{unix_time}}     seconds since the epoch at issue
    {{random}}        8 random lowercase letters and digits (required: names must be unique, so an
                      interrupted create can be found by its exact name)

Substituted values are sanitised to `[A-Za-z0-9._-]` and cut to 32 characters; the literal text of a
template may use the same characters.
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Mapping

DEFAULT_NAME_TEMPLATE = "{{role}}-{{unix_time}}-{{random}}"
PLACEHOLDERS = ("role", "connection", "display_name", "unix_time", "random")
MAX_TEMPLATE_LENGTH = 64
MAX_VALUE_LENGTH = 32
RANDOM_LENGTH = 8
PREFIX_HEX_DIGITS = 8
UNKNOWN_MOUNT_HEX = "0" * PREFIX_HEX_DIGITS

_PLACEHOLDER_RE = re.compile(r"\{\{\s*([A-Za-z_]+)\s*\}\}")
_LITERAL_RE = re.compile(r"[A-Za-z0-9._-]*")
_UNSAFE_RE = re.compile(r"[^A-Za-z0-9._-]+")
_RANDOM_ALPHABET = string.ascii_lowercase + string.digits


class TemplateError(ValueError):
    """A name template is malformed; the message says what to fix."""


def mount_hex(backend_uuid: str) -> str:
    """The first 8 hex digits of the mount's UUID, or zeros when the host gave none."""
    digits = "".join(c for c in backend_uuid.lower() if c in string.hexdigits)
    return digits[:PREFIX_HEX_DIGITS] if len(digits) >= PREFIX_HEX_DIGITS else UNKNOWN_MOUNT_HEX


def mount_prefix(backend_uuid: str) -> str:
    """`vault-<8 hex>-`: the start of every key name this mount creates."""
    return f"vault-{mount_hex(backend_uuid)}-"


def validate_template(template: str) -> None:
    """Raise TemplateError unless `template` is usable (known placeholders, safe text, has {{random}})."""
    if not template:
        raise TemplateError("must not be empty")
    if len(template) > MAX_TEMPLATE_LENGTH:
        raise TemplateError(f"is longer than {MAX_TEMPLATE_LENGTH} characters")
    seen: set[str] = set()
    pos = 0
    for match in _PLACEHOLDER_RE.finditer(template):
        _check_literal(template[pos : match.start()])
        name = match.group(1)
        if name not in PLACEHOLDERS:
            known = ", ".join("{{" + p + "}}" for p in PLACEHOLDERS)
            raise TemplateError(f"has an unknown placeholder {{{{{name}}}}} (known: {known})")
        seen.add(name)
        pos = match.end()
    _check_literal(template[pos:])
    if "random" not in seen:
        raise TemplateError(
            "must contain {{random}}: every key name must be unique so that an interrupted create "
            "can be found at the provider by its name"
        )


def _check_literal(text: str) -> None:
    if not _LITERAL_RE.fullmatch(text):
        raise TemplateError(
            f"may contain only placeholders and the characters A-Z a-z 0-9 '.' '_' '-' (found {text[:20]!r})"
        )


def sanitise(value: str) -> str:
    """A value made safe for a key name: unsafe runs become '-', cut to 32 characters."""
    cleaned = _UNSAFE_RE.sub("-", value).strip("-")
    return cleaned[:MAX_VALUE_LENGTH] or "x"


def random_suffix() -> str:
    # One draw for the whole suffix: secrets.choice per character made ~14 getrandom syscalls a key.
    n = secrets.randbelow(len(_RANDOM_ALPHABET) ** RANDOM_LENGTH)
    chars = []
    for _ in range(RANDOM_LENGTH):
        n, digit = divmod(n, len(_RANDOM_ALPHABET))
        chars.append(_RANDOM_ALPHABET[digit])
    return "".join(chars)


def render_name(
    prefix: str,
    template: str,
    *,
    role: str,
    connection: str,
    display_name: str,
    unix_time: float,
) -> str:
    """The full provider-side name for one key (template assumed valid)."""
    values: Mapping[str, str] = {
        "role": sanitise(role),
        "connection": sanitise(connection),
        "display_name": sanitise(display_name or "unknown"),
        "unix_time": str(int(unix_time)),
        "random": random_suffix(),
    }
    rendered = _PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], template or DEFAULT_NAME_TEMPLATE)
    return prefix + rendered
