"""OpenAI emulator: service-account lifecycle, validation, pagination, auth and inference."""

from __future__ import annotations

import httpx
import pytest
from emu_support import CHAT, T0, FakeClock, Harness, harness
from llm_emulators import OpenAIEmulator

SA = "/organization/projects/proj_default/service_accounts"


def _err(resp: httpx.Response, status: int, code: str | None = None, param: str | None = None) -> str:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["code"] == code
    assert err["param"] == param
    return str(err["message"])


def _create(admin: httpx.Client, name: str = "lease-1") -> dict[str, object]:
    r = admin.post(SA, json={"name": name})
    assert r.status_code == 200, r.text
    body: dict[str, object] = r.json()
    return body


def test_lifecycle(openai_h: Harness) -> None:
    emu, admin = openai_h.emu, openai_h.admin()
    r = admin.post(SA, json={"name": "vault-lease-1"})
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "organization.project.service_account"
    assert body["id"].startswith("svc_acct_")
    assert body["name"] == "vault-lease-1"
    assert body["role"] == "member"
    assert body["created_at"] == int(T0)
    api_key = body["api_key"]
    assert api_key["object"] == "organization.project.service_account.api_key"
    assert api_key["value"].startswith("sk-svcacct-")
    assert api_key["id"].startswith("key_")
    assert isinstance(api_key["created_at"], int)

    listed = admin.get(SA).json()
    assert listed["object"] == "list"
    assert [d["id"] for d in listed["data"]] == [body["id"]]
    assert "api_key" not in listed["data"][0]
    assert set(listed["data"][0]) == {"object", "id", "name", "role", "created_at"}
    assert listed["first_id"] == listed["last_id"] == body["id"]
    assert listed["has_more"] is False

    got = admin.get(f"{SA}/{body['id']}")
    assert got.status_code == 200 and got.json()["id"] == body["id"]

    live = emu.live_keys()
    assert [k.key_id for k in live] == [body["id"]]
    assert live[0].secret == api_key["value"] and live[0].project_id == "proj_default"
    assert api_key["value"] not in repr(live[0])

    d = admin.delete(f"{SA}/{body['id']}")
    assert d.status_code == 200
    assert d.json() == {
        "object": "organization.project.service_account.deleted",
        "id": body["id"],
        "deleted": True,
    }
    _err(admin.delete(f"{SA}/{body['id']}"), 404)
    _err(admin.get(f"{SA}/{body['id']}"), 404)
    assert admin.get(SA).json()["data"] == []
    assert emu.live_keys() == []
    assert emu.deleted_key_ids() == [body["id"]]
    assert (emu.create_count, emu.delete_count) == (1, 1)


def test_delete_in_wrong_project_is_404(openai_h: Harness) -> None:
    admin = openai_h.admin()
    sa = _create(admin)
    _err(admin.delete(f"/organization/projects/proj_other/service_accounts/{sa['id']}"), 404)
    assert len(openai_h.emu.live_keys()) == 1


def test_create_validation(openai_h: Harness) -> None:
    admin = openai_h.admin()
    _err(admin.post(SA, json={}), 400, "missing_required_parameter", "name")
    _err(admin.post(SA, json={"name": 5}), 400, "invalid_type", "name")
    _err(admin.post(SA, json={"name": ""}), 400, "empty_string", "name")
    _err(
        admin.post(SA, json={"name": "x", "expires_in_seconds": 0}),
        400,
        "invalid_value",
        "expires_in_seconds",
    )
    _err(
        admin.post(SA, json={"name": "x", "expires_in_seconds": "60"}),
        400,
        "invalid_value",
        "expires_in_seconds",
    )
    msg = _err(
        admin.post(SA, json={"name": "x", "create_service_account_only": True, "expires_in_seconds": 60}),
        400,
        param="expires_in_seconds",
    )
    assert "create_service_account_only" in msg
    _err(
        admin.post(SA, json={"name": "x", "create_service_account_only": "yes"}),
        400,
        "invalid_type",
        "create_service_account_only",
    )
    _err(admin.post(SA, content=b"{not json", headers={"Content-Type": "application/json"}), 400)
    _err(admin.post("/organization/projects/proj_nope/service_accounts", json={"name": "x"}), 404)
    assert openai_h.emu.create_count == 0 and openai_h.emu.live_keys() == []


