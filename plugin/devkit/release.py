"""A release of the plugin: the one-file executable, its SBOM and a SHA256SUMS file, side by side.

This is what `scripts/build-plugin OUTDIR` writes and what the Dockerfile's build stage runs. An operator
copies the executable into a server's plugin_directory: it is all the server needs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from llmsecrets.version import VERSION

from devkit.build import ENGINE_NAME, build_engine
from devkit.sbom import build_sbom

SBOM_SUFFIX = ".cdx.json"
SUMS_NAME = "SHA256SUMS"


@dataclass(frozen=True)
class Release:
    executable: Path
    sha256: str
    version: str
    sbom: Path
    sums: Path


def build_release(outdir: Path, version: str | None = None) -> Release:
    """Build the engine into OUTDIR with its SBOM and SHA256SUMS (sha256sum -c format)."""
    executable, sha256 = build_engine(outdir, version=version)
    reported = version or VERSION
    sbom = outdir / f"{ENGINE_NAME}{SBOM_SUFFIX}"
    sbom.write_text(build_sbom(executable, ENGINE_NAME, reported) + "\n")
    sums = outdir / SUMS_NAME
    lines = [f"{sha256}  {executable.name}"]
    lines.append(f"{hashlib.sha256(sbom.read_bytes()).hexdigest()}  {sbom.name}")
    sums.write_text("\n".join(lines) + "\n")
    return Release(executable, sha256, reported, sbom, sums)
