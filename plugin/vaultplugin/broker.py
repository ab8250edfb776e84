"""go-plugin's broker, plugin side: learn where the host serves Storage/SystemView, and dial back to it.

The host opens one StartStream and sends a ConnInfo for each service id it listens for (Vault's backend
client sends the id in SetupArgs.broker_id). It may arrive just before or just after Setup, so dialling waits.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Any

from vaultplugin.transport.grpc_client import UnaryClient

log = logging.getLogger(__name__)

_CONNECT_TIMEOUT = 10.0


def connect_host(network: str, address: str) -> socket.socket:
    """Open a raw socket to an address the host announced over the broker."""
    if network == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(_CONNECT_TIMEOUT)
        sock.connect(address)
        return sock
    if network == "tcp":
        host, _, port = address.rpartition(":")
        return socket.create_connection((host.strip("[]"), int(port)), timeout=_CONNECT_TIMEOUT)
    raise ConnectionError(f"unsupported broker network {network!r}")


class Broker:
    def __init__(self, client_ctx: ssl.SSLContext) -> None:
        self._ctx = client_ctx
        self._known: dict[int, tuple[str, str]] = {}
        self._cond = threading.Condition()
        self._clients: list[UnaryClient] = []

    def accept(self, requests: Iterator[Any]) -> None:
        """Serve plugin.GRPCBroker/StartStream: record every ConnInfo until the host closes the stream."""
        for info in requests:
            if info.HasField("knock") and info.knock.knock:
                continue  # knocks belong to gRPC multiplexing, which OpenBao does not use
            with self._cond:
                self._known[info.service_id] = (info.network, info.address)
                self._cond.notify_all()
            log.debug("broker announced service %d on %s", info.service_id, info.network)

    def dial(self, service_id: int, timeout: float = 10.0) -> UnaryClient:
        """A client for the host's service `service_id`, over mutual TLS."""
        with self._cond:
            if not self._cond.wait_for(lambda: service_id in self._known, timeout=timeout):
                raise TimeoutError(
                    f"the host did not announce broker service {service_id} within {timeout:.0f}s"
                )
            network, address = self._known[service_id]
        client = UnaryClient(lambda: connect_host(network, address), self._ctx)
        self._clients.append(client)
        return client

    def close(self) -> None:
        for client in self._clients:
            client.close()
