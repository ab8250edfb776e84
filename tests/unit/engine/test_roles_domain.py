"""roles.py called directly (no request, no FieldData): a role update's rules, metadata templates, and what
a role may ask of its connection's provider."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import pytest
from engine_env import PROJECT, Env
from llmsecrets import roles
from llmsecrets.connections import UnusableConnection
from llmsecrets.models import ConnectionConfig, Role
from llmsecrets.naming import DEFAULT_NAME_TEMPLATE, KNOWN_PLACEHOLDERS
from llmsecrets.path_roles import FIELDS
from llmsecrets.providers.base import Capabilities
from llmsecrets.roles import InvalidRole, check_capabilities, merge
from vaultplugin.framework import put_json

MOUNT_MAX = 86400


def new(**update: Any) -> Role:
    return merge("r", None, {"connection": "c", **update}, mount_max_ttl=MOUNT_MAX)


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"max_ttl": MOUNT_MAX + 1}, "greater than the mount's max lease TTL (86400s)"),
        ({"ttl": 7200, "max_ttl": 3600}, '"ttl" (7200s) is greater than "max_ttl" (3600s)'),
        ({"ttl": MOUNT_MAX + 1}, '"ttl" (86401s) is greater than the mount\'s max lease TTL'),
        ({"name_template": "{{role}}"}, '"name_template" must contain {{random}}'),
        ({"name_template": "{{random}}-{{nope}}"}, '"name_template" has an unknown placeholder {{nope}}'),
        ({"spend_limit": 0.0}, '"spend_limit" must be a number of USD greater than 0'),
        ({"spend_limit": float("nan")}, '"spend_limit" must be a number'),
        ({"spend_limit": 2_000_000.0}, '"spend_limit" must not exceed 1000000 USD'),
        ({"models": ["m" * 257]}, '"models" has an item longer than 256'),
        ({"metadata": {"": "x"}}, '"metadata" keys must be 1-128'),
        ({"metadata": {"k": "v" * 513}}, "values at most 512"),
        ({"metadata": {"team": "{{identity.entity.nope}}"}}, "\"metadata\" value of 'team' has an unknown"),
        ({"metadata": {"team": "a }} b"}}, "\"metadata\" value of 'team' has an unmatched"),
        ({"scopes": ["api model"]}, '"scopes" items are 1-128 characters without spaces'),
        ({"scopes": ["s" * 129]}, '"scopes" items are 1-128 characters'),
        ({"scopes": [f"s{i}" for i in range(65)]}, '"scopes" has more than 64 items'),
        ({"openai_key_mode": "per_request"}, '"openai_key_mode" must be one of service_account_per_lease'),
    ],
)
def test_a_bad_update_names_its_field(update: dict[str, Any], message: str) -> None:
    with pytest.raises(
        InvalidRole, match=message.replace("{", r"\{").replace("(", r"\(").replace(")", r"\)")
    ):
        new(**update)


def test_connection_is_required_on_create_only() -> None:
    with pytest.raises(InvalidRole, match='missing required field "connection"'):
        merge("r", None, {"ttl": 60}, mount_max_ttl=MOUNT_MAX)
    assert merge("r", new(), {"ttl": 60}, mount_max_ttl=MOUNT_MAX).connection == "c"


def test_defaults_and_fields_not_sent_keep_their_values() -> None:
    role = new()
    assert (role.ttl, role.max_ttl, role.name_template) == (0, 0, DEFAULT_NAME_TEMPLATE)
    role = merge(
        "r",
        role,
        {"ttl": 60, "max_ttl": 600, "spend_limit": 5, "models": [" a ", "b", "a", ""], "project_id": " "},
        mount_max_ttl=0,  # a host that reports no max: only the role's own bound applies
    )
    assert (role.ttl, role.max_ttl, role.spend_limit, role.models, role.project_id) == (
        60,
        600,
        5.0,
        ("a", "b"),
        None,
    )
    again = merge(
        "r", role, {"metadata": {"team": "{{identity.entity.metadata.team}}"}}, mount_max_ttl=MOUNT_MAX
    )
    assert (again.ttl, again.spend_limit, again.models) == (60, 5.0, ("a", "b"))
    assert again.metadata == {"team": "{{identity.entity.metadata.team}}"}
    assert (
        merge("r", again, {"name_template": "  "}, mount_max_ttl=MOUNT_MAX).name_template
        == DEFAULT_NAME_TEMPLATE
    )


def test_metadata_values_may_use_every_known_placeholder() -> None:
    for placeholder in KNOWN_PLACEHOLDERS:
        filled = placeholder.replace("<key>", "team").replace("<mount accessor>", "auth_userpass_1a2b")
        assert new(metadata={"k": f"x {filled} y"}).metadata == {"k": f"x {filled} y"}


def conn(provider: str) -> ConnectionConfig:
    return ConnectionConfig(name="c", provider=provider, admin_key="sk-FAKE")


def caps(**enforced: bool) -> Capabilities:
    return Capabilities(**{**dict.fromkeys((f.name for f in fields(Capabilities)), False), **enforced})


OPENAI = caps(needs_project=True, scopes=True, expiry=True)
OPENROUTER = caps(spend_limit=True, expiry=True)


@pytest.mark.parametrize(
    ("provider", "enforced", "update", "message"),
    [
        ("openai", OPENAI, {}, '"project_id" is required for openai connections'),
        (
            "openai",
            OPENAI,
            {"project_id": "My Project"},
            "\"project_id\" 'My Project' is not an OpenAI project id",
        ),
        ("openai", OPENAI, {"project_id": "proj_a", "spend_limit": 1.0}, "(only per project"),
        (
            "openrouter",
            OPENROUTER,
            {"project_id": "proj_a"},
            '"project_id" applies to openai connections only',
        ),
        ("openrouter", OPENROUTER, {"models": ["m"]}, '"models": openrouter cannot enforce a model list'),
        (
            "openrouter",
            OPENROUTER,
            {"metadata": {"k": "v"}},
            '"metadata": openrouter cannot enforce metadata',
        ),
        ("openrouter", OPENROUTER, {"scopes": ["api.model.request"]}, '"scopes": openrouter cannot enforce'),
        (
            "openrouter",
            OPENROUTER,
            {"openai_key_mode": "key_per_lease"},
            '"openai_key_mode" applies to openai connections only, not openrouter',
        ),
    ],
)
def test_capabilities_refuse_what_the_provider_cannot_enforce(
    provider: str, enforced: Capabilities, update: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidRole, match=message.replace("(", r"\(")):
        check_capabilities(new(**update), conn(provider), enforced)


def test_capabilities_accept_what_the_provider_enforces() -> None:
    check_capabilities(new(project_id="proj_abc123"), conn("openai"), OPENAI)
    check_capabilities(
        new(project_id="proj_abc123", scopes=["api.model.request"], openai_key_mode="key_per_lease"),
        conn("openai"),
        OPENAI,
    )
    check_capabilities(new(spend_limit=5.0), conn("openrouter"), OPENROUTER)


def test_write_checks_the_connection_and_stores(env: Env) -> None:
    with pytest.raises(InvalidRole, match="there is no connection named 'nope'; write config/nope first"):
        roles.write(env.backend, env.storage, "r", {"connection": "nope"})
    env.connect("openai")
    with pytest.raises(InvalidRole, match='"project_id" is required'):
        roles.write(env.backend, env.storage, "r", {"connection": "openai"})
    assert env.backend.role(env.storage, "r") is None
    role = roles.write(
        env.backend, env.storage, "r", {"connection": "openai", "project_id": PROJECT, "ttl": 60}
    )
    assert roles.get(env.backend, env.storage, "r") == role and roles.names(env.storage) == ["r"]
    assert roles.view(role)["project_id"] == PROJECT

    # A connection whose stored settings the provider layer refuses: the one error type, nothing stored.
    stored = ConnectionConfig(name="x", provider="litellm", admin_key="sk-FAKE").to_storage()  # no base URL
    put_json(env.storage, "config/x", stored)
    with pytest.raises(UnusableConnection, match="connection 'x' is unusable: litellm: base_url is required"):
        roles.write(env.backend, env.storage, "rx", {"connection": "x"})
    assert env.backend.role(env.storage, "rx") is None
    roles.delete(env.backend, env.storage, "r")
    assert roles.names(env.storage) == []


def test_name_template_help_lists_every_placeholder() -> None:
    for placeholder in KNOWN_PLACEHOLDERS:
        assert placeholder in FIELDS["name_template"].description


def test_scopes_and_key_mode_are_cleaned_kept_and_stored() -> None:
    role = new(scopes=[" api.model.request ", "", "api.model.request", "api.responses.write"])
    assert role.scopes == ("api.model.request", "api.responses.write")
    assert role.openai_key_mode == ""
    kept = merge(
        "r", new(scopes=["a"], openai_key_mode="key_per_lease"), {"ttl": 60}, mount_max_ttl=MOUNT_MAX
    )
    assert (kept.scopes, kept.openai_key_mode) == (("a",), "key_per_lease")
    assert Role.from_storage(kept.to_storage()) == kept
    # A role stored before these fields existed reads with their defaults.
    old = {k: v for k, v in kept.to_storage().items() if k not in ("scopes", "openai_key_mode")}
    assert (Role.from_storage(old).scopes, Role.from_storage(old).openai_key_mode) == ((), "")
