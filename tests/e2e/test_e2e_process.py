"""The plugin process's life under a real OpenBao: respawn after a kill, exit with the server, failed Setup,
prompt unmount."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable

import hvac
import psutil
import pytest
from devkit.bao import BaoServer, is_gone, kill_leftovers
from devkit.waiting import wait_for
from e2e_support import (
    PLUGIN_NAME,
    Api,
    BuiltPlugin,
    Mount,
    unique_mount_name,
)
from testbackend import FAIL_SETUP_OPTION, SETUP_REJECTED

pytestmark = pytest.mark.timeout(90)


def assert_plugin_child(server: BaoServer, plugin: BuiltPlugin, pid: int) -> None:
    """`pid` runs our plugin file and is a child of this bao server (so it is the one to kill)."""
    assert server.proc is not None
    proc = psutil.Process(pid)
    assert proc.ppid() == server.proc.pid
    assert any(str(plugin.path) in arg for arg in proc.cmdline()), proc.cmdline()


def server_saw_exit(server: BaoServer, pid: int) -> bool:
    if psutil.pid_exists(pid):
        return False  # still running, or a zombie the server has not reaped yet
    return (
        re.search(rf"plugin process exited: .*id={pid}\b".encode(), server.log_path.read_bytes()) is not None
    )


def test_killed_plugin_is_respawned_on_next_request(mount: Mount) -> None:
    status, body = mount.write("kv/kept", value="before the kill")
    assert status == 200, body
    old_pid = mount.pid()
    assert_plugin_child(mount.server, mount.plugin, old_pid)

    os.kill(old_pid, signal.SIGKILL)
    # Wait until the server has noticed (reaped the process and logged it); a request sent in the instant
    # before that fails in the host, which has not yet seen the exit.
    wait_for(
        lambda: server_saw_exit(mount.server, old_pid), timeout=10, what="the server to see the plugin exit"
    )

    # The very next request respawns the plugin (Setup, Initialize) and succeeds.
    assert mount.read("kv/kept")["data"]["value"] == "before the kill"
    new_pid = mount.pid()
    assert new_pid != old_pid
    assert_plugin_child(mount.server, mount.plugin, new_pid)
    # And leases still work end to end in the new process.
    lease = mount.read("lease", ttl="1m")
    mount.client.sys.revoke_lease(lease_id=lease["lease_id"])
    assert [r["internal_data"]["ref"] for r in mount.records()["revocations"]] == [lease["data"]["ref"]]


def test_plugin_exits_when_the_server_dies(
    fresh_server: Callable[[], BaoServer], built_plugin: BuiltPlugin
) -> None:
    server = fresh_server()
    assert server.proc is not None
    server.enable(PLUGIN_NAME, "first")
    server.enable(PLUGIN_NAME, "second")
    api = Api(server.client())
    pids = [api.call("GET", f"{m}/pid")[1]["data"]["pid"] for m in ("first", "second")]
    for pid in pids:
        assert_plugin_child(server, built_plugin, pid)
    try:
        os.kill(server.proc.pid, signal.SIGKILL)  # no Shutdown, no cleanup: the plugins are orphaned
        server.proc.wait(timeout=10)
        wait_for(lambda: all(is_gone(p) for p in pids), timeout=5, what="the orphaned plugins to exit")
    finally:
        kill_leftovers(pids, timeout=0)


def test_setup_failure_is_reported_and_the_process_exits(bao: BaoServer) -> None:
    log_start = bao.log_path.stat().st_size
    with pytest.raises(hvac.exceptions.VaultError) as excinfo:
        bao.enable(PLUGIN_NAME, "e2e-setup-fails", options={FAIL_SETUP_OPTION: "yes"})
    assert SETUP_REJECTED in str(excinfo.value)

    mounts = bao.client().sys.list_mounted_secrets_engines()["data"]
    assert "e2e-setup-fails/" not in mounts

    # Every process the server started for that mount has exited by itself (Vault does not kill it).
    with bao.log_path.open("rb") as log:
        log.seek(log_start)
        started = [int(pid) for pid in re.findall(rb"plugin started: .*?pid=(\d+)", log.read())]
    assert started, "the server log shows no plugin process for the failed mount"
    try:
        wait_for(
            lambda: all(is_gone(p) for p in started), timeout=10, what="the plugin whose Setup failed to exit"
        )
    finally:
        kill_leftovers(started, timeout=0)


def test_unmount_stops_the_plugin_promptly(bao: BaoServer, built_plugin: BuiltPlugin) -> None:
    """`bao secrets disable` (rollback, revoke, Cleanup, Shutdown) takes milliseconds with a healthy plugin.

    The host stops its broker server gracefully after Cleanup and waits for the plugin's connections to it
    (Storage) to close: a plugin that keeps them open makes every unmount and reload hang for seconds.
    """
    name = unique_mount_name("unmount")
    bao.enable(PLUGIN_NAME, name)
    api = Api(bao.client())
    assert api.call("POST", f"{name}/kv/used", json={"value": "storage was used"})[0] == 200
    assert api.call("GET", f"{name}/kv/used")[0] == 200
    pid = api.call("GET", f"{name}/pid")[1]["data"]["pid"]
    assert_plugin_child(bao, built_plugin, pid)

    started = time.monotonic()
    bao.client().sys.disable_secrets_engine(name)
    elapsed = time.monotonic() - started
    assert elapsed < 3.0, f"unmount took {elapsed:.1f}s"
    wait_for(lambda: is_gone(pid), timeout=5, what="the plugin to exit after Shutdown")
