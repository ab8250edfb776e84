"""scripts/install on a server that has never seen the plugin, then again with the same file.

What an operator relies on: one command puts the file into the plugin directory (named by its version),
registers it by sha256 and version, enables the mount, and the mount then issues keys that work at the
provider and are deleted when their lease is revoked. Running it again changes nothing (no copy, no
registration, no reload: the plugin process keeps running) and says so. The token is never printed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from devkit.bao import BaoServer
from devkit.install import sha256_of
from install_script_support import VERSION_A, Api, Provider, Releases, issue, processes_running, run_install

pytestmark = pytest.mark.timeout(120)

NAME = "llm-fresh"
MOUNT = "llm-fresh"


def test_fresh_install_then_a_rerun_that_changes_nothing(
    bao: BaoServer, api: Api, releases: Releases, provider: Provider, home: Path
) -> None:
    args = ("--plugin-dir", bao.plugin_dir, "--name", NAME, "--mount", MOUNT, releases.a.executable)
    first = run_install(bao, *args, home=home)
    assert first.returncode == 0, first.output
    assert "done: 3 change(s)" in first.stdout
    assert bao.root_token not in first.output

    # The file sits in the plugin directory under its version, executable, byte for byte the release.
    installed = bao.plugin_dir / f"{NAME}-{VERSION_A}"
    assert sha256_of(installed) == releases.a.sha256
    assert os.access(installed, os.X_OK)
    assert not [p.name for p in bao.plugin_dir.iterdir() if p.name.startswith(NAME) and p != installed]
    entry = api.catalog_entry(NAME, VERSION_A)
    assert entry is not None
    assert (entry["sha256"], entry["command"], entry["version"]) == (
        releases.a.sha256,
        installed.name,
        VERSION_A,
    )
    catalog = api.ok("GET", "sys/plugins/catalog")["data"]["detailed"]
    assert [e["version"] for e in catalog if e["name"].startswith(NAME)] == [VERSION_A]  # no probe left
    mount = api.mount(MOUNT)
    assert (mount["type"], mount["plugin_version"]) == (NAME, VERSION_A)
    assert (mount["running_plugin_version"], mount["running_sha256"]) == (VERSION_A, releases.a.sha256)

    # The mount works: a key issued, used, revoked, deleted at the provider.
    provider.configure(api, MOUNT)
    creds = issue(api, MOUNT)
    assert provider.chat_status(creds.api_key) == 200
    api.ok("PUT", "sys/leases/revoke", json={"lease_id": creds.lease_id})
    assert provider.is_deleted(creds.key_id)
    assert provider.chat_status(creds.api_key) == 401

    # Again, with the token from a file this time: nothing changes, and the script says so.
    pids = processes_running(bao, installed)
    assert pids
    before = (installed.stat().st_mtime_ns, api.catalog_entry(NAME, VERSION_A), api.mount(MOUNT))
    token_file = home / "token"
    token_file.write_text(bao.root_token + "\n")
    again = run_install(bao, *args, "--token-file", token_file, home=home, env={"BAO_TOKEN": None})
    assert again.returncode == 0, again.output
    assert again.stdout.rstrip().endswith("done: nothing changed")
    assert f"{MOUNT}/ runs {VERSION_A} already" in again.stdout
    assert bao.root_token not in again.output
    after = (installed.stat().st_mtime_ns, api.catalog_entry(NAME, VERSION_A), api.mount(MOUNT))
    assert after == before
    assert processes_running(bao, installed) == pids  # not reloaded
