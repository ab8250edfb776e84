"""scripts/install on a server whose config declares the plugin (a `plugin` block, registered at start).

What an operator relies on: the script uses a declared version as it is (the mount is enabled on it, the
catalog entry stays declarative, so the server still starts and reloads its config), and refuses to
overwrite a declared version with a file of another sha256: that change belongs in the config.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from devkit.bao import BaoServer
from install_script_support import VERSION_A, Api, Releases, run_install, start_server

pytestmark = pytest.mark.timeout(120)

DECLARED = "llm-declared"
MISDECLARED = "llm-misdeclared"


@pytest.fixture
def declared_server(tmp_path: Path, releases: Releases) -> Iterator[BaoServer]:
    """A server that declares release A twice: once right, once with another file's sha256."""
    plugin_dir = tmp_path / "bao" / "plugins"
    plugin_dir.mkdir(parents=True)
    shutil.copy2(releases.a.executable, plugin_dir / "declared-file")
    blocks = "plugin_auto_register = true\n"
    for name, sha in ((DECLARED, releases.a.sha256), (MISDECLARED, releases.b.sha256)):
        blocks += (
            f'plugin "secret" "{name}" {{\n  command = "declared-file"\n  version = "{VERSION_A}"\n'
            f'  sha256sum = "{sha}"\n}}\n'
        )
    server = start_server(tmp_path / "bao", extra_config=blocks)
    try:
        yield server
    finally:
        server.stop_with_plugins()


def test_a_declared_version_is_used_as_is(declared_server: BaoServer, releases: Releases, home: Path) -> None:
    bao, api = declared_server, Api(declared_server)
    args = ("--plugin-dir", bao.plugin_dir, "--name", DECLARED, "--mount", DECLARED, releases.a.executable)
    run = run_install(bao, *args, home=home)
    assert run.returncode == 0, run.output
    assert f"secret/{DECLARED} {VERSION_A} is declared in the server's config" in run.stdout
    assert run.stdout.rstrip().endswith(f"done: 1 change(s): enabled {DECLARED}/")
    entry = api.catalog_entry(DECLARED, VERSION_A)
    assert entry is not None
    assert (entry["declarative"], entry["command"]) == (True, "declared-file")
    assert api.mount(DECLARED)["running_sha256"] == releases.a.sha256
    assert [p.name for p in bao.plugin_dir.iterdir()] == ["declared-file"]  # nothing copied


def test_a_declared_version_is_not_overwritten(
    declared_server: BaoServer, releases: Releases, home: Path
) -> None:
    bao, api = declared_server, Api(declared_server)
    args = (
        "--plugin-dir",
        bao.plugin_dir,
        "--name",
        MISDECLARED,
        "--mount",
        MISDECLARED,
        releases.a.executable,
    )
    run = run_install(bao, *args, home=home)
    assert run.returncode == 1, run.output
    assert (
        f"secret/{MISDECLARED} {VERSION_A} is declared in the server's config with another sha256"
        in run.stderr
    )
    entry = api.catalog_entry(MISDECLARED, VERSION_A)
    assert entry is not None
    assert (entry["declarative"], entry["sha256"]) == (True, releases.b.sha256)
