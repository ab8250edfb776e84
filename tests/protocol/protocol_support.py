"""Helpers for the process-level protocol tests: play the host's part without a Vault server.

A host (Vault / OpenBao) starts the plugin with a magic cookie and its own P-521 certificate in the
environment, reads the handshake line from the plugin's stdout, then dials the announced unix socket with
mutual TLS (its certificate as client certificate, ALPN h2) and speaks gRPC.
"""

from __future__ import annotations

import base64
import datetime
import os
import selectors
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from vaultplugin.transport.tls import generate_plugin_certificate

MAGIC_COOKIE_KEY = "VAULT_BACKEND_PLUGIN"
MAGIC_COOKIE_VALUE = "6669da05-b1c8-4f49-97d9-c8e5bed98e20"
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
H2_EMPTY_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # length 0, type SETTINGS, no flags, stream 0
H2_FRAME_SETTINGS = 0x04


@dataclass(frozen=True)
class Identity:
    """A certificate and its key, as PEM and as a file `ssl` can load (cert + key)."""

    cert_pem: str
    chain_file: Path


def make_identity(directory: Path, name: str) -> Identity:
    """A self-signed ECDSA P-521 CA certificate for localhost, like the one a host makes for each plugin."""
    made = generate_plugin_certificate(
        datetime.timedelta(days=1), curve=ec.SECP521R1(), signature_hash=hashes.SHA512()
    )
    cert_pem, key_pem = made.cert_pem, made.key_pem
    chain_file = directory / f"{name}.pem"
    chain_file.write_bytes(cert_pem + key_pem)
    chain_file.chmod(0o600)
    return Identity(cert_pem=cert_pem.decode(), chain_file=chain_file)


def host_environment(host_cert_pem: str, **overrides: str | None) -> dict[str, str]:
    """The environment a host gives its plugin; an override of None removes that variable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_", "PLUGIN_"))}
    env.update(
        {
            MAGIC_COOKIE_KEY: MAGIC_COOKIE_VALUE,
            "PLUGIN_PROTOCOL_VERSIONS": "5",
            "PLUGIN_CLIENT_CERT": host_cert_pem,
            "PLUGIN_MIN_PORT": "10000",
            "PLUGIN_MAX_PORT": "25000",
            "VAULT_PLUGIN_AUTOMTLS_ENABLED": "true",
            "BAO_PLUGIN_AUTOMTLS_ENABLED": "true",
            "VAULT_VERSION": "2.7.2",
        }
    )
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


@dataclass(frozen=True)
class Handshake:
    line: str
    core_version: str
    app_version: str
    network: str
    address: str
    protocol: str
    cert_b64: str

    @property
    def cert_der(self) -> bytes:
        return base64.b64decode(self.cert_b64 + "=" * (-len(self.cert_b64) % 4), validate=True)

    @property
    def cert_pem(self) -> str:
        return x509.load_der_x509_certificate(self.cert_der).public_bytes(serialization.Encoding.PEM).decode()


def read_handshake(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> Handshake:
    """Read the first stdout line within `timeout` (a host waits up to a minute)."""
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    buf = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in buf:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not sel.select(remaining):
            raise AssertionError(f"no handshake line within {timeout}s (got {buf!r})")
        chunk = os.read(proc.stdout.fileno(), 4096)
        if not chunk:
            raise AssertionError(
                f"plugin closed stdout before the handshake (exit {proc.poll()}, got {buf!r})"
            )
        buf += chunk
    line, _, rest = buf.partition(b"\n")
    assert rest == b"", f"more than the handshake line on stdout: {rest!r}"
    fields = line.decode().split("|")
    assert len(fields) == 6, line
    return Handshake(line.decode(), *fields)


def tls_context(
    handshake: Handshake, client: Identity | None, *, alpn: tuple[str, ...] = ("h2",)
) -> ssl.SSLContext:
    """The host's side: trust exactly the plugin's announced certificate, present `client` if given."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cadata=handshake.cert_pem)
    ctx.check_hostname = True
    if client is not None:
        ctx.load_cert_chain(client.chain_file)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


def connect_tls(handshake: Handshake, ctx: ssl.SSLContext, timeout: float = 10.0) -> ssl.SSLSocket:
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.settimeout(timeout)
    raw.connect(handshake.address)
    try:
        return ctx.wrap_socket(raw, server_hostname="localhost")
    except BaseException:
        raw.close()
        raise


def h2_answers(handshake: Handshake, ctx: ssl.SSLContext) -> tuple[bool, str]:
    """Open a TLS connection and send an HTTP/2 preface; (True, alpn) if the plugin answers with SETTINGS.

    With TLS 1.3 a server checks the client certificate after the client's handshake has finished, so a
    refusal may show only when reading: an alert, a reset, or EOF. All of those mean refused.
    """
    try:
        tls = connect_tls(handshake, ctx)
    except (ssl.SSLError, OSError) as exc:
        return False, f"handshake failed: {exc}"
    with tls:
        try:
            tls.sendall(H2_PREFACE + H2_EMPTY_SETTINGS)
            header = b""
            while len(header) < 9:
                chunk = tls.recv(9 - len(header))
                if not chunk:
                    return False, "closed by the plugin"
                header += chunk
        except (ssl.SSLError, OSError) as exc:
            return False, f"refused after the handshake: {exc}"
        answered = header[3] == H2_FRAME_SETTINGS
        return answered, tls.selected_alpn_protocol() or ""


class TlsPump:
    """A plaintext unix socket whose connections are forwarded over mutual TLS to the plugin (for grpcio).

    One thread per connection owns its SSLSocket and moves bytes both ways with select.
    """

    def __init__(self, listen_path: Path, handshake: Handshake, ctx: ssl.SSLContext) -> None:
        self.path = listen_path
        self._handshake = handshake
        self._ctx = ctx
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(listen_path))
        self._sock.listen(8)
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                plain, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(plain,), daemon=True).start()

    def _serve(self, plain: socket.socket) -> None:
        try:
            tls = connect_tls(self._handshake, self._ctx)
        except (ssl.SSLError, OSError):
            plain.close()
            return
        tls.settimeout(None)
        with tls, plain:
            sel = selectors.DefaultSelector()
            sel.register(tls, selectors.EVENT_READ)
            sel.register(plain, selectors.EVENT_READ)
            while not self._closed:
                ready = [key.fileobj for key, _ in sel.select(0.5)]
                if tls.pending():
                    ready.append(tls)
                for sock in ready:
                    try:
                        data = sock.recv(65536)  # type: ignore[union-attr]
                    except ssl.SSLWantReadError:
                        continue
                    except (ssl.SSLError, OSError):
                        return
                    if not data:
                        return
                    (plain if sock is tls else tls).sendall(data)

    def close(self) -> None:
        self._closed = True
        self._sock.close()


def wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def iter_lines(data: bytes) -> Iterator[str]:
    yield from data.decode(errors="replace").splitlines()
