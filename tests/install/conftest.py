"""Fixtures for the declarative-install tests: the engine built once (the shipped one-file executable), its
OCI image, and a fresh in-memory OCI registry on 127.0.0.1 per test.

Each real-server test starts its own OpenBao server (each needs its own config); every server and plugin
process is stopped by PID when the test ends (see install_support).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from devkit.build import build_engine
from devkit.oci import OciImage, build_image
from devkit.oci_registry import OciRegistry
from llmsecrets.version import VERSION

# The shared helpers live beside this file; make them importable under any pytest import mode.
sys.path.insert(0, str(Path(__file__).parent))
from install_support import BuiltPlugin


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> BuiltPlugin:
    path, sha256 = build_engine(tmp_path_factory.mktemp("install-engine"))
    return BuiltPlugin(path, sha256, VERSION)


@pytest.fixture(scope="session")
def engine_image(engine: BuiltPlugin) -> OciImage:
    return build_image(engine.path, tag=engine.version)


@pytest.fixture
def registry() -> Iterator[OciRegistry]:
    with OciRegistry() as reg:
        yield reg
