"""Name and metadata templates: what a role write accepts, and what an issue renders from the requester.

Rendering is the step that runs on every creds read with values an entity's owner controls (names, metadata):
it must never fail, never let a value become template text, and keep names key-safe and metadata printable.
"""

from __future__ import annotations

import re
import time
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from llmsecrets.identity import RequestIdentity
from llmsecrets.naming import (
    DEFAULT_NAME_TEMPLATE,
    KNOWN_PLACEHOLDERS,
    MAX_LITERAL_LENGTH,
    MAX_METADATA_LENGTH,
    MAX_METADATA_VALUE_LENGTH,
    MAX_NAME_LENGTH,
    MAX_TEMPLATE_LENGTH,
    MAX_VALUE_LENGTH,
    MISSING,
    IssueContext,
    RenderMode,
    TemplateError,
    key_name,
    render,
    render_metadata,
    template_needs,
    validate_metadata_template,
    validate_template,
)
from vaultplugin.framework import Alias, Entity, Group

ACCESSOR = "auth_userpass_1a2b3c4d"
OTHER_ACCESSOR = "auth_approle_99999999"
PREFIX = "vault-0123abcd-"
SAFE_NAME = re.compile(r"[A-Za-z0-9._-]+")

ENTITY = Entity(
    id="6f1c2a9e-entity",
    name="svc-payments",
    metadata=MappingProxyType({"team": "payments", "cost.center": "cc-42", "blank": ""}),
    aliases=(
        Alias(
            id="alias-1",
            mount_accessor=ACCESSOR,
            mount_type="userpass",
            name="alice",
            metadata=MappingProxyType({"source": "ldap-sync"}),
            custom_metadata=MappingProxyType({"owner": "bob"}),
        ),
    ),
)
GROUPS = (Group(id="g-2", name="payments-eng"), Group(id="g-1", name="all-eng"))
IDENTITY = RequestIdentity(
    display_name="userpass-alice",
    request_id="0b7c9f0e-request",
    mount_path="team-a/llm",
    entity_id=ENTITY.id,
    entity=ENTITY,
    groups=GROUPS,
)


def ctx(identity: RequestIdentity = IDENTITY) -> IssueContext:
    return IssueContext(role="chat", connection="or-main", unix_time=1_700_000_000.9, identity=identity)


def spelled(placeholder: str) -> str:
    """A known placeholder with its <key> and <mount accessor> filled in."""
    return placeholder.replace("<mount accessor>", ACCESSOR).replace("<key>", "team")


# --- validation -------------------------------------------------------------------------------------


@pytest.mark.parametrize("placeholder", KNOWN_PLACEHOLDERS)
def test_every_known_placeholder_is_accepted_in_both_modes(placeholder: str) -> None:
    validate_template(spelled(placeholder) + "-{{random}}")
    validate_metadata_template("x " + spelled(placeholder))


@pytest.mark.parametrize(
    "template",
    [DEFAULT_NAME_TEMPLATE, "{{display_name}}.{{random}}", "{{ role }}-{{random}}", "{{random}}"],
)
def test_templates_valid_before_stay_valid(template: str) -> None:
    validate_template(template)


@pytest.mark.parametrize(
    "inner",
    [
        "x",
        "Role",
        "identity",
        "identity.entity",
        "identity.entity.metadata.",
        "identity.entity.metadata.two words",
        "identity.entity.aliases." + ACCESSOR,
        "identity.entity.aliases." + ACCESSOR + ".id",
        "identity.entity.aliases." + ACCESSOR + ".metadata.",
        "identity.entity.aliases..name",
        "identity.groups",
        "identity.groups.names.x",
        "token.id",
        "request",
        "mount.accessor",
        "{role",
        "",
    ],
)
def test_an_unknown_placeholder_is_an_error_listing_the_known_ones(inner: str) -> None:
    for check, template in (
        (validate_template, "{{" + inner + "}}-{{random}}"),
        (validate_metadata_template, "{{" + inner + "}}"),
    ):
        with pytest.raises(TemplateError, match="unknown placeholder") as caught:
            check(template)
        for known in KNOWN_PLACEHOLDERS:
            assert known in str(caught.value)


