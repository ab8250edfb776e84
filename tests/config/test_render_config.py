"""scripts/render-config: the committed templates become configs that name exactly the built plugin file."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from config_support import BuiltPlugin, render_config
from devkit.render_config import ENGINE_NAME
from llmsecrets.version import VERSION

pytestmark = pytest.mark.timeout(120)


def plugin_block(config: str) -> dict[str, str]:
    match = re.search(r'plugin "secret" "vault-plugin-secrets-llm" \{(.*?)\}', config, re.DOTALL)
    assert match, "no plugin block for the engine"
    return dict(re.findall(r'(\w+)\s*=\s*"([^"]*)"', match.group(1)))


def setting(config: str, name: str) -> str:
    match = re.search(rf'^\s*{name}\s*=\s*"([^"]*)"', config, re.MULTILINE)
    assert match, f"no {name} in the config"
    return match.group(1)


def copy_release(built: BuiltPlugin, dest: Path) -> Path:
    """The plugin with its SBOM and SHA256SUMS, copied as an operator would; returns the plugin path."""
    dest.mkdir()
    for name in (ENGINE_NAME, f"{ENGINE_NAME}.cdx.json", "SHA256SUMS"):
        shutil.copy2(built.directory / name, dest / name)
    return dest / ENGINE_NAME


def test_dev_config_names_the_built_file_by_sha256_and_version(
    tmp_path: Path, built_plugin: BuiltPlugin
) -> None:
    out = tmp_path / "dev.hcl"
    result = render_config("dev", out, "--plugin", built_plugin.path, "--data-dir", tmp_path / "data")
    assert result.returncode == 0, result.stderr
    config = out.read_text()
    assert not re.search(r"\{\{[A-Z]", config), "a placeholder was left unfilled"
    assert plugin_block(config) == {
        "command": ENGINE_NAME,
        "version": VERSION,  # from the SBOM the build wrote beside the file (the default build)
        "sha256sum": built_plugin.sha256,
    }
    assert setting(config, "plugin_directory") == str(built_plugin.directory)
    assert setting(config, "path") == str(tmp_path / "data" / "raft")
    assert setting(config, "file_path") == str(tmp_path / "data" / "audit.log")


def test_ha_config_is_three_nodes_that_join_each_other(tmp_path: Path, built_plugin: BuiltPlugin) -> None:
    result = render_config("ha", tmp_path, "--plugin", built_plugin.path, "--base-port", "9210")
    assert result.returncode == 0, result.stderr
    configs = {n: (tmp_path / f"node{n}.hcl").read_text() for n in (1, 2, 3)}
    for n, config in configs.items():
        own = 9200 + 10 * n
        assert setting(config, "node_id") == f"node{n}"
        assert setting(config, "api_addr") == f"http://127.0.0.1:{own}"
        assert setting(config, "cluster_addr") == f"https://127.0.0.1:{own + 1}"
        assert setting(config, "path") == str(tmp_path / f"node{n}" / "raft")
        joins = re.findall(r'leader_api_addr = "http://127.0.0.1:(\d+)"', config)
        assert sorted(int(p) for p in joins) == [9200 + 10 * m for m in (1, 2, 3) if m != n]
        assert plugin_block(config)["sha256sum"] == built_plugin.sha256
        assert setting(config, "file_path") == str(tmp_path / "audit.log")  # the same on every node


def test_a_file_that_does_not_match_its_sha256sums_is_refused(
    tmp_path: Path, built_plugin: BuiltPlugin
) -> None:
    plugin = copy_release(built_plugin, tmp_path / "plugins")
    plugin.write_bytes(plugin.read_bytes() + b"\0")  # changed after the build
    result = render_config("dev", tmp_path / "dev.hcl", "--plugin", plugin, "--data-dir", tmp_path / "data")
    assert result.returncode == 1
    assert "SHA256SUMS" in result.stderr and built_plugin.sha256 in result.stderr
    assert not (tmp_path / "dev.hcl").exists()


def test_the_version_comes_from_the_sbom_or_the_command_line(
    tmp_path: Path, built_plugin: BuiltPlugin
) -> None:
    plugin = copy_release(built_plugin, tmp_path / "plugins")
    sbom = plugin.parent / f"{ENGINE_NAME}.cdx.json"
    doc = json.loads(sbom.read_text())
    doc["metadata"]["component"]["version"] = "v9.8.7"  # as a `build-plugin --version v9.8.7` build says
    sbom.write_text(json.dumps(doc))
    out = tmp_path / "dev.hcl"
    assert render_config("dev", out, "--plugin", plugin, "--data-dir", tmp_path).returncode == 0
    assert plugin_block(out.read_text())["version"] == "v9.8.7"

    result = render_config("dev", out, "--plugin", plugin, "--data-dir", tmp_path, "--version", "v0.3.1")
    assert result.returncode == 0, result.stderr
    assert plugin_block(out.read_text())["version"] == "v0.3.1"

    result = render_config("dev", out, "--plugin", plugin, "--data-dir", tmp_path, "--version", "0.3")
    assert result.returncode == 1 and "leading v" in result.stderr

    doc["metadata"]["component"]["hashes"] = [{"alg": "SHA-256", "content": "0" * 64}]  # another build's
    sbom.write_text(json.dumps(doc))
    result = render_config("dev", out, "--plugin", plugin, "--data-dir", tmp_path)
    assert result.returncode == 1 and "another build" in result.stderr


def test_a_value_that_would_break_out_of_an_hcl_string_is_refused(
    tmp_path: Path, built_plugin: BuiltPlugin
) -> None:
    out = tmp_path / "dev.hcl"
    result = render_config(
        "dev", out, "--plugin", built_plugin.path, "--data-dir", tmp_path / 'x"\nui = true #'
    )
    assert result.returncode == 1 and "not allowed" in result.stderr
    assert not out.exists()
