"""Clients for the services Vault serves back to the plugin over the broker: Storage and SystemView."""

from __future__ import annotations

from typing import Any

from vaultplugin.framework.errors import ReadOnlyStorage, asks_to_forward
from vaultplugin.framework.logical import StorageError
from vaultplugin.grpc_client import RpcError, UnaryClient
from vaultplugin.proto import backend_pb2 as pb
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


class GrpcSystemView:
    """Mount facts from the host. TTLs are read live: an operator may tune the mount at any time.
    Errors raise (RpcError)."""

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
