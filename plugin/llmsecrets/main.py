"""The plugin process's entry point: `python -m llmsecrets.main` (or the built zipapp) under Vault."""

from __future__ import annotations

from vaultplugin.serve import serve

from llmsecrets.backend import new_backend
from llmsecrets.version import VERSION


def main() -> None:
    """Serve the engine as a Vault / OpenBao external plugin until the host stops it."""
    serve(new_backend, VERSION)


if __name__ == "__main__":
    main()
