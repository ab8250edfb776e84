"""The shipped plugin file: it runs alone on a host with nothing of ours, and says what it contains.

What an operator relies on: the one file from `scripts/build-plugin`, copied alone into a server's
plugin_directory, is registered by its sha256 and issues, renews and revokes keys, with no Python, checkout
or virtualenv reachable; its code is all inside it (the sha256 covers it); a crash leaves nothing behind; the
SBOM and SHA256SUMS beside it describe exactly that file; and two builds of one commit are identical.
"""

from __future__ import annotations

import json
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
from artifact_support import is_inside, mapped_files, start_like_a_host
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from devkit.bao import BaoServer, is_gone, kill_leftovers, process_tree
from devkit.build import ENGINE_ENTRY, ENGINE_NAME, ENGINE_PACKAGES, project_packages, version_override
from devkit.onefile import build_onefile
from devkit.release import Release
from devkit.waiting import wait_for
from llm_emulators import OpenRouterEmulator

REPO = Path(__file__).resolve().parents[2]
CHAT = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}

pytestmark = pytest.mark.timeout(180)


def test_the_file_alone_serves_a_real_server(release: Release, tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    plugin = plugins / ENGINE_NAME
    shutil.copy2(release.executable, plugin)  # the file alone: no SBOM, no sums, no sibling files
    emulator = OpenRouterEmulator("adm-artifact-test")
    server = BaoServer(tmp_path / "server", plugins, inherit_env=False)  # a bare environment, another cwd
    with emulator.serve() as emu, server:
        try:
            api = httpx.Client(base_url=f"{server.addr}/v1/", headers={"X-Vault-Token": "root"}, timeout=60)
            body = {"sha256": release.sha256, "command": ENGINE_NAME, "version": release.version}
            assert api.put("sys/plugins/catalog/secret/llm-file", json=body).status_code == 204
            assert api.post("sys/mounts/llm", json={"type": "llm-file"}).status_code == 204
            config = {"provider": "openrouter", "admin_key": "adm-artifact-test", "base_url": emu.base_url}
            assert api.post("llm/config/main", json=config).status_code == 204
            assert api.post("llm/roles/app", json={"connection": "main", "ttl": "5m"}).status_code == 204

            lease = api.get("llm/creds/app").json()
            key, key_id = lease["data"]["api_key"], lease["data"]["key_id"]
            chat = httpx.post(f"{emu.url}/api/v1/chat/completions", json=CHAT, headers=_bearer(key))
            assert chat.status_code == 200

            renewed = api.put("sys/leases/renew", json={"lease_id": lease["lease_id"], "increment": 600})
            assert renewed.status_code == 200 and renewed.json()["lease_duration"] == 600
            mount = api.get("sys/mounts/llm").json()
            assert mount["running_plugin_version"] == release.version
            assert mount["running_sha256"] == release.sha256

            # Every process of the plugin runs code from the file's own bundle and the system's C library:
            # nothing from this checkout, its virtualenv or the Python that built it.
            (bootloader,) = server.plugin_processes(plugin)
            processes = process_tree(bootloader.pid)
            assert len(processes) == 2, "a one-file build runs as its bootloader and one Python child"
            for proc in processes:
                for path in mapped_files(proc):
                    for forbidden in (REPO, Path(sys.prefix), Path(sys.base_prefix)):
                        assert not is_inside(path, forbidden), f"{proc.pid} maps {path}"
                assert not is_inside(proc.cwd(), REPO)

            assert api.put("sys/leases/revoke", json={"lease_id": lease["lease_id"]}).status_code == 204
            assert emulator.find_key(key_id) is None
            gone = httpx.post(f"{emu.url}/api/v1/chat/completions", json=CHAT, headers=_bearer(key))
            assert gone.status_code == 401
        finally:
            pids = [p.pid for p in server.plugin_processes(plugin)]
            server.stop()
            assert not kill_leftovers(pids, timeout=10)


def test_a_killed_plugin_leaves_no_process_and_no_files(release: Release, tmp_path: Path) -> None:
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    proc, handshake = start_like_a_host(release.executable, tmpdir, cwd=tmp_path)
    try:
        assert handshake.startswith(b"1|5|unix|"), handshake
        (child,) = psutil.Process(proc.pid).children()
        assert list(tmpdir.glob("_MEI*")), "the bootloader unpacks its bundle under TMPDIR"

        proc.send_signal(signal.SIGKILL)  # as a host kills a plugin that does not stop
        proc.wait(10)
        wait_for(lambda: is_gone(child.pid), timeout=10, what="the orphaned child to exit")
        wait_for(lambda: not list(tmpdir.glob("_MEI*")), timeout=10, what="the child to remove the bundle")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        kill_leftovers([c.pid for c in process_tree(proc.pid)] if proc.poll() is None else [], timeout=5)


def test_a_stopped_plugin_leaves_no_files(release: Release, tmp_path: Path) -> None:
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    proc, handshake = start_like_a_host(release.executable, tmpdir, cwd=tmp_path)
    try:
        assert handshake.startswith(b"1|5|unix|"), handshake
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) is not None
        assert not list(tmpdir.glob("_MEI*"))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_sha256sums_and_sbom_describe_the_file(release: Release) -> None:
    check = subprocess.run(
        ["sha256sum", "--check", "--strict", release.sums.name],
        cwd=release.sums.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"{release.sha256}  {ENGINE_NAME}" in release.sums.read_text().splitlines()

    text = release.sbom.read_text()
    errors = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    assert errors is None, errors
    sbom = json.loads(text)
    main = sbom["metadata"]["component"]
    assert (main["name"], main["version"]) == (ENGINE_NAME, release.version)
    assert main["hashes"] == [{"alg": "SHA-256", "content": release.sha256}]
    found = {c["name"]: c for c in sbom["components"]}
    # The third-party code the plugin runs, the interpreter and the bootloader are all accounted for.
    for name in ("cryptography", "cffi", "greenlet", "protobuf", "httpx", "httpcore", "h11", "tenacity"):
        assert name in found, f"{name} missing from the SBOM"
        assert found[name]["purl"].startswith(f"pkg:pypi/{name}@"), found[name]
    assert found["cpython"]["version"] == platform.python_version()
    assert "pyinstaller" in found
    assert "libssl.so.3" in found and found["libssl.so.3"]["hashes"][0]["alg"] == "SHA-256"
    assert not any(name.startswith(("pytest", "hvac", "grpcio", "mypy")) for name in found)


def test_two_builds_of_one_commit_are_identical(tmp_path: Path) -> None:
    """Two fresh builds (no cache) from copies of the sources at different paths give one sha256."""
    shas = []
    for n in (1, 2):
        sources = {}
        for package, source in project_packages(*ENGINE_PACKAGES).items():
            sources[package] = tmp_path / f"checkout-{n}" / "plugin" / package
            shutil.copytree(source, sources[package], ignore=shutil.ignore_patterns("__pycache__"))
        started = time.monotonic()
        _, sha = build_onefile(tmp_path / f"out-{n}", ENGINE_NAME, ENGINE_ENTRY, sources, use_cache=False)
        print(f"build {n}: {time.monotonic() - started:.1f} s, sha256 {sha}")
        shas.append(sha)
    assert shas[0] == shas[1]


def test_version_is_set_at_build_time() -> None:
    assert version_override(None) == {}
    assert 'VERSION = "v0.2.0"' in version_override("v0.2.0")["llmsecrets/version.py"]
    for bad in ("0.2.0", "v1", "v1.2.3; import os", "v1.2.3\n"):
        with pytest.raises(ValueError, match="semantic version"):
            version_override(bad)


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
