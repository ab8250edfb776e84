"""Install the engine on an existing Vault / OpenBao server, or move a live mount to a new build.

`scripts/install [options] PLUGIN_FILE` runs `main`. Over the server's HTTP API it:

1. checks every prerequisite first and stops with one clear message (exit 1) when one is missing: the
   address, the token, the file (present, executable, equal to its line in SHA256SUMS), the server
   (reachable, initialized, unsealed), the token (valid, allowed to do each step), the mount (absent or
   running this plugin);
2. puts the file in the plugin directory as `<name>-<version>` (with --plugin-dir), so versions sit side
   by side and a mount on the old one keeps working; without --plugin-dir it checks the file is already
   there and otherwise says exactly where it must go (exit 3);
3. has the server run the file once (registered under a version no build reports, which the server
   refuses, naming the version the plugin does report): this proves the server can run it and its sha256
   matches, and tells the version, before a live mount is touched;
4. registers `secret/<name>` at that version with the sha256 (and the plugin's env, kept from the version
   the mount runs unless --env is given). A version declared by a `plugin` block in the server's config is
   left to the config: it is used as is if its sha256 is the file's, and refused otherwise;
5. enables the mount on that version, or upgrades it: tune `plugin_version`, then reload the mount's
   plugin (leases stay with the mount, so the new process renews and revokes the old leases);
6. verifies: `sys/mounts` shows the version and sha256 running, and the mount answers path-help. A failed
   upgrade is rolled back to the previous version.

Each step is skipped when already done, so a second run with the same file changes nothing and says so.
The version is --version, else the one in the SBOM that scripts/build-plugin writes beside the file, else
the one the plugin reports to the server (step 3). The token is never printed.
Standard library only, so it runs with any Python 3.11+ on an operator's machine.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devkit.vault_api import Unreachable, VaultApi

DEFAULT_NAME = "vault-plugin-secrets-llm"
DEFAULT_MOUNT = "llm"
# A catalog version no build reports: registering the file under it makes the server run the file and
# answer "plugin version mismatch: ... reported version (vX) did not match requested version (...)".
PROBE_VERSION = "v0.0.0-install-probe"
REPORTED_RE = re.compile(r"reported version \(([^)]*)\)")
SUMS_NAME = "SHA256SUMS"
SBOM_SUFFIX = ".cdx.json"
SEMVER_RE = re.compile(r"v?\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.+-]+)?")

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_COPY_NEEDED = 3


class InstallError(Exception):
    """A prerequisite is missing or a step failed; the message says which and what to do."""

    exit_code = EXIT_FAILED


class CopyNeeded(InstallError):
    """The operator must put the file into the server's plugin directory, then run again."""

    exit_code = EXIT_COPY_NEEDED


# --- inputs ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    file: Path
    addr: str
    token: str
    mount: str = DEFAULT_MOUNT
    name: str = DEFAULT_NAME
    plugin_dir: Path | None = None
    version: str | None = None
    env: tuple[str, ...] | None = None  # None: keep the env the catalog entry already has
    ca_cert: str | None = None
    namespace: str | None = None


@dataclass(frozen=True)
class PluginFile:
    path: Path
    sha256: str
    checked_against: str  # how the sha256 was checked, for the report
    sbom_version: str | None  # the version in the SBOM beside the file, if any


def normalize_version(version: str) -> str:
    """The catalog's form: a semantic version with a leading v (OpenBao canonicalizes the same way)."""
    if not SEMVER_RE.fullmatch(version):
        raise InstallError(f"--version {version!r} is not a semantic version such as v0.2.0")
    return version if version.startswith("v") else f"v{version}"


