"""The plugin's version, reported to Vault (it becomes the catalog version; keep the leading "v")."""

VERSION = "v0.1.0"
