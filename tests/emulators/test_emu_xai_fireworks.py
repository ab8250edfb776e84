"""The xAI and Fireworks emulators, in-process and over a loopback server: the documented shapes, strict
validation (never kinder than a gRPC gateway), the secret shown once, auth, and inference that honours
deletion, expiry and (xAI) ACLs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from emu_support import T0, FakeClock, Harness, harness
from llm_emulators import EMULATORS, FireworksEmulator, XAIEmulator

KEYS = "/auth/teams/team-emulator/api-keys"
FW = "/v1/accounts/emulator-account/users/vault-service-account/apiKeys"
CHAT = {"model": "grok-4", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def xai_h(mode: str, clock: FakeClock) -> Iterator[Harness]:
    yield from harness(XAIEmulator(clock=clock), mode)


@pytest.fixture
def fw_h(mode: str, clock: FakeClock) -> Iterator[Harness]:
    yield from harness(FireworksEmulator(clock=clock), mode)


def grpc_error(resp: httpx.Response, status: int, code: int) -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"code", "message", "details"} and body["code"] == code, body
    return str(body["message"])


def test_registered_for_the_cli() -> None:
    assert EMULATORS["xai"] is XAIEmulator and EMULATORS["fireworks"] is FireworksEmulator


# --- xAI ------------------------------------------------------------------------------------------------


def xai_create(admin: httpx.Client, **body: Any) -> dict[str, Any]:
    resp = admin.post(
        KEYS, json={"name": "vault-1", "acls": ["api-key:model:*", "api-key:endpoint:*"], **body}
    )
    assert resp.status_code == 200, resp.text
    data: dict[str, Any] = resp.json()
    return data


def test_xai_lifecycle(xai_h: Harness, clock: FakeClock) -> None:
    admin, inference = xai_h.admin(), xai_h.client(root=True)
    key = xai_create(admin, expireTime="2027-06-01T00:00:00Z", qps=5)
    secret = key["apiKey"]
    assert secret.startswith("xai-") and secret not in key["redactedApiKey"]
    assert key["name"] == "vault-1" and key["teamId"] == "team-emulator" and key["qps"] == 5
    assert key["expireTime"].startswith("2027-06-01T00:00:00") and key["createTime"].endswith("Z")
    assert key["aclStrings"] == ["api-key:model:*", "api-key:endpoint:*"]

    listed = admin.get(KEYS).json()["apiKeys"]
    assert [k["apiKeyId"] for k in listed] == [key["apiKeyId"]]
    assert "apiKey" not in listed[0]  # the secret is shown once

    auth = {"Authorization": f"Bearer {secret}"}
    assert inference.post("/v1/chat/completions", json=CHAT, headers=auth).status_code == 200
    assert admin.delete(f"/auth/api-keys/{key['apiKeyId']}").json() == {}
    gone = inference.post("/v1/chat/completions", json=CHAT, headers=auth)
    assert gone.status_code == 400 and "Incorrect API key" in gone.json()["error"]
    grpc_error(admin.delete(f"/auth/api-keys/{key['apiKeyId']}"), 404, 5)
    assert admin.get(KEYS).json() == {"apiKeys": []}


def test_xai_expiry_acls_and_validation(xai_h: Harness, clock: FakeClock) -> None:
    admin, inference = xai_h.admin(), xai_h.client(root=True)
    soon = xai_create(admin, expireTime="2027-06-01T00:00:00+00:00")
    clock.now = 1_800_000_000.0 + 10**8  # far past that expiry
    expired = inference.post(
        "/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {soon['apiKey']}"}
    )
    assert expired.status_code == 403
    clock.now = T0

    bare = admin.post(KEYS, json={"name": "no-acls"}).json()  # no ACL: the key can call nothing
    assert (
        inference.post(
            "/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {bare['apiKey']}"}
        ).status_code
        == 403
    )
    one = xai_create(admin, acls=["api-key:model:grok-3", "api-key:endpoint:chat"])
    auth = {"Authorization": f"Bearer {one['apiKey']}"}
    assert (
        inference.post("/v1/chat/completions", json={**CHAT, "model": "grok-3"}, headers=auth).status_code
        == 200
    )
    assert inference.post("/v1/chat/completions", json=CHAT, headers=auth).status_code == 403

    assert "unknown field" in grpc_error(admin.post(KEYS, json={"name": "x", "limit": 1}), 400, 3)
    grpc_error(admin.post(KEYS, json={"name": " "}), 400, 3)
    grpc_error(admin.post(KEYS, json={"name": "x", "acls": ["everything"]}), 400, 3)
    grpc_error(admin.post(KEYS, json={"name": "x", "expireTime": "tomorrow"}), 400, 3)
    grpc_error(admin.post("/auth/teams/other/api-keys", json={"name": "x"}), 404, 5)


def test_xai_auth(xai_h: Harness) -> None:
    key = xai_create(xai_h.admin())
    grpc_error(xai_h.client().get(KEYS), 401, 16)
    grpc_error(xai_h.client("not-the-key").get(KEYS), 401, 16)
    grpc_error(xai_h.client(key["apiKey"]).get(KEYS), 401, 16)  # an API key is not a management key
    mgmt = {"Authorization": f"Bearer {xai_h.emu.admin_key}"}
    assert xai_h.client(root=True).post("/v1/chat/completions", json=CHAT, headers=mgmt).status_code == 400


def test_xai_pages_when_a_page_size_is_set(xai_h: Harness) -> None:
    admin = xai_h.admin()
    ids = [xai_create(admin, name=f"k{i}")["apiKeyId"] for i in range(5)]
    xai_h.emu.set_page_size(2)
    seen, params = [], {}
    while True:
        body = admin.get(KEYS, params=params).json()
        seen += [k["apiKeyId"] for k in body["apiKeys"]]
        if "nextPageToken" not in body:
            break
        params = {"pageToken": body["nextPageToken"]}
    assert seen == ids


# --- Fireworks ------------------------------------------------------------------------------------------


def fw_create(admin: httpx.Client, **api_key: Any) -> dict[str, Any]:
    resp = admin.post(FW, json={"apiKey": {"displayName": "vault-1", **api_key}})
    assert resp.status_code == 200, resp.text
    data: dict[str, Any] = resp.json()
    return data


def test_fireworks_lifecycle(fw_h: Harness, clock: FakeClock) -> None:
    admin, inference = fw_h.admin(), fw_h.client(root=True)
    key = fw_create(admin, expireTime="2027-06-01T00:00:00Z")
    assert key["key"].startswith("fw_") and key["displayName"] == "vault-1"
    assert key["expireTime"].startswith("2027-06-01T00:00:00") and key["email"].startswith(
        "vault-service-account@"
    )
    listed = admin.get(FW).json()
    assert listed["totalSize"] == 1 and listed["nextPageToken"] == ""
    assert [k["keyId"] for k in listed["apiKeys"]] == [key["keyId"]] and "key" not in listed["apiKeys"][0]

    auth = {"Authorization": f"Bearer {key['key']}"}
    assert inference.post("/inference/v1/chat/completions", json=CHAT, headers=auth).status_code == 200
    assert admin.post(FW + ":delete", json={"keyId": key["keyId"]}).json() == {}
    assert inference.post("/inference/v1/chat/completions", json=CHAT, headers=auth).status_code == 401
    grpc_error(admin.post(FW + ":delete", json={"keyId": key["keyId"]}), 404, 5)
    assert admin.get(FW).json() == {"nextPageToken": "", "totalSize": 0}  # proto3 leaves [] out
    assert fw_create(admin, displayName="")["displayName"] == "default"


def test_fireworks_expiry_and_validation(fw_h: Harness, clock: FakeClock) -> None:
    admin, inference = fw_h.admin(), fw_h.client(root=True)
    key = fw_create(admin, expireTime="2027-06-01T00:00:00Z")
    clock.advance(10**8)
    expired = inference.post(
        "/inference/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {key['key']}"}
    )
    assert expired.status_code == 401
    clock.now = T0

    grpc_error(admin.post(FW, json={"displayName": "flat"}), 400, 3)  # the body is wrapped in apiKey
    grpc_error(admin.post(FW, json={"apiKey": {"displayName": "x", "scopes": []}}), 400, 3)
    grpc_error(admin.post(FW, json={"apiKey": {"expireTime": "2020-01-01T00:00:00Z"}}), 400, 3)
    grpc_error(admin.post(FW, json={"apiKey": {"expireTime": "2030-01-01T00:00:00Z"}}), 400, 3)  # > 1 year
    grpc_error(admin.post(FW + ":delete", json={}), 400, 3)
    grpc_error(admin.get("/v1/accounts/other/users/vault-service-account/apiKeys"), 403, 7)
    grpc_error(admin.get("/v1/accounts/emulator-account/users/nobody/apiKeys"), 404, 5)
    grpc_error(fw_h.client(key["key"]).get("/v1/accounts/emulator-account/users/other/apiKeys"), 403, 7)
    grpc_error(fw_h.client("wrong").get(FW), 401, 16)


def test_fireworks_pages_by_page_number(fw_h: Harness) -> None:
    admin = fw_h.admin()
    ids = [fw_create(admin, displayName=f"k{i}")["keyId"] for i in range(5)]
    first = admin.get(FW, params={"pageSize": 2}).json()
    assert first["totalSize"] == 5 and first["nextPageToken"] == "1"
    seen, token = [k["keyId"] for k in first["apiKeys"]], first["nextPageToken"]
    while token:
        body = admin.get(FW, params={"pageSize": 2, "pageToken": token}).json()
        seen += [k["keyId"] for k in body["apiKeys"]]
        token = body["nextPageToken"]
    assert seen == ids
    assert len(admin.get(FW).json()["apiKeys"]) == 5  # no page size: one page


def test_fireworks_an_issued_key_manages_only_its_own_users_keys(fw_h: Harness) -> None:
    """The worse case, emulated: a leased key can mint a key for its own user that its lease does not own."""
    issued = fw_create(fw_h.admin())
    as_user = fw_h.client(issued["key"])
    assert [k["keyId"] for k in as_user.get(FW).json()["apiKeys"]] == [issued["keyId"]]
    minted = as_user.post(FW, json={"apiKey": {"displayName": "not-vault"}})
    assert minted.status_code == 200 and minted.json()["key"].startswith("fw_")
    assert as_user.post(FW + ":delete", json={"keyId": minted.json()["keyId"]}).json() == {}
    fw_h.admin().post(FW + ":delete", json={"keyId": issued["keyId"]})
    grpc_error(as_user.get(FW), 401, 16)  # a deleted key acts as nobody
