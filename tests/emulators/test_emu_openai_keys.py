"""OpenAI emulator: several API keys under one service account (create, list, get, delete, expiry, scopes)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from emu_support import CHAT, T0, FakeClock, Harness, harness
from llm_emulators import OpenAIEmulator

PROJ = "/organization/projects/proj_default"
SA = f"{PROJ}/service_accounts"
KEYS = f"{PROJ}/api_keys"

INVALID_KEY = {
    "error": {
        "message": "Incorrect API key provided. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_api_key",
    }
}


@pytest.fixture
def h(mode: str, clock: FakeClock) -> Iterator[Harness]:
    yield from harness(OpenAIEmulator(clock=clock, projects=("proj_default", "proj_other")), mode)


def _emu(h: Harness) -> OpenAIEmulator:
    assert isinstance(h.emu, OpenAIEmulator)
    return h.emu


def _err(resp: httpx.Response, status: int, code: str | None = None, param: str | None = None) -> str:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert (err["code"], err["param"]) == (code, param)
    return str(err["message"])


def _role_account(admin: httpx.Client, name: str = "vault-0123abcd-role:ci") -> dict[str, Any]:
    r = admin.post(SA, json={"name": name, "create_service_account_only": True})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _key(admin: httpx.Client, sa_id: str, **body: Any) -> dict[str, Any]:
    r = admin.post(f"{SA}/{sa_id}/api_keys", json=body)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def test_service_account_only_has_no_key_and_no_role(h: Harness) -> None:
    admin = h.admin()
    sa = _role_account(admin)
    assert sa["role"] == "none" and sa["api_key"] is None
    assert sa["id"].startswith("svc_acct_")
    # Its keys have no project access until it gets a role.
    key = _key(admin, sa["id"], name="k1")
    user = h.client(key["value"])
    assert user.post("/chat/completions", json=CHAT).json() == INVALID_KEY
    assert admin.get(KEYS).json()["data"] == []  # default visibility leaves owners without access out
    inactive = admin.get(KEYS, params={"owner_project_access": "inactive"}).json()["data"]
    assert [k["id"] for k in inactive] == [key["id"]]
    r = admin.post(f"{SA}/{sa['id']}", json={"role": "member"})
    assert r.status_code == 200 and r.json()["role"] == "member"
    assert user.post("/chat/completions", json=CHAT).status_code == 200
    _err(admin.post(f"{SA}/{sa['id']}", json={"role": "admin"}), 400, "invalid_value", "role")
    _err(admin.post(f"{SA}/svc_acct_nope", json={"role": "member"}), 404)


def test_key_create_shape_scopes_and_listing(h: Harness) -> None:
    admin, emu = h.admin(), _emu(h)
    sa = _role_account(admin)
    admin.post(f"{SA}/{sa['id']}", json={"role": "member"})
    key = _key(
        admin, sa["id"], name="vault-0123abcd-ci-1", scopes=["api.model.request"], expires_in_seconds=120
    )
    assert set(key) == {"object", "id", "name", "created_at", "value", "expires_at"}
    assert key["object"] == "organization.project.service_account.api_key"
    assert key["id"].startswith("key_") and key["value"].startswith("sk-svcacct-")
    assert (key["name"], key["created_at"], key["expires_at"]) == (
        "vault-0123abcd-ci-1",
        int(T0),
        int(T0) + 120,
    )
    assert emu.key_scopes(key["id"]) == ["api.model.request"]
    assert emu.service_account_of(key["id"]) == sa["id"]

    got = admin.get(f"{KEYS}/{key['id']}").json()
    assert got["object"] == "organization.project.api_key"
    assert got["name"] == "vault-0123abcd-ci-1" and got["expires_at"] == int(T0) + 120
    assert key["value"] not in got["redacted_value"]
    assert got["owner"]["type"] == "service_account"
    assert got["owner"]["service_account"]["id"] == sa["id"]
    assert got["owner_project_access"] == "active" and got["last_used_at"] is None
    assert h.client(key["value"]).post("/chat/completions", json=CHAT).status_code == 200
    assert admin.get(f"{KEYS}/{key['id']}").json()["last_used_at"] == int(T0)
    # Scopes are not part of any documented response.
    assert "scopes" not in got and "scopes" not in key


def test_project_key_list_pages_and_includes_initial_keys(h: Harness) -> None:
    admin = h.admin()
    lease_sa = admin.post(SA, json={"name": "lease"}).json()
    sa = _role_account(admin)
    admin.post(f"{SA}/{sa['id']}", json={"role": "member"})
    ids = [_key(admin, sa["id"], name=f"k{i}")["id"] for i in range(5)]
    seen: list[str] = []
    after = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"after": after} if after else {})}
        page = admin.get(KEYS, params=params).json()
        seen += [k["id"] for k in page["data"]]
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert seen == [lease_sa["api_key"]["id"], *ids]
    _err(admin.get(KEYS, params={"limit": 101}), 400, "integer_above_max_value", "limit")
    _err(
        admin.get(KEYS, params={"owner_project_access": "all"}), 400, "invalid_value", "owner_project_access"
    )
    _err(admin.get("/organization/projects/proj_nope/api_keys"), 404)
    assert admin.get("/organization/projects/proj_other/api_keys").json()["data"] == []


def test_key_expires_on_its_own(mode: str) -> None:
    clock = FakeClock()
    for h in harness(OpenAIEmulator(clock=clock), mode):
        admin = h.admin()
        sa = admin.post(SA, json={"name": "role"}).json()
        key = _key(admin, sa["id"], name="k", expires_in_seconds=30)
        user = h.client(key["value"])
        assert user.post("/chat/completions", json=CHAT).status_code == 200
        clock.advance(29.9)
        assert user.post("/chat/completions", json=CHAT).status_code == 200
        clock.advance(0.1)
        r = user.post("/chat/completions", json=CHAT)
        assert r.status_code == 401 and r.json() == INVALID_KEY
        # An expired key is still listed (with its expiry) until someone deletes it.
        assert admin.get(f"{KEYS}/{key['id']}").json()["expires_at"] == int(T0) + 30
        # The service account's initial key, made without expiry, still works.
        assert h.client(sa["api_key"]["value"]).post("/chat/completions", json=CHAT).status_code == 200


def test_delete_of_a_service_account_key_is_refused(h: Harness) -> None:
    admin, emu = h.admin(), _emu(h)
    sa = admin.post(SA, json={"name": "role"}).json()
    key = _key(admin, sa["id"], name="k")
    msg = _err(admin.delete(f"{KEYS}/{key['id']}"), 400, None, "api_key_id")
    assert "service account" in msg
    assert h.client(key["value"]).post("/chat/completions", json=CHAT).status_code == 200
    assert emu.delete_count == 0
    _err(admin.delete(f"{KEYS}/key_nope"), 404)
    _err(admin.delete(f"/organization/projects/proj_other/api_keys/{key['id']}"), 404)


def test_delete_when_allowed(h: Harness) -> None:
    admin, emu = h.admin(), _emu(h)
    emu.allow_service_account_key_delete = True
    sa = admin.post(SA, json={"name": "role"}).json()
    key = _key(admin, sa["id"], name="k")
    r = admin.delete(f"{KEYS}/{key['id']}")
    assert r.json() == {"object": "organization.project.api_key.deleted", "id": key["id"], "deleted": True}
    assert h.client(key["value"]).post("/chat/completions", json=CHAT).json() == INVALID_KEY
    _err(admin.get(f"{KEYS}/{key['id']}"), 404)
    _err(admin.delete(f"{KEYS}/{key['id']}"), 404)
    # The initial key can be deleted too; the account stays.
    assert admin.delete(f"{KEYS}/{sa['api_key']['id']}").status_code == 200
    assert h.client(sa["api_key"]["value"]).post("/chat/completions", json=CHAT).json() == INVALID_KEY
    assert admin.get(f"{SA}/{sa['id']}").status_code == 200
    assert emu.deleted_key_ids() == [key["id"], sa["api_key"]["id"]]


def test_deleting_the_service_account_kills_its_keys(h: Harness) -> None:
    admin, emu = h.admin(), _emu(h)
    sa = admin.post(SA, json={"name": "role"}).json()
    keys = [_key(admin, sa["id"], name=f"k{i}") for i in range(2)]
    assert admin.delete(f"{SA}/{sa['id']}").status_code == 200
    for key in keys:
        assert h.client(key["value"]).post("/chat/completions", json=CHAT).json() == INVALID_KEY
        _err(admin.get(f"{KEYS}/{key['id']}"), 404)
    assert admin.get(KEYS, params={"owner_project_access": "any"}).json()["data"] == []
    assert emu.live_keys() == []
    _err(admin.post(f"{SA}/{sa['id']}/api_keys", json={"name": "late"}), 404)


def test_key_create_validation(h: Harness) -> None:
    admin, emu = h.admin(), _emu(h)
    sa = admin.post(SA, json={"name": "role"}).json()
    path = f"{SA}/{sa['id']}/api_keys"
    _err(admin.post(path, json={"scopes": "api.model.request"}), 400, "invalid_type", "scopes")
    _err(admin.post(path, json={"scopes": [1]}), 400, "invalid_type", "scopes")
    _err(admin.post(path, json={"name": 5}), 400, "invalid_type", "name")
    _err(admin.post(path, json={"expires_in_seconds": -1}), 400, "invalid_value", "expires_in_seconds")
    assert (
        _err(admin.post(path, json={"metadata": {}}), 400)
        == "Unrecognized request argument supplied: metadata"
    )
    _err(admin.post(f"{SA}/svc_acct_nope/api_keys", json={}), 404)
    _err(admin.post(f"/organization/projects/proj_other/service_accounts/{sa['id']}/api_keys", json={}), 404)
    emu.accept_key_expires_in_seconds = False
    msg = _err(admin.post(path, json={"expires_in_seconds": 60}), 400)
    assert msg == "Unrecognized request argument supplied: expires_in_seconds"
    # A key with no name gets OpenAI's default one.
    assert _key(admin, sa["id"])["name"] == "Secret Key"
    emu.archive_project("proj_default")
    _err(admin.post(path, json={"name": "x"}), 400, None, "project_id")


def test_lifetime_policy(h: Harness) -> None:
    admin, emu = h.admin(), _emu(h)
    emu.key_lifetime_cap = 3600
    _err(admin.post(SA, json={"name": "x"}), 400, None, "expires_in_seconds")
    _err(
        admin.post(SA, json={"name": "x", "expires_in_seconds": 3601}),
        400,
        "invalid_value",
        "expires_in_seconds",
    )
    sa = admin.post(SA, json={"name": "x", "expires_in_seconds": 3600}).json()
    assert sa["api_key"]["expires_at"] == int(T0) + 3600
    # An account without a key needs no lifetime.
    role = _role_account(admin)
    _err(admin.post(f"{SA}/{role['id']}/api_keys", json={"name": "k"}), 400, None, "expires_in_seconds")
    assert _key(admin, role["id"], name="k", expires_in_seconds=60)["expires_at"] == int(T0) + 60


def test_seed_api_key_plants_a_listed_key_under_a_named_account(h: Harness) -> None:
    admin, emu = h.admin(), _emu(h)
    first = emu.seed_api_key(
        "vault-0123abcd-ci-1", account_name="vault-0123abcd-role:ci", created_at=T0 - 3600
    )
    second = emu.seed_api_key("vault-0123abcd-ci-2", account_name="vault-0123abcd-role:ci")
    assert emu.create_count == 0
    accounts = admin.get(SA).json()["data"]
    assert [(a["name"], a["role"]) for a in accounts] == [("vault-0123abcd-role:ci", "member")]
    listed = admin.get(KEYS).json()["data"]
    assert [(k["id"], k["created_at"]) for k in listed] == [
        (first.key_id, int(T0) - 3600),
        (second.key_id, int(T0)),
    ]
    assert h.client(first.secret).post("/chat/completions", json=CHAT).status_code == 200
