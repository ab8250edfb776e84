"""scripts/install moving a live mount from release A to release B (built to report another version).

What an operator relies on: the new file goes in beside the old one, the mount is tuned to the new version
and its plugin reloaded; the old plugin process stops and the new one serves the mount; leases issued under
A stay with the mount, so B renews and revokes them and deletes their keys at the provider; B issues new
keys. An upgrade that fails after the mount was tuned (here: the file changed on disk after it was
registered) is rolled back, and the mount keeps working on A. The platform operator's policy
(vault-config/policies/llm-operator.hcl) is all the script needs, for the install and for the upgrade.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from devkit.bao import BaoServer
from devkit.install import Installer, InstallError, Options
from devkit.waiting import wait_for
from install_script_support import (
    REPO,
    VERSION_A,
    VERSION_B,
    Api,
    Provider,
    Releases,
    issue,
    processes_running,
    run_install,
)

pytestmark = pytest.mark.timeout(120)


def install_a(
    bao: BaoServer, api: Api, releases: Releases, provider: Provider, home: Path, name: str
) -> None:
    run = run_install(
        bao, "--plugin-dir", bao.plugin_dir, "--name", name, "--mount", name, releases.a.executable, home=home
    )
    assert run.returncode == 0, run.output
    provider.configure(api, name, ttl="1m", max_ttl="10m")


def test_upgrade_keeps_the_leases_issued_under_the_old_version(
    bao: BaoServer, api: Api, releases: Releases, provider: Provider, home: Path
) -> None:
    name = "llm-upgrade"
    install_a(bao, api, releases, provider, home, name)
    file_a, file_b = bao.plugin_dir / f"{name}-{VERSION_A}", bao.plugin_dir / f"{name}-{VERSION_B}"
    old = issue(api, name)
    assert provider.chat_status(old.api_key) == 200
    assert processes_running(bao, file_a)

    run = run_install(
        bao, "--plugin-dir", bao.plugin_dir, "--name", name, "--mount", name, releases.b.executable, home=home
    )
    assert run.returncode == 0, run.output
    assert f"{name}/ moved: {VERSION_A} -> {VERSION_B}" in run.stdout
    assert bao.root_token not in run.output

    mount = api.mount(name)
    assert (mount["plugin_version"], mount["running_plugin_version"]) == (VERSION_B, VERSION_B)
    assert mount["running_sha256"] == releases.b.sha256
    # A's process is gone and B's serves the mount; A stays installed and registered, for a roll back.
    wait_for(lambda: not processes_running(bao, file_a), 15, "the old plugin process to stop")
    assert processes_running(bao, file_b)
    assert file_a.exists()
    assert api.catalog_entry(name, VERSION_A) is not None

    # The lease issued under A: renewed and revoked by B, its key deleted at the provider.
    renewed = api.ok("PUT", "sys/leases/renew", json={"lease_id": old.lease_id, "increment": 120})
    assert (renewed["lease_id"], renewed["lease_duration"]) == (old.lease_id, 120)
    assert provider.chat_status(old.api_key) == 200
    api.ok("PUT", "sys/leases/revoke", json={"lease_id": old.lease_id})
    assert provider.is_deleted(old.key_id)
    assert provider.chat_status(old.api_key) == 401

    # B issues keys of its own.
    new = issue(api, name)
    assert new.key_id != old.key_id
    assert provider.chat_status(new.api_key) == 200
    api.ok("PUT", "sys/leases/revoke", json={"lease_id": new.lease_id})
    assert provider.is_deleted(new.key_id)

    again = run_install(
        bao, "--plugin-dir", bao.plugin_dir, "--name", name, "--mount", name, releases.b.executable, home=home
    )
    assert again.returncode == 0, again.output
    assert again.stdout.rstrip().endswith("done: nothing changed")


def test_a_failed_upgrade_is_rolled_back(
    bao: BaoServer, api: Api, releases: Releases, provider: Provider, home: Path
) -> None:
    name = "llm-rollback"
    install_a(bao, api, releases, provider, home, name)
    lease = issue(api, name)
    file_b = bao.plugin_dir / f"{name}-{VERSION_B}"
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        if line.startswith("catalog   registered"):
            # The file changes on disk after the server checked and registered it: the reload must fail.
            file_b.write_bytes(file_b.read_bytes() + b"\0")

    opts = Options(
        file=releases.b.executable,
        addr=bao.addr,
        token=bao.root_token,
        mount=name,
        name=name,
        plugin_dir=bao.plugin_dir,
    )
    with pytest.raises(InstallError, match="checksums did not match"):
        Installer(opts, say).run()
    assert any(line.startswith(f"rollback  moving {name}/ back to {VERSION_A}") for line in lines), lines
    assert not any("FAILED" in line for line in lines), lines

    mount = api.mount(name)
    assert (mount["plugin_version"], mount["running_plugin_version"]) == (VERSION_A, VERSION_A)
    assert mount["running_sha256"] == releases.a.sha256
    api.ok("PUT", "sys/leases/renew", json={"lease_id": lease.lease_id, "increment": 60})
    assert provider.chat_status(lease.api_key) == 200
    api.ok("PUT", "sys/leases/revoke", json={"lease_id": lease.lease_id})
    assert provider.is_deleted(lease.key_id)


def test_the_operator_policy_is_enough(bao: BaoServer, api: Api, releases: Releases, home: Path) -> None:
    """With the default catalog name and mount (the ones the policy names) and an operator's token."""
    policy = (REPO / "vault-config" / "policies" / "llm-operator.hcl").read_text()
    api.ok("PUT", "sys/policies/acl/llm-operator", json={"policy": policy})
    token = api.ok("POST", "auth/token/create", json={"policies": ["llm-operator"], "ttl": "10m"})
    operator = {"BAO_TOKEN": token["auth"]["client_token"]}
    for release, version in ((releases.a, VERSION_A), (releases.b, VERSION_B)):
        run = run_install(bao, "--plugin-dir", bao.plugin_dir, release.executable, home=home, env=operator)
        assert run.returncode == 0, run.output
        mount = api.mount("llm")
        assert (mount["type"], mount["running_plugin_version"]) == ("vault-plugin-secrets-llm", version)
        assert mount["running_sha256"] == release.sha256
        assert operator["BAO_TOKEN"] not in run.output