def read_token(token_file: str | None, environ: Mapping[str, str]) -> str:
    """--token-file, else BAO_TOKEN, else VAULT_TOKEN, else the CLI's token file (~/.vault-token)."""
    if token_file:
        try:
            token = Path(token_file).read_text().strip()
        except OSError as exc:
            raise InstallError(f"cannot read the token file {token_file}: {exc.strerror}") from None
        if not token:
            raise InstallError(f"the token file {token_file} is empty")
        return token
    for var in ("BAO_TOKEN", "VAULT_TOKEN"):
        if environ.get(var, "").strip():
            return environ[var].strip()
    helper = Path(environ.get("HOME", "~")).expanduser() / ".vault-token"
    with contextlib.suppress(OSError):
        token = helper.read_text().strip()
        if token:
            return token
    raise InstallError("no token: set BAO_TOKEN (or VAULT_TOKEN), or pass --token-file FILE")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_file(path: Path) -> PluginFile:
    """The plugin file: present, a regular executable file, and equal to its SHA256SUMS line if any."""
    if not path.exists():
        raise InstallError(f"plugin file {path} not found (scripts/build-plugin OUTDIR writes it)")
    if not path.is_file():
        raise InstallError(f"plugin file {path} is not a regular file")
    if not os.access(path, os.X_OK):
        raise InstallError(
            f"plugin file {path} is not executable: is it the file scripts/build-plugin wrote? "
            "(chmod +x it if it lost its mode in a copy)"
        )
    sha = sha256_of(path)
    sums = path.parent / SUMS_NAME
    checked = "no SHA256SUMS beside it"
    if sums.exists():
        listed = parse_sums(sums.read_text()).get(path.name)
        if listed is None:
            raise InstallError(f"{sums} has no line for {path.name}: is this the file that build wrote?")
        if listed != sha:
            raise InstallError(
                f"{path.name} does not match {sums}: its sha256 is {sha}, SHA256SUMS says {listed} "
                "(a damaged or altered copy)"
            )
        checked = "matches SHA256SUMS"
    return PluginFile(path, sha, checked, sbom_version(path))


def parse_sums(text: str) -> dict[str, str]:
    """`sha256sum` output ("<hex>  <name>" or "<hex> *<name>") as {name: hex}."""
    sums: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.strip().split(maxsplit=1)
        if len(parts) == 2 and re.fullmatch(r"[0-9a-fA-F]{64}", parts[0]):
            sums[parts[1].lstrip("*")] = parts[0].lower()
    return sums