@pytest.mark.parametrize("template", ["{{random}}}}", "{{random}}-{{role", "}}{{random}}", "{{random}}{{"])
def test_unmatched_braces_are_an_error(template: str) -> None:
    with pytest.raises(TemplateError, match="unmatched"):
        validate_template(template)
    with pytest.raises(TemplateError, match="unmatched"):
        validate_metadata_template(template.replace("{{random}}", "team "))


def test_name_rules() -> None:
    with pytest.raises(TemplateError, match="must contain \\{\\{random\\}\\}"):
        validate_template("{{identity.entity.name}}")
    with pytest.raises(TemplateError, match="empty"):
        validate_template("")
    with pytest.raises(TemplateError, match="A-Z a-z 0-9"):
        validate_template("team a-{{random}}")
    with pytest.raises(TemplateError, match=f"more than {MAX_LITERAL_LENGTH} characters outside"):
        validate_template("{{random}}" + "x" * (MAX_LITERAL_LENGTH + 1))
    validate_template("{{random}}" + "x" * MAX_LITERAL_LENGTH)
    with pytest.raises(TemplateError, match=f"longer than {MAX_TEMPLATE_LENGTH}"):
        validate_template("{{random}}" + "{{role}}" * 40)


def test_a_template_that_could_render_too_long_is_refused_at_write() -> None:
    # 7 names (7 x 32) + random (8) + 6 dashes = 238: fits; 8 names = 271: may not.
    fits = "-".join(["{{identity.entity.name}}"] * 7) + "{{random}}"
    validate_template(fits)
    with pytest.raises(TemplateError, match=f"may render longer than {MAX_NAME_LENGTH}"):
        validate_template("-".join(["{{identity.entity.name}}"] * 8) + "{{random}}")


def test_metadata_templates_take_any_text_but_are_bounded() -> None:
    validate_metadata_template("team: payments / é 日本 🚀")
    validate_metadata_template("")
    with pytest.raises(TemplateError, match=f"longer than {MAX_METADATA_LENGTH}"):
        validate_metadata_template("x" * (MAX_METADATA_LENGTH + 1))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120))
def test_validation_either_accepts_or_raises_template_error(template: str) -> None:
    """Whatever a role write sends: a TemplateError (a 400), never a crash; and what is accepted renders
    to a key-safe name within bounds, even for a requester with nothing known."""
    try:
        validate_template(template)
    except TemplateError:
        pass
    else:
        for identity in (IDENTITY, RequestIdentity()):
            name = render(template, ctx(identity), RenderMode.NAME)
            assert SAFE_NAME.fullmatch(name), name
            assert len(name) <= MAX_NAME_LENGTH
    try:
        validate_metadata_template(template)
    except TemplateError:
        return
    for identity in (IDENTITY, RequestIdentity()):
        out = render_metadata(template, ctx(identity))
        assert out.isprintable() and len(out) <= MAX_METADATA_LENGTH, out


# --- rendering --------------------------------------------------------------------------------------

EXPECTED = {
    "{{role}}": ("chat", "chat"),
    "{{connection}}": ("or-main", "or-main"),
    "{{unix_time}}": ("1700000000", "1700000000"),
    "{{token.display_name}}": ("userpass-alice", "userpass-alice"),
    "{{display_name}}": ("userpass-alice", "userpass-alice"),
    "{{request.id}}": ("0b7c9f0e-request", "0b7c9f0e-request"),
    "{{mount.path}}": ("team-a-llm", "team-a/llm"),
    "{{identity.entity.id}}": ("6f1c2a9e-entity", "6f1c2a9e-entity"),
    "{{identity.entity.name}}": ("svc-payments", "svc-payments"),
    "{{identity.entity.metadata.team}}": ("payments", "payments"),
    "{{identity.entity.metadata.cost.center}}": ("cc-42", "cc-42"),
    "{{identity.entity.aliases." + ACCESSOR + ".name}}": ("alice", "alice"),
    "{{identity.entity.aliases." + ACCESSOR + ".metadata.source}}": ("ldap-sync", "ldap-sync"),
    "{{identity.entity.aliases." + ACCESSOR + ".custom_metadata.owner}}": ("bob", "bob"),
    "{{identity.groups.names}}": ("all-eng-payments-eng", "all-eng,payments-eng"),
    "{{identity.groups.ids}}": ("g-1-g-2", "g-1,g-2"),
}


