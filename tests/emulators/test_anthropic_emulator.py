"""Anthropic emulator over a real loopback server: API key list/get/update, /v1/messages, errors, faults."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from emu_support import T0, FakeClock
from llm_emulators import EMULATORS, AnthropicEmulator, Fault

VERSION = "2023-06-01"
KEYS = "/organizations/api_keys"
KEY_FIELDS = {
    "type", "id", "name", "status", "workspace_id", "scope", "created_at", "created_by", "expires_at",
    "partial_key_hint", "principal",
}  # fmt: skip
MESSAGE = {"model": "claude-sonnet-4-5", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}


class Setup:
    def __init__(self, emu: AnthropicEmulator, url: str) -> None:
        self.emu, self.url = emu, url
        self._clients: list[httpx.Client] = []

    def client(
        self, key: str | None = None, *, version: str | None = VERSION, **headers: str
    ) -> httpx.Client:
        h = dict(headers)
        if key is not None:
            h["x-api-key"] = key
        if version is not None:
            h["anthropic-version"] = version
        c = httpx.Client(base_url=self.url + "/v1", headers=h, timeout=10)
        self._clients.append(c)
        return c

    def admin(self) -> httpx.Client:
        return self.client(self.emu.admin_key)

    def control(self) -> httpx.Client:
        c = httpx.Client(base_url=self.url, timeout=10)
        self._clients.append(c)
        return c


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def anth(clock: FakeClock) -> Iterator[Setup]:
    emu = AnthropicEmulator(clock=clock)
    with emu.serve() as server:
        setup = Setup(emu, server.url)
        try:
            yield setup
        finally:
            for c in setup._clients:
                c.close()


def err(resp: httpx.Response, status: int, type_: str) -> str:
    """Check the real error envelope and return its message."""
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"type", "error", "request_id"}, body
    assert body["type"] == "error" and body["request_id"].startswith("req_")
    assert set(body["error"]) == {"type", "message"} and body["error"]["type"] == type_
    assert resp.headers["request-id"].startswith("req_")
    return str(body["error"]["message"])


def ids(resp: httpx.Response) -> list[str]:
    assert resp.status_code == 200, resp.text
    return [k["id"] for k in resp.json()["data"]]


# ------------------------------------------------------------------------------------------------ shapes


def test_list_and_get_shapes(anth: Setup, clock: FakeClock) -> None:
    emu, admin = anth.emu, anth.admin()
    a = emu.add_key("pool-a", status="inactive")
    clock.advance(1)
    b = emu.add_key("pool-b", status="active", workspace_id="wrkspc_01Other", expires_at=T0 + 3600)

    r = admin.get(KEYS)
    assert r.status_code == 200 and r.headers["request-id"].startswith("req_")
    body = r.json()
    assert set(body) == {"data", "first_id", "last_id", "has_more"}
    assert [k["id"] for k in body["data"]] == [b.key_id, a.key_id]  # newest first
    assert (body["first_id"], body["last_id"], body["has_more"]) == (b.key_id, a.key_id, False)
    for k in body["data"]:
        assert set(k) == KEY_FIELDS
        assert k["type"] == "api_key" and k["id"].startswith("apikey_01")
        assert k["created_by"] == {"id": emu.creator_user_id, "type": "user"}
        assert k["principal"] is None
    ka, kb = body["data"][1], body["data"][0]
    assert (ka["name"], ka["status"], kb["name"], kb["status"]) == ("pool-a", "inactive", "pool-b", "active")
    # The default workspace shows as null at top level, with its real id in scope.
    assert ka["workspace_id"] is None
    assert ka["scope"] == {"type": "workspace", "workspace_id": emu.default_workspace_id}
    assert kb["workspace_id"] == "wrkspc_01Other" == kb["scope"]["workspace_id"]
    assert ka["created_at"] == "2027-01-15T08:00:00.000000Z" and ka["expires_at"] is None
    assert kb["expires_at"] == "2027-01-15T09:00:00.000000Z"
    # Never the key's value: only a hint of its first 3 and last 4 characters.
    assert a.secret.startswith("sk-ant-api03-") and a.secret.endswith("AA")
    assert a.secret not in r.text and b.secret not in r.text
    body_a = a.secret.removeprefix("sk-ant-api03-")
    assert ka["partial_key_hint"] == f"sk-ant-api03-{body_a[:3]}...{body_a[-4:]}"

    g = admin.get(f"{KEYS}/{a.key_id}")
    assert g.status_code == 200 and g.json() == ka
    assert a.secret not in g.text


def test_pagination_forward_and_back(anth: Setup, clock: FakeClock) -> None:
    emu, admin = anth.emu, anth.admin()
    made = []
    for i in range(7):
        made.append(emu.add_key(f"k{i}").key_id)
        clock.advance(1)
    newest_first = made[::-1]

    seen: list[str] = []
    params: dict[str, Any] = {"limit": 3}
    pages = 0
    while True:
        r = admin.get(KEYS, params=params)
        body = r.json()
        page = ids(r)
        assert (body["first_id"], body["last_id"]) == (page[0], page[-1])
        seen += page
        pages += 1
        if not body["has_more"]:
            break
        params = {"limit": 3, "after_id": body["last_id"]}
    assert seen == newest_first and pages == 3

    # Backwards from the last page: the 3 keys immediately before its first key, and more before those.
    last_first = newest_first[6]
    r = admin.get(KEYS, params={"limit": 3, "before_id": last_first})
    assert ids(r) == newest_first[3:6] and r.json()["has_more"] is True
    r = admin.get(KEYS, params={"limit": 3, "before_id": newest_first[3]})
    assert ids(r) == newest_first[0:3] and r.json()["has_more"] is False
    # Past the end: an empty page with null ids.
    r = admin.get(KEYS, params={"after_id": newest_first[-1]})
    assert r.json() == {"data": [], "first_id": None, "last_id": None, "has_more": False}


def test_default_limit_and_bounds(anth: Setup) -> None:
    emu, admin = anth.emu, anth.admin()
    for i in range(25):
        emu.add_key(f"k{i}")
    r = admin.get(KEYS)
    assert len(ids(r)) == 20 and r.json()["has_more"] is True
    assert len(ids(admin.get(KEYS, params={"limit": 1000}))) == 25
    assert len(ids(admin.get(KEYS, params={"limit": 1}))) == 1
    for bad in ("0", "1001", "-1", "ten", "2.5"):
        assert "limit" in err(admin.get(KEYS, params={"limit": bad}), 400, "invalid_request_error")
    # A test may lower the server's page size; the pages then stay consistent.
    emu.set_page_size(10)
    r = admin.get(KEYS, params={"limit": 100})
    assert len(ids(r)) == 10 and r.json()["has_more"] is True


def test_cursor_errors(anth: Setup) -> None:
    emu, admin = anth.emu, anth.admin()
    k = emu.add_key("one").key_id
    err(admin.get(KEYS, params={"after_id": k, "before_id": k}), 400, "invalid_request_error")
    err(admin.get(KEYS, params={"after_id": "apikey_01Nope"}), 400, "invalid_request_error")
    err(admin.get(KEYS, params={"before_id": "apikey_01Nope"}), 400, "invalid_request_error")
    err(admin.get(KEYS, params={"offset": "1"}), 400, "invalid_request_error")


def test_filters(anth: Setup, clock: FakeClock) -> None:
    emu, admin = anth.emu, anth.admin()
    act = emu.add_key("act", status="active").key_id
    ina = emu.add_key("ina", status="inactive").key_id
    arc = emu.add_key("arc", status="archived").key_id
    exp = emu.add_key("exp", status="active", expires_at=T0 + 60).key_id
    other = emu.add_key("other", status="inactive", workspace_id="wrkspc_01B", created_by="user_01Someone")
    assert set(ids(admin.get(KEYS, params={"status": "active"}))) == {act, exp}
    clock.advance(61)
    assert set(ids(admin.get(KEYS, params={"status": "active"}))) == {act}
    assert ids(admin.get(KEYS, params={"status": "expired"})) == [exp]
    assert ids(admin.get(KEYS, params={"status": "archived"})) == [arc]
    assert set(ids(admin.get(KEYS, params={"status": "inactive"}))) == {ina, other.key_id}
    assert ids(admin.get(KEYS, params={"workspace_id": "wrkspc_01B"})) == [other.key_id]
    assert len(ids(admin.get(KEYS, params={"workspace_id": emu.default_workspace_id}))) == 4
    assert ids(admin.get(KEYS, params={"created_by_user_id": "user_01Someone"})) == [other.key_id]
    assert ids(admin.get(KEYS, params={"workspace_id": "wrkspc_01None"})) == []
    msg = err(admin.get(KEYS, params={"status": "deleted"}), 400, "invalid_request_error")
    assert msg.startswith("status:")
    # A cursor stays valid when its key leaves the filter between pages.
    page = ids(admin.get(KEYS, params={"status": "inactive", "limit": 1}))
    admin.post(f"{KEYS}/{page[0]}", json={"status": "active"})
    rest = ids(admin.get(KEYS, params={"status": "inactive", "after_id": page[0]}))
    assert page[0] not in rest and len(rest) == 1


# ------------------------------------------------------------------------------------------------ update


def test_update_status_and_name(anth: Setup) -> None:
    emu, admin = anth.emu, anth.admin()
    k = emu.add_key("pool-0", status="inactive").key_id
    r = admin.post(f"{KEYS}/{k}", json={"status": "active"})
    assert r.status_code == 200 and set(r.json()) == KEY_FIELDS and r.json()["status"] == "active"
    assert emu.key_status(k) == "active"
    r = admin.post(f"{KEYS}/{k}", json={"status": "active"})  # no change: answered, not counted
    assert r.status_code == 200
    r = admin.post(f"{KEYS}/{k}", json={"name": "leased", "status": "inactive"})
    assert (r.json()["name"], r.json()["status"]) == ("leased", "inactive")
    assert admin.get(f"{KEYS}/{k}").json()["status"] == "inactive"
    assert emu.status_changes(k) == [("inactive", "active"), ("active", "inactive")]
    assert emu.status_change_count(k) == 2 == emu.status_change_count()
    assert emu.update_calls(k) == 3
    r = admin.post(f"{KEYS}/{k}", json={"name": None, "status": None})  # nulls change nothing
    assert (r.json()["name"], r.json()["status"]) == ("leased", "inactive")


def test_archive_is_one_way(anth: Setup) -> None:
    emu, admin = anth.emu, anth.admin()
    k = emu.add_key("pool-0", status="active").key_id
    assert admin.post(f"{KEYS}/{k}", json={"status": "archived"}).json()["status"] == "archived"
    for status in ("active", "inactive"):
        msg = err(admin.post(f"{KEYS}/{k}", json={"status": status}), 400, "invalid_request_error")
        assert "archived" in msg
    assert emu.key_status(k) == "archived"
    assert emu.status_changes(k) == [("active", "archived")]
    # Renaming an archived key, or asking for archived again, is no transition.
    assert admin.post(f"{KEYS}/{k}", json={"name": "old"}).json()["name"] == "old"
    assert admin.post(f"{KEYS}/{k}", json={"status": "archived"}).status_code == 200


def test_expired_key_cannot_change_status(anth: Setup, clock: FakeClock) -> None:
    emu, admin = anth.emu, anth.admin()
    k = emu.add_key("short", status="inactive", expires_at=T0 + 10).key_id
    clock.advance(10)
    assert admin.get(f"{KEYS}/{k}").json()["status"] == "expired"
    err(admin.post(f"{KEYS}/{k}", json={"status": "active"}), 400, "invalid_request_error")
    assert emu.key_status(k) == "expired" and emu.status_change_count(k) == 0


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"status": "expired"}, "status"),
        ({"status": "ACTIVE"}, "status"),
        ({"status": True}, "status"),
        ({"name": ""}, "name"),
        ({"name": "x" * 501}, "name"),
        ({"name": 5}, "name"),
        ({"disabled": True}, "disabled"),
        ({"status": "inactive", "expires_at": None}, "expires_at"),
    ],
)
def test_update_validation(anth: Setup, body: dict[str, Any], needle: str) -> None:
    emu, admin = anth.emu, anth.admin()
    k = emu.add_key("pool-0", status="active").key_id
    assert needle in err(admin.post(f"{KEYS}/{k}", json=body), 400, "invalid_request_error")
    assert emu.key_status(k) == "active" and emu.update_calls(k) == 0
    assert admin.post(f"{KEYS}/{k}", json={"name": "x" * 500}).status_code == 200


@pytest.mark.parametrize("content", [b"", b"not json", b"[]", b'"active"'])
def test_update_body_not_an_object(anth: Setup, content: bytes) -> None:
    k = anth.emu.add_key("pool-0").key_id
    r = anth.admin().post(f"{KEYS}/{k}", content=content, headers={"content-type": "application/json"})
    err(r, 400, "invalid_request_error")


def test_not_found(anth: Setup) -> None:
    admin = anth.admin()
    err(admin.get(f"{KEYS}/apikey_01Missing"), 404, "not_found_error")
    err(admin.post(f"{KEYS}/apikey_01Missing", json={"status": "inactive"}), 404, "not_found_error")
    err(admin.get("/organizations/nothing_here"), 404, "not_found_error")
    # No create and no delete exist at Anthropic.
    err(admin.post(KEYS, json={"name": "new"}), 405, "invalid_request_error")
    k = anth.emu.add_key("pool-0").key_id
    err(admin.delete(f"{KEYS}/{k}"), 405, "invalid_request_error")
    assert anth.emu.key_status(k) == "active"


# ------------------------------------------------------------------------------------------------ auth


def test_admin_auth(anth: Setup) -> None:
    emu = anth.emu
    k = emu.add_key("pool-0", status="active")
    assert err(anth.client().get(KEYS), 401, "authentication_error") == "x-api-key header is required"
    wrong = anth.client("sk-ant-admin01-wrong").get(KEYS)
    assert err(wrong, 401, "authentication_error") == "invalid x-api-key"
    # A standard key is no admin key.
    err(anth.client(k.secret).get(KEYS), 401, "authentication_error")
    # Bearer is not how admin keys travel.
    bearer = anth.client(Authorization=f"Bearer {emu.admin_key}")
    assert err(bearer.get(KEYS), 401, "authentication_error") == "x-api-key header is required"
    # A revoked admin key: every admin call 401 until restored.
    emu.revoke_admin_key()
    err(anth.admin().post(f"{KEYS}/{k.key_id}", json={"status": "inactive"}), 401, "authentication_error")
    assert emu.key_status(k.key_id) == "active"
    emu.restore_admin_key()
    assert anth.admin().get(KEYS).status_code == 200


def test_anthropic_version_header(anth: Setup) -> None:
    emu = anth.emu
    k = emu.add_key("pool-0", status="active")
    no_version = anth.client(emu.admin_key, version=None)
    msg = err(no_version.get(KEYS), 400, "invalid_request_error")
    assert msg == "anthropic-version: header is required"
    msg = err(anth.client(emu.admin_key, version="2024-10-22").get(KEYS), 400, "invalid_request_error")
    assert msg == 'anthropic-version: "2024-10-22" is not a valid version'
    assert anth.client(emu.admin_key, version="2023-01-01").get(KEYS).status_code == 200
    # Inference needs it too.
    err(anth.client(k.secret, version=None).post("/messages", json=MESSAGE), 400, "invalid_request_error")


def test_version_optional_switch() -> None:
    emu = AnthropicEmulator(require_version=False)
    with emu.serve() as server:
        r = httpx.get(server.base_url + KEYS, headers={"x-api-key": emu.admin_key}, timeout=10)
        assert r.status_code == 200
        bad = httpx.get(
            server.base_url + KEYS, headers={"x-api-key": emu.admin_key, "anthropic-version": "x"}, timeout=10
        )
        err(bad, 400, "invalid_request_error")


# ------------------------------------------------------------------------------------------------ inference


def test_messages_only_while_active(anth: Setup, clock: FakeClock) -> None:
    emu, admin = anth.emu, anth.admin()
    key = emu.add_key("pool-0", status="inactive")
    user = anth.client(key.secret)
    assert err(user.post("/messages", json=MESSAGE), 401, "authentication_error") == "invalid x-api-key"
    admin.post(f"{KEYS}/{key.key_id}", json={"status": "active"})
    r = user.post("/messages", json=MESSAGE)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["type"] == "message" and body["role"] == "assistant" and body["id"].startswith("msg_")
    assert body["model"] == MESSAGE["model"] and body["stop_reason"] == "end_turn"
    assert body["content"][0]["type"] == "text" and body["content"][0]["text"]
    assert set(body["usage"]) >= {"input_tokens", "output_tokens"}
    assert emu.inference_count(key.key_id) == 1
    admin.post(f"{KEYS}/{key.key_id}", json={"status": "inactive"})
    err(user.post("/messages", json=MESSAGE), 401, "authentication_error")
    admin.post(f"{KEYS}/{key.key_id}", json={"status": "active"})
    assert user.post("/messages", json=MESSAGE).status_code == 200
    admin.post(f"{KEYS}/{key.key_id}", json={"status": "archived"})
    err(user.post("/messages", json=MESSAGE), 401, "authentication_error")
    assert emu.inference_count(key.key_id) == 2

    short = emu.add_key("short", status="active", expires_at=clock.now + 5)
    assert anth.client(short.secret).post("/messages", json=MESSAGE).status_code == 200
    clock.advance(5)
    err(anth.client(short.secret).post("/messages", json=MESSAGE), 401, "authentication_error")


def test_messages_auth_and_body(anth: Setup) -> None:
    emu = anth.emu
    key = emu.add_key("pool-0", status="active")
    missing = anth.client().post("/messages", json=MESSAGE)
    assert err(missing, 401, "authentication_error") == "x-api-key header is required"
    err(anth.client(emu.admin_key).post("/messages", json=MESSAGE), 401, "authentication_error")
    err(anth.client("sk-ant-api03-unknown").post("/messages", json=MESSAGE), 401, "authentication_error")
    user = anth.client(key.secret)
    for field in ("model", "max_tokens", "messages"):
        body = {k: v for k, v in MESSAGE.items() if k != field}
        msg = err(user.post("/messages", json=body), 400, "invalid_request_error")
        assert msg == f"{field}: Field required"
    err(user.post("/messages", json={**MESSAGE, "max_tokens": 0}), 400, "invalid_request_error")
    err(user.post("/messages", json={**MESSAGE, "messages": []}), 400, "invalid_request_error")
    err(user.post("/messages", content=b"nope"), 400, "invalid_request_error")
    assert emu.inference_count(key.key_id) == 0


# ------------------------------------------------------------------------------------------------ faults


def test_rate_limit_with_retry_after(anth: Setup) -> None:
    emu, admin = anth.emu, anth.admin()
    k = emu.add_key("pool-0", status="inactive").key_id
    emu.faults.rate_limit(times=2, retry_after=3, op="update")
    for _ in range(2):
        r = admin.post(f"{KEYS}/{k}", json={"status": "active"})
        err(r, 429, "rate_limit_error")
        assert r.headers["retry-after"] == "3"
        assert emu.key_status(k) == "inactive"
    assert admin.get(KEYS).status_code == 200  # scoped to updates
    assert admin.post(f"{KEYS}/{k}", json={"status": "active"}).status_code == 200
    assert emu.status_change_count(k) == 1


@pytest.mark.parametrize(("status", "type_"), [(500, "api_error"), (529, "overloaded_error")])
def test_server_errors(anth: Setup, status: int, type_: str) -> None:
    emu, admin = anth.emu, anth.admin()
    key = emu.add_key("pool-0", status="active")
    emu.faults.server_error(times=1, status=status)
    err(admin.post(f"{KEYS}/{key.key_id}", json={"status": "inactive"}), status, type_)
    assert emu.key_status(key.key_id) == "active"
    emu.faults.server_error(times=None, status=status)
    # Faults act on the Admin API only; inference is unaffected.
    assert anth.client(key.secret).post("/messages", json=MESSAGE).status_code == 200
    err(admin.get(KEYS), status, type_)
    emu.faults.clear()
    assert admin.get(KEYS).status_code == 200


def test_gateway_502_is_html(anth: Setup) -> None:
    anth.emu.faults.server_error(times=1, status=502)
    r = anth.admin().get(KEYS)
    assert r.status_code == 502 and r.headers["content-type"].startswith("text/html")


def test_connection_dropped_after_update(anth: Setup) -> None:
    emu, admin = anth.emu, anth.admin()
    k = emu.add_key("pool-0", status="inactive").key_id
    emu.drop_connection("update", times=1)
    with pytest.raises(httpx.TransportError):
        admin.post(f"{KEYS}/{k}", json={"status": "active"})
    # The change stuck although the caller never heard back.
    assert emu.key_status(k) == "active" and emu.status_change_count(k) == 1
    assert anth.admin().get(f"{KEYS}/{k}").json()["status"] == "active"


def test_connection_dropped_before_update(anth: Setup) -> None:
    emu = anth.emu
    k = emu.add_key("pool-0", status="inactive").key_id
    emu.drop_connection("all", times=2, after=False)
    for _ in range(2):
        with pytest.raises(httpx.TransportError):
            anth.admin().post(f"{KEYS}/{k}", json={"status": "active"})
    assert emu.key_status(k) == "inactive" and emu.update_calls(k) == 0
    assert anth.admin().post(f"{KEYS}/{k}", json={"status": "active"}).status_code == 200


def test_hang_is_a_timeout(anth: Setup) -> None:
    emu = anth.emu
    k = emu.add_key("pool-0", status="inactive").key_id
    emu.faults.add(Fault.hang(times=1, op="update"))
    c = httpx.Client(base_url=anth.url + "/v1", timeout=0.5)
    try:
        headers = {"x-api-key": emu.admin_key, "anthropic-version": VERSION}
        with pytest.raises(httpx.ReadTimeout):
            c.post(f"{KEYS}/{k}", json={"status": "active"}, headers=headers)
    finally:
        c.close()
    assert emu.key_status(k) == "inactive"


# ------------------------------------------------------------------------------------------------ control


def test_control_endpoints(anth: Setup) -> None:
    emu, ctl, admin = anth.emu, anth.control(), anth.admin()
    chosen = "sk-ant-api03-" + "c" * 93 + "AA"
    r = ctl.post(
        "/_emulator/keys",
        json={"id": "apikey_01Chosen", "value": chosen, "name": "set-a-0", "status": "inactive",
              "workspace_id": "wrkspc_01Set"},
    )  # fmt: skip
    assert r.status_code == 201 and "value" not in r.json() and chosen not in r.text
    assert (r.json()["id"], r.json()["status"], r.json()["workspace_id"]) == (
        "apikey_01Chosen",
        "inactive",
        "wrkspc_01Set",
    )
    gen = ctl.post("/_emulator/keys", json={"name": "set-a-1", "status": "active"}).json()
    assert gen["value"].startswith("sk-ant-api03-")
    assert anth.client(gen["value"]).post("/messages", json=MESSAGE).status_code == 200
    assert ctl.post("/_emulator/keys", json={"id": "apikey_01Chosen"}).status_code == 400  # taken
    assert ctl.post("/_emulator/keys", json={"status": "expired"}).status_code == 400

    admin.post(f"{KEYS}/apikey_01Chosen", json={"status": "active"})
    got = ctl.get("/_emulator/keys/apikey_01Chosen").json()
    assert got["status"] == "active" and got["status_changes"] == [["inactive", "active"]]
    assert got["update_calls"] == 1 and chosen not in json.dumps(got)
    # A console action: archived, not counted as an API change.
    r = ctl.post("/_emulator/keys/apikey_01Chosen/status", json={"status": "archived"})
    assert r.json()["status"] == "archived" and r.json()["status_changes"] == [["inactive", "active"]]
    assert ctl.get("/_emulator/keys/apikey_01Missing").status_code == 404

    assert ctl.post("/_emulator/faults", json={"kind": "server_error", "status": 529}).status_code == 200
    err(admin.get(KEYS), 529, "overloaded_error")
    assert ctl.post("/_emulator/drops", json={"op": "get", "times": 1}).json()["op"] == "get"
    assert ctl.post("/_emulator/drops", json={"op": "bogus"}).status_code == 400
    state = ctl.get("/_emulator/state").json()
    assert len(state["drops"]) == 1 and len(state["anthropic_keys"]) == 2
    assert chosen not in json.dumps(state) and gen["value"] not in json.dumps(state)
    assert ctl.delete("/_emulator/faults").status_code == 200
    assert emu.state()["drops"] == [] and admin.get(KEYS).status_code == 200
    assert ctl.post("/_emulator/reset").json()["anthropic_keys"] == []


def test_python_helpers_refuse_bad_input() -> None:
    emu = AnthropicEmulator()
    k = emu.add_key("a", key_id="apikey_01A", value="sk-ant-api03-aAA")
    with pytest.raises(ValueError):
        emu.add_key("b", key_id="apikey_01A")
    with pytest.raises(ValueError):
        emu.add_key("b", value=k.secret)
    with pytest.raises(ValueError):
        emu.add_key("b", status="expired")
    with pytest.raises(ValueError):
        emu.set_status(k.key_id, "expired")
    with pytest.raises(KeyError):
        emu.key_status("apikey_01Nope")
    assert "sk-ant-api03-aAA" not in repr(k)


def test_registered_and_cli() -> None:
    assert EMULATORS["anthropic"] is AnthropicEmulator
    env = {k: v for k, v in os.environ.items() if k != "LLM_EMULATOR_ADMIN_KEY"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "llm_emulators", "anthropic"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        assert info["provider"] == "anthropic" and info["base_url"] == info["url"] + "/v1"
        assert info["admin_key"].startswith("sk-ant-admin01-")
        headers = {"x-api-key": info["admin_key"], "anthropic-version": VERSION}
        r = httpx.get(info["base_url"] + KEYS, headers=headers, timeout=10)
        assert r.status_code == 200 and r.json()["data"] == []
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