def sbom_version(path: Path) -> str | None:
    """The plugin's version from the CycloneDX SBOM that scripts/build-plugin writes beside the file."""
    sbom = path.parent / f"{path.name}{SBOM_SUFFIX}"
    try:
        component = json.loads(sbom.read_text())["metadata"]["component"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    version = component.get("version") if isinstance(component, dict) else None
    return str(version) if isinstance(version, str) and SEMVER_RE.fullmatch(version) else None


# --- what the server has --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CatalogEntry:
    version: str
    sha256: str
    command: str
    env: tuple[str, ...]
    declarative: bool = False  # from a `plugin` block in the server's config: only the config may change it


@dataclass(frozen=True)
class MountState:
    type: str
    plugin_version: str
    running_version: str
    running_sha256: str


# Capabilities a step needs, per API path. "update" is what OpenBao checks for POST on these sys paths.
Needs = dict[str, tuple[str, ...]]


class Installer:
    """One run of the installer against one server; `say` prints a line of the report."""

    def __init__(self, opts: Options, say: Callable[[str], None] = print) -> None:
        self.opts = opts
        self.api = VaultApi(opts.addr, opts.token, ca_cert=opts.ca_cert, namespace=opts.namespace)
        self.say = say
        self.changes: list[str] = []

    # --- the run

    def run(self) -> None:
        opts = self.opts
        plugin = check_file(opts.file)
        self.say(f"file      {plugin.path} sha256 {plugin.sha256} ({plugin.checked_against})")
        self.check_server()
        self.check_token()
        self.require(
            {
                "sys/plugins/catalog": ("read",),
                f"sys/plugins/catalog/secret/{opts.name}": ("read", "sudo"),
                f"sys/mounts/{opts.mount}": ("read",),
            }
        )
        mount = self.read_mount()
        version = opts.version or self.registered_version(plugin.sha256) or plugin.sbom_version
        command = f"{opts.name}-{version}" if version else None
        current = self.catalog_entry(version) if version else None
        if current is not None and current.declarative:
            command = self.check_declared(current, plugin)
        installed = current is not None and current.sha256 == plugin.sha256 and current.command == command
        self.require(self.needs(mount))

        if installed and opts.plugin_dir is not None and command is not None:
            self.check_placed(plugin, opts.plugin_dir / command)
        if not installed:
            version, command = self.place_and_probe(plugin, version, command)
            current = self.catalog_entry(version)
        assert version is not None and command is not None

        env = self.desired_env(current, mount)
        entry = CatalogEntry(
            version, plugin.sha256, command, env, current is not None and current.declarative
        )
        registered = self.register(entry, current)
        self.apply_to_mount(mount, entry, catalog_changed=registered)

    # --- checks

    def check_server(self) -> None:
        try:
            status = self.api.call("GET", "sys/seal-status")
        except Unreachable as exc:
            raise InstallError(
                f"cannot reach the server at {self.opts.addr} ({exc}): is BAO_ADDR right and the "
                "server running?"
            ) from None
        if not status.ok:
            raise InstallError(
                f"{self.opts.addr} does not answer like Vault/OpenBao (sys/seal-status: {status.status})"
            )
        if not status.body.get("initialized", True):
            raise InstallError(f"the server at {self.opts.addr} is not initialized (bao operator init)")
        if status.body.get("sealed"):
            raise InstallError(
                f"the server at {self.opts.addr} is sealed: unseal it first (bao operator unseal)"
            )
        version = status.body.get("version", "?")
        self.say(f"server    {self.opts.addr} (version {version}, unsealed)")

    def check_token(self) -> None:
        reply = self.api.call("GET", "auth/token/lookup-self")
        if reply.status in (401, 403):
            raise InstallError(
                "the server refused the token (permission denied): it is expired, revoked, or from "
                "another server"
            )
        if not reply.ok:
            raise InstallError(f"token lookup failed: {reply.status} {reply.errors()}")

    def require(self, needs: Needs) -> None:
        """Stop before any change if the token lacks a capability a step needs; name every missing one."""
        reply = self.api.call("POST", "sys/capabilities-self", body={"paths": sorted(needs)})
        if not reply.ok:
            raise InstallError(f"cannot check the token's capabilities: {reply.status} {reply.errors()}")
        granted = reply.data or reply.body
        missing = []
        for path, caps in sorted(needs.items()):
            have = set(granted.get(path) or [])
            if "root" in have:
                continue
            lacking = [c for c in caps if c not in have]
            if lacking:
                missing.append(f"{', '.join(lacking)} on {path}")
        if missing:
            raise InstallError(
                "the token lacks permission: " + "; ".join(missing) + " (see the operator policy in "
                "vault-config/policies)"
            )

    def needs(self, mount: MountState | None) -> Needs:
        needs: Needs = {f"sys/plugins/catalog/secret/{self.opts.name}": ("read", "update", "delete", "sudo")}
        if mount is None:
            needs[f"sys/mounts/{self.opts.mount}"] = ("read", "update")
        else:
            needs[f"sys/mounts/{self.opts.mount}/tune"] = ("update",)
            needs["sys/plugins/reload/backend"] = ("update",)
        return needs

    def read_mount(self) -> MountState | None:
        reply = self.api.call("GET", f"sys/mounts/{self.opts.mount}")
        if reply.status == 400 and "no secret engine mount" in reply.errors().lower():
            return None
        if not reply.ok:
            raise InstallError(f"cannot read the mount {self.opts.mount}/: {reply.status} {reply.errors()}")
        data = reply.data
        mount = MountState(
            type=str(data.get("type", "")),
            plugin_version=str(data.get("plugin_version") or ""),
            running_version=str(data.get("running_plugin_version") or ""),
            running_sha256=str(data.get("running_sha256") or ""),
        )
        if mount.type != self.opts.name:
            raise InstallError(
                f"{self.opts.mount}/ is already mounted with another plugin ({mount.type!r}, not "
                f"{self.opts.name!r}): pick another --mount, or disable that one first"
            )
        return mount

    # --- the catalog

    def catalog_list(self) -> list[dict[str, Any]]:
        reply = self.api.call("GET", "sys/plugins/catalog")
        if not reply.ok:
            raise InstallError(f"cannot list the plugin catalog: {reply.status} {reply.errors()}")
        detailed = reply.data.get("detailed") or []
        return [e for e in detailed if isinstance(e, dict) and e.get("type") == "secret"]

    def registered_version(self, sha256: str) -> str | None:
        """The version under which this exact file is already registered, if it is."""
        for e in self.catalog_list():
            if e.get("name") == self.opts.name and e.get("sha256") == sha256 and e.get("version"):
                return str(e["version"])
        return None

    def catalog_entry(self, version: str) -> CatalogEntry | None:
        reply = self.api.call(
            "GET", f"sys/plugins/catalog/secret/{self.opts.name}", params={"version": version}
        )
        if reply.status == 404:
            return None
        if not reply.ok:
            raise InstallError(f"cannot read the catalog entry {self.opts.name} {version}: {reply.errors()}")
        d = reply.data
        return CatalogEntry(
            str(d.get("version") or ""),
            str(d.get("sha256") or ""),
            str(d.get("command") or ""),
            tuple(str(x) for x in d.get("env") or []),
            bool(d.get("declarative")),
        )

    def check_declared(self, declared: CatalogEntry, plugin: PluginFile) -> str:
        """A version declared in the server's config is the config's to change: writing it through the
        API would make the next start or SIGHUP fail ("conflicts with existing non-declarative plugin")."""
        where = f"secret/{self.opts.name} {declared.version} is declared in the server's config"
        if declared.sha256 != plugin.sha256:
            raise InstallError(
                f"{where} with another sha256 ({declared.sha256[:12]}...): change its plugin block "
                "(sha256sum) and SIGHUP the server, or install a build that reports another version"
            )
        if self.opts.env is not None and self.opts.env != declared.env:
            raise InstallError(f"{where}: --env cannot change it; set env in its plugin block")
        return declared.command

    # --- the file

    def check_placed(self, plugin: PluginFile, target: Path) -> None:
        """With --plugin-dir, the registered file must still be there, unchanged."""
        if not target.exists() or sha256_of(target) != plugin.sha256:
            raise InstallError(
                f"{self.opts.name} {target.name} is registered with this sha256 but {target} is missing "
                "or differs: is --plugin-dir the server's plugin_directory?"
            )
        self.say(f"place     {target} is in place")

    def place_and_probe(
        self, plugin: PluginFile, version: str | None, command: str | None
    ) -> tuple[str, str]:
        """Put the file where the server runs it and have the server run it once; (version, command)."""
        plugin_dir = self.opts.plugin_dir
        if plugin_dir is None:
            if version is None or command is None:
                raise InstallError(
                    "the version is unknown (no --version, no SBOM beside the file): pass --version, "
                    "which also names the file in the plugin directory"
                )
            reported = self.probe(plugin, command, copied_by_operator=True)
            self.check_reported(reported, version)
            self.say(f"place     {command} is in the server's plugin directory")
            return version, command

        staging = self.stage(plugin, plugin_dir)
        try:
            reported = self.probe(plugin, staging.name, copied_by_operator=False)
            if version is not None:
                self.check_reported(reported, version)
            final = plugin_dir / f"{self.opts.name}-{reported}"
            if final.exists() and sha256_of(final) == plugin.sha256:
                self.say(f"place     {final} is in place")
            else:
                if final.exists():
                    self.say(f"note      replacing {final}: another build that reports {reported}")
                os.replace(staging, final)
                self.changes.append(f"copied the file to {final}")
                self.say(f"place     copied to {final}")
        finally:
            with contextlib.suppress(FileNotFoundError):
                staging.unlink()
        return reported, final.name

    def stage(self, plugin: PluginFile, plugin_dir: Path) -> Path:
        staging = plugin_dir / f"{self.opts.name}-{plugin.sha256[:12]}.staging"
        try:
            shutil.copyfile(plugin.path, staging)
            staging.chmod(0o755)
        except OSError as exc:
            raise InstallError(
                f"cannot write the plugin into --plugin-dir {plugin_dir}: {exc.strerror}. Without "
                "--plugin-dir this script says where the file must go."
            ) from None
        return staging

    def probe(self, plugin: PluginFile, command: str, *, copied_by_operator: bool) -> str:
        """Have the server run `command` (in its plugin directory) and return the version it reports.

        The file is registered under PROBE_VERSION, which it cannot report: the server runs it, checks its
        sha256, asks its version and refuses the mismatch, naming the reported version. If the server could
        not run it, it stores the entry instead; that entry is deleted again.
        """
        path = f"sys/plugins/catalog/secret/{self.opts.name}"
        body = {"sha256": plugin.sha256, "command": command, "version": PROBE_VERSION}
        reply = self.api.call("POST", path, body=body)
        message = reply.errors()
        reported = REPORTED_RE.search(message) if reply.status == 400 else None
        if reported is not None and SEMVER_RE.fullmatch(reported.group(1)):
            self.say(f"probe     the server ran the file: it reports {reported.group(1)}")
            return reported.group(1)
        if reply.ok:
            self.api.call("DELETE", path, params={"version": PROBE_VERSION})
            raise InstallError(
                f"the server could not run {command} (or it reports no version): its sha256 is not "
                f"{plugin.sha256}, it is built for another platform, or it fails at start; the server's "
                f"log says which (search for {PROBE_VERSION})"
            )
        if "no such file" in message or "outside of configured plugin directory" in message:
            where = self.server_plugin_dir()
            if copied_by_operator:
                raise CopyNeeded(
                    f"copy {plugin.path} to {where}/{command} on the server (every node of a cluster), "
                    f"mode 0755, sha256 {plugin.sha256}; then run this again"
                )
            raise InstallError(
                f"the server cannot find {command} in its plugin directory ({where}): "
                "is --plugin-dir the server's plugin_directory?"
            )
        raise InstallError(f"the server refused the plugin file: {reply.status} {message}")

    def check_reported(self, reported: str, expected: str) -> None:
        if reported != expected:
            raise InstallError(
                f"the plugin reports version {reported}, not {expected}: pass --version {reported} "
                "(or rebuild with scripts/build-plugin --version)"
            )

    def server_plugin_dir(self) -> str:
        reply = self.api.call("GET", "sys/config/state/sanitized")
        directory = reply.data.get("plugin_directory") if reply.ok else None
        return str(directory) if directory else "<the server's plugin_directory>"

    # --- the catalog entry and the mount

    def desired_env(self, current: CatalogEntry | None, mount: MountState | None) -> tuple[str, ...]:
        """--env if given; else the env of this version's entry, or of the version the mount runs."""
        if self.opts.env is not None:
            return self.opts.env
        if current is not None:
            return current.env
        if mount is not None and mount.plugin_version:
            running = self.catalog_entry(mount.plugin_version)
            if running is not None and running.env:
                self.say(
                    f"note      keeping the plugin env of {mount.plugin_version}: {', '.join(running.env)}"
                )
                return running.env
        return ()

    def register(self, entry: CatalogEntry, current: CatalogEntry | None) -> bool:
        name = self.opts.name
        if current is not None and current.declarative:
            self.say(
                f"catalog   secret/{name} {entry.version} is declared in the server's config (sha256 matches)"
            )
            return False
        if current == entry:
            self.say(f"catalog   secret/{name} {entry.version} is registered (sha256 and command match)")
            return False
        body: dict[str, Any] = {
            "sha256": entry.sha256,
            "command": entry.command,
            "version": entry.version,
            "env": list(entry.env),
        }
        reply = self.api.call("POST", f"sys/plugins/catalog/secret/{name}", body=body)
        if not reply.ok:
            raise InstallError(f"registering {name} {entry.version} failed: {reply.status} {reply.errors()}")
        self.changes.append(f"registered secret/{name} {entry.version}")
        self.say(f"catalog   registered secret/{name} {entry.version} (sha256 {entry.sha256[:12]}...)")
        return True

    def apply_to_mount(self, mount: MountState | None, entry: CatalogEntry, *, catalog_changed: bool) -> None:
        path = self.opts.mount
        if mount is None:
            body = {"type": self.opts.name, "config": {"plugin_version": entry.version}}
            reply = self.api.call("POST", f"sys/mounts/{path}", body=body)
            if not reply.ok:
                raise InstallError(f"enabling {path}/ failed: {reply.status} {reply.errors()}")
            self.changes.append(f"enabled {path}/")
            self.say(f"mount     enabled {path}/ on {entry.version}")
            self.verify(entry)
            return
        runs_it = mount.running_version == entry.version and mount.running_sha256 == entry.sha256
        if runs_it and mount.plugin_version == entry.version and not catalog_changed:
            self.say(f"mount     {path}/ runs {entry.version} already")
            self.verify(entry)
            return
        previous = mount.plugin_version
        try:
            if mount.plugin_version != entry.version:
                self.tune(entry.version)
            self.reload()
            self.say(f"mount     {path}/ moved: {mount.running_version} -> {entry.version} (tune + reload)")
            self.verify(entry)
        except InstallError:
            if previous and previous != entry.version:
                self.roll_back(previous)
            raise
        self.changes.append(f"moved {path}/ from {mount.running_version} to {entry.version}")

    def tune(self, version: str) -> None:
        reply = self.api.call("POST", f"sys/mounts/{self.opts.mount}/tune", body={"plugin_version": version})
        if not reply.ok:
            raise InstallError(
                f"tuning {self.opts.mount}/ to {version} failed: {reply.status} {reply.errors()}"
            )

    def reload(self) -> None:
        # Reloads the mount's plugin on the node that answers; the mount's leases stay with the mount.
        reply = self.api.call("POST", "sys/plugins/reload/backend", body={"mounts": [self.opts.mount]})
        if not reply.ok:
            raise InstallError(f"reloading {self.opts.mount}/ failed: {reply.status} {reply.errors()}")

    def roll_back(self, previous: str) -> None:
        self.say(f"rollback  moving {self.opts.mount}/ back to {previous}")
        try:
            self.tune(previous)
            self.reload()
        except InstallError as exc:
            self.say(f"rollback  FAILED: {exc}")

    def verify(self, entry: CatalogEntry) -> None:
        """The mount runs this exact file, and its plugin process answers."""
        mount = self.read_mount()
        if mount is None or (mount.running_version, mount.running_sha256) != (entry.version, entry.sha256):
            shown = f"{mount.running_version} {mount.running_sha256[:12]}" if mount else "no mount"
            raise InstallError(
                f"{self.opts.mount}/ does not run {entry.version} {entry.sha256[:12]}... after the change "
                f"(it runs: {shown})"
            )
        reply = self.api.call("GET", self.opts.mount, params={"help": "1"})
        if reply.status == 403:
            answers = "path-help not checked (the token may not read the mount)"
        elif reply.ok and reply.body.get("help"):
            answers = "path-help answers"
        else:
            raise InstallError(f"{self.opts.mount}/ does not answer: {reply.status} {reply.errors()}")
        self.say(
            f"verify    {self.opts.mount}/ runs {entry.version} (sha256 {entry.sha256[:12]}...), {answers}"
        )


# --- command line ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/install",
        description="Install the LLM secrets engine on a running Vault/OpenBao server, or upgrade a mount "
        "to a new build. The server is BAO_ADDR (or VAULT_ADDR), the token BAO_TOKEN (or VAULT_TOKEN, "
        "--token-file, ~/.vault-token). Running it again with the same file changes nothing.",
    )
    parser.add_argument("file", type=Path, help="the plugin file scripts/build-plugin wrote")
    parser.add_argument(
        "--plugin-dir", type=Path, help="the server's plugin_directory, if this host can write it"
    )
    parser.add_argument("--mount", default=DEFAULT_MOUNT, help="mount path (default: %(default)s)")
    parser.add_argument("--name", default=DEFAULT_NAME, help="catalog name (default: %(default)s)")
    parser.add_argument(
        "--version",
        help="the version the plugin reports (default: from the SBOM beside the file, else asked)",
    )
    parser.add_argument(
        "--env", action="append", metavar="KEY=VALUE", help="plugin process env (repeat; default: keep)"
    )
    parser.add_argument("--token-file", help="read the token from this file")
    parser.add_argument("--ca-cert", help="CA bundle for an https server (default: BAO_CACERT/VAULT_CACERT)")
    return parser.parse_args(argv)


