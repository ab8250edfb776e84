"""Clients for the services Vault serves back to the plugin over the broker: Storage and SystemView."""

from __future__ import annotations

from typing import Any

import grpc

from vaultplugin.framework.logical import StorageError
from vaultplugin.proto import backend_pb2 as pb
from vaultplugin.wire import ns_to_seconds

# Storage calls are short; a stuck host must not hang a request forever.
_STORAGE_TIMEOUT = 30.0


def _unary(channel: grpc.Channel, method: str, reply: Any) -> Any:
    return channel.unary_unary(method, request_serializer=lambda m: m.SerializeToString(),
                               response_deserializer=reply.FromString)


class GrpcStorage:
    """The mount's barrier storage, reached through the host. Errors arrive in-band as `err` strings."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._get = _unary(channel, "/pb.Storage/Get", pb.StorageGetReply)
        self._put = _unary(channel, "/pb.Storage/Put", pb.StoragePutReply)
        self._delete = _unary(channel, "/pb.Storage/Delete", pb.StorageDeleteReply)
        self._list = _unary(channel, "/pb.Storage/List", pb.StorageListReply)

    @staticmethod
    def _call(stub: Any, request: Any, what: str) -> Any:
        try:
            reply = stub(request, timeout=_STORAGE_TIMEOUT)
        except grpc.RpcError as exc:
            raise StorageError(f"storage {what} failed: {exc.code().name}") from None
        if reply.err:
            raise StorageError(f"storage {what} failed: {reply.err}")
        return reply

    def get(self, key: str) -> bytes | None:
        reply = self._call(self._get, pb.StorageGetArgs(key=key), "get")
        return bytes(reply.entry.value) if reply.HasField("entry") else None

    def put(self, key: str, value: bytes) -> None:
        self._call(self._put, pb.StoragePutArgs(entry=pb.StorageEntry(key=key, value=value)), "put")

    def delete(self, key: str) -> None:
        self._call(self._delete, pb.StorageDeleteArgs(key=key), "delete")

    def list(self, prefix: str) -> list[str]:
        return list(self._call(self._list, pb.StorageListArgs(prefix=prefix), "list").keys)


class GrpcSystemView:
    """Mount facts from the host. TTLs are read live: an operator may tune the mount at any time."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._default = _unary(channel, "/pb.SystemView/DefaultLeaseTTL", pb.TTLReply)
        self._max = _unary(channel, "/pb.SystemView/MaxLeaseTTL", pb.TTLReply)

    def default_lease_ttl(self) -> float:
        return ns_to_seconds(self._default(pb.Empty(), timeout=_STORAGE_TIMEOUT).TTL)

    def max_lease_ttl(self) -> float:
        return ns_to_seconds(self._max(pb.Empty(), timeout=_STORAGE_TIMEOUT).TTL)
