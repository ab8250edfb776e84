"""The gRPC services a plugin process serves to the host, wired with generic handlers.

Services: pb.Backend (the engine), plugin.GRPCBroker, plugin.GRPCController, plugin.GRPCStdio,
grpc.health.v1.Health, pluginutil.multiplexing.PluginMultiplexing (answers false: one process a mount,
so mounts are isolated from each other's faults) and logical.PluginVersion.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import grpc
from google.protobuf import empty_pb2

from vaultplugin.broker import Broker
from vaultplugin.framework.errors import BadRequest
from vaultplugin.framework.logical import Request, Response, SpecialPaths, Storage, SystemView
from vaultplugin.host_services import GrpcStorage, GrpcSystemView
from vaultplugin.proto import backend_pb2 as pb
from vaultplugin.proto import go_plugin_pb2, health_pb2, multiplexing_pb2, version_pb2
from vaultplugin.wire import error_to_pb, request_from_pb, response_to_pb

log = logging.getLogger(__name__)

BACKEND_TYPE_LOGICAL = 1


class PluginBackend(Protocol):
    """What the server needs from a backend (vaultplugin.framework.Backend provides it)."""

    def setup(self, config: dict[str, str], system: SystemView) -> None: ...

    def initialize(self, storage: Storage) -> None: ...

    def handle_request(self, req: Request) -> Response | None: ...

    def handle_existence_check(self, req: Request) -> tuple[bool, bool]: ...

    def special_paths(self) -> SpecialPaths: ...

    def cleanup(self) -> None: ...

    def invalidate(self, key: str) -> None: ...


BackendFactory = Callable[[], PluginBackend]


class PluginServer:
    """State shared by the services of one plugin process."""

    def __init__(self, factory: BackendFactory, version: str, broker: Broker, shutdown: threading.Event) -> None:
        self._factory = factory
        self._version = version
        self._broker = broker
        self._shutdown = shutdown
        self._backend: PluginBackend | None = None
        self._storage: Storage | None = None
        self.setup_failed = threading.Event()

    # ---- pb.Backend -------------------------------------------------------------------------------------------

    def _require_backend(self) -> tuple[PluginBackend, Storage | None]:
        if self._backend is None:
            raise RuntimeError("the backend was called before Setup")
        return self._backend, self._storage

    def setup(self, args: Any, _ctx: grpc.ServicerContext) -> Any:
        try:
            channel = self._broker.dial(args.broker_id)
            system = GrpcSystemView(channel)
            backend = self._factory()
            backend.setup(dict(args.Config), system)
            self._storage = GrpcStorage(channel)
            self._backend = backend
            return pb.SetupReply()
        except Exception as exc:
            log.error("plugin setup failed", exc_info=exc)
            self.setup_failed.set()
            # An empty err is read as success by the host: always say something.
            return pb.SetupReply(err=f"plugin setup failed: {type(exc).__name__}: {exc}" or "plugin setup failed")

    def initialize(self, _args: Any, _ctx: grpc.ServicerContext) -> Any:
        try:
            backend, storage = self._require_backend()
            if storage is None:
                raise RuntimeError("no storage")
            backend.initialize(storage)
            return pb.InitializeReply()
        except Exception as exc:
            return pb.InitializeReply(err=error_to_pb(exc, "initialize"))

    def handle_request(self, args: Any, _ctx: grpc.ServicerContext) -> Any:
        try:
            backend, storage = self._require_backend()
            try:
                req = request_from_pb(args.request, storage)
            except (ValueError, json.JSONDecodeError) as exc:
                raise BadRequest(f"malformed request: {exc}") from None
            resp = backend.handle_request(req)
            return pb.HandleRequestReply() if resp is None else pb.HandleRequestReply(response=response_to_pb(resp))
        except Exception as exc:
            return pb.HandleRequestReply(err=error_to_pb(exc, f"{args.request.operation} {args.request.path}"))

    def handle_existence_check(self, args: Any, _ctx: grpc.ServicerContext) -> Any:
        try:
            backend, storage = self._require_backend()
            found, exists = backend.handle_existence_check(request_from_pb(args.request, storage))
            return pb.HandleExistenceCheckReply(check_found=found, exists=exists)
        except Exception as exc:
            return pb.HandleExistenceCheckReply(err=error_to_pb(exc, f"existence check {args.request.path}"))

    def special_paths(self, _args: Any, _ctx: grpc.ServicerContext) -> Any:
        backend, _ = self._require_backend()
        sp = backend.special_paths()
        return pb.SpecialPathsReply(
            paths=pb.Paths(
                root=sp.root,
                unauthenticated=sp.unauthenticated,
                local_storage=sp.local_storage,
                seal_wrap_storage=sp.seal_wrap_storage,
            )
        )

    def cleanup(self, _args: Any, _ctx: grpc.ServicerContext) -> Any:
        if self._backend is not None:
            try:
                self._backend.cleanup()
            except Exception as exc:
                log.error("backend cleanup failed", exc_info=exc)
        return pb.Empty()

    def invalidate_key(self, args: Any, _ctx: grpc.ServicerContext) -> Any:
        if self._backend is not None:
            try:
                self._backend.invalidate(args.key)
            except Exception as exc:
                log.error("invalidate failed", exc_info=exc)
        return pb.Empty()

    def type(self, _args: Any, _ctx: grpc.ServicerContext) -> Any:
        return pb.TypeReply(type=BACKEND_TYPE_LOGICAL)

    # ---- go-plugin and Vault housekeeping ---------------------------------------------------------------------

    def controller_shutdown(self, _args: Any, _ctx: grpc.ServicerContext) -> Any:
        log.debug("the host asked the plugin to shut down")
        self._shutdown.set()
        return go_plugin_pb2.Empty()

    def stream_stdio(self, _args: Any, _ctx: grpc.ServicerContext) -> Iterator[Any]:
        # Held open until shutdown; logs go to stderr, which the host reads directly.
        self._shutdown.wait()
        return
        yield go_plugin_pb2.StdioData()  # pragma: no cover - makes this a (never-yielding) generator

    def health_check(self, args: Any, _ctx: grpc.ServicerContext) -> Any:
        serving = args.service in ("", "plugin")
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
        return health_pb2.HealthCheckResponse(status=status)

    def multiplexing_support(self, _args: Any, _ctx: grpc.ServicerContext) -> Any:
        return multiplexing_pb2.MultiplexingSupportResponse(supported=False)

    def plugin_version(self, _args: Any, _ctx: grpc.ServicerContext) -> Any:
        return version_pb2.VersionReply(plugin_version=self._version)

    # ---- registration -----------------------------------------------------------------------------------------

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        def unary(fn: Callable[[Any, grpc.ServicerContext], Any], request: Any) -> grpc.RpcMethodHandler:
            return grpc.unary_unary_rpc_method_handler(
                fn, request_deserializer=request.FromString, response_serializer=lambda m: m.SerializeToString()
            )

        def stream(fn: Callable[[Any, grpc.ServicerContext], Iterator[Any]], request: Any) -> grpc.RpcMethodHandler:
            return grpc.unary_stream_rpc_method_handler(
                fn, request_deserializer=request.FromString, response_serializer=lambda m: m.SerializeToString()
            )

        broker_stream = grpc.stream_stream_rpc_method_handler(
            self._broker.start_stream,
            request_deserializer=go_plugin_pb2.ConnInfo.FromString,
            response_serializer=lambda m: m.SerializeToString(),
        )
        services: dict[str, dict[str, grpc.RpcMethodHandler]] = {
            "pb.Backend": {
                "Setup": unary(self.setup, pb.SetupArgs),
                "Initialize": unary(self.initialize, pb.InitializeArgs),
                "HandleRequest": unary(self.handle_request, pb.HandleRequestArgs),
                "HandleExistenceCheck": unary(self.handle_existence_check, pb.HandleExistenceCheckArgs),
                "SpecialPaths": unary(self.special_paths, pb.Empty),
                "Cleanup": unary(self.cleanup, pb.Empty),
                "InvalidateKey": unary(self.invalidate_key, pb.InvalidateKeyArgs),
                "Type": unary(self.type, pb.Empty),
            },
            "plugin.GRPCBroker": {"StartStream": broker_stream},
            "plugin.GRPCController": {"Shutdown": unary(self.controller_shutdown, go_plugin_pb2.Empty)},
            "plugin.GRPCStdio": {"StreamStdio": stream(self.stream_stdio, empty_pb2.Empty)},
            "grpc.health.v1.Health": {"Check": unary(self.health_check, health_pb2.HealthCheckRequest)},
            "pluginutil.multiplexing.PluginMultiplexing": {
                "MultiplexingSupport": unary(self.multiplexing_support, multiplexing_pb2.MultiplexingSupportRequest)
            },
            "logical.PluginVersion": {"Version": unary(self.plugin_version, version_pb2.Empty)},
        }
        return [grpc.method_handlers_generic_handler(name, methods) for name, methods in services.items()]
