"""How the plugin server answers the host when a backend raises: the error types Vault turns into statuses."""

from __future__ import annotations

import json
import threading

import pytest
from vaultplugin.broker import Broker
from vaultplugin.framework.errors import BadRequest, ErrType, UnsupportedPath
from vaultplugin.framework.logical import Request, Response, SpecialPaths, Storage, SystemView
from vaultplugin.framework.storage import InMemoryStorage
from vaultplugin.proto import backend_pb2 as pb
from vaultplugin.server import PluginServer
from vaultplugin.transport.tls import client_context, generate_plugin_certificate


class Raising:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def setup(self, config: dict[str, str], system: SystemView) -> None: ...

    def initialize(self, storage: Storage) -> None: ...

    def handle_request(self, req: Request) -> Response | None:
        raise self.exc

    def handle_existence_check(self, req: Request) -> tuple[bool, bool]:
        raise self.exc

    def special_paths(self) -> SpecialPaths:
        return SpecialPaths()

    def cleanup(self) -> None: ...

    def invalidate(self, key: str) -> None: ...


def _server(exc: Exception, tmp_path: object) -> PluginServer:
    cert = generate_plugin_certificate()
    broker = Broker(client_context(cert, cert.cert_pem.decode(), tmp_path))  # type: ignore[arg-type]
    server = PluginServer(lambda: Raising(exc), "v0", broker, threading.Event())
    server._backend = Raising(exc)  # as after Setup
    server._storage = InMemoryStorage()
    return server


def _args(operation: str) -> pb.HandleRequestArgs:
    return pb.HandleRequestArgs(request=pb.Request(operation=operation, path="x", data="{}"))


def test_bad_input_on_a_request_is_an_error_response_vault_shows_as_is(tmp_path: object) -> None:
    reply = _server(BadRequest('invalid value for "ttl"'), tmp_path).handle_request(_args("update"))
    assert not reply.HasField("err")
    assert json.loads(reply.response.data) == {"error": 'invalid value for "ttl"'}


@pytest.mark.parametrize("operation", ["renew", "revoke"])
def test_bad_input_on_renew_or_revoke_stays_an_error_reply(operation: str, tmp_path: object) -> None:
    # Vault's expiration manager would read an error *response* as an opaque failure.
    reply = _server(BadRequest("the lease has reached its max TTL"), tmp_path).handle_request(
        _args(operation)
    )
    assert reply.err.err_type == ErrType.BAD_REQUEST
    assert reply.err.err_msg == "the lease has reached its max TTL"


def test_bad_input_found_by_an_existence_check_is_a_user_error(tmp_path: object) -> None:
    # Vault passes only a "user error" from an existence check on as a 400.
    reply = _server(BadRequest("bad"), tmp_path).handle_existence_check(_args("update"))
    assert reply.err.err_type == ErrType.USER_ERROR


def test_typed_errors_keep_their_type_and_unexpected_ones_hide_their_text(tmp_path: object) -> None:
    reply = _server(UnsupportedPath("no such path"), tmp_path).handle_request(_args("read"))
    assert reply.err.err_type == ErrType.UNSUPPORTED_PATH
    reply = _server(RuntimeError("secret detail sk-abcdefghijklmnop"), tmp_path).handle_request(_args("read"))
    assert reply.err.err_type == ErrType.INTERNAL
    assert "secret detail" not in reply.err.err_msg and "sk-" not in reply.err.err_msg
