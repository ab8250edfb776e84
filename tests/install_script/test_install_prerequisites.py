"""scripts/install stops with one clear message and a non-zero exit for each missing prerequisite, before
it changes anything, and never prints the token.

Covered: no address, no token, a refused token, a token without the capabilities, the server unreachable
or sealed, the file missing, not executable or different from SHA256SUMS, the mount taken by another
plugin, a --version the plugin does not report, and a plugin directory this host cannot write (the script
says exactly where the file must go; once it is there, the same command installs it).
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
from devkit.bao import BaoServer, free_port
from devkit.install import EXIT_COPY_NEEDED, EXIT_FAILED
from install_script_support import VERSION_A, Api, Releases, Run, run_install, start_server

pytestmark = pytest.mark.timeout(90)


def assert_refused(run: Run, *fragments: str, code: int = EXIT_FAILED) -> None:
    assert run.returncode == code, run.output
    message = run.stderr.strip()
    assert message.startswith("install: error: "), run.output
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def nothing_installed(api: Api, name: str, bao: BaoServer) -> bool:
    catalog = api.ok("GET", "sys/plugins/catalog")["data"]["detailed"]
    mounts = api.ok("GET", "sys/mounts")["data"]
    return (
        not [e for e in catalog if e["name"].startswith(name)]
        and f"{name}/" not in mounts
        and not [p for p in bao.plugin_dir.iterdir() if p.name.startswith(name)]
    )


def test_no_address(releases: Releases, home: Path) -> None:
    run = run_install(None, releases.a.executable, home=home, env={"BAO_TOKEN": "whatever"})
    assert_refused(run, "no server address: set BAO_ADDR (or VAULT_ADDR)")


def test_no_token(bao: BaoServer, releases: Releases, home: Path) -> None:
    run = run_install(bao, releases.a.executable, home=home, env={"BAO_TOKEN": None})
    assert_refused(run, "no token: set BAO_TOKEN (or VAULT_TOKEN), or pass --token-file")


def test_vault_addr_and_token_work_too(bao: BaoServer, api: Api, releases: Releases, home: Path) -> None:
    """VAULT_* as the HashiCorp CLI spells them (here: up to the mount check, which refuses sys/)."""
    env = {"BAO_ADDR": None, "BAO_TOKEN": None, "VAULT_ADDR": bao.addr, "VAULT_TOKEN": bao.root_token}
    run = run_install(bao, "--mount", "sys", releases.a.executable, home=home, env=env)
    assert_refused(run, "sys/ is already mounted with another plugin")
    assert f"server    {bao.addr}" in run.stdout


def test_server_unreachable(releases: Releases, home: Path) -> None:
    addr = f"http://127.0.0.1:{free_port()}"
    run = run_install(None, releases.a.executable, home=home, env={"BAO_ADDR": addr, "BAO_TOKEN": "t"})
    assert_refused(run, f"cannot reach the server at {addr}", "Connection refused")


def test_server_sealed(tmp_path: Path, releases: Releases, home: Path) -> None:
    server = start_server(tmp_path / "sealed")
    try:
        Api(server).ok("PUT", "sys/seal")
        run = run_install(server, releases.a.executable, home=home)
        assert_refused(run, "is sealed: unseal it first")
    finally:
        server.stop_with_plugins()


def test_token_refused(bao: BaoServer, releases: Releases, home: Path) -> None:
    run = run_install(bao, releases.a.executable, home=home, env={"BAO_TOKEN": "tok-not-a-real-token"})
    assert_refused(run, "the server refused the token")
    assert "tok-not-a-real-token" not in run.output


def test_token_without_permission(bao: BaoServer, api: Api, releases: Releases, home: Path) -> None:
    name = "llm-noperm"
    policy = textwrap.dedent(
        """
        path "sys/mounts/*" { capabilities = ["read"] }
        path "sys/plugins/catalog" { capabilities = ["read"] }
        path "sys/plugins/catalog/secret/*" { capabilities = ["read"] }
        """
    )
    api.ok("PUT", "sys/policies/acl/install-readonly", json={"policy": policy})
    token = api.ok("POST", "auth/token/create", json={"policies": ["install-readonly"], "ttl": "5m"})
    secret = token["auth"]["client_token"]
    run = run_install(
        bao, "--plugin-dir", bao.plugin_dir, "--name", name, "--mount", name, releases.a.executable,
        home=home, env={"BAO_TOKEN": secret},
    )  # fmt: skip
    assert_refused(run, "the token lacks permission", f"sudo on sys/plugins/catalog/secret/{name}")
    assert secret not in run.output
    assert nothing_installed(api, name, bao)


def test_file_missing(bao: BaoServer, tmp_path: Path, home: Path) -> None:
    run = run_install(bao, tmp_path / "vault-plugin-secrets-llm", home=home)
    assert_refused(run, "vault-plugin-secrets-llm not found")


def test_file_not_executable(bao: BaoServer, releases: Releases, tmp_path: Path, home: Path) -> None:
    copy = tmp_path / releases.a.executable.name
    shutil.copyfile(releases.a.executable, copy)  # no mode bits copied
    run = run_install(bao, copy, home=home)
    assert_refused(run, "is not executable")


def test_file_differs_from_sha256sums(bao: BaoServer, releases: Releases, tmp_path: Path, home: Path) -> None:
    release = tmp_path / "release"
    shutil.copytree(releases.a.executable.parent, release)
    altered = release / releases.a.executable.name
    altered.write_bytes(altered.read_bytes() + b"\0")
    run = run_install(bao, altered, home=home)
    assert_refused(run, "does not match", "SHA256SUMS says " + releases.a.sha256)


def test_mount_taken_by_another_plugin(bao: BaoServer, api: Api, releases: Releases, home: Path) -> None:
    api.ok("POST", "sys/mounts/taken-kv", json={"type": "kv"})
    run = run_install(
        bao, "--plugin-dir", bao.plugin_dir, "--mount", "taken-kv", releases.a.executable, home=home
    )
    assert_refused(run, "taken-kv/ is already mounted with another plugin ('kv'")
    assert api.mount("taken-kv")["type"] == "kv"


def test_version_the_plugin_does_not_report(bao: BaoServer, api: Api, releases: Releases, home: Path) -> None:
    name = "llm-badversion"
    run = run_install(
        bao, "--plugin-dir", bao.plugin_dir, "--name", name, "--mount", name, "--version", "v9.9.9",
        releases.a.executable, home=home,
    )  # fmt: skip
    assert_refused(run, f"the plugin reports version {VERSION_A}, not v9.9.9")
    assert nothing_installed(api, name, bao)  # no probe entry, no staged file


def test_plugin_dir_out_of_reach_says_where_the_file_goes(
    bao: BaoServer, api: Api, releases: Releases, home: Path
) -> None:
    name = "llm-bycopy"
    args = ("--name", name, "--mount", name, releases.a.executable)
    run = run_install(bao, *args, home=home)
    target = bao.plugin_dir / f"{name}-{VERSION_A}"  # the version comes from the SBOM beside the file
    assert_refused(run, f"copy {releases.a.executable} to {target}", releases.a.sha256, code=EXIT_COPY_NEEDED)
    assert nothing_installed(api, name, bao)

    shutil.copy2(releases.a.executable, target)  # the operator follows the instruction
    again = run_install(bao, *args, home=home)
    assert again.returncode == 0, again.output
    assert api.mount(name)["running_sha256"] == releases.a.sha256


def test_a_file_the_server_cannot_run(bao: BaoServer, api: Api, releases: Releases, home: Path) -> None:
    name = "llm-wrongfile"
    target = bao.plugin_dir / f"{name}-{VERSION_A}"
    shutil.copy2(releases.b.executable, target)  # another build where release A must go
    run = run_install(bao, "--name", name, "--mount", name, releases.a.executable, home=home)
    assert_refused(run, f"the server could not run {target.name}", f"its sha256 is not {releases.a.sha256}")
    catalog = api.ok("GET", "sys/plugins/catalog")["data"]["detailed"]
    assert not [e for e in catalog if e["name"] == name]  # the probe's entry was deleted again
    assert f"{name}/" not in api.ok("GET", "sys/mounts")["data"]
