"""Imports only go down: the layers of the product, as the README's architecture section draws them.

    engine (llmsecrets)               -> framework; main.py alone starts the protocol layer (serve)
    protocol (vaultplugin/*.py)       -> framework, transport, generated messages
    framework (vaultplugin/framework) -> nothing of ours, but for `framework.runtime`: the one gateway
                                         through which a handler reaches the transport (waits, work after
                                         the reply, cancellation)
    transport (vaultplugin/transport) -> nothing of ours
    nothing in the product imports devkit, the emulators or the tests.

Read from the source (ast), not by importing it. `KNOWN_DEBT` lists, by name, the imports that still cross
a line; the test fails on any import not listed here, and on a listed one that is gone (so the list only
shrinks).
"""

from __future__ import annotations

import ast
from pathlib import Path

PLUGIN = Path(__file__).resolve().parents[2] / "plugin"
DEV = ("devkit", "llm_emulators", "tests")

ALLOWED: dict[str, frozenset[str]] = {
    "engine": frozenset({"engine", "framework"}),
    "protocol": frozenset({"protocol", "framework", "transport", "messages"}),
    "transport": frozenset({"transport"}),
    "framework": frozenset({"framework"}),
    "messages": frozenset({"messages"}),
}
# The framework's gateway to the transport (see the docstring).
GATEWAY = "vaultplugin.framework.runtime"

KNOWN_DEBT = {
    ("llmsecrets.main", "vaultplugin.serve"),  # the entry point: starts the protocol layer with the engine
}


def layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "llmsecrets":
        return "engine"
    if parts[0] != "vaultplugin":
        return None
    if len(parts) > 1 and parts[1] == "framework":
        return "framework"
    if len(parts) > 1 and parts[1] == "proto":
        return "messages"
    if len(parts) > 1 and parts[1] == "transport":
        return "transport"
    return "protocol"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PLUGIN).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    base = PLUGIN.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports (`from a import b` counts as a.b when b is a module)."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            for alias in node.names:
                sub = f"{name}.{alias.name}"
                found.add(sub if is_module(sub) else name)
    return found


def product_files() -> list[Path]:
    return sorted(
        p
        for package in ("vaultplugin", "llmsecrets")
        for p in (PLUGIN / package).rglob("*.py")
        if "_pb2" not in p.name
    )


def crossings() -> set[tuple[str, str]]:
    found = set()
    for path in product_files():
        source = module_name(path)
        for target in imports_of(path):
            src_layer, dst_layer = layer(source), layer(target)
            if source == GATEWAY and dst_layer == "transport":
                continue
            if dst_layer is not None and src_layer is not None and dst_layer not in ALLOWED[src_layer]:
                found.add((source, target))
    return found


def test_the_product_never_imports_dev_tools_or_tests() -> None:
    offenders = [
        (module_name(path), target)
        for path in product_files()
        for target in imports_of(path)
        if target.split(".")[0] in DEV
    ]
    assert offenders == []


def test_imports_only_go_down_but_for_the_known_debt() -> None:
    found = crossings()
    assert found - KNOWN_DEBT == set(), "imports that go up or sideways across layers"
    assert KNOWN_DEBT - found == set(), "gone from the code: remove them from KNOWN_DEBT"
