"""Build a plugin executable: a zipapp of the plugin's packages, run by this Python interpreter.

A zipapp keeps the whole plugin in the one file whose sha256 Vault checks, so changed code cannot run
without being registered again. Third-party packages (grpcio, ...) come from the interpreter's environment.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import sys
import zipfile
from pathlib import Path

PLUGIN_ROOT = Path(__file__).resolve().parent.parent  # the directory that holds the packages


def _add_package(zf: zipfile.ZipFile, package_dir: Path, arc_root: str) -> None:
    for path in sorted(package_dir.rglob("*")):
        if path.is_file() and path.suffix in (".py", ".pyi") and "__pycache__" not in path.parts:
            info = zipfile.ZipInfo(
                f"{arc_root}/{path.relative_to(package_dir).as_posix()}", (2020, 1, 1, 0, 0, 0)
            )
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())


def build_plugin(
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


def build_engine(outdir: Path, python: str = sys.executable) -> tuple[Path, str]:
    """The LLM secrets engine as a plugin executable named vault-plugin-secrets-llm."""
    return build_plugin(
        outdir, ENGINE_NAME, "llmsecrets.main:main", project_packages("vaultplugin", "llmsecrets"), python
    )
