"""Build a self-contained one-file executable of a plugin with PyInstaller.

The file carries a CPython interpreter, the plugin's packages and every third-party module and shared
library they import, so it runs on a Linux host with no Python, no checkout and no network, and the sha256
Vault checks covers every line of code it runs. At start the bootloader unpacks the bundle into a private
directory under $TMPDIR and runs it there (see the README: PyInstaller was chosen over Nuitka by measurement).

Builds are reproducible: the sources are staged at a fixed relative layout, PYTHONHASHSEED is pinned and
PyInstaller writes no timestamps, so the same commit on the same toolchain gives the same sha256. A build is
cached by a digest of everything that goes into it, so test sessions and scripts that build again are free.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

# Modules the analysis finds through optional or test-only imports; the plugin never runs them. Leaving them
# out keeps the file small, and so the start fast (every start unpacks the whole bundle).
EXCLUDED_MODULES = (
    "tkinter",
    "_pytest",
    "pytest",
    "pygments",
    "chardet",
    "charset_normalizer",
    "xmlrpc",
    "pydoc",
    "doctest",
    "unittest",
)
# The distributions whose versions change what a build bundles (the runtime dependencies and the builder).
BUILD_INPUT_DISTRIBUTIONS = (
    "pyinstaller",
    "pyinstaller-hooks-contrib",
    "greenlet",
    "hpack",
    "protobuf",
    "cryptography",
    "cffi",
    "httpx",
    "httpcore",
    "h11",
    "anyio",
    "idna",
    "certifi",
    "sniffio",
    "tenacity",
    "typing_extensions",
)
CACHE_DIR = Path(__file__).resolve().parents[2] / ".build-cache"


def _source_files(packages: Mapping[str, Path]) -> Iterator[tuple[str, Path]]:
    """(path relative to the staging root, source file) for every .py file of `packages`, in a fixed order."""
    for package, source in sorted(packages.items()):
        for path in sorted(source.rglob("*.py")):
            if "__pycache__" not in path.parts:
                yield f"{package.replace('.', '/')}/{path.relative_to(source).as_posix()}", path


def build_digest(name: str, entry: str, packages: Mapping[str, Path], overrides: Mapping[str, str]) -> str:
    """A digest of every input of a build: sources, overrides, entry, interpreter and builder versions."""
    digest = hashlib.sha256()

    def add(*parts: str | bytes) -> None:
        for part in parts:
            data = part.encode() if isinstance(part, str) else part
            digest.update(len(data).to_bytes(8, "big") + data)

    add(name, entry, sys.version, " ".join(EXCLUDED_MODULES), Path(__file__).read_bytes())
    for dist in BUILD_INPUT_DISTRIBUTIONS:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            add(dist, importlib.metadata.version(dist))
    for rel, path in _source_files(packages):
        add(rel, overrides.get(rel, path.read_bytes()))
    return digest.hexdigest()


def _stage(root: Path, entry: str, packages: Mapping[str, Path], overrides: Mapping[str, str]) -> Path:
    """Copy the sources under `root` (applying `overrides`) and write the entry script; return it."""
    for rel, path in _source_files(packages):
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(overrides[rel].encode() if rel in overrides else path.read_bytes())
    module, _, function = entry.partition(":")
    script = root / "plugin_entry.py"
    script.write_text(f"from {module} import {function}\n\n{function}()\n")
    return script


# Runs PyInstaller with its archive stored uncompressed. The bootloader unpacks the whole bundle at every
# start; inflating it cost ~110 ms of a ~400 ms start (measured), and the file is compressed anyway wherever
# it travels (an OCI layer is gzipped). PKG takes the choice only as an argument EXE does not pass on, hence
# the patch (PyInstaller is pinned in pyproject.toml).
_UNCOMPRESSED_PYINSTALLER = """
import sys
import PyInstaller.__main__
import PyInstaller.building.api as api
_init = api.PKG.__init__
def _uncompressed(self, *args, **kwargs):
    kwargs["cdict"] = dict.fromkeys(api.PKG.xformdict, False)
    _init(self, *args, **kwargs)
api.PKG.__init__ = _uncompressed
PyInstaller.__main__.run(sys.argv[1:])
"""


def _run_pyinstaller(name: str, script: Path, root: Path, distpath: Path) -> None:
    command = [
        sys.executable,
        "-c",
        _UNCOMPRESSED_PYINSTALLER,
        "--onefile",
        "--strip",  # debug symbols are a third of the size, and size is start time
        "--noconfirm",
        "--clean",
        "--log-level=WARN",
        f"--name={name}",
        f"--paths={root}",
        f"--distpath={distpath}",
        f"--workpath={root / 'work'}",
        f"--specpath={root}",
        *(f"--exclude-module={m}" for m in EXCLUDED_MODULES),
        str(script),
    ]
    # A pinned hash seed makes the bytecode PyInstaller writes (sets, frozensets) the same on every build.
    env = {**os.environ, "PYTHONHASHSEED": "0", "SOURCE_DATE_EPOCH": "1577836800"}
    result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"PyInstaller failed ({result.returncode}):\n{result.stderr[-4000:]}")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise builds of one cache entry across processes (test sessions may build at the same time)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_onefile(
    outdir: Path,
    name: str,
    entry: str,
    packages: Mapping[str, Path],
    overrides: Mapping[str, str] | None = None,
    *,
    use_cache: bool = True,
) -> tuple[Path, str]:
    """Write OUTDIR/NAME, a one-file executable running `entry` ("module:function"); return (path, sha256).

    `packages` maps an importable package name to its source directory; `overrides` replaces the content of
    staged files (path relative to the staging root, e.g. "llmsecrets/version.py"). `use_cache=False` builds
    afresh (to check that builds are reproducible).
    """
    overrides = dict(overrides or {})
    key = build_digest(name, entry, packages, overrides)
    cache_dir = CACHE_DIR if use_cache else Path(tempfile.mkdtemp(prefix="onefile-cache-"))
    cached = cache_dir / key[:32] / name
    with _locked(cache_dir / f"{key[:32]}.lock"):
        if not cached.is_file():
            # The staging directory has a fixed name inside a fresh temporary one: PyInstaller records
            # module paths relative to it, so the location never reaches the file.
            with tempfile.TemporaryDirectory(prefix="onefile-") as tmp:
                root = Path(tmp) / "src"
                script = _stage(root, entry, packages, overrides)
                _run_pyinstaller(name, script, root, Path(tmp) / "dist")
                cached.parent.mkdir(parents=True, exist_ok=True)
                partial = cached.with_name(f".{name}.partial")
                shutil.copyfile(Path(tmp) / "dist" / name, partial)
                partial.chmod(0o755)
                os.replace(partial, cached)
    outdir.mkdir(parents=True, exist_ok=True)
    target = outdir / name
    partial = outdir / f".{name}.partial"
    shutil.copyfile(cached, partial)
    partial.chmod(0o755)
    os.replace(partial, target)
    if not use_cache:
        shutil.rmtree(cache_dir, ignore_errors=True)
    return target, hashlib.sha256(target.read_bytes()).hexdigest()
