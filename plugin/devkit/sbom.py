"""A CycloneDX SBOM of everything inside a one-file plugin executable.

The inventory is read from the built file itself (PyInstaller's archive table of contents and the module
archive inside it), not from the build environment, so it lists exactly what the file runs:
- each third-party Python distribution that contributed a module or a file, with its version and licence;
- the CPython interpreter and its standard library, and PyInstaller's bootloader;
- every shared library bundled outside a Python package (OpenSSL, libffi, ...), with the sha256 of the bytes
  inside the file and, where the build host's package manager knows it, the Debian package it came from.
The document is deterministic (its serial number and timestamp derive from the file), so two identical
builds give identical SBOMs.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import importlib.metadata
import platform
import subprocess
import sys
import uuid
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path

from cyclonedx.contrib.license.factories import LicenseFactory
from cyclonedx.model import HashAlgorithm, HashType, Property
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.license import License
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL
from PyInstaller.archive.readers import CArchiveReader

FIRST_PARTY = ("vaultplugin", "llmsecrets")
BOOTLOADER_PREFIXES = ("pyimod", "pyiboot", "pyi_rth_", "plugin_entry")
SBOM_NAMESPACE = uuid.UUID("1b0f6d1e-6d8f-4f0e-9a53-8f1f1c2d3b4a")  # fixed: serial numbers derive from it
LIBRARY_DIRS = (Path("/usr/lib/x86_64-linux-gnu"), Path("/lib/x86_64-linux-gnu"), Path("/usr/lib"))


def _sha256(data: bytes) -> HashType:
    return HashType(alg=HashAlgorithm.SHA_256, content=hashlib.sha256(data).hexdigest())


def _first(dist: importlib.metadata.Distribution, field: str) -> str:
    values = dist.metadata.get_all(field) or []
    return str(values[0]).strip() if values else ""


def _licenses(dist: importlib.metadata.Distribution) -> list[License]:
    expression = _first(dist, "License-Expression")
    if not expression:
        classifiers = [
            c.rsplit(" :: ", 1)[-1] for c in dist.metadata.get_all("Classifier") or [] if "License ::" in c
        ]
        expression = classifiers[0] if classifiers else _first(dist, "License").split("\n")[0][:80]
    return [LicenseFactory().make_from_string(expression)] if expression else []


def _debian_package(soname: str) -> tuple[str, str] | None:
    """(package, version) of the Debian package that ships `soname` on this build host, if any."""
    for directory in LIBRARY_DIRS:
        path = directory / soname
        if not path.exists():
            continue
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            # By file name: with merged /usr, dpkg knows a library by its /lib or its /usr/lib path.
            owner = subprocess.run(
                ["dpkg-query", "-S", f"*/{path.resolve().name}"], capture_output=True, text=True, check=True
            ).stdout
            package = owner.split(":", 1)[0].strip()
            version = subprocess.run(
                ["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True, check=True
            ).stdout.strip()
            return package, version
    return None


def _distribution_of(top: str, owners: Mapping[str, list[str]]) -> str | None:
    names = owners.get(top)
    return names[0] if names else None


def inventory(executable: Path) -> tuple[dict[str, set[str]], dict[str, bytes]]:
    """What the file holds: {distribution or group: {member paths}} and {loose shared library: bytes}."""
    archive = CArchiveReader(str(executable))
    owners = importlib.metadata.packages_distributions()
    stdlib = set(sys.stdlib_module_names)
    members: dict[str, set[str]] = defaultdict(set)
    libraries: dict[str, bytes] = {}

    def assign(name: str, top: str) -> None:
        if top in FIRST_PARTY:
            members["<first-party>"].add(name)
        elif top.startswith(BOOTLOADER_PREFIXES):
            members["pyinstaller"].add(name)
        elif top in stdlib or top.startswith("python3.") or top == "base_library.zip":
            members["<cpython>"].add(name)
        else:
            dist = _distribution_of(top, owners) or _distribution_of(top.split("-", maxsplit=1)[0], owners)
            members[dist or f"<unknown:{top}>"].add(name)

    pyz = archive.open_embedded_archive("PYZ.pyz")
    for module in pyz.toc:
        assign(module, module.split(".")[0])
    for name, entry in archive.toc.items():
        kind = entry[-1]
        if kind == "z":
            continue
        if kind == "b" and "/" not in name:
            if name.startswith("libpython"):
                members["<cpython>"].add(name)
            elif name.startswith("_cffi_backend"):
                members[_distribution_of("_cffi_backend", owners) or "cffi"].add(name)
            else:
                libraries[name] = archive.extract(name)
            continue
        top = name.split("/")[0]
        if top.endswith(".dist-info"):
            top = top.split("-")[0]
        assign(name, top.split(".")[0] if kind in ("m", "s") else top)
    return members, libraries


def build_sbom(executable: Path, name: str, version: str) -> str:
    """The CycloneDX 1.6 JSON document for the plugin file `executable`."""
    data = executable.read_bytes()
    members, libraries = inventory(executable)
    unknown = sorted(k for k in members if k.startswith("<unknown:"))
    if unknown:
        raise RuntimeError(f"cannot attribute bundled files to a distribution: {unknown}")

    plugin = Component(
        name=name,
        version=version,
        type=ComponentType.APPLICATION,
        bom_ref=name,
        hashes=[_sha256(data)],
        purl=PackageURL("generic", name=name, version=version),
        licenses=[LicenseFactory().make_from_string("MPL-2.0")],
        properties=[Property(name="bundled-first-party-modules", value=str(len(members["<first-party>"])))],
    )
    components: list[Component] = []
    py = platform.python_version()
    components.append(
        Component(
            name="cpython",
            version=py,
            bom_ref=f"cpython@{py}",
            purl=PackageURL("generic", name="cpython", version=py),
            licenses=[LicenseFactory().make_from_string("PSF-2.0")],
            properties=[Property(name="bundled-files", value=str(len(members["<cpython>"])))],
        )
    )
    for dist_name in sorted(k for k in members if not k.startswith("<")):
        dist = importlib.metadata.distribution(dist_name)
        dist_version = dist.version
        components.append(
            Component(
                name=dist.metadata["Name"],
                version=dist_version,
                bom_ref=f"pypi:{dist_name}@{dist_version}",
                purl=PackageURL("pypi", name=dist.metadata["Name"].lower(), version=dist_version),
                licenses=_licenses(dist),
                properties=[Property(name="bundled-files", value=str(len(members[dist_name])))],
            )
        )
    for soname, content in sorted(libraries.items()):
        debian = _debian_package(soname)
        purl = None
        if debian:
            package, package_version = debian
            purl = PackageURL("deb", "debian", package, package_version, qualifiers={"arch": "amd64"})
        components.append(
            Component(
                name=soname,
                version=debian[1] if debian else None,
                bom_ref=f"so:{soname}",
                hashes=[_sha256(content)],
                purl=purl,
                properties=[Property(name="bundled-file", value=soname)],
            )
        )
    stamp = datetime.datetime.fromtimestamp(1577836800, tz=datetime.UTC)  # fixed, like the build's
    bom = Bom(
        components=components,
        serial_number=uuid.uuid5(SBOM_NAMESPACE, hashlib.sha256(data).hexdigest()),
        metadata=BomMetaData(component=plugin, timestamp=stamp),
    )
    bom.register_dependency(plugin, components)
    return str(JsonV1Dot6(bom).output_as_string(indent=2))
