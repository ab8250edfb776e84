"""Run a backend as a Vault / OpenBao external plugin process (go-plugin protocol v5, automatic mTLS).

Life of the process: check that Vault started us, make a certificate, serve gRPC over mutual TLS on a unix
socket in a private directory, print the handshake line, then serve until the host asks us to stop, our parent
dies, or Setup fails.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from vaultplugin import logs
from vaultplugin.broker import Broker
from vaultplugin.server import BackendFactory, PluginServer
from vaultplugin.transport.grpc_server import GrpcServer
from vaultplugin.transport.tls import client_context, generate_plugin_certificate, server_context

log = logging.getLogger(__name__)

MAGIC_COOKIE_KEY = "VAULT_BACKEND_PLUGIN"
MAGIC_COOKIE_VALUE = "6669da05-b1c8-4f49-97d9-c8e5bed98e20"
MULTIPLEX_GRPC_ENV = "PLUGIN_MULTIPLEX_GRPC"
CORE_PROTOCOL_VERSION = 1
APP_PROTOCOL_VERSION = 5
_PARENT_POLL_SECONDS = 0.5
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


class StartupError(Exception):
    """The process was not started the way Vault starts plugins."""


def _check_environment() -> str:
    """Return the host's certificate PEM, or raise StartupError saying what is wrong."""
    if os.environ.get(MAGIC_COOKIE_KEY) != MAGIC_COOKIE_VALUE:
        raise StartupError(
            "This binary is a plugin for Vault / OpenBao. It is not meant to be run directly: "
            "register it in the plugin catalog and enable it with 'bao secrets enable'."
        )
    offered = os.environ.get("PLUGIN_PROTOCOL_VERSIONS", "")
    if str(APP_PROTOCOL_VERSION) not in [v.strip() for v in offered.split(",")]:
        raise StartupError(
            f"the host offers plugin protocol versions {offered!r}; this plugin speaks only version "
            f"{APP_PROTOCOL_VERSION} (Vault / OpenBao 1.12 or later)"
        )
    host_cert = os.environ.get("PLUGIN_CLIENT_CERT", "")
    if not host_cert:
        raise StartupError("automatic mTLS is required but the host sent no PLUGIN_CLIENT_CERT")
    return host_cert


def _parent_of(pid: int) -> int | None:
    """The parent PID of process `pid` (Linux /proc), or None if it is gone or unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after its last ')'.
        return int(stat.rsplit(b")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _watch_parent(parent: int, shutdown: threading.Event) -> None:
    """Exit when the host is gone. In a one-file build our parent is the bootloader, which outlives a host
    killed with SIGKILL (it is merely re-parented): there the host is the bootloader's parent, watched too."""
    host = _parent_of(parent) if getattr(sys, "frozen", False) else None
    while not shutdown.wait(_PARENT_POLL_SECONDS):
        if os.getppid() != parent or (host is not None and _parent_of(parent) != host):
            log.warning("the Vault process that started this plugin is gone; exiting")
            shutdown.set()


def _stop_with_bootloader(shutdown: threading.Event) -> None:
    """In a one-file build, stop as soon as the bootloader that runs us (our parent) dies.

    The host knows only the bootloader's PID and kills that; the kernel then sends us SIGTERM at once
    (PR_SET_PDEATHSIG), as if the host had killed us, instead of our serving on until the parent watch
    notices. Only under our own bootloader: a Go host's forking thread may exit while the host lives on.
    """
    if not getattr(sys, "frozen", False):
        return
    signal.signal(signal.SIGTERM, lambda _signum, _frame: shutdown.set())
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _remove_orphaned_bundle(parent: int) -> None:
    """Remove a one-file build's unpacked bundle when its bootloader (our parent) died before us.

    A PyInstaller one-file executable unpacks itself into $TMPDIR/_MEI... and runs us as its child; it
    deletes that directory when we exit, unless it was killed first (a SIGKILL from the host): then nobody
    else will, and every crash would leave ~40 MB behind.
    """
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle and getattr(sys, "frozen", False) and os.getppid() != parent:
        shutil.rmtree(bundle, ignore_errors=True)


def _exit_after_failed_setup(plugin: PluginServer, shutdown: threading.Event) -> None:
    # The host does not kill a plugin whose Setup failed: exit once the error reply had time to leave.
    plugin.setup_failed.wait()
    time.sleep(1.0)
    shutdown.set()


def serve(factory: BackendFactory, version: str) -> None:
    """Serve the backend made by `factory` until the host stops us; then exit the process."""
    parent = os.getppid()  # read first: a parent that dies during start-up must still be noticed
    # A Ctrl-C at the server's terminal reaches its whole process group: the host stops us (Shutdown,
    # or we notice it is gone), as go-plugin plugins do.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Keep the real stdout for the handshake only; anything else printed goes to stderr instead.
    handshake_fd = os.dup(1)
    os.dup2(2, 1)
    logs.configure()
    try:
        host_cert = _check_environment()
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)

    started = time.monotonic()
    private_dir = Path(tempfile.mkdtemp(prefix="vault-plugin-"))  # 0700: only this process uses its sockets
    shutdown = threading.Event()
    _stop_with_bootloader(shutdown)
    cert = generate_plugin_certificate()
    broker = Broker(client_context(cert, host_cert, private_dir))
    plugin = PluginServer(factory, version, broker, shutdown)

    tls_path = private_dir / "plugin.sock"
    server = GrpcServer(str(tls_path), server_context(cert, host_cert, private_dir), plugin.methods())

    line = f"{CORE_PROTOCOL_VERSION}|{APP_PROTOCOL_VERSION}|unix|{tls_path}|grpc|{cert.handshake_b64}"
    if os.environ.get(MULTIPLEX_GRPC_ENV, "").lower() == "true":
        # HashiCorp Vault's container runtime asks for gRPC broker multiplexing, which we do not speak. A
        # seventh field "false" makes the host refuse us with a plain "does not support" error.
        log.error("the host asked for gRPC broker multiplexing (a containerized plugin): not supported")
        line += "|false"
    # What start-up made (modules, the server) lives as long as the process: the cyclic collector need not
    # walk it again at every full collection.
    gc.freeze()
    os.write(handshake_fd, (line + "\n").encode())
    log.debug("plugin serving", extra={"startup_ms": round((time.monotonic() - started) * 1000, 1)})

    threading.Thread(target=_watch_parent, args=(parent, shutdown), name="parent-watch", daemon=True).start()
    threading.Thread(target=_exit_after_failed_setup, args=(plugin, shutdown), daemon=True).start()

    shutdown.wait()
    server.close()
    broker.close()
    shutil.rmtree(private_dir, ignore_errors=True)
    _remove_orphaned_bundle(parent)
    logging.shutdown()
    os._exit(0)  # daemon threads blocked in socket calls must not delay the exit
