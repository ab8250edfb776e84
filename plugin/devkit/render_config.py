"""Render the server configs in vault-config/ into concrete files (the engine of `scripts/render-config`).

The committed configs are templates: what differs per install (the plugin's sha256 and version, where the
plugin file and the data live, a node's ports) is an upper-case placeholder such as `{{PLUGIN_SHA256}}`.
Upper case only, so Vault's own lower-case policy templates (`{{identity.entity.id}}`) are never touched.

The plugin's facts come from the built file itself: its sha256 is computed here and checked against the
SHA256SUMS the build writes beside it; its version is read from the SBOM beside it (whose component hash must
be this file's), because a declarative `plugin` block must name the version the plugin reports.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from devkit.build import ENGINE_NAME, VERSION_RE

CONFIG_ROOT = Path(__file__).resolve().parents[2] / "vault-config"
DEV_TEMPLATE = CONFIG_ROOT / "dev.hcl"
HA_TEMPLATE = CONFIG_ROOT / "ha" / "node.hcl"
DOCKER_TEMPLATE = CONFIG_ROOT / "docker.hcl"
SUMS_NAME = "SHA256SUMS"
SBOM_SUFFIX = ".cdx.json"
HA_NODES = 3
HA_BASE_PORT = 8210  # node N: API on base + 10*(N-1), cluster traffic on the port after it

PLACEHOLDER_RE = re.compile(r"\{\{([A-Z][A-Z0-9_]*)\}\}")
SHA256_RE = re.compile(r"[0-9a-f]{64}")
UNSAFE_VALUE_RE = re.compile(r'["\\\n\r$]|%\{')  # would end or interpolate an HCL string


class RenderError(Exception):
    """A config cannot be rendered: the message says what to fix."""


@dataclass(frozen=True)
class PluginRef:
    """What a declarative `plugin` block needs: where the server finds the file, and which file it is."""

    directory: str  # plugin_directory, as the server sees it (absolute)
    sha256: str
    version: str


@dataclass(frozen=True)
class HaNode:
    """One node of the HA cluster: its id, ports on 127.0.0.1 and data directory."""

    node_id: str
    api_port: int
    cluster_port: int
    data_dir: Path

    @property
    def api_addr(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"


# --- the plugin's facts -----------------------------------------------------------------------------------


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _listed_sha256(sums: Path, name: str) -> str | None:
    """The hash SHA256SUMS (sha256sum format: "<hex>  <name>", "*" before binary names) gives `name`."""
    for line in sums.read_text().splitlines():
        digest, _, listed = line.strip().partition(" ")
        if listed.strip().lstrip("*") == name:
            return digest.lower()
    return None


def _sbom_version(sbom: Path, sha256: str) -> str:
    """The version the CycloneDX SBOM records for the plugin, if the SBOM describes the file with `sha256`."""
    try:
        component = json.loads(sbom.read_text())["metadata"]["component"]
        version = str(component["version"])
        hashes = {h["alg"].upper().replace("-", ""): h["content"].lower() for h in component["hashes"]}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RenderError(f"{sbom}: not a CycloneDX SBOM with metadata.component version and hashes") from exc
    if hashes.get("SHA256") != sha256:
        raise RenderError(f"{sbom} describes another build (its SHA-256 is not the plugin file's); rebuild")
    return version


def _checkout_version() -> str:
    from llmsecrets.version import VERSION

    return VERSION


def check_version(version: str) -> str:
    if not VERSION_RE.fullmatch(version):
        raise RenderError(f"version {version!r}: want a semantic version with a leading v, e.g. v0.1.0")
    return version


def check_sha256(sha256: str) -> str:
    if not SHA256_RE.fullmatch(sha256):
        raise RenderError(f"sha256 {sha256!r}: want 64 lower-case hex digits")
    return sha256


def plugin_from_file(plugin: Path, *, directory: str | None = None, version: str | None = None) -> PluginRef:
    """The block's facts for the built file `plugin`; `directory` defaults to the file's own directory.

    A SHA256SUMS beside the file must agree with it; the version is `version`, else the SBOM's, else this
    checkout's (the build's default).
    """
    if plugin.name != ENGINE_NAME:
        raise RenderError(f"{plugin}: the plugin file must be named {ENGINE_NAME} (the block's command)")
    if not plugin.is_file():
        raise RenderError(f"{plugin}: no such file; build it with scripts/build-plugin DIR")
    sha256 = file_sha256(plugin)
    sums = plugin.parent / SUMS_NAME
    if sums.is_file():
        listed = _listed_sha256(sums, plugin.name)
        if listed is not None and listed != sha256:
            raise RenderError(f"{sums} lists {listed} for {plugin.name}, but the file hashes to {sha256}")
    if version is None:
        sbom = plugin.parent / f"{ENGINE_NAME}{SBOM_SUFFIX}"
        version = _sbom_version(sbom, sha256) if sbom.is_file() else _checkout_version()
    return PluginRef(
        directory=os.path.abspath(directory or plugin.parent), sha256=sha256, version=check_version(version)
    )


def plugin_values(plugin: PluginRef) -> dict[str, str]:
    return {
        "PLUGIN_DIRECTORY": plugin.directory,
        "PLUGIN_SHA256": check_sha256(plugin.sha256),
        "PLUGIN_VERSION": check_version(plugin.version),
    }


# --- templates --------------------------------------------------------------------------------------------


def render(template: str, values: Mapping[str, str]) -> str:
    """Fill every {{NAME}} of `template` from `values`; every placeholder must be filled, every value used."""
    used = set(PLACEHOLDER_RE.findall(template))
    missing = sorted(used - set(values))
    if missing:
        raise RenderError(f"no value for placeholder(s) {', '.join(missing)}")
    unused = sorted(set(values) - used)
    if unused:
        raise RenderError(f"the template has no placeholder(s) {', '.join(unused)}")
    for name, value in values.items():
        if UNSAFE_VALUE_RE.search(value):
            raise RenderError(f"{name}={value!r}: quotes, backslashes, $ and newlines are not allowed")
    return PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], template)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def render_dev(out: Path, plugin: PluginRef, data_dir: Path) -> Path:
    """vault-config/dev.hcl filled in, written to `out`."""
    values = {**plugin_values(plugin), "DATA_DIR": os.path.abspath(data_dir)}
    return _write(out, render(DEV_TEMPLATE.read_text(), values))


def render_docker(out: Path, plugin: PluginRef) -> Path:
    """vault-config/docker.hcl (the image's config) filled in, written to `out`."""
    return _write(out, render(DOCKER_TEMPLATE.read_text(), plugin_values(plugin)))


def ha_nodes(data_dir: Path, ports: Sequence[tuple[int, int]] | None = None) -> list[HaNode]:
    """The cluster's nodes: node1..nodeN with (API, cluster) `ports` (default 8210/8211, 8220/8221, ...)."""
    if ports is None:
        ports = [(HA_BASE_PORT + 10 * i, HA_BASE_PORT + 10 * i + 1) for i in range(HA_NODES)]
    if len(ports) != HA_NODES:
        raise RenderError(f"the HA config is for {HA_NODES} nodes, got {len(ports)} port pairs")
    return [
        HaNode(f"node{i}", api, cluster, Path(os.path.abspath(data_dir / f"node{i}")))
        for i, (api, cluster) in enumerate(ports, start=1)
    ]


def render_ha(outdir: Path, plugin: PluginRef, nodes: Sequence[HaNode], audit_log: Path) -> list[Path]:
    """vault-config/ha/node.hcl once a node, written to OUTDIR/<node_id>.hcl; each joins the others.

    `audit_log` is the same on every node: the audit table is cluster-wide, and a node whose audit options
    differ from it cannot finish unsealing as a standby.
    """
    template = HA_TEMPLATE.read_text()
    written = []
    for node in nodes:
        peers = [n for n in nodes if n is not node]
        values = {
            **plugin_values(plugin),
            "NODE_ID": node.node_id,
            "DATA_DIR": str(node.data_dir),
            "AUDIT_LOG": os.path.abspath(audit_log),
            "API_PORT": str(node.api_port),
            "CLUSTER_PORT": str(node.cluster_port),
            **{f"PEER{i}_API_PORT": str(peer.api_port) for i, peer in enumerate(peers, start=1)},
        }
        written.append(_write(outdir / f"{node.node_id}.hcl", render(template, values)))
    return written


# --- command line -----------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/render-config",
        description="Write concrete OpenBao server configs from the templates in vault-config/, with the "
        "declarative plugin block filled in from the built plugin file.",
    )
    kinds = parser.add_subparsers(dest="kind", required=True)

    def plugin_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--plugin", type=Path, required=True, help=f"the built {ENGINE_NAME} file (hashed)")
        p.add_argument(
            "--plugin-directory",
            help="plugin_directory as the server will see it (default: the directory of --plugin)",
        )
        p.add_argument("--version", help="the version the plugin reports (default: from the SBOM beside it)")

    dev = kinds.add_parser("dev", help="vault-config/dev.hcl: one node on 127.0.0.1:8200")
    dev.add_argument("out", type=Path, help="the config file to write")
    plugin_options(dev)
    dev.add_argument("--data-dir", type=Path, required=True, help="where Raft data and the audit log go")

    ha = kinds.add_parser("ha", help="vault-config/ha/node.hcl for three nodes on 127.0.0.1")
    ha.add_argument("outdir", type=Path, help="writes node1.hcl, node2.hcl, node3.hcl here")
    plugin_options(ha)
    ha.add_argument(
        "--data-dir",
        type=Path,
        help="node N keeps its data in DATA_DIR/nodeN, all write DATA_DIR/audit.log (default: OUTDIR)",
    )
    ha.add_argument(
        "--base-port",
        type=int,
        default=HA_BASE_PORT,
        help="node N listens on BASE+10*(N-1) (API) and the port after it (cluster)",
    )

    docker = kinds.add_parser("docker", help="vault-config/docker.hcl, the container image's config")
    docker.add_argument("out", type=Path, help="the config file to write")
    plugin_options(docker)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        plugin = plugin_from_file(args.plugin, directory=args.plugin_directory, version=args.version)
        if args.kind == "dev":
            written = [render_dev(args.out, plugin, args.data_dir)]
        elif args.kind == "ha":
            base = args.base_port
            ports = [(base + 10 * i, base + 10 * i + 1) for i in range(HA_NODES)]
            data_dir = args.data_dir or args.outdir
            written = render_ha(args.outdir, plugin, ha_nodes(data_dir, ports), data_dir / "audit.log")
        else:
            written = [render_docker(args.out, plugin)]
    except (RenderError, OSError) as exc:
        print(f"render-config: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    print(f"plugin {ENGINE_NAME} {plugin.version} sha256 {plugin.sha256}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
