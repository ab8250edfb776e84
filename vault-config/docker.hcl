# The server config baked into the Dockerfile's image as /openbao/config/openbao.hcl, beside the plugin file
# in /openbao/plugins. The image build fills the {{...}} placeholders with scripts/render-config; the paths
# are the official OpenBao image's: /openbao/file for data, /openbao/logs for logs.
#
# Mount a volume on /openbao/file to keep the data. To change anything else, mount your own config on
# /openbao/config/openbao.hcl and keep this file's plugin block in it (see it with
# `docker run --rm --entrypoint cat IMAGE /openbao/config/openbao.hcl`).

storage "raft" {
  path    = "/openbao/file/raft"
  node_id = "openbao-0"
  # Raft's fastest timing (the default, 5, is for minimal machines): OpenBao recommends 1 in production;
  # it also makes leader election, and so failover, take about a second instead of several.
  performance_multiplier = 1
}

# Inside the container's own network namespace: publish the port on loopback (docker run -p
# 127.0.0.1:8200:8200 ...) or put TLS in front. For TLS here, set tls_cert_file / tls_key_file instead.
listener "tcp" {
  address         = "0.0.0.0:8200"
  cluster_address = "0.0.0.0:8201"
  tls_disable     = true
}
api_addr     = "http://127.0.0.1:8200"
cluster_addr = "https://127.0.0.1:8201"

# Declarative install (no `bao plugin register`; see dev.hcl).
plugin_directory     = "{{PLUGIN_DIRECTORY}}"
plugin_auto_register = true

plugin "secret" "vault-plugin-secrets-llm" {
  command   = "vault-plugin-secrets-llm"
  version   = "{{PLUGIN_VERSION}}"
  sha256sum = "{{PLUGIN_SHA256}}"
}

audit "file" "audit-file" {
  options {
    file_path = "/openbao/logs/audit.log"
  }
}
