"""The identity context of a request: which host calls it makes (none unless a template needs them), and what
it carries into rendering."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from llmsecrets.identity import IdentityNeeds, RequestIdentity, request_identity
from llmsecrets.naming import IssueContext, RenderMode, render, template_needs
from vaultplugin.framework import Alias, Entity, Group, Request, VaultError

ENTITY = Entity(
    id="e-1",
    name="svc-payments",
    metadata={"team": "payments"},
    aliases=(Alias(id="a-1", mount_accessor="auth_userpass_1", mount_type="userpass", name="alice"),),
)


@dataclass
class CountingSystem:
    """A SystemView whose identity calls are counted; `fail` makes them raise as the host client does."""

    entity: Entity | None = ENTITY
    groups: tuple[Group, ...] = (Group(id="g-1", name="eng"),)
    fail: bool = False
    calls: list[tuple[str, str]] = field(default_factory=list)

    def default_lease_ttl(self) -> float:
        return 0.0

    def max_lease_ttl(self) -> float:
        return 0.0

    def replication_state(self) -> int:
        return 0

    def entity_info(self, entity_id: str) -> Entity | None:
        self.calls.append(("EntityInfo", entity_id))
        if self.fail:
            raise VaultError("could not look up the requesting entity (EntityInfo): connection reset")
        return self.entity

    def groups_for_entity(self, entity_id: str) -> tuple[Group, ...]:
        self.calls.append(("GroupsForEntity", entity_id))
        if self.fail:
            raise VaultError("could not look up the requesting entity (GroupsForEntity): connection reset")
        return self.groups


def creds_request(entity_id: str = "e-1") -> Request:
    return Request(
        operation="read",
        path="creds/chat",
        id="req-7",
        mount_point="team-a/llm/",
        display_name="userpass-alice",
        entity_id=entity_id,
    )


def test_the_default_template_costs_no_host_call() -> None:
    system = CountingSystem()
    ident = request_identity(creds_request(), system, template_needs("{{role}}-{{unix_time}}-{{random}}"))
    assert system.calls == []
    assert ident == RequestIdentity(
        display_name="userpass-alice", request_id="req-7", mount_path="team-a/llm", entity_id="e-1"
    )


def test_the_entity_id_alone_costs_no_host_call() -> None:
    system = CountingSystem()
    ident = request_identity(creds_request(), system, template_needs("{{identity.entity.id}}-{{random}}"))
    assert system.calls == []
    ctx = IssueContext(role="r", connection="c", unix_time=0, identity=ident)
    assert render("{{identity.entity.id}}", ctx, RenderMode.NAME) == "e-1"


@pytest.mark.parametrize(
    ("needs", "calls"),
    [
        (IdentityNeeds(entity=True), [("EntityInfo", "e-1")]),
        (IdentityNeeds(groups=True), [("GroupsForEntity", "e-1")]),
        (IdentityNeeds(entity=True, groups=True), [("EntityInfo", "e-1"), ("GroupsForEntity", "e-1")]),
    ],
)
def test_one_call_for_each_thing_needed(needs: IdentityNeeds, calls: list[tuple[str, str]]) -> None:
    system = CountingSystem()
    ident = request_identity(creds_request(), system, needs)
    assert system.calls == calls
    assert ident.entity == (ENTITY if needs.entity else None)
    assert ident.groups == (system.groups if needs.groups else ())


def test_a_token_without_an_entity_costs_no_call_and_renders_unknown() -> None:
    system = CountingSystem()
    ident = request_identity(creds_request(entity_id=""), system, IdentityNeeds(entity=True, groups=True))
    assert system.calls == []
    ctx = IssueContext(role="r", connection="c", unix_time=0, identity=ident)
    template = "{{identity.entity.name}}-{{identity.groups.names}}-{{identity.entity.id}}-{{random}}"
    assert render(template, ctx, RenderMode.NAME) == f"unknown-unknown-unknown-{ctx.random}"


def test_an_entity_the_host_does_not_know_renders_unknown_but_keeps_its_id() -> None:
    system = CountingSystem(entity=None, groups=())
    ident = request_identity(creds_request(), system, IdentityNeeds(entity=True, groups=True))
    ctx = IssueContext(role="r", connection="c", unix_time=0, identity=ident)
    assert render_all(ctx) == "e-1 unknown unknown unknown"


def render_all(ctx: IssueContext) -> str:
    return render(
        "{{identity.entity.id}} {{identity.entity.name}} {{identity.entity.metadata.team}} "
        "{{identity.groups.names}}",
        ctx,
        RenderMode.METADATA,
    )


def test_what_the_host_says_reaches_the_templates() -> None:
    ident = request_identity(creds_request(), CountingSystem(), IdentityNeeds(entity=True, groups=True))
    ctx = IssueContext(role="r", connection="c", unix_time=0, identity=ident)
    assert render_all(ctx) == "e-1 svc-payments payments eng"
    assert ident.alias_for("auth_userpass_1") == ENTITY.aliases[0]
    assert ident.alias_for("auth_other") is None


def test_a_host_failure_fails_the_request_rather_than_issuing_under_an_unknown_identity() -> None:
    system = CountingSystem(fail=True)
    with pytest.raises(VaultError, match="could not look up the requesting entity"):
        request_identity(creds_request(), system, IdentityNeeds(entity=True))
