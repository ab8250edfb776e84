"""Certificates, TLS contexts and TLS sessions for go-plugin's automatic mutual TLS.

The host (Vault) gives us its certificate in PLUGIN_CLIENT_CERT (ECDSA P-521, CN/SAN localhost). We make
our own certificate, announce it in the handshake line, and both sides pin exactly those two certificates.
grpcio's bundled BoringSSL cannot verify P-521 signatures, so TLS is done with the `ssl` module (OpenSSL)
and gRPC is spoken over it with this project's HTTP/2 layer (grpc_server.py, grpc_client.py).
"""

from __future__ import annotations

import base64
import datetime
import socket
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ALPN_H2 = "h2"
_TLS_READ = 256 * 1024


@dataclass(frozen=True)
class PluginCertificate:
    """This process's certificate and key, PEM encoded; the key never leaves the process."""

    cert_pem: bytes
    key_pem: bytes = field(repr=False)
    cert_der: bytes = field(repr=False)

    @property
    def handshake_b64(self) -> str:
        # go-plugin decodes with base64.RawStdEncoding: standard alphabet, no '=' padding.
        return base64.b64encode(self.cert_der).decode().rstrip("=")


def generate_plugin_certificate(
    valid_for: datetime.timedelta = datetime.timedelta(days=3650),
    *,
    curve: ec.EllipticCurve | None = None,
    signature_hash: hashes.SHA256 | hashes.SHA512 | None = None,
) -> PluginCertificate:
    """A self-signed ECDSA certificate for 'localhost' (P-256 unless told), usable as TLS server and client.

    Tests make the host's side with curve P-521 and SHA-512, as Vault does.
    """
    key = ec.generate_private_key(curve or ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "vault-plugin-secrets-llm"),
            x509.NameAttribute(NameOID.COMMON_NAME, "localhost"),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(seconds=30))
        .not_valid_after(now + valid_for)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .sign(key, signature_hash or hashes.SHA256())
    )
    return PluginCertificate(
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        cert_der=cert.public_bytes(serialization.Encoding.DER),
    )


def _load_own_certificate(ctx: ssl.SSLContext, cert: PluginCertificate, private_dir: Path) -> None:
    # The ssl module only loads a key from a file: write it into the 0700 directory, load, remove.
    with tempfile.NamedTemporaryFile(dir=private_dir, suffix=".pem") as fh:
        fh.write(cert.cert_pem + cert.key_pem)
        fh.flush()
        ctx.load_cert_chain(fh.name)


def _base_context(
    purpose: int, cert: PluginCertificate, host_cert_pem: str, private_dir: Path
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(purpose)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=host_cert_pem)  # trust exactly the host's certificate
    ctx.set_alpn_protocols([ALPN_H2])
    _load_own_certificate(ctx, cert, private_dir)
    return ctx


def server_context(cert: PluginCertificate, host_cert_pem: str, private_dir: Path) -> ssl.SSLContext:
    """For connections from the host: present our certificate, require the host's as client certificate."""
    return _base_context(ssl.PROTOCOL_TLS_SERVER, cert, host_cert_pem, private_dir)


def client_context(cert: PluginCertificate, host_cert_pem: str, private_dir: Path) -> ssl.SSLContext:
    """For dialling the host's broker: verify the host as 'localhost', present our certificate."""
    ctx = _base_context(ssl.PROTOCOL_TLS_CLIENT, cert, host_cert_pem, private_dir)
    ctx.check_hostname = True
    return ctx


class MemoryTls:
    """One side of a TLS session over `ssl` memory BIOs, on a socket the caller reads.

    The caller chooses how to wait for the peer's bytes (the gRPC server reads when the hub says the socket
    is readable; the gRPC client waits where its call runs) and serialises access: OpenSSL objects must not
    be used from two threads at once, and records must leave in the order they were sealed.
    """

    def __init__(
        self,
        ctx: ssl.SSLContext,
        sock: socket.socket,
        *,
        server_side: bool,
        server_hostname: str | None = None,
    ) -> None:
        self.sock = sock
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = ctx.wrap_bio(
            self._incoming, self._outgoing, server_side=server_side, server_hostname=server_hostname
        )

    def handshake(self, receive: Callable[[], bytes]) -> None:
        """Complete the handshake; `receive()` waits for the peer's next bytes (b"" once it has closed)."""
        while True:
            try:
                self._tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._send_sealed()
                data = receive()
                if not data:
                    raise ConnectionError("the peer closed the connection during the TLS handshake") from None
                self._incoming.write(data)
        self._send_sealed()
        if self._tls.selected_alpn_protocol() != ALPN_H2:
            raise ConnectionError("the peer did not negotiate ALPN h2")

    def send(self, clear: bytes) -> None:
        """Seal `clear` (if any) and send it, with whatever the session still had to send."""
        if clear:
            self._tls.write(clear)
        self._send_sealed()

    def _send_sealed(self) -> None:
        data = self._outgoing.read()
        if data:
            self.sock.sendall(data)

    def receive(self, data: bytes) -> bytes | None:
        """Take bytes read from the socket; return the plaintext they complete (None: the peer closed)."""
        if data:
            self._incoming.write(data)
        chunks: list[bytes] = []
        while True:
            try:
                chunk = self._tls.read(_TLS_READ)
            except ssl.SSLWantReadError:
                return b"".join(chunks)
            except ssl.SSLZeroReturnError:
                return None
            if not chunk:
                return None
            chunks.append(chunk)