@pytest.mark.parametrize("placeholder", sorted(EXPECTED))
def test_each_placeholder_renders_its_value(placeholder: str) -> None:
    as_name, as_metadata = EXPECTED[placeholder]
    c = ctx()
    assert render(placeholder, c, RenderMode.NAME) == as_name
    assert render_metadata("v=" + placeholder, c) == "v=" + as_metadata


def test_every_known_placeholder_has_a_rendering_test() -> None:
    covered = {re.sub(r"aliases\.[^.]+\.", "aliases.<mount accessor>.", p) for p in EXPECTED}
    covered = {re.sub(r"metadata\.[a-z.]+}}$", "metadata.<key>}}", p) for p in covered}
    assert covered | {"{{random}}"} == set(KNOWN_PLACEHOLDERS)


def test_random_is_drawn_once_per_issue_and_shared_by_name_and_metadata() -> None:
    c = ctx()
    name = key_name(PREFIX, "{{role}}-{{random}}", c)
    assert name == f"{PREFIX}chat-{c.random}"
    assert render_metadata("{{random}}", c) == c.random
    assert re.fullmatch(r"[a-z0-9]{8}", c.random)
    assert ctx().random != c.random  # drawn per context (a repeat has odds 36^-8)


MISSING_CASES = [
    ("{{identity.entity.name}}", RequestIdentity()),
    ("{{identity.entity.id}}", RequestIdentity()),
    ("{{identity.entity.metadata.team}}", RequestIdentity(entity_id="e")),  # entity not found
    ("{{identity.entity.metadata.nope}}", IDENTITY),
    ("{{identity.entity.metadata.blank}}", IDENTITY),
    ("{{identity.entity.aliases." + OTHER_ACCESSOR + ".name}}", IDENTITY),
    ("{{identity.entity.aliases." + ACCESSOR + ".metadata.nope}}", IDENTITY),
    ("{{identity.entity.aliases." + ACCESSOR + ".custom_metadata.nope}}", IDENTITY),
    ("{{identity.groups.names}}", RequestIdentity(entity=ENTITY)),
    ("{{identity.groups.ids}}", RequestIdentity()),
    ("{{token.display_name}}", RequestIdentity()),
    ("{{request.id}}", RequestIdentity()),
    ("{{mount.path}}", RequestIdentity()),
]


@pytest.mark.parametrize(("template", "identity"), MISSING_CASES)
def test_a_missing_value_renders_as_the_fixed_placeholder(template: str, identity: RequestIdentity) -> None:
    assert render(template, ctx(identity), RenderMode.NAME) == MISSING
    assert render_metadata(template, ctx(identity)) == MISSING


def test_a_template_stored_under_older_rules_still_renders() -> None:
    c = ctx()
    assert render("{{nope}}-{{random}}", c, RenderMode.NAME) == f"{MISSING}-{c.random}"
    assert render("a b{{random}}}}", c, RenderMode.NAME) == f"a-b{c.random}-"
    assert render_metadata("{{nope}} {{ role }} }}", c) == f"{MISSING} chat }}}}"


def with_values(name: str, value: str) -> RequestIdentity:
    alias = Alias(id="a", mount_accessor=ACCESSOR, mount_type="userpass", name=value, metadata={"k": value})
    entity = Entity(id="e", name=name, metadata={"k": value}, aliases=(alias,))
    return RequestIdentity(
        display_name=value, entity_id="e", entity=entity, groups=(Group(id=value, name=value),)
    )


HOSTILE_TEMPLATES = [
    "{{identity.entity.metadata.k}}",
    "{{identity.entity.name}}",
    "{{identity.entity.aliases." + ACCESSOR + ".name}}",
    "{{identity.entity.aliases." + ACCESSOR + ".metadata.k}}",
    "{{identity.groups.names}}",
    "{{token.display_name}}",
]


