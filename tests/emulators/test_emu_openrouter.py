"""OpenRouter emulator: key lifecycle (201 on create), validation, offset pagination, auth and inference."""

from __future__ import annotations

from typing import Any

import httpx
from emu_support import CHAT, T0, Harness, sha256


def _err(resp: httpx.Response, status: int) -> str:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"code", "message"} and err["code"] == status
    return str(err["message"])


def _create(admin: httpx.Client, name: str = "lease", **extra: Any) -> dict[str, Any]:
    r = admin.post("/keys", json={"name": name, **extra})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def test_lifecycle(openrouter_h: Harness) -> None:
    emu, admin = openrouter_h.emu, openrouter_h.admin()
    r = admin.post(
        "/keys", json={"name": "vault-lease-1", "limit": 2.5, "expires_at": "2030-01-01T00:00:00Z"}
    )
    assert r.status_code == 201
    body = r.json()
    key, data = body["key"], body["data"]
    assert key.startswith("sk-or-v1-")
    assert data["hash"] == sha256(key)
    assert data["name"] == "vault-lease-1"
    assert data["label"].startswith("sk-or-v1-") and key not in data["label"]
    assert data["disabled"] is False
    assert (data["limit"], data["limit_remaining"], data["usage"]) == (2.5, 2.5, 0)
    assert data["limit_reset"] is None
    assert data["created_at"].endswith("Z") and data["updated_at"] is None
    assert data["expires_at"] == "2030-01-01T00:00:00.000Z"
    assert set(data) >= {
        "hash", "name", "label", "disabled", "limit", "limit_remaining", "limit_reset",
        "usage", "created_at", "updated_at", "expires_at",
    }  # fmt: skip

    got = admin.get(f"/keys/{data['hash']}")
    assert got.status_code == 200 and got.json() == {"data": data}
    assert [d["hash"] for d in admin.get("/keys").json()["data"]] == [data["hash"]]
    assert "key" not in admin.get("/keys").json()["data"][0]

    p = admin.patch(f"/keys/{data['hash']}", json={"name": "renamed", "limit": 5, "expires_at": None})
    assert p.status_code == 200
    assert p.json()["data"]["name"] == "renamed" and p.json()["data"]["limit"] == 5
    assert p.json()["data"]["updated_at"] is not None
    assert p.json()["data"]["expires_at"] == "2030-01-01T00:00:00.000Z"  # not updatable: ignored

    d = admin.delete(f"/keys/{data['hash']}")
    assert d.status_code == 200 and d.json() == {"deleted": True}
    _err(admin.delete(f"/keys/{data['hash']}"), 404)
    _err(admin.get(f"/keys/{data['hash']}"), 404)
    _err(admin.patch(f"/keys/{data['hash']}", json={"name": "x"}), 404)
    assert admin.get("/keys").json() == {"data": []}
    assert emu.deleted_key_ids() == [data["hash"]] and emu.live_keys() == []
    assert (emu.create_count, emu.delete_count) == (1, 1)


def test_create_validation(openrouter_h: Harness) -> None:
    admin = openrouter_h.admin()
    _err(admin.post("/keys", json={}), 400)
    _err(admin.post("/keys", json={"name": ""}), 400)
    _err(admin.post("/keys", json={"name": 3}), 400)
    _err(admin.post("/keys", json={"name": "x", "limit": -1}), 400)
    _err(admin.post("/keys", json={"name": "x", "limit": "10"}), 400)
    _err(admin.post("/keys", json={"name": "x", "limit_reset": "yearly"}), 400)
    _err(admin.post("/keys", content=b"nope"), 400)
    past = "2020-01-01T00:00:00Z"
    assert "future" in _err(admin.post("/keys", json={"name": "x", "expires_at": past}), 400)
    _err(admin.post("/keys", json={"name": "x", "expires_at": "2030-01-01T00:00:00+02:00"}), 400)
    _err(admin.post("/keys", json={"name": "x", "expires_at": "2030-01-01T00:00:00"}), 400)
    _err(admin.post("/keys", json={"name": "x", "expires_at": "tomorrow"}), 400)
    assert openrouter_h.emu.create_count == 0
    assert _create(admin, expires_at="2030-01-01T00:00:00+00:00")["data"]["expires_at"].startswith("2030")


def test_patch_validation_and_disable(openrouter_h: Harness) -> None:
    admin = openrouter_h.admin()
    h = _create(admin)["data"]["hash"]
    _err(admin.patch(f"/keys/{h}", json={"disabled": "yes"}), 400)
    _err(admin.patch(f"/keys/{h}", json={"limit": -2}), 400)
    assert admin.patch(f"/keys/{h}", json={"disabled": True}).json()["data"]["disabled"] is True
    assert admin.get("/keys").json()["data"] == []
    assert [d["hash"] for d in admin.get("/keys", params={"include_disabled": "true"}).json()["data"]] == [h]
    assert openrouter_h.emu.live_keys()[0].disabled is True


