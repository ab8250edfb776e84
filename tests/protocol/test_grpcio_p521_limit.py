"""Pins the reason the plugin speaks its own HTTP/2 instead of using grpcio (README, "Why the plugin speaks
its own HTTP/2"): under TLS 1.3, which Vault's Go TLS stack negotiates by default, grpcio's bundled
BoringSSL neither offers nor accepts ECDSA P-521 signatures, and Vault's AutoMTLS certificate is P-521.

Each test makes the TLS handshake grpcio would have with Vault, in both directions, against Python's `ssl`
(OpenSSL) standing in for Vault's side, and asserts that it still fails. The day grpcio can do it, these
tests fail: then the reason has expired, and a grpcio server and channel are worth measuring again against
our own HTTP/2 layer (vaultplugin/grpc_server.py, grpc_client.py).
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from vaultplugin.transport.tls import PluginCertificate, generate_plugin_certificate

HANDSHAKE_TIMEOUT = 5.0
EXPIRED = (
    "grpcio now completes a TLS 1.3 handshake with a P-521 peer: the README's reason for our own HTTP/2 "
    "layer has expired. Measure a grpcio server and channel against vaultplugin's HTTP/2 before removing "
    "this test."
)


@pytest.fixture(scope="module")
def vault_cert() -> PluginCertificate:
    # What Vault's AutoMTLS makes: ECDSA P-521, signed with SHA-512.
    return generate_plugin_certificate(curve=ec.SECP521R1(), signature_hash=hashes.SHA512())


@pytest.fixture(scope="module")
def plugin_cert() -> PluginCertificate:
    return generate_plugin_certificate()


def _files(tmp_path: Path, **pems: bytes) -> dict[str, str]:
    paths = {}
    for name, pem in pems.items():
        path = tmp_path / name
        path.write_bytes(pem)
        paths[name] = str(path)
    return paths


def _vault_side_context(server_side: bool, files: dict[str, str]) -> ssl.SSLContext:
    """Vault's end of the connection, TLS 1.3 only: its P-521 certificate, trusting only the plugin's."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server_side else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(files["vault_cert"], files["vault_key"])
    ctx.load_verify_locations(files["plugin_cert"])
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.set_alpn_protocols(["h2"])
    return ctx


@pytest.fixture
def files(tmp_path: Path, vault_cert: PluginCertificate, plugin_cert: PluginCertificate) -> dict[str, str]:
    return _files(
        tmp_path,
        vault_cert=vault_cert.cert_pem,
        vault_key=vault_cert.key_pem,
        plugin_cert=plugin_cert.cert_pem,
        plugin_key=plugin_cert.key_pem,
    )


@pytest.fixture
def grpcio_server(plugin_cert: PluginCertificate, vault_cert: PluginCertificate) -> Iterator[int]:
    """A grpcio server as the plugin would run it: its own certificate, requiring Vault's as the client's."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    credentials = grpc.ssl_server_credentials(
        [(plugin_cert.key_pem, plugin_cert.cert_pem)],
        root_certificates=vault_cert.cert_pem,
        require_client_auth=True,
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    try:
        yield port
    finally:
        server.stop(grace=None)


def test_a_grpcio_server_cannot_take_vaults_p521_client_certificate(
    grpcio_server: int, files: dict[str, str]
) -> None:
    ctx = _vault_side_context(server_side=False, files=files)
    # The control: the same client completes TLS 1.3 with an OpenSSL server that holds the plugin's
    # certificate, so a failure below is grpcio's and not the test's.
    assert _openssl_server_accepts(ctx, files), "the test's own TLS setup is broken"

    with socket.create_connection(("127.0.0.1", grpcio_server), timeout=HANDSHAKE_TIMEOUT) as raw:
        tls = ctx.wrap_socket(raw, server_hostname="localhost")
        # In TLS 1.3 the client certificate is checked after the client's handshake ends: the server's
        # verdict is its first answer to an HTTP/2 preface (SETTINGS if it took the certificate).
        try:
            tls.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000"))
            answer = tls.recv(64)
        except (ssl.SSLError, OSError):
            answer = b""
        finally:
            tls.close()
    assert answer == b"", EXPIRED


def test_a_grpcio_channel_cannot_take_vaults_p521_server_certificate(
    plugin_cert: PluginCertificate, vault_cert: PluginCertificate, files: dict[str, str]
) -> None:
    ctx = _vault_side_context(server_side=True, files=files)
    listener = socket.create_server(("127.0.0.1", 0))
    outcome: list[str] = []

    def vault_broker() -> None:
        listener.settimeout(HANDSHAKE_TIMEOUT)
        try:
            conn, _ = listener.accept()
        except OSError as exc:
            outcome.append(f"no connection: {exc}")
            return
        conn.settimeout(HANDSHAKE_TIMEOUT)
        try:
            with ctx.wrap_socket(conn, server_side=True):
                outcome.append("handshake completed")
        except (ssl.SSLError, OSError) as exc:
            outcome.append(f"handshake failed: {exc}")

    thread = threading.Thread(target=vault_broker, daemon=True)
    thread.start()
    channel = grpc.secure_channel(
        f"127.0.0.1:{listener.getsockname()[1]}",
        grpc.ssl_channel_credentials(vault_cert.cert_pem, plugin_cert.key_pem, plugin_cert.cert_pem),
        options=[("grpc.ssl_target_name_override", "localhost")],
    )
    try:
        with pytest.raises(grpc.FutureTimeoutError):
            grpc.channel_ready_future(channel).result(timeout=HANDSHAKE_TIMEOUT)
    finally:
        channel.close()
        thread.join(HANDSHAKE_TIMEOUT + 1)
        listener.close()
    assert outcome and outcome[0].startswith("handshake failed"), f"{EXPIRED} (Vault's side: {outcome})"
    assert "NO_SUITABLE_SIGNATURE_ALGORITHM" in outcome[0], outcome[0]


def _openssl_server_accepts(client_ctx: ssl.SSLContext, files: dict[str, str]) -> bool:
    """True when an OpenSSL server with the plugin's certificate, requiring Vault's, completes TLS 1.3 with
    `client_ctx` and answers on the connection."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    server_ctx.load_cert_chain(files["plugin_cert"], files["plugin_key"])
    server_ctx.load_verify_locations(files["vault_cert"])
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(HANDSHAKE_TIMEOUT)

    def serve() -> None:
        try:
            conn, _ = listener.accept()
            conn.settimeout(HANDSHAKE_TIMEOUT)
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"ok")
        except (ssl.SSLError, OSError):
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with (
            socket.create_connection(listener.getsockname(), timeout=HANDSHAKE_TIMEOUT) as raw,
            client_ctx.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            return tls.recv(2) == b"ok"
    except (ssl.SSLError, OSError):
        return False
    finally:
        thread.join(HANDSHAKE_TIMEOUT + 1)
        listener.close()
