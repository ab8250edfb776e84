"""The plugin executable as a host sees it, without a Vault server: start, handshake, mutual TLS, exit.

What a user relies on: only the host that started the plugin (holding the certificate it passed in
PLUGIN_CLIENT_CERT) can drive it; a plugin run by hand or by an old host says why and exits; and a plugin
never outlives the process that started it.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import psutil
import pytest
from cryptography import x509
from devkit.bao import is_gone, kill_leftovers
from devkit.waiting import wait_for
from e2e_support import BuiltPlugin
from protocol_support import (
    MAGIC_COOKIE_KEY,
    Identity,
    TlsPump,
    h2_answers,
    host_environment,
    read_handshake,
    tls_context,
    wait_exit,
)
from testbackend import STDOUT_NOISE
from vaultplugin.proto import go_plugin_pb2, health_pb2

pytestmark = pytest.mark.timeout(60)

Spawn = Callable[..., subprocess.Popen[bytes]]


def test_a_request_for_broker_multiplexing_is_declined_in_the_handshake(spawn: Spawn, host: Identity) -> None:
    """Vault's container runtime sets PLUGIN_MULTIPLEX_GRPC; we say "false" so it refuses us plainly."""
    proc = spawn({**host_environment(host.cert_pem), "PLUGIN_MULTIPLEX_GRPC": "true"})
    assert proc.stdout is not None
    fields = proc.stdout.readline().decode().rstrip("\n").split("|")
    assert fields[:2] == ["1", "5"] and len(fields) == 7 and fields[6] == "false", fields


def test_handshake_line(spawn: Spawn, host: Identity) -> None:
    started = time.monotonic()
    proc = spawn(host_environment(host.cert_pem))
    hs = read_handshake(proc)
    assert time.monotonic() - started < 10  # a host gives up after a minute; we are far from it

    assert (hs.core_version, hs.app_version, hs.network, hs.protocol) == ("1", "5", "unix", "grpc")
    address = Path(hs.address)
    assert address.is_absolute() and stat.S_ISSOCK(address.stat().st_mode)
    assert stat.S_IMODE(address.parent.stat().st_mode) == 0o700  # a private directory
    # go-plugin decodes RawStdEncoding: standard alphabet, no '=' padding.
    assert "=" not in hs.cert_b64
    cert = x509.load_der_x509_certificate(hs.cert_der)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)


def test_tls_without_client_certificate_is_refused(spawn: Spawn, host: Identity) -> None:
    hs = read_handshake(spawn(host_environment(host.cert_pem)))
    answered, detail = h2_answers(hs, tls_context(hs, client=None))
    assert not answered, detail


def test_tls_with_another_client_certificate_is_refused(
    spawn: Spawn, host: Identity, stranger: Identity
) -> None:
    hs = read_handshake(spawn(host_environment(host.cert_pem)))
    answered, detail = h2_answers(hs, tls_context(hs, client=stranger))
    assert not answered, detail


def test_host_certificate_with_h2_is_served(spawn: Spawn, host: Identity, tmp_path: Path) -> None:
    """The host's certificate and ALPN h2 get a gRPC server: health says SERVING, Shutdown ends the process.

    Also: a print() to stdout after startup lands on stderr; stdout carries the handshake line only.
    """
    proc = spawn(host_environment(host.cert_pem, E2E_PRINT_TO_STDOUT="1"))
    hs = read_handshake(proc)
    ctx = tls_context(hs, client=host)
    answered, alpn = h2_answers(hs, ctx)
    assert answered, alpn
    assert alpn == "h2"

    pump = TlsPump(tmp_path / "pump.sock", hs, ctx)
    try:
        with grpc.insecure_channel(f"unix:{pump.path}") as channel:
            check = channel.unary_unary(
                "/grpc.health.v1.Health/Check",
                request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                response_deserializer=health_pb2.HealthCheckResponse.FromString,
            )
            reply = check(health_pb2.HealthCheckRequest(service="plugin"), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING

            time.sleep(
                0.6
            )  # let the test backend's delayed stray print() happen (it fires 0.5 s after start)
            shutdown = channel.unary_unary(
                "/plugin.GRPCController/Shutdown",
                request_serializer=go_plugin_pb2.Empty.SerializeToString,
                response_deserializer=go_plugin_pb2.Empty.FromString,
            )
            shutdown(go_plugin_pb2.Empty(), timeout=10)
    finally:
        pump.close()
    assert wait_exit(proc, timeout=10) == 0
    stdout, stderr = proc.communicate(timeout=10)
    assert stdout == b""  # nothing after the handshake line (read_handshake checked nothing came with it)
    assert STDOUT_NOISE in stderr.decode(errors="replace")


def test_run_by_hand_without_magic_cookie(spawn: Spawn, host: Identity) -> None:
    proc = spawn(host_environment(host.cert_pem, **{MAGIC_COOKIE_KEY: None}))
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert stdout == b""
    message = stderr.decode()
    assert "plugin" in message and ("Vault" in message or "OpenBao" in message), message
    assert "Traceback" not in message


def test_host_without_protocol_5_is_told_which_version_we_speak(spawn: Spawn, host: Identity) -> None:
    proc = spawn(host_environment(host.cert_pem, PLUGIN_PROTOCOL_VERSIONS="3,4"))
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert stdout == b""
    message = stderr.decode()
    assert "5" in message and "version" in message, message
    assert "Traceback" not in message


def test_plugin_exits_when_its_parent_dies(spawn: Spawn, host: Identity, plugin_exe: BuiltPlugin) -> None:
    """The host can die without stopping its plugins (SIGKILL, crash): the plugin must not linger.

    The parent is killed the moment it has read the handshake line, the earliest a host could die after
    starting a plugin: the plugin must know its parent before it announces itself. Repeated a few times,
    because a plugin that learns its parent only later loses that race only some of the time.
    """
    parent_script = textwrap.dedent(
        f"""
        import subprocess, sys, time
        child = subprocess.Popen([{str(plugin_exe.path)!r}], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        child.stdout.readline()
        sys.stdout.write(f"{{child.pid}}\\n")
        sys.stdout.flush()
        time.sleep(600)
        """
    )
    for attempt in range(5):
        parent = spawn(host_environment(host.cert_pem), argv=[sys.executable, "-c", parent_script])
        assert parent.stdout is not None
        plugin_pid = int(parent.stdout.readline())
        try:
            assert psutil.Process(plugin_pid).ppid() == parent.pid
            os.kill(parent.pid, signal.SIGKILL)
            parent.wait(timeout=10)
            wait_for(
                lambda pid=plugin_pid: is_gone(pid),  # type: ignore[misc]
                timeout=5,
                what=f"the orphaned plugin to exit (attempt {attempt + 1})",
            )
        finally:
            kill_leftovers([plugin_pid], timeout=0)
