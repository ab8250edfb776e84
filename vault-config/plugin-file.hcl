# Declarative install of the LLM secrets engine from a file (OpenBao 2.7+): paste this into the server config.
# The server registers every `plugin` block at start and on SIGHUP, so there is no `bao plugin register`:
#
#   scripts/build-plugin /etc/openbao/plugins      # prints: vault-plugin-secrets-llm <sha256>
#   (fill in the three {{...}} values below, start or SIGHUP the server)
#   bao secrets enable -path=llm vault-plugin-secrets-llm
#
# {{PLUGIN_DIRECTORY}}  absolute path of the directory holding the file (the file itself, not a symlink to
#                       somewhere outside it: the server refuses to run files outside plugin_directory)
# {{PLUGIN_VERSION}}    the version the plugin reports: llmsecrets/version.py, or build-plugin's --version
#                       (e.g. v0.1.0). A plugin that reports another version stops the server from starting:
#                       "plugin version mismatch: ... reported version (v0.1.0) did not match requested ..."
# {{PLUGIN_SHA256}}     the sha256 build-plugin prints (also in SHA256SUMS beside the file)
#
# The sha256 is checked each time the server starts the file, not at registration: with a wrong one the
# server still starts, and `bao secrets enable` (and any use of a mount) fails with "checksums did not match".
# A block removed from the config is removed from the catalog at the next start or SIGHUP. A plugin of the
# same name and version registered through the API first conflicts with the block ("conflicts with existing
# non-declarative plugin"): deregister it before switching to the block.

plugin_directory     = "{{PLUGIN_DIRECTORY}}"
plugin_auto_register = true

plugin "secret" "vault-plugin-secrets-llm" {
  command   = "vault-plugin-secrets-llm"
  version   = "{{PLUGIN_VERSION}}"
  sha256sum = "{{PLUGIN_SHA256}}"
}
