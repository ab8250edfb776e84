"""go-plugin's broker, plugin side: learn where the host serves Storage/SystemView, and dial back to it.

The host opens one StartStream and sends a ConnInfo for each service id it listens for (Vault's backend
client sends the id in SetupArgs.broker_id). It may arrive just before or just after Setup, so dialling waits.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc

from vaultplugin.bridge import TlsClientBridge
from vaultplugin.proto import go_plugin_pb2

log = logging.getLogger(__name__)

GRPC_OPTIONS = [
    ("grpc.max_send_message_length", 2**31 - 1),
    ("grpc.max_receive_message_length", 2**31 - 1),
]


class Broker:
    def __init__(self, private_dir: Path, client_ctx: ssl.SSLContext) -> None:
        self._private_dir = private_dir
        self._ctx = client_ctx
        self._known: dict[int, tuple[str, str]] = {}
        self._cond = threading.Condition()
        self._bridges: list[TlsClientBridge] = []

    def start_stream(self, requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
        """Serve plugin.GRPCBroker/StartStream: record every ConnInfo until the host closes the stream."""
        for info in requests:
            if info.HasField("knock") and info.knock.knock:
                continue  # knocks belong to gRPC multiplexing, which OpenBao does not use
            with self._cond:
                self._known[info.service_id] = (info.network, info.address)
                self._cond.notify_all()
            log.debug("broker announced service %d on %s", info.service_id, info.network)
        return
        yield go_plugin_pb2.ConnInfo()  # pragma: no cover - makes this a (never-yielding) generator

    def dial(self, service_id: int, timeout: float = 10.0) -> grpc.Channel:
        """A plaintext grpcio channel whose bytes reach the host's service `service_id` over mutual TLS."""
        with self._cond:
            if not self._cond.wait_for(lambda: service_id in self._known, timeout=timeout):
                raise TimeoutError(f"the host did not announce broker service {service_id} within {timeout:.0f}s")
            network, address = self._known[service_id]
        path = str(self._private_dir / f"broker-{service_id}-{len(self._bridges)}.sock")
        self._bridges.append(TlsClientBridge(path, network, address, self._ctx))
        return grpc.insecure_channel(f"unix:{path}", options=GRPC_OPTIONS)

    def close(self) -> None:
        for bridge in self._bridges:
            bridge.close()
