"""The misbehaving-answer faults: their validation, the control endpoint, and what they do in-process.

How they behave on the wire (trickling bytes, connections held open, the client closing first) is proven
by the slow-provider tests (tests/providers/test_slow_providers.py), which call them over real sockets.
"""

from __future__ import annotations

import httpx
import pytest
from llm_emulators import Fault, FaultKind, OpenRouterEmulator

ADMIN = "adm-wire-0123456789abcdef"


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"kind": "trickle", "seconds": 0}, "needs seconds > 0"),
        ({"kind": "slow_headers"}, "needs seconds > 0"),
        ({"kind": "huge_body", "size": 0}, "huge_body needs size >= 1"),
        ({"kind": "echo_admin_key", "status": 200}, "echo_admin_key status must be 4xx or 5xx"),
    ],
)
def test_nonsense_is_refused(fields: dict[str, object], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        Fault.from_json(fields)
    emu = OpenRouterEmulator(ADMIN)
    control = httpx.Client(transport=httpx.MockTransport(emu.handle), base_url="http://emu.test")
    answer = control.post("/_emulator/faults", json=fields)
    assert answer.status_code == 400
    assert list(emu.faults) == []


def test_the_control_endpoint_takes_wire_faults() -> None:
    emu = OpenRouterEmulator(ADMIN)
    control = httpx.Client(transport=httpx.MockTransport(emu.handle), base_url="http://emu.test")
    answer = control.post(
        "/_emulator/faults",
        json={
            "faults": [{"kind": "trickle", "seconds": 0.5, "op": "list"}, {"kind": "huge_body", "size": 1024}]
        },
    )
    assert answer.status_code == 200, answer.text
    faults = answer.json()["faults"]
    assert [(f["kind"], f["op"], f["seconds"], f["size"]) for f in faults] == [
        ("trickle", "list", 0.5, 0),
        ("huge_body", "all", 0.0, 1024),
    ]


def test_a_huge_body_is_streamed_in_process_and_nothing_is_created() -> None:
    emu = OpenRouterEmulator(ADMIN)
    emu.set_faults(Fault.huge_body(size=3 * 1024 * 1024 + 7, op="create", times=1))
    client = httpx.Client(
        transport=httpx.MockTransport(emu.handle),
        base_url=emu.base_path,
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    with client.stream("POST", "/keys", json={"name": "vault-x"}) as response:
        assert response.status_code == 200
        size = sum(len(chunk) for chunk in response.iter_raw())
    assert size == 3 * 1024 * 1024 + 7
    assert emu.create_count == 0 and emu.live_keys() == []
    assert client.post("/keys", json={"name": "vault-y"}).status_code == 201  # the fault is gone
    assert [f.kind for f in emu.faults] == []


@pytest.mark.parametrize(("status", "shape"), [(401, "application/json"), (502, "text/html")])
def test_echo_admin_key_repeats_the_key_it_was_sent(status: int, shape: str) -> None:
    emu = OpenRouterEmulator(ADMIN)
    emu.set_faults(Fault.echo_admin_key(status=status, op="list", times=1))
    client = httpx.Client(
        transport=httpx.MockTransport(emu.handle),
        base_url=emu.base_path,
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    answer = client.get("/keys")
    assert answer.status_code == status
    assert answer.headers["Content-Type"].startswith(shape)
    assert ADMIN in answer.text
    assert client.get("/keys").status_code == 200
    assert FaultKind.ECHO_ADMIN_KEY not in {f.kind for f in emu.faults}