def test_archived_project(openai_h: Harness) -> None:
    emu, admin = openai_h.emu, openai_h.admin()
    sa = _create(admin)
    assert admin.get("/organization/projects/proj_default").json()["status"] == "active"
    assert isinstance(emu, OpenAIEmulator)
    emu.archive_project("proj_default")
    proj = admin.get("/organization/projects/proj_default").json()
    assert proj["object"] == "organization.project"
    assert proj["status"] == "archived" and proj["archived_at"] == int(T0)
    _err(admin.post(SA, json={"name": "x"}), 400, param="project_id")
    _err(admin.get("/organization/projects/proj_nope"), 404)
    # Keys of an archived project stop working.
    user = openai_h.client(str(sa["api_key"]["value"]))  # type: ignore[index]
    _err(user.post("/chat/completions", json=CHAT), 401, "invalid_api_key")


def test_inference_until_delete(openai_h: Harness) -> None:
    admin = openai_h.admin()
    sa = _create(admin)
    user = openai_h.client(str(sa["api_key"]["value"]))  # type: ignore[index]
    r = user.post("/chat/completions", json=CHAT)
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert body["model"] == CHAT["model"]
    _err(user.post("/chat/completions", json={"model": "m"}), 400, "missing_required_parameter", "messages")
    assert admin.delete(f"{SA}/{sa['id']}").status_code == 200
    _err(user.post("/chat/completions", json=CHAT), 401, "invalid_api_key")


def test_inference_auth(openai_h: Harness) -> None:
    _err(openai_h.admin().post("/chat/completions", json=CHAT), 401, "invalid_api_key")
    _err(openai_h.client("sk-svcacct-unknown").post("/chat/completions", json=CHAT), 401, "invalid_api_key")
    _err(openai_h.client().post("/chat/completions", json=CHAT), 401)


def test_expiry_switched_off_is_an_unknown_argument(openai_h: Harness) -> None:
    emu = openai_h.emu
    assert isinstance(emu, OpenAIEmulator)
    emu.accept_expires_in_seconds = False
    msg = _err(openai_h.admin().post(SA, json={"name": "x", "expires_in_seconds": 60}), 400)
    assert msg == "Unrecognized request argument supplied: expires_in_seconds"
    assert emu.live_keys() == []


def test_expiry_on_service_account_create(mode: str) -> None:
    clock = FakeClock()
    for h in harness(OpenAIEmulator(clock=clock), mode):
        admin = h.admin()
        r = admin.post(SA, json={"name": "x", "expires_in_seconds": 60})
        assert r.status_code == 200
        assert r.json()["api_key"]["expires_at"] == int(T0) + 60
        user = h.client(r.json()["api_key"]["value"])
        assert user.post("/chat/completions", json=CHAT).status_code == 200
        assert h.emu.live_keys()[0].expires_at == T0 + 60
        clock.advance(60)
        _err(user.post("/chat/completions", json=CHAT), 401, "invalid_api_key")
        assert h.emu.live_keys()[0].expired is True


def test_admin_auth(openai_h: Harness) -> None:
    _err(openai_h.client().get(SA), 401)
    _err(openai_h.client("sk-admin-wrong").get(SA), 401, "invalid_api_key")
    sa = _create(openai_h.admin())
    issued = openai_h.client(str(sa["api_key"]["value"]))  # type: ignore[index]
    msg = _err(issued.get(SA), 401)
    assert "insufficient permissions" in msg
    _err(issued.post(SA, json={"name": "x"}), 401)
    assert openai_h.emu.create_count == 1


def test_unknown_route(openai_h: Harness) -> None:
    msg = _err(openai_h.admin().get("/organization/nothing"), 404)
    assert msg.startswith("Invalid URL (GET /v1/organization/nothing")
    _err(openai_h.admin().put(SA), 404)


