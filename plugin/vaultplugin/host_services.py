"""Clients for the services Vault serves back to the plugin over the broker: Storage and SystemView."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from vaultplugin.framework.errors import ReadOnlyStorage, VaultError, asks_to_forward
from vaultplugin.framework.logical import Alias, Entity, Group, StorageError
from vaultplugin.proto import backend_pb2 as pb
from vaultplugin.transport.grpc_client import RpcError, UnaryClient
from vaultplugin.wire import ns_to_seconds

# Storage calls are short; a stuck host must not hang a request forever.
_CALL_TIMEOUT = 30.0


def _invoke(client: UnaryClient, method: str, request: Any, reply_type: Any) -> Any:
    return reply_type.FromString(client.call(method, request.SerializeToString(), _CALL_TIMEOUT))


class GrpcStorage:
    """The mount's barrier storage, reached through the host. Errors arrive in-band as `err` strings."""

    def __init__(self, client: UnaryClient) -> None:
        self._client = client

    def _call(self, name: str, request: Any, reply_type: Any) -> Any:
        try:
            reply = _invoke(self._client, f"/pb.Storage/{name}", request, reply_type)
        except RpcError as exc:
            raise StorageError(f"storage {name.lower()} failed: {exc}") from None
        if reply.err:
            message = f"storage {name.lower()} failed: {reply.err}"
            if asks_to_forward(reply.err):
                # A standby's storage is read-only: this text must reach the host unchanged (it forwards).
                raise ReadOnlyStorage(message)
            raise StorageError(message)
        return reply

    def get(self, key: str) -> bytes | None:
        reply = self._call("Get", pb.StorageGetArgs(key=key), pb.StorageGetReply)
        return bytes(reply.entry.value) if reply.HasField("entry") else None

    def put(self, key: str, value: bytes) -> None:
        self._call("Put", pb.StoragePutArgs(entry=pb.StorageEntry(key=key, value=value)), pb.StoragePutReply)

    def delete(self, key: str) -> None:
        self._call("Delete", pb.StorageDeleteArgs(key=key), pb.StorageDeleteReply)

    def list(self, prefix: str) -> list[str]:
        return list(self._call("List", pb.StorageListArgs(prefix=prefix), pb.StorageListReply).keys)


def _frozen_map(pairs: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(pairs))


def _alias(a: Any) -> Alias:
    return Alias(
        id=a.ID,
        mount_accessor=a.mount_accessor,
        mount_type=a.mount_type,
        name=a.name,
        metadata=_frozen_map(a.metadata),
        custom_metadata=_frozen_map(a.custom_metadata),
        namespace_id=a.namespace_id,
        local=a.local,
    )


def _entity(e: Any) -> Entity:
    return Entity(
        id=e.ID,
        name=e.name,
        metadata=_frozen_map(e.metadata),
        disabled=e.disabled,
        namespace_id=e.namespace_id,
        aliases=tuple(_alias(a) for a in e.aliases),
    )


def _group(g: Any) -> Group:
    return Group(id=g.ID, name=g.name, metadata=_frozen_map(g.metadata), namespace_id=g.namespace_id)


class GrpcSystemView:
    """Mount facts from the host. TTLs are read live: an operator may tune the mount at any time.
    Errors of the TTL and replication calls raise RpcError; the identity calls raise VaultError."""

    def __init__(self, client: UnaryClient) -> None:
        self._client = client

    def default_lease_ttl(self) -> float:
        return ns_to_seconds(
            _invoke(self._client, "/pb.SystemView/DefaultLeaseTTL", pb.Empty(), pb.TTLReply).TTL
        )

    def max_lease_ttl(self) -> float:
        return ns_to_seconds(_invoke(self._client, "/pb.SystemView/MaxLeaseTTL", pb.Empty(), pb.TTLReply).TTL)

    def replication_state(self) -> int:
        reply = _invoke(self._client, "/pb.SystemView/ReplicationState", pb.Empty(), pb.ReplicationStateReply)
        return int(reply.state)

    def _identity_call(self, name: str, entity_id: str, reply_type: Any) -> Any:
        try:
            reply = _invoke(
                self._client, f"/pb.SystemView/{name}", pb.EntityInfoArgs(entity_id=entity_id), reply_type
            )
        except RpcError as exc:
            raise VaultError(f"could not look up the requesting entity ({name}): {exc}") from None
        if reply.err:
            raise VaultError(f"could not look up the requesting entity ({name}): {reply.err}")
        return reply

    def entity_info(self, entity_id: str) -> Entity | None:
        if not entity_id:
            return None  # the host would answer "none" too: spare the call
        reply = self._identity_call("EntityInfo", entity_id, pb.EntityInfoReply)
        return _entity(reply.entity) if reply.HasField("entity") else None

    def groups_for_entity(self, entity_id: str) -> tuple[Group, ...]:
        if not entity_id:
            return ()
        reply = self._identity_call("GroupsForEntity", entity_id, pb.GroupsForEntityReply)
        return tuple(_group(g) for g in reply.groups)
