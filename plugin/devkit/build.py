"""Build plugin executables.

The engine ships as a self-contained one-file executable (`build_engine`, see `devkit.onefile`). A zipapp of
the plugin's packages run by this Python interpreter (`build_zipapp`) builds in milliseconds: the protocol
layer's test backend uses it, and the benchmarks use it to compare against the shipped file. A zipapp keeps
our code in the one file whose sha256 Vault checks, but third-party code comes from the interpreter's
environment, so it runs only on the machine that built it.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import sys
import zipfile
from pathlib import Path

from devkit.onefile import build_onefile

PLUGIN_ROOT = Path(__file__).resolve().parent.parent  # the directory that holds the packages


def _add_package(zf: zipfile.ZipFile, package_dir: Path, arc_root: str) -> None:
    for path in sorted(package_dir.rglob("*")):
        if path.is_file() and path.suffix in (".py", ".pyi") and "__pycache__" not in path.parts:
            info = zipfile.ZipInfo(
                f"{arc_root}/{path.relative_to(package_dir).as_posix()}", (2020, 1, 1, 0, 0, 0)
            )
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())


def build_zipapp(
    outdir: Path,
    name: str,
    entry: str,
    packages: dict[str, Path],
    python: str = sys.executable,
) -> tuple[Path, str]:
    """Write OUTDIR/NAME, runnable as is; return (path, sha256 hex).

    `entry` is "module:function"; `packages` maps an importable package name to its source directory.
    The build is reproducible: the same sources give the same sha256.
    """
    module, _, function = entry.partition(":")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        main = f"import {module}\n{module}.{function}()\n"
        info = zipfile.ZipInfo("__main__.py", (2020, 1, 1, 0, 0, 0))
        zf.writestr(info, main)
        for package, source in sorted(packages.items()):
            _add_package(zf, source, package.replace(".", "/"))
    # -I: isolated mode, so the plugin never imports from the server's working directory or PYTHONPATH.
    content = f"#!{python} -I\n".encode() + buf.getvalue()
    outdir.mkdir(parents=True, exist_ok=True)
    target = outdir / name
    tmp = outdir / f".{name}.tmp"
    tmp.write_bytes(content)
    tmp.chmod(tmp.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    os.replace(tmp, target)
    return target, hashlib.sha256(content).hexdigest()


def project_packages(*names: str) -> dict[str, Path]:
    return {name: PLUGIN_ROOT / name for name in names}


ENGINE_NAME = "vault-plugin-secrets-llm"
ENGINE_ENTRY = "llmsecrets.main:main"
ENGINE_PACKAGES = ("vaultplugin", "llmsecrets")
VERSION_MODULE = "llmsecrets/version.py"
VERSION_RE = re.compile(r"v\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?")


def version_override(version: str | None) -> dict[str, str]:
    """Staged-file overrides that make the build report `version` (a semantic version with a leading v)."""
    if version is None:
        return {}
    if not VERSION_RE.fullmatch(version):
        raise ValueError(f"version {version!r}: want a semantic version with a leading v, e.g. v0.2.0")
    doc = '"""The plugin\'s version, reported to Vault (set at build time)."""'
    return {VERSION_MODULE: f'{doc}\n\nVERSION = "{version}"\n'}


def build_engine(outdir: Path, *, version: str | None = None) -> tuple[Path, str]:
    """The LLM secrets engine as a one-file executable OUTDIR/vault-plugin-secrets-llm; (path, sha256).

    `version` overrides the version the plugin reports (default: llmsecrets.version.VERSION).
    """
    return build_onefile(
        outdir, ENGINE_NAME, ENGINE_ENTRY, project_packages(*ENGINE_PACKAGES), version_override(version)
    )


def build_engine_zipapp(outdir: Path) -> tuple[Path, str]:
    """The engine as a zipapp run by this interpreter (for benchmarks against the one-file build)."""
    return build_zipapp(outdir, ENGINE_NAME, ENGINE_ENTRY, project_packages(*ENGINE_PACKAGES))