def options_from(args: argparse.Namespace, environ: Mapping[str, str]) -> Options:
    addr = (environ.get("BAO_ADDR") or environ.get("VAULT_ADDR") or "").strip()
    if not addr:
        raise InstallError(
            "no server address: set BAO_ADDR (or VAULT_ADDR), e.g. https://openbao.example:8200"
        )
    if args.env is not None and any("=" not in e for e in args.env):
        raise InstallError("--env takes KEY=VALUE")
    return Options(
        file=args.file,
        addr=addr.rstrip("/"),
        token=read_token(args.token_file, environ),
        mount=args.mount.strip("/"),
        name=args.name,
        plugin_dir=args.plugin_dir.resolve() if args.plugin_dir else None,
        version=normalize_version(args.version) if args.version else None,
        env=tuple(args.env) if args.env is not None else None,
        ca_cert=args.ca_cert or environ.get("BAO_CACERT") or environ.get("VAULT_CACERT") or None,
        namespace=environ.get("BAO_NAMESPACE") or environ.get("VAULT_NAMESPACE") or None,
    )


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        opts = options_from(args, os.environ if environ is None else environ)
        installer = Installer(opts)
        installer.run()
    except InstallError as exc:
        print(f"install: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Unreachable as exc:
        print(f"install: error: lost the server at {opts.addr}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    done = installer.changes
    print(f"done: {len(done)} change(s): {'; '.join(done)}" if done else "done: nothing changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
