"""The gRPC services a plugin process serves to the host, as a table of methods for the h2 server.

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

from google.protobuf import empty_pb2

from vaultplugin.broker import Broker
from vaultplugin.framework.errors import BadRequest, ErrType
from vaultplugin.framework.logical import Request, Response, SpecialPaths, Storage, SystemView
from vaultplugin.host_services import GrpcStorage, GrpcSystemView
from vaultplugin.proto import backend_pb2 as pb
from vaultplugin.proto import go_plugin_pb2, health_pb2, multiplexing_pb2, version_pb2
from vaultplugin.transport.grpc_server import Kind, Method
from vaultplugin.wire import error_to_pb, request_from_pb, response_to_pb

log = logging.getLogger(__name__)

BACKEND_TYPE_LOGICAL = 1
_SHUTDOWN_REPLY_GRACE_SECONDS = 0.1
# Vault's expiration manager reads an error *response* to a renew or revoke as a failure whose message is
# a dump of the response; an error reply keeps its status (400) and message.
_LEASE_OPERATIONS = ("renew", "revoke")


class PluginBackend(Protocol):
    """What the server needs from a backend (vaultplugin.framework.Backend provides it)."""

    def setup(self, config: dict[str, str], system: SystemView) -> None: ...

    def initialize(self, storage: Storage) -> None: ...

    def handle_request(self, req: Request) -> Response | None: ...

    def runs_on_hub(self, operation: str) -> bool: ...

    def handle_existence_check(self, req: Request) -> tuple[bool, bool]: ...

    def special_paths(self) -> SpecialPaths: ...

    def cleanup(self) -> None: ...

    def invalidate(self, key: str) -> None: ...


BackendFactory = Callable[[], PluginBackend]


class PluginServer:
    """State shared by the services of one plugin process."""

    def __init__(
        self, factory: BackendFactory, version: str, broker: Broker, shutdown: threading.Event
    ) -> None:
        self._factory = factory
        self._version = version
        self._broker = broker
        self._shutdown = shutdown
        self._backend: PluginBackend | None = None
        self._storage: Storage | None = None
        self.setup_failed = threading.Event()

    # ---- pb.Backend ----------------------------------------------------------------------------------------

    def _require_backend(self) -> tuple[PluginBackend, Storage | None]:
        if self._backend is None:
            raise RuntimeError("the backend was called before Setup")
        return self._backend, self._storage

    def setup(self, args: Any) -> Any:
        try:
            host = self._broker.dial(args.broker_id)
            system = GrpcSystemView(host)
            backend = self._factory()
            config = dict(args.Config)
            config["backend_uuid"] = args.backendUUID  # stable per mount: lets a backend tag what it creates
            backend.setup(config, system)
            self._storage = GrpcStorage(host)
            self._backend = backend
            return pb.SetupReply()
        except Exception as exc:
            log.error("plugin setup failed", exc_info=exc)
            self.setup_failed.set()
            # An empty err is read as success by the host: always say something.
            return pb.SetupReply(err=f"plugin setup failed: {type(exc).__name__}: {exc}")

    def initialize(self, _args: Any) -> Any:
        try:
            backend, storage = self._require_backend()
            if storage is None:
                raise RuntimeError("no storage")
            backend.initialize(storage)
            return pb.InitializeReply()
        except Exception as exc:
            return pb.InitializeReply(err=error_to_pb(exc, "initialize"))

    def handle_request(self, args: Any) -> Any:
        try:
            backend, storage = self._require_backend()
            try:
                req = request_from_pb(args.request, storage)
            except (ValueError, json.JSONDecodeError) as exc:
                raise BadRequest(f"malformed request: {exc}") from None
            resp = backend.handle_request(req)
            return (
                pb.HandleRequestReply()
                if resp is None
                else pb.HandleRequestReply(response=response_to_pb(resp))
            )
        except BadRequest as exc:
            if args.request.operation in _LEASE_OPERATIONS:
                return pb.HandleRequestReply(
                    err=error_to_pb(exc, f"{args.request.operation} {args.request.path}")
                )
            # As Go engines answer bad input (logical.ErrorResponse): Vault replies 400 with exactly this
            # message, where an error reply would reach the caller wrapped as "1 error occurred: ...".
            return pb.HandleRequestReply(response=response_to_pb(Response(data={"error": exc.message})))
        except Exception as exc:
            return pb.HandleRequestReply(
                err=error_to_pb(exc, f"{args.request.operation} {args.request.path}")
            )

    def handle_existence_check(self, args: Any) -> Any:
        try:
            backend, storage = self._require_backend()
            found, exists = backend.handle_existence_check(request_from_pb(args.request, storage))
            return pb.HandleExistenceCheckReply(check_found=found, exists=exists)
        except Exception as exc:
            err = error_to_pb(exc, f"existence check {args.request.path}")
            if err.err_type == ErrType.BAD_REQUEST:
                # Vault passes only a "user error" from an existence check on as a 400; any other is a 500.
                err.err_type = ErrType.USER_ERROR
            return pb.HandleExistenceCheckReply(err=err)

    def special_paths(self, _args: Any) -> Any:
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

    def cleanup(self, _args: Any) -> Any:
        if self._backend is not None:
            try:
                self._backend.cleanup()
            except Exception as exc:
                log.error("backend cleanup failed", exc_info=exc)
        # The host now stops its broker server gracefully, which waits for our idle connections to close.
        self._broker.close()
        return pb.Empty()

    def invalidate_key(self, args: Any) -> Any:
        if self._backend is not None:
            try:
                self._backend.invalidate(args.key)
            except Exception as exc:
                log.error("invalidate failed", exc_info=exc)
        return pb.Empty()

    def type(self, _args: Any) -> Any:
        return pb.TypeReply(type=BACKEND_TYPE_LOGICAL)

    # ---- go-plugin and Vault housekeeping ------------------------------------------------------------------

    def controller_shutdown(self, _args: Any) -> Any:
        log.debug("the host asked the plugin to shut down")
        # Stop once this reply has had time to leave: set at once, the main thread could close the connection
        # under the reply, and the host would see "socket closed" instead of an answer (seen under load).
        stop = threading.Timer(_SHUTDOWN_REPLY_GRACE_SECONDS, self._shutdown.set)
        stop.daemon = True
        stop.start()
        return go_plugin_pb2.Empty()

    def stream_stdio(self, _args: Any) -> Iterator[Any]:
        # Held open until shutdown; logs go to stderr, which the host reads directly.
        self._shutdown.wait()
        return iter(())

    def health_check(self, args: Any) -> Any:
        serving = args.service in ("", "plugin")
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
        )
        return health_pb2.HealthCheckResponse(status=status)

    def multiplexing_support(self, _args: Any) -> Any:
        return multiplexing_pb2.MultiplexingSupportResponse(supported=False)

    def plugin_version(self, _args: Any) -> Any:
        return version_pb2.VersionReply(plugin_version=self._version)

    # ---- registration --------------------------------------------------------------------------------------

    def methods(self) -> dict[str, Method]:
        def unary(
            fn: Callable[[Any], Any], request: Any, cooperative: Callable[[Any], bool] | None = None
        ) -> Method:
            return Method(Kind.UNARY, request, fn, cooperative)

        def always(_request: Any) -> bool:
            return True  # answered from memory

        def when_the_backend_says(args: Any) -> bool:
            backend = self._backend
            return backend is not None and backend.runs_on_hub(args.request.operation)

        return {
            "/pb.Backend/Setup": unary(self.setup, pb.SetupArgs),
            "/pb.Backend/Initialize": unary(self.initialize, pb.InitializeArgs),
            "/pb.Backend/HandleRequest": unary(
                self.handle_request, pb.HandleRequestArgs, when_the_backend_says
            ),
            "/pb.Backend/HandleExistenceCheck": unary(
                self.handle_existence_check, pb.HandleExistenceCheckArgs
            ),
            "/pb.Backend/SpecialPaths": unary(self.special_paths, pb.Empty, always),
            "/pb.Backend/Cleanup": unary(self.cleanup, pb.Empty),
            "/pb.Backend/InvalidateKey": unary(self.invalidate_key, pb.InvalidateKeyArgs),
            "/pb.Backend/Type": unary(self.type, pb.Empty, always),
            "/plugin.GRPCBroker/StartStream": Method(
                Kind.BIDI_STREAM, go_plugin_pb2.ConnInfo, self._broker.accept
            ),
            "/plugin.GRPCController/Shutdown": unary(self.controller_shutdown, go_plugin_pb2.Empty),
            "/plugin.GRPCStdio/StreamStdio": Method(Kind.SERVER_STREAM, empty_pb2.Empty, self.stream_stdio),
            "/grpc.health.v1.Health/Check": unary(self.health_check, health_pb2.HealthCheckRequest, always),
            "/pluginutil.multiplexing.PluginMultiplexing/MultiplexingSupport": unary(
                self.multiplexing_support, multiplexing_pb2.MultiplexingSupportRequest
            ),
            "/logical.PluginVersion/Version": unary(self.plugin_version, version_pb2.Empty, always),
        }