def test_pagination_limits(openai_h: Harness) -> None:
    admin = openai_h.admin()
    ids = [_create(admin, f"sa-{i}")["id"] for i in range(21)]
    page = admin.get(SA).json()
    assert len(page["data"]) == 20 and page["has_more"] is True  # default limit 20
    assert [d["id"] for d in page["data"]] == ids[:20]
    assert page["first_id"] == ids[0] and page["last_id"] == ids[19]
    rest = admin.get(SA, params={"after": page["last_id"]}).json()
    assert [d["id"] for d in rest["data"]] == ids[20:] and rest["has_more"] is False
    exact = admin.get(SA, params={"limit": 21}).json()
    assert len(exact["data"]) == 21 and exact["has_more"] is False
    assert len(admin.get(SA, params={"limit": 100}).json()["data"]) == 21
    _err(admin.get(SA, params={"limit": 0}), 400, "integer_below_min_value", "limit")
    _err(admin.get(SA, params={"limit": 101}), 400, "integer_above_max_value", "limit")
    _err(admin.get(SA, params={"limit": "ten"}), 400, "invalid_type", "limit")
    _err(admin.get(SA, params={"after": "svc_acct_never"}), 400, param="after")


def test_set_page_size_walk(openai_h: Harness) -> None:
    admin = openai_h.admin()
    ids = [_create(admin, f"sa-{i}")["id"] for i in range(5)]
    openai_h.emu.set_page_size(2)
    seen: list[str] = []
    after: str | None = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 100}
        if after:
            params["after"] = after
        body = admin.get(SA, params=params).json()
        pages += 1
        seen += [d["id"] for d in body["data"]]
        if not body["has_more"]:
            break
        after = body["last_id"]
    assert seen == ids and pages == 3


def test_cursor_survives_deleting_the_cursor(openai_h: Harness) -> None:
    admin = openai_h.admin()
    ids = [_create(admin, f"sa-{i}")["id"] for i in range(4)]
    first = admin.get(SA, params={"limit": 2}).json()
    for d in first["data"]:
        assert admin.delete(f"{SA}/{d['id']}").status_code == 200
    rest = admin.get(SA, params={"limit": 2, "after": first["last_id"]}).json()
    assert [d["id"] for d in rest["data"]] == ids[2:]


def test_seed_key_orphan(openai_h: Harness) -> None:
    emu = openai_h.emu
    orphan = emu.seed_key(name="vault-orphan", created_at=T0 - 3600)
    assert orphan.key_id.startswith("svc_acct_") and orphan.project_id == "proj_default"
    listed = openai_h.admin().get(SA).json()["data"]
    assert [(d["id"], d["name"], d["created_at"]) for d in listed] == [
        (orphan.key_id, "vault-orphan", int(T0 - 3600))
    ]
    assert emu.create_count == 0
    with pytest.raises(ValueError, match="unknown project"):
        emu.seed_key(project_id="proj_nope")


def test_list_projects(openai_h: Harness) -> None:
    admin, emu = openai_h.admin(), openai_h.emu
    body = admin.get("/organization/projects", params={"limit": 1}).json()
    assert body["object"] == "list" and [p["id"] for p in body["data"]] == ["proj_default"]
    assert body["has_more"] is True
    rest = admin.get("/organization/projects", params={"after": body["last_id"]}).json()
    assert [p["id"] for p in rest["data"]] == ["proj_other"] and rest["has_more"] is False
    assert isinstance(emu, OpenAIEmulator)
    emu.archive_project("proj_other")
    assert [p["id"] for p in admin.get("/organization/projects").json()["data"]] == ["proj_default"]
    archived = admin.get("/organization/projects", params={"include_archived": "true"}).json()["data"]
    assert [p["status"] for p in archived] == ["active", "archived"]
    _err(admin.get("/organization/projects", params={"limit": 0}), 400, "integer_below_min_value", "limit")
    _err(openai_h.client().get("/organization/projects"), 401)
