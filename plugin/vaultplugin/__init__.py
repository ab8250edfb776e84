"""A Python twin of Vault's plugin SDK: serve a secrets engine to Vault / OpenBao over go-plugin gRPC.

This package knows nothing about LLMs. `vaultplugin.framework` is what a backend is written with;
`vaultplugin.serve` runs one as an external plugin process.
"""
