"""Helpers for the shipped-file tests: run the plugin file by hand as a host would, and inspect its processes.

A uniquely named module (not conftest), so test directories without __init__.py cannot shadow it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import psutil
from vaultplugin.transport.tls import generate_plugin_certificate

# What a host puts in a plugin's environment: go-plugin's magic cookie and the protocol versions.
HOST_ENV = {
    "VAULT_BACKEND_PLUGIN": "6669da05-b1c8-4f49-97d9-c8e5bed98e20",
    "PLUGIN_PROTOCOL_VERSIONS": "5",
}


def start_like_a_host(executable: Path, tmpdir: Path, cwd: Path) -> tuple[subprocess.Popen[bytes], bytes]:
    """Exec the plugin with a bare environment (no PATH to Python, TMPDIR=`tmpdir`); (process, handshake)."""
    env = {
        "PATH": "/usr/bin:/bin",
        "TMPDIR": str(tmpdir),
        "PLUGIN_CLIENT_CERT": generate_plugin_certificate().cert_pem.decode(),
        **HOST_ENV,
    }
    proc = subprocess.Popen(
        [str(executable)], env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline()


def mapped_files(proc: psutil.Process) -> set[str]:
    """Every file the process has mapped (its code: the interpreter, extension modules, shared libraries)."""
    return {m.path for m in proc.memory_maps(grouped=True) if m.path.startswith("/")}


def is_inside(path: str, directory: Path) -> bool:
    return os.path.realpath(path).startswith(os.path.realpath(directory) + os.sep)
