"""GrpcSystemView's identity calls: the bytes they send, what they make of the host's replies, and errors."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from vaultplugin.framework import Alias, Entity, Group, VaultError
from vaultplugin.host_services import GrpcSystemView
from vaultplugin.proto import backend_pb2 as pb
from vaultplugin.transport.grpc_client import RpcError


class ScriptedHost:
    """Answers each call with what `answer(method, request bytes)` returns (bytes), or raises."""

    def __init__(self, answer: Callable[[str, bytes], bytes]) -> None:
        self.answer = answer
        self.calls: list[tuple[str, bytes]] = []

    def call(self, method: str, payload: bytes, timeout: float) -> bytes:
        self.calls.append((method, payload))
        return self.answer(method, payload)


def _view(answer: Callable[[str, bytes], bytes]) -> tuple[GrpcSystemView, ScriptedHost]:
    host = ScriptedHost(answer)
    return GrpcSystemView(host), host  # type: ignore[arg-type]


ENTITY = pb.Entity(
    ID="e-1",
    name="svc",
    metadata={"team": "payments"},
    disabled=True,
    namespace_id="root",
    aliases=[
        pb.Alias(
            ID="a-1",
            mount_accessor="auth_userpass_1234",
            mount_type="userpass",
            name="alice",
            metadata={"m": "1"},
            custom_metadata={"c": "2"},
            namespace_id="root",
            local=True,
        )
    ],
)


def test_entity_info_sends_the_id_and_maps_every_field() -> None:
    view, host = _view(lambda m, p: pb.EntityInfoReply(entity=ENTITY).SerializeToString())
    entity = view.entity_info("e-1")
    assert host.calls == [
        ("/pb.SystemView/EntityInfo", pb.EntityInfoArgs(entity_id="e-1").SerializeToString())
    ]
    assert entity == Entity(
        id="e-1",
        name="svc",
        metadata={"team": "payments"},
        disabled=True,
        namespace_id="root",
        aliases=(
            Alias(
                id="a-1",
                mount_accessor="auth_userpass_1234",
                mount_type="userpass",
                name="alice",
                metadata={"m": "1"},
                custom_metadata={"c": "2"},
                namespace_id="root",
                local=True,
            ),
        ),
    )
    assert entity is not None
    with pytest.raises(TypeError):
        entity.metadata["team"] = "other"  # type: ignore[index]  # a frozen view, not the host's dict


def test_groups_for_entity_maps_every_group() -> None:
    reply = pb.GroupsForEntityReply(
        groups=[pb.Group(ID="g-1", name="eng", metadata={"o": "b"}, namespace_id="root"), pb.Group(ID="g-2")]
    )
    view, host = _view(lambda m, p: reply.SerializeToString())
    assert view.groups_for_entity("e-1") == (
        Group(id="g-1", name="eng", metadata={"o": "b"}, namespace_id="root"),
        Group(id="g-2", name=""),
    )
    assert host.calls[0][0] == "/pb.SystemView/GroupsForEntity"


def test_no_id_costs_no_call() -> None:
    view, host = _view(lambda m, p: b"")
    assert view.entity_info("") is None
    assert view.groups_for_entity("") == ()
    assert host.calls == []


def test_the_host_knowing_no_such_entity_is_none_and_no_groups() -> None:
    view, _ = _view(lambda m, p: b"")  # an empty reply: no entity, no error, no groups
    assert view.entity_info("gone") is None
    assert view.groups_for_entity("gone") == ()


@pytest.mark.parametrize("method", ["entity_info", "groups_for_entity"])
def test_an_in_band_host_error_is_a_vault_error(method: str) -> None:
    def answer(m: str, p: bytes) -> bytes:
        reply = pb.EntityInfoReply if m.endswith("EntityInfo") else pb.GroupsForEntityReply
        return reply(err="system view identity store is nil").SerializeToString()

    view, _ = _view(answer)
    with pytest.raises(VaultError, match="identity store is nil"):
        getattr(view, method)("e-1")


@pytest.mark.parametrize("method", ["entity_info", "groups_for_entity"])
def test_a_transport_fault_is_a_vault_error(method: str) -> None:
    def answer(m: str, p: bytes) -> bytes:
        raise RpcError("connection reset", transient=True)

    view, _ = _view(answer)
    with pytest.raises(VaultError, match=r"could not look up the requesting entity.*connection reset"):
        getattr(view, method)("e-1")
