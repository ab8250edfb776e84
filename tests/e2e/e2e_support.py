"""Helpers for the end-to-end and protocol tests: build the test backend, run servers, watch processes.

A uniquely named module (not conftest), so that test directories without __init__.py cannot shadow it.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hvac
import psutil
import requests
from devkit.bao import BaoServer
from devkit.build import build_zipapp, project_packages

PLUGIN_NAME = "e2e-test"
PLUGIN_FILE = "e2e-testbackend"
TESTBACKEND_DIR = Path(__file__).resolve().parent / "testbackend"


@dataclass(frozen=True)
class BuiltPlugin:
    plugin_dir: Path
    path: Path
    sha256: str


def build_testbackend(plugin_dir: Path) -> BuiltPlugin:
    """Build the test backend, with this tree's `vaultplugin`, into `plugin_dir` (a plugin_directory)."""
    packages = {"testbackend": TESTBACKEND_DIR, **project_packages("vaultplugin")}
    path, sha256 = build_zipapp(plugin_dir, PLUGIN_FILE, "testbackend:main", packages)
    return BuiltPlugin(plugin_dir=plugin_dir, path=path, sha256=sha256)


def start_server(workdir: Path, plugin: BuiltPlugin) -> BaoServer:
    server = BaoServer(workdir, plugin.plugin_dir).start()
    try:
        server.register_plugin(PLUGIN_NAME, plugin.path.name, plugin.sha256)
    except BaseException:
        server.stop()
        raise
    return server


# --- processes ---------------------------------------------------------------------------------------


def plugin_processes(server: BaoServer, plugin: BuiltPlugin) -> list[psutil.Process]:
    return server.plugin_processes(plugin.path)


# --- HTTP ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Api:
    """Raw HTTP calls through hvac's adapter: (status, JSON body) for any status, for error assertions."""

    client: hvac.Client

    def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        adapter = hvac.adapters.RawAdapter(base_uri=self.client.url, token=self.client.token)
        resp: requests.Response = adapter.request(method, f"/v1/{path}", raise_exception=False, **kwargs)
        body: dict[str, Any] = resp.json() if resp.content else {}
        return resp.status_code, body


@dataclass(frozen=True)
class Mount:
    server: BaoServer
    plugin: BuiltPlugin
    path: str
    client: hvac.Client

    @property
    def api(self) -> Api:
        return Api(self.client)

    def read(self, sub: str, **params: Any) -> dict[str, Any]:
        status, body = self.api.call("GET", f"{self.path}/{sub}", params=params or None)
        assert status == 200, (status, body)
        return body

    def write(self, sub: str, **data: Any) -> tuple[int, dict[str, Any]]:
        return self.api.call("POST", f"{self.path}/{sub}", json=data)

    def pid(self) -> int:
        return int(self.read("pid")["data"]["pid"])

    def records(self) -> dict[str, list[dict[str, Any]]]:
        return self.read("revocations")["data"]


_counter = itertools.count(1)


def unique_mount_name(hint: str) -> str:
    return f"e2e{next(_counter)}-{re.sub(r'[^a-z0-9]+', '-', hint.lower())[:30].strip('-')}"