@settings(max_examples=400, deadline=None)
@given(value=st.text(max_size=600), template=st.sampled_from(HOSTILE_TEMPLATES))
def test_hostile_values_in_a_name_are_key_safe_and_never_rendered_again(value: str, template: str) -> None:
    c = ctx(with_values(value, value))
    name = render(template + ".{{random}}", c, RenderMode.NAME)
    value_part, _, suffix = name.rpartition(".")
    assert suffix == c.random
    assert SAFE_NAME.fullmatch(value_part) and len(value_part) <= MAX_VALUE_LENGTH, name
    if value:
        safe = re.sub(r"[^A-Za-z0-9._-]+", "-", value).strip("-")
        assert value_part == (safe[:MAX_VALUE_LENGTH] or "x")
    else:
        assert value_part == MISSING


@settings(max_examples=400, deadline=None)
@given(value=st.text(max_size=600), template=st.sampled_from(HOSTILE_TEMPLATES))
def test_hostile_values_in_metadata_are_printable_bounded_and_never_rendered_again(
    value: str, template: str
) -> None:
    c = ctx(with_values(value, value))
    out = render_metadata(template, c)
    assert out.isprintable()
    assert 0 < len(out) <= MAX_METADATA_VALUE_LENGTH
    assert not any(ord(ch) < 32 or 0x7F <= ord(ch) < 0xA0 for ch in out)
    # Exactly the value, cleaned: a "{{...}}" inside it stays text (one pass, no second rendering).
    cleaned = "".join(
        ch if ch.isprintable() else " " for ch in value if ch.isprintable() or ch.isspace()
    ).strip()
    assert out == (cleaned[:MAX_METADATA_VALUE_LENGTH] or MISSING)


@pytest.mark.parametrize("mode", list(RenderMode))
def test_template_text_inside_a_value_is_not_rendered(mode: RenderMode) -> None:
    c = ctx(with_values("{{random}}", "{{identity.entity.id}} {{role}}"))
    got = render("{{identity.entity.name}}/{{identity.entity.metadata.k}}", c, mode)
    if mode is RenderMode.NAME:
        assert got == "random-identity.entity.id-role"  # '/' and braces are not key-safe: '-'
    else:
        assert got == "{{random}}/{{identity.entity.id}} {{role}}"
    assert c.random not in got and "chat" not in got


def test_control_format_and_unicode_characters_in_metadata() -> None:
    value = "pay\x00ments\tteam\u202e\u200b é 日本 🚀\r\n\x1b[31m"
    c = ctx(with_values("x", value))
    assert render_metadata("{{identity.entity.metadata.k}}", c) == "payments team é 日本 🚀  [31m"
    assert render("{{identity.entity.metadata.k}}", c, RenderMode.NAME) == "pay-ments-team-31m"


def test_huge_values_are_capped_and_cheap() -> None:
    huge = "A" * 5_000_000
    c = ctx(with_values(huge, huge))
    start = time.perf_counter()
    for _ in range(100):
        assert render("{{identity.entity.metadata.k}}", c, RenderMode.NAME) == "A" * MAX_VALUE_LENGTH
        assert render_metadata("{{identity.entity.metadata.k}}", c) == "A" * MAX_METADATA_VALUE_LENGTH
    assert time.perf_counter() - start < 1.0  # a 5 MB value costs no 5 MB scan per render
    many = " ".join(["{{identity.entity.metadata.k}}"] * 4)
    assert len(render_metadata(many, c)) == MAX_METADATA_LENGTH


# --- what a template costs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("templates", "entity", "groups"),
    [
        ((DEFAULT_NAME_TEMPLATE,), False, False),
        (
            ("{{identity.entity.id}}-{{token.display_name}}-{{request.id}}-{{mount.path}}-{{random}}",),
            False,
            False,
        ),
        (("plain metadata", ""), False, False),
        (("{{identity.entity.name}}-{{random}}",), True, False),
        (("{{identity.entity.aliases." + ACCESSOR + ".name}}",), True, False),
        (("{{identity.groups.ids}}",), False, True),
        (
            (DEFAULT_NAME_TEMPLATE, "team {{identity.entity.metadata.team}}", "{{identity.groups.names}}"),
            True,
            True,
        ),
        (("{{nope}} {{identity.groups.names}}",), False, True),  # a stored, now-invalid one still counts
    ],
)
def test_template_needs_only_what_is_used(templates: tuple[str, ...], entity: bool, groups: bool) -> None:
    needs = template_needs(*templates)
    assert (needs.entity, needs.groups) == (entity, groups)