def test_list_pagination(openrouter_h: Harness) -> None:
    admin = openrouter_h.admin()
    hashes = [_create(admin, f"k{i}")["data"]["hash"] for i in range(101)]
    first = admin.get("/keys").json()["data"]
    assert len(first) == 100  # at most 100 a page
    second = admin.get("/keys", params={"offset": 100}).json()["data"]
    assert len(second) == 1
    assert {d["hash"] for d in first + second} == set(hashes)
    assert first[0]["hash"] == hashes[-1]  # newest first
    assert admin.get("/keys", params={"offset": 101}).json()["data"] == []
    _err(admin.get("/keys", params={"offset": -1}), 400)
    _err(admin.get("/keys", params={"offset": "x"}), 400)
    _err(admin.get("/keys", params={"include_disabled": "maybe"}), 400)


def test_set_page_size(openrouter_h: Harness) -> None:
    admin = openrouter_h.admin()
    hashes = {_create(admin, f"k{i}")["data"]["hash"] for i in range(5)}
    openrouter_h.emu.set_page_size(2)
    seen: list[str] = []
    offset = 0
    while True:
        page = admin.get("/keys", params={"offset": offset}).json()["data"]
        assert len(page) <= 2
        seen += [d["hash"] for d in page]
        if not page:
            break
        offset += len(page)
    assert set(seen) == hashes and len(seen) == 5


def test_inference_lifecycle(openrouter_h: Harness, clock: Any) -> None:
    admin = openrouter_h.admin()
    created = _create(admin, expires_at="2027-01-15T09:00:00Z")
    h = created["data"]["hash"]
    user = openrouter_h.client(created["key"])
    r = user.post("/chat/completions", json=CHAT)
    assert r.status_code == 200
    assert (
        r.json()["object"] == "chat.completion" and r.json()["choices"][0]["message"]["role"] == "assistant"
    )
    assert admin.get(f"/keys/{h}").json()["data"]["usage"] > 0
    admin.patch(f"/keys/{h}", json={"disabled": True})
    _err(user.post("/chat/completions", json=CHAT), 401)
    admin.patch(f"/keys/{h}", json={"disabled": False})
    assert user.post("/chat/completions", json=CHAT).status_code == 200
    assert admin.delete(f"/keys/{h}").status_code == 200
    _err(user.post("/chat/completions", json=CHAT), 401)


def test_inference_expiry(openrouter_h: Harness, clock: Any) -> None:
    admin = openrouter_h.admin()
    created = _create(admin, expires_at="2027-01-15T09:00:00Z")  # T0 + 1h
    user = openrouter_h.client(created["key"])
    expires = openrouter_h.emu.live_keys()[0].expires_at
    assert expires is not None and expires > T0
    assert user.post("/chat/completions", json=CHAT).status_code == 200
    clock.advance(expires - T0)
    _err(user.post("/chat/completions", json=CHAT), 401)
    # Expired keys still exist at the provider until deleted.
    assert admin.get(f"/keys/{created['data']['hash']}").status_code == 200


def test_inference_limit(openrouter_h: Harness) -> None:
    admin = openrouter_h.admin()
    created = _create(admin, limit=0.001)
    user = openrouter_h.client(created["key"])
    assert user.post("/chat/completions", json=CHAT).status_code == 200
    _err(user.post("/chat/completions", json=CHAT), 402)


def test_auth(openrouter_h: Harness) -> None:
    _err(openrouter_h.client().get("/keys"), 401)
    _err(openrouter_h.client("sk-or-v1-wrong").get("/keys"), 401)
    created = _create(openrouter_h.admin())
    issued = openrouter_h.client(created["key"])
    assert _err(issued.get("/keys"), 403) == "Only management keys can perform this operation"
    _err(issued.post("/keys", json={"name": "x"}), 403)
    _err(issued.delete(f"/keys/{created['data']['hash']}"), 403)
    _err(openrouter_h.admin().post("/chat/completions", json=CHAT), 401)
    _err(openrouter_h.client("sk-or-v1-unknown").post("/chat/completions", json=CHAT), 401)
    _err(openrouter_h.client().post("/chat/completions", json=CHAT), 401)
    assert len(openrouter_h.emu.live_keys()) == 1


def test_unknown_route(openrouter_h: Harness) -> None:
    _err(openrouter_h.admin().get("/nothing"), 404)
    _err(openrouter_h.admin().put("/keys"), 404)
