"""Who asked: the identity context of one request, for the `{{identity.*}}`, `{{token.*}}`, `{{request.*}}`
and `{{mount.*}}` placeholders of name and metadata templates (naming.py renders them).

The entity and its groups cost one host call each (SystemView EntityInfo, GroupsForEntity), so they are
fetched only when a template of the role uses them, and never for a token without an entity (a root or
token-store token): that case is an empty context, whose placeholders render as the missing-value text.
"""

from __future__ import annotations

from dataclasses import dataclass

from vaultplugin.framework import Alias, Entity, Group, Request, SystemView


@dataclass(frozen=True)
class IdentityNeeds:
    """Which host calls a set of templates makes worth their cost."""

    entity: bool = False
    groups: bool = False

    def __or__(self, other: IdentityNeeds) -> IdentityNeeds:
        return IdentityNeeds(entity=self.entity or other.entity, groups=self.groups or other.groups)


NO_NEEDS = IdentityNeeds()


@dataclass(frozen=True)
class RequestIdentity:
    """The requester as templates see it. Empty strings and a None entity mean "not known"."""

    display_name: str = ""  # the token's display name, e.g. "userpass-alice"
    request_id: str = ""
    mount_path: str = ""  # without the trailing '/', e.g. "llm" or "team-a/llm"
    entity_id: str = ""  # from the request: known even when the entity was not fetched
    entity: Entity | None = None
    groups: tuple[Group, ...] = ()

    def alias_for(self, mount_accessor: str) -> Alias | None:
        """The entity's alias at the auth mount `mount_accessor`, if any (at most one per mount)."""
        if self.entity is None:
            return None
        for alias in self.entity.aliases:
            if alias.mount_accessor == mount_accessor:
                return alias
        return None


def request_identity(req: Request, system: SystemView, needs: IdentityNeeds = NO_NEEDS) -> RequestIdentity:
    """The identity context of `req`; asks the host only for what `needs` says (and only with an entity).

    A host that cannot answer raises VaultError: a key must not be issued under an identity that could not
    be read (an "unknown" team would be a different team), so the read fails and may be retried.
    """
    entity_id = req.entity_id
    entity = system.entity_info(entity_id) if needs.entity and entity_id else None
    groups = system.groups_for_entity(entity_id) if needs.groups and entity_id else ()
    return RequestIdentity(
        display_name=req.display_name,
        request_id=req.id,
        mount_path=req.mount_point.rstrip("/"),
        entity_id=entity_id,
        entity=entity,
        groups=groups,
    )
