"""LiteLLM emulator: virtual-key lifecycle, update/extend, delete semantics, list paging, auth, inference."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
import pytest
from emu_support import CHAT, T0, FakeClock, Harness, sha256
from llm_emulators.litellm import duration_in_seconds


def _err(resp: httpx.Response, status: int, type_: str | None = None) -> str:
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["code"] == str(status)
    if type_ is not None:
        assert err["type"] == type_
    return str(err["message"])


def _detail(resp: httpx.Response, loc: list[Any]) -> None:
    assert resp.status_code == 422, resp.text
    assert resp.json()["detail"][0]["loc"] == loc


def _gen(admin: httpx.Client, **body: Any) -> dict[str, Any]:
    r = admin.post("/key/generate", json=body)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def test_lifecycle(litellm_h: Harness) -> None:
    emu, admin = litellm_h.emu, litellm_h.admin()
    body = _gen(
        admin,
        key_alias="vault-lease-1",
        duration="1h",
        models=["gpt-4o-mini"],
        max_budget=5.0,
        metadata={"a": 1},
    )
    key, token_id = body["key"], body["token_id"]
    assert key.startswith("sk-")
    assert token_id == sha256(key)
    assert body["key_name"] == f"sk-...{key[-4:]}"
    assert _ts(body["expires"]) == T0 + 3600
    assert (body["key_alias"], body["models"], body["max_budget"], body["metadata"]) == (
        "vault-lease-1", ["gpt-4o-mini"], 5.0, {"a": 1}
    )  # fmt: skip

    info = admin.get("/key/info", params={"key": token_id})
    assert info.status_code == 200
    assert info.json()["key"] == token_id
    assert info.json()["info"]["key_alias"] == "vault-lease-1" and "token" not in info.json()["info"]
    assert admin.get("/key/info", params={"key": key}).json()["info"]["key_name"] == body["key_name"]

    listed = admin.get("/key/list").json()
    assert listed == {"keys": [token_id], "total_count": 1, "current_page": 1, "total_pages": 1}

    live = emu.live_keys()[0]
    assert (live.key_id, live.name, live.models, live.max_budget) == (
        token_id,
        "vault-lease-1",
        ("gpt-4o-mini",),
        5.0,
    )

    d = admin.post("/key/delete", json={"keys": [token_id]})
    assert d.status_code == 200 and d.json() == {"deleted_keys": [token_id]}
    assert "No keys found" in _err(admin.post("/key/delete", json={"keys": [token_id]}), 404)
    _err(admin.get("/key/info", params={"key": token_id}), 404, "not_found_error")
    assert admin.get("/key/list").json()["keys"] == []
    assert emu.deleted_key_ids() == [token_id] and emu.live_keys() == []
    assert (emu.create_count, emu.delete_count) == (1, 1)


def test_delete_by_raw_key_and_alias(litellm_h: Harness) -> None:
    admin = litellm_h.admin()
    a = _gen(admin, key_alias="a")
    b = _gen(admin, key_alias="b")
    assert admin.post("/key/delete", json={"keys": [a["key"]]}).json() == {"deleted_keys": [a["key"]]}
    assert admin.post("/key/delete", json={"key_aliases": ["b"]}).json() == {"deleted_keys": ["b"]}
    _err(admin.post("/key/delete", json={"key_aliases": ["b"]}), 404)
    assert litellm_h.emu.deleted_key_ids() == [a["token_id"], b["token_id"]]
    # Neither list: the proxy answers 500, not 400.
    _err(admin.post("/key/delete", json={}), 500, "internal_server_error")
    _err(admin.post("/key/delete", json={"keys": []}), 500)
    _detail(admin.post("/key/delete", json={"keys": "abc"}), ["body", "keys"])


def test_update_extends_expiry(litellm_h: Harness, clock: FakeClock) -> None:
    admin = litellm_h.admin()
    body = _gen(admin, duration="30s")
    user = litellm_h.client(body["key"])
    clock.advance(20)
    r = admin.post("/key/update", json={"key": body["token_id"], "duration": "15m"})
    assert r.status_code == 200
    assert r.json()["key"] == body["token_id"]
    assert _ts(r.json()["expires"]) == T0 + 20 + 900
    clock.advance(60)
    assert user.post("/chat/completions", json=CHAT).status_code == 200
    # Unknown key: 404 with LiteLLM's own (odd) message.
    assert "Team not found" in _err(admin.post("/key/update", json={"key": "0" * 64, "duration": "1h"}), 404)
    _detail(admin.post("/key/update", json={"duration": "1h"}), ["body", "key"])
    _err(admin.post("/key/update", json={"key": body["token_id"], "duration": "soon"}), 400)


def test_generate_validation(litellm_h: Harness) -> None:
    admin = litellm_h.admin()
    _gen(admin, key_alias="dup")
    _err(admin.post("/key/generate", json={"key_alias": "dup"}), 400, "bad_request_error")
    _err(admin.post("/key/generate", json={"duration": "1 hour"}), 400)
    _err(admin.post("/key/generate", json={"max_budget": -1}), 400)
    _detail(admin.post("/key/generate", json={"models": "gpt-4o"}), ["body", "models"])
    _detail(admin.post("/key/generate", json={"models": [1]}), ["body", "models", 0])
    _detail(admin.post("/key/generate", json={"max_budget": "5"}), ["body", "max_budget"])
    _detail(admin.post("/key/generate", content=b"{bad"), ["body", 0])
    _detail(admin.post("/key/generate"), ["body"])
    assert litellm_h.emu.create_count == 1
    # A deleted alias may be reused.
    admin.post("/key/delete", json={"key_aliases": ["dup"]})
    _gen(admin, key_alias="dup")


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("15m", 900), ("1h", 3600), ("7d", 604800), ("2w", 1209600)]
)
def test_durations(text: str, seconds: int) -> None:
    assert duration_in_seconds(text) == seconds


def test_list_paging(litellm_h: Harness) -> None:
    admin = litellm_h.admin()
    tokens = [_gen(admin, key_alias=f"k{i}")["token_id"] for i in range(12)]
    page1 = admin.get("/key/list").json()
    assert (len(page1["keys"]), page1["total_count"], page1["total_pages"]) == (10, 12, 2)  # default size 10
    assert page1["keys"][0] == tokens[-1]  # newest first
    page2 = admin.get("/key/list", params={"page": 2}).json()
    assert len(page2["keys"]) == 2 and page2["current_page"] == 2
    assert set(page1["keys"] + page2["keys"]) == set(tokens)
    assert admin.get("/key/list", params={"page": 3}).json()["keys"] == []
    assert len(admin.get("/key/list", params={"size": 100}).json()["keys"]) == 12
    _detail(admin.get("/key/list", params={"size": 101}), ["query", "size"])
    _detail(admin.get("/key/list", params={"size": 0}), ["query", "size"])
    _detail(admin.get("/key/list", params={"page": 0}), ["query", "page"])
    _detail(admin.get("/key/list", params={"page": "x"}), ["query", "page"])
    only = admin.get("/key/list", params={"key_alias": "k3"}).json()
    assert only["keys"] == [tokens[3]] and only["total_count"] == 1
    full = admin.get("/key/list", params={"key_alias": "k3", "return_full_object": "true"}).json()
    assert full["keys"][0]["token"] == tokens[3] and full["keys"][0]["key_alias"] == "k3"
    litellm_h.emu.set_page_size(5)
    capped = admin.get("/key/list", params={"size": 100}).json()
    assert len(capped["keys"]) == 5 and capped["total_pages"] == 3


def test_inference(litellm_h: Harness, clock: FakeClock) -> None:
    admin = litellm_h.admin()
    body = _gen(admin, duration="1h", models=["gpt-4o-mini"])
    user = litellm_h.client(body["key"])
    for path in ("/chat/completions", "/v1/chat/completions"):
        r = user.post(path, json=CHAT)
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["role"] == "assistant"
    _err(user.post("/chat/completions", json={**CHAT, "model": "gpt-4o"}), 401, "key_model_access_denied")
    clock.advance(3600)
    _err(user.post("/chat/completions", json=CHAT), 400, "expired_key")
    admin.post("/key/update", json={"key": body["key"], "duration": "1h"})
    assert user.post("/chat/completions", json=CHAT).status_code == 200
    admin.post("/key/delete", json={"keys": [body["token_id"]]})
    _err(user.post("/chat/completions", json=CHAT), 401, "token_not_found_in_db")


def test_inference_budget_and_block(litellm_h: Harness) -> None:
    admin = litellm_h.admin()
    body = _gen(admin, max_budget=0.0015)
    user = litellm_h.client(body["key"])
    assert user.post("/chat/completions", json=CHAT).status_code == 200
    assert user.post("/chat/completions", json=CHAT).status_code == 200
    _err(user.post("/chat/completions", json=CHAT), 400, "budget_exceeded")
    other = _gen(admin)
    assert admin.post("/key/block", json={"key": other["token_id"]}).status_code == 200
    blocked = litellm_h.client(other["key"])
    assert "blocked" in _err(blocked.post("/chat/completions", json=CHAT), 401)
    assert litellm_h.emu.live_keys()[1].disabled is True
    admin.post("/key/unblock", json={"key": other["token_id"]})
    assert blocked.post("/chat/completions", json=CHAT).status_code == 200


def test_auth(litellm_h: Harness) -> None:
    _err(litellm_h.client().get("/key/list"), 401, "auth_error")
    _err(litellm_h.client("sk-wrong").get("/key/list"), 401)
    body = _gen(litellm_h.admin())
    issued = litellm_h.client(body["key"])
    _err(issued.post("/key/generate", json={}), 401, "auth_error")
    _err(issued.post("/key/delete", json={"keys": [body["token_id"]]}), 401)
    _err(litellm_h.admin().post("/chat/completions", json=CHAT), 401)
    _err(litellm_h.client().post("/chat/completions", json=CHAT), 401)
    assert litellm_h.emu.create_count == 1 and len(litellm_h.emu.live_keys()) == 1


def test_unknown_route(litellm_h: Harness) -> None:
    r = litellm_h.admin().get("/key/nothing")
    assert r.status_code == 404 and r.json() == {"detail": "Not Found"}
    r = litellm_h.admin().get("/key/generate")
    assert r.status_code == 405 and r.json() == {"detail": "Method Not Allowed"}


def test_seed_key(litellm_h: Harness) -> None:
    orphan = litellm_h.emu.seed_key(name="vault-orphan", created_at=T0 - 60)
    listed = litellm_h.admin().get("/key/list", params={"return_full_object": "true"}).json()["keys"]
    assert [(k["token"], k["key_alias"]) for k in listed] == [(orphan.key_id, "vault-orphan")]
    assert orphan.key_id == sha256(orphan.secret)
    with pytest.raises(ValueError, match="no project"):
        litellm_h.emu.seed_key(project_id="p")
