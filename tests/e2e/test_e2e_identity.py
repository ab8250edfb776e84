"""The SystemView identity calls (EntityInfo, GroupsForEntity) against a real OpenBao identity store.

An entity with metadata, two logins (a userpass alias with operator-set custom metadata, an approle alias
whose metadata the auth method sets) and a group chain (direct member of one group, inherited member of its
parent): the test backend's `identity` path answers with what the host said, field by field.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from devkit.bao import BaoServer
from devkit.raw_api import RawApi
from e2e_support import Mount

pytestmark = pytest.mark.timeout(90)

PASSWORD = "correct-horse-battery"


@dataclass(frozen=True)
class Identity:
    entity_id: str
    entity_name: str
    userpass_accessor: str
    approle_accessor: str
    user: str
    role_id: str
    secret_id: str
    group_id: str
    parent_group_id: str
    disabled_entity_id: str
    suffix: str


def _accessor(root: RawApi, path: str) -> str:
    return str(root.ok("GET", f"sys/auth/{path}")["data"]["accessor"])


@pytest.fixture
def identity(bao: BaoServer, mount: Mount) -> Iterator[Identity]:
    suffix = uuid.uuid4().hex[:8]
    userpass, approle = f"up-{suffix}", f"ar-{suffix}"
    user, policy = f"alice-{suffix}", f"identity-{suffix}"
    with RawApi(bao.addr, bao.root_token) as root:
        root.ok(
            "PUT",
            f"sys/policies/acl/{policy}",
            json={"policy": f'path "{mount.path}/identity" {{ capabilities = ["read"] }}'},
        )
        root.ok("POST", f"sys/auth/{userpass}", json={"type": "userpass"})
        root.ok("POST", f"sys/auth/{approle}", json={"type": "approle"})
        try:
            root.ok(
                "POST", f"auth/{userpass}/users/{user}", json={"password": PASSWORD, "token_policies": policy}
            )
            root.ok("POST", f"auth/{approle}/role/app", json={"token_policies": policy})
            role_id = str(root.ok("GET", f"auth/{approle}/role/app/role-id")["data"]["role_id"])
            secret_id = str(root.ok("POST", f"auth/{approle}/role/app/secret-id")["data"]["secret_id"])

            entity_name = f"svc-payments-{suffix}"
            entity = root.ok(
                "POST",
                "identity/entity",
                json={"name": entity_name, "metadata": {"team": "payments", "tier": "gold"}},
            )
            entity_id = str(entity["data"]["id"])
            up_acc, ar_acc = _accessor(root, userpass), _accessor(root, approle)
            root.ok(
                "POST",
                "identity/entity-alias",
                json={
                    "name": user,
                    "canonical_id": entity_id,
                    "mount_accessor": up_acc,
                    "custom_metadata": {"cost_center": "cc-42"},
                },
            )
            # The approle alias is named by the role id; the login fills its metadata (role_name).
            root.ok(
                "POST",
                "identity/entity-alias",
                json={"name": role_id, "canonical_id": entity_id, "mount_accessor": ar_acc},
            )
            group = root.ok(
                "POST",
                "identity/group",
                json={
                    "name": f"payments-eng-{suffix}",
                    "metadata": {"owner": "bob"},
                    "member_entity_ids": [entity_id],
                },
            )
            group_id = str(group["data"]["id"])
            parent = root.ok(
                "POST",
                "identity/group",
                json={"name": f"all-eng-{suffix}", "member_group_ids": [group_id]},
            )
            disabled = root.ok(
                "POST", "identity/entity", json={"name": f"retired-{suffix}", "disabled": True}
            )
            yield Identity(
                entity_id=entity_id,
                entity_name=entity_name,
                userpass_accessor=up_acc,
                approle_accessor=ar_acc,
                user=user,
                role_id=role_id,
                secret_id=secret_id,
                group_id=group_id,
                parent_group_id=str(parent["data"]["id"]),
                disabled_entity_id=str(disabled["data"]["id"]),
                suffix=suffix,
            )
        finally:
            root.call("DELETE", f"sys/auth/{userpass}")
            root.call("DELETE", f"sys/auth/{approle}")
            root.call("DELETE", f"sys/policies/acl/{policy}")


def _read_identity(bao: BaoServer, token: str, mount: Mount, **params: str) -> dict[str, Any]:
    with RawApi(bao.addr, token) as api:
        return api.ok("GET", f"{mount.path}/identity", params=params)["data"]  # type: ignore[no-any-return]


def _login(bao: BaoServer, path: str, body: dict[str, str]) -> str:
    with RawApi(bao.addr, bao.root_token) as api:
        return str(api.ok("POST", path, json=body)["auth"]["client_token"])


def test_entity_and_groups_of_a_userpass_login(bao: BaoServer, mount: Mount, identity: Identity) -> None:
    s = identity.suffix
    # The approle login first: it is what fills the approle alias's metadata.
    _login(bao, f"auth/ar-{s}/login", {"role_id": identity.role_id, "secret_id": identity.secret_id})
    token = _login(bao, f"auth/up-{s}/login/{identity.user}", {"password": PASSWORD})

    data = _read_identity(bao, token, mount)
    assert data["request_entity_id"] == identity.entity_id
    entity = data["entity"]
    aliases = sorted(entity.pop("aliases"), key=lambda a: a["mount_type"])
    assert entity == {
        "id": identity.entity_id,
        "name": identity.entity_name,
        "metadata": {"team": "payments", "tier": "gold"},
        "disabled": False,
        "namespace_id": "",  # OpenBao's EntityInfo leaves the entity's namespace out (its aliases carry it)
    }
    assert [a["mount_type"] for a in aliases] == ["approle", "userpass"]
    approle_alias, userpass_alias = aliases
    assert userpass_alias["id"]
    assert userpass_alias == {
        "id": userpass_alias["id"],
        "mount_accessor": identity.userpass_accessor,
        "mount_type": "userpass",
        "name": identity.user,
        "metadata": {},  # userpass sets none
        "custom_metadata": {"cost_center": "cc-42"},
        "namespace_id": "root",
        "local": False,
    }
    assert approle_alias["id"] and approle_alias["id"] != userpass_alias["id"]
    assert approle_alias == {
        "id": approle_alias["id"],
        "mount_accessor": identity.approle_accessor,
        "mount_type": "approle",
        "name": identity.role_id,
        "metadata": {"role_name": "app"},
        "custom_metadata": {},
        "namespace_id": "root",
        "local": False,
    }

    groups = sorted(data["groups"], key=lambda g: g["name"])
    assert groups == [
        {"id": identity.parent_group_id, "name": f"all-eng-{s}", "metadata": {}, "namespace_id": "root"},
        {
            "id": identity.group_id,
            "name": f"payments-eng-{s}",
            "metadata": {"owner": "bob"},
            "namespace_id": "root",
        },
    ]


def test_the_approle_login_is_the_same_entity(bao: BaoServer, mount: Mount, identity: Identity) -> None:
    token = _login(
        bao,
        f"auth/ar-{identity.suffix}/login",
        {"role_id": identity.role_id, "secret_id": identity.secret_id},
    )
    data = _read_identity(bao, token, mount)
    assert data["request_entity_id"] == identity.entity_id
    assert data["entity"]["name"] == identity.entity_name
    assert {g["id"] for g in data["groups"]} == {identity.group_id, identity.parent_group_id}


def test_no_entity_is_an_empty_answer_not_an_error(bao: BaoServer, mount: Mount, identity: Identity) -> None:
    # The root token has no entity: the request carries an empty entity id.
    assert _read_identity(bao, bao.root_token, mount) == {
        "request_entity_id": "",
        "entity": None,
        "groups": [],
    }
    # An id the identity store does not know: the host answers "none" (no error) for both calls.
    unknown = str(uuid.uuid4())
    assert _read_identity(bao, bao.root_token, mount, entity_id=unknown) == {
        "request_entity_id": "",
        "entity": None,
        "groups": [],
    }


def test_a_disabled_entity_is_reported_disabled(bao: BaoServer, mount: Mount, identity: Identity) -> None:
    data = _read_identity(bao, bao.root_token, mount, entity_id=identity.disabled_entity_id)
    assert data["entity"] == {
        "id": identity.disabled_entity_id,
        "name": f"retired-{identity.suffix}",
        "metadata": {},
        "disabled": True,
        "namespace_id": "",
        "aliases": [],
    }
    assert data["groups"] == []
