# A single-node OpenBao server with the LLM secrets engine, for trying it out on one machine.
#
# This file is a template: the {{...}} placeholders are the values that differ per install. Fill them
# with scripts/render-config, which hashes the built plugin file (and checks it against the SHA256SUMS the
# build writes beside it):
#
#   scripts/build-plugin ./bao/plugins
#   scripts/render-config dev ./bao/dev.hcl --plugin ./bao/plugins/vault-plugin-secrets-llm --data-dir ./bao/data
#   bao server -config=./bao/dev.hcl
#
# Then, once: `bao operator init -key-shares=1 -key-threshold=1`, `bao operator unseal <key>`, log in with the
# root token, and `bao secrets enable -path=llm vault-plugin-secrets-llm` (no `plugin register` needed).

# Integrated storage (Raft) on local disk: what production uses, so what you try here carries over.
storage "raft" {
  path    = "{{DATA_DIR}}/raft"
  node_id = "dev"
  # Raft's fastest timing (the default, 5, is for minimal machines): OpenBao recommends 1 in production;
  # it also makes leader election, and so failover, take about a second instead of several.
  performance_multiplier = 1
}

# Plain HTTP on loopback only. Anything beyond one machine needs TLS (tls_cert_file / tls_key_file).
listener "tcp" {
  address         = "127.0.0.1:8200"
  cluster_address = "127.0.0.1:8201"
  tls_disable     = true
}
api_addr     = "http://127.0.0.1:8200"
cluster_addr = "https://127.0.0.1:8201"
# No disable_mlock: OpenBao removed memory locking, and the option only logs "unknown or unsupported field".

# Declarative install (no `bao plugin register`): the server registers every `plugin` block at start and on
# SIGHUP. It runs `command` from plugin_directory only if the file's sha256 matches (else enabling the mount
# fails: "checksums did not match"). The version must be the one the plugin reports: OpenBao 2.7 checks it
# while unsealing, and a mismatch stops the unseal. render-config takes it from the SBOM beside the file.
plugin_directory     = "{{PLUGIN_DIRECTORY}}"
plugin_auto_register = true

plugin "secret" "vault-plugin-secrets-llm" {
  command   = "vault-plugin-secrets-llm"
  version   = "{{PLUGIN_VERSION}}"
  sha256sum = "{{PLUGIN_SHA256}}"
}

# Every request and response, secrets HMAC'd (an issued api_key never appears in clear). Audit devices can
# only be declared here, not enabled through the API; a server that cannot write its audit log refuses
# requests rather than serve them unaudited.
audit "file" "audit-file" {
  options {
    file_path = "{{DATA_DIR}}/audit.log"
  }
}
