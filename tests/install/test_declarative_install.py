"""Declarative install on a real OpenBao server, from the committed snippets vault-config/plugin-file.hcl and
vault-config/plugin-oci.hcl: the server registers the plugin from its config file (no register call
anywhere in these tests), `secrets enable` needs no version, and the engine issues and revokes a key.
From an OCI image, the server pulls the image from a minimal registry on 127.0.0.1 itself. A wrong sha256
or version is refused the way an operator will see it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from devkit.bao import bao_binary
from devkit.oci import OciImage, push
from devkit.oci_registry import OciRegistry
from install_support import (
    FILE_SNIPPET,
    OCI_SNIPPET,
    PLUGIN_NAME,
    REPOSITORY,
    BuiltPlugin,
    api_of,
    enable_engine,
    failed_start,
    fill,
    issue_use_revoke,
    log_of,
    processes_running_from,
    running_server,
)

pytestmark = pytest.mark.timeout(120)
WRONG_SHA256 = "0" * 64


def registered_line(engine: BuiltPlugin, version: str | None = None) -> str:
    return (
        f"registering new declarative plugin: name={PLUGIN_NAME} type=secret "
        f"version={version or engine.version} sha256={engine.sha256}"
    )


def oci_config(
    plugin_dir: Path, registry: OciRegistry, engine: BuiltPlugin, sha256: str | None = None
) -> str:
    return fill(
        OCI_SNIPPET,
        {
            "PLUGIN_DIRECTORY": str(plugin_dir),
            "PLUGIN_IMAGE": f"{registry.host}/{REPOSITORY}",
            "PLUGIN_VERSION": engine.version,
            "PLUGIN_SHA256": sha256 or engine.sha256,
        },
    )


def file_config(
    plugin_dir: Path, engine: BuiltPlugin, *, sha256: str | None = None, version: str | None = None
) -> str:
    return fill(
        FILE_SNIPPET,
        {
            "PLUGIN_DIRECTORY": str(plugin_dir),
            "PLUGIN_VERSION": version or engine.version,
            "PLUGIN_SHA256": sha256 or engine.sha256,
        },
    )


def install_file(engine: BuiltPlugin, plugin_dir: Path) -> None:
    plugin_dir.mkdir(parents=True)
    shutil.copy2(engine.path, plugin_dir / PLUGIN_NAME)


def catalog_entry(api_ok: dict[str, object]) -> dict[str, object]:
    data = api_ok["data"]
    assert isinstance(data, dict)
    return data


def test_server_pulls_the_plugin_image_registers_it_and_the_engine_works(
    tmp_path: Path, engine: BuiltPlugin, engine_image: OciImage, registry: OciRegistry
) -> None:
    push(engine_image, f"{registry.host}/{REPOSITORY}")
    pushed = len(registry.requests())
    plugin_dir = tmp_path / "plugins"  # empty: everything in it comes from the registry

    with running_server(tmp_path / "bao", plugin_dir, oci_config(plugin_dir, registry, engine)) as server:
        # The server itself pulled the tag, the manifest for its platform, the config and the one layer.
        pulls = [r for r in registry.requests()[pushed:] if r.method == "GET" and r.status == 200]
        assert {r.path for r in pulls} >= {
            f"/v2/{REPOSITORY}/manifests/{engine.version}",
            f"/v2/{REPOSITORY}/manifests/{engine_image.manifest.digest}",
            f"/v2/{REPOSITORY}/blobs/{engine_image.config.digest}",
        }
        assert registry.served("GET", f"/v2/{REPOSITORY}/blobs/{engine_image.layer.digest}") == 1
        log = log_of(server)
        assert "downloaded plugin: plugin=secret-vault-plugin-secrets-llm" in log
        assert registered_line(engine) in log
        # What it runs is the file we built, cached under the plugin directory.
        link = plugin_dir / f"secret-{PLUGIN_NAME}-{engine.version}"
        assert link.is_symlink()
        assert link.resolve().read_bytes() == engine.path.read_bytes()

        with api_of(server) as api:
            entry = catalog_entry(
                api.ok("GET", f"sys/plugins/catalog/secret/{PLUGIN_NAME}?version={engine.version}")
            )
            assert (entry["declarative"], entry["oci"], entry["sha256"]) == (True, True, engine.sha256)
            mount = enable_engine(api)
            assert mount["type"] == PLUGIN_NAME
            assert mount["running_plugin_version"] == engine.version
            assert server.plugin_pids(plugin_dir), "no plugin process runs from the plugin directory"
            issue_use_revoke(api)


def test_server_registers_the_plugin_file_from_its_config(tmp_path: Path, engine: BuiltPlugin) -> None:
    plugin_dir = tmp_path / "plugins"
    install_file(engine, plugin_dir)

    with running_server(tmp_path / "bao", plugin_dir, file_config(plugin_dir, engine)) as server:
        assert registered_line(engine) in log_of(server)
        with api_of(server) as api:
            entry = catalog_entry(
                api.ok("GET", f"sys/plugins/catalog/secret/{PLUGIN_NAME}?version={engine.version}")
            )
            assert (entry["declarative"], entry["oci"], entry["command"]) == (True, False, PLUGIN_NAME)
            assert enable_engine(api)["running_plugin_version"] == engine.version
            issue_use_revoke(api)


def test_a_wrong_sha256_in_the_image_block_stops_the_server(
    tmp_path: Path, engine: BuiltPlugin, engine_image: OciImage, registry: OciRegistry
) -> None:
    push(engine_image, f"{registry.host}/{REPOSITORY}")
    plugin_dir = tmp_path / "plugins"

    log = failed_start(tmp_path / "bao", plugin_dir, oci_config(plugin_dir, registry, engine, WRONG_SHA256))

    assert (
        f'Error downloading plugins: failed to download plugin "secret-{PLUGIN_NAME}": '
        f"plugin hash mismatch: expected {WRONG_SHA256}, got {engine.sha256}"
    ) in log
    # The pulled file was deleted again: nothing in the plugin directory can run, and nothing does.
    assert [p for p in plugin_dir.rglob("*") if not p.is_dir()] == []
    assert processes_running_from(plugin_dir) == []


def test_a_wrong_sha256_in_the_file_block_fails_enable(tmp_path: Path, engine: BuiltPlugin) -> None:
    plugin_dir = tmp_path / "plugins"
    install_file(engine, plugin_dir)
    config = file_config(plugin_dir, engine, sha256=WRONG_SHA256)

    # The server starts: the catalog entry is written, the file is checked only when it is run.
    with running_server(tmp_path / "bao", plugin_dir, config) as server, api_of(server) as api:
        status, body = api.call("POST", "sys/mounts/llm", json={"type": PLUGIN_NAME})
        assert status == 400, body
        assert "checksums did not match" in " ".join(body["errors"])
        assert server.plugin_pids(plugin_dir) == []
        assert "Error determining plugin version" in log_of(server)


def test_a_block_whose_version_the_plugin_does_not_report_stops_the_server(
    tmp_path: Path, engine: BuiltPlugin
) -> None:
    plugin_dir = tmp_path / "plugins"
    install_file(engine, plugin_dir)

    log = failed_start(tmp_path / "bao", plugin_dir, file_config(plugin_dir, engine, version="v9.9.9"))

    assert (
        f"plugin version mismatch: {PLUGIN_NAME} reported version ({engine.version}) "
        "did not match requested version (v9.9.9)"
    ) in log
    assert processes_running_from(plugin_dir) == []


def test_plugin_init_downloads_ahead_of_time_for_a_server_without_auto_download(
    tmp_path: Path, engine: BuiltPlugin, engine_image: OciImage, registry: OciRegistry
) -> None:
    push(engine_image, f"{registry.host}/{REPOSITORY}")
    plugin_dir = tmp_path / "plugins"
    plugin_dir.mkdir()
    config = oci_config(plugin_dir, registry, engine).replace(
        "plugin_auto_download = true", "plugin_auto_download = false"
    )
    assert "plugin_auto_download = false" in config
    init_config = tmp_path / "init.hcl"
    init_config.write_text(config)

    # What an init container would run before the server starts.
    init = subprocess.run(
        [bao_binary(), "plugin", "init", f"-config={init_config}"], capture_output=True, text=True, timeout=60
    )
    assert init.returncode == 0, init.stderr
    assert registry.served("GET", f"/v2/{REPOSITORY}/blobs/{engine_image.layer.digest}") == 1
    requests_before = len(registry.requests())

    with running_server(tmp_path / "bao", plugin_dir, config) as server, api_of(server) as api:
        assert registered_line(engine) in log_of(server)
        assert enable_engine(api)["running_plugin_version"] == engine.version
        assert len(registry.requests()) == requests_before, "the server itself went to the registry"
