# One node of a 3-node OpenBao cluster on Integrated Storage (Raft), with the LLM secrets engine declared.
#
# A template rendered once per node by scripts/render-config, which fills the {{...}} placeholders:
#
#   scripts/build-plugin ./cluster/plugins
#   scripts/render-config ha ./cluster --plugin ./cluster/plugins/vault-plugin-secrets-llm
#
# writes ./cluster/node1.hcl, node2.hcl and node3.hcl: node N listens on 127.0.0.1:82N0 (API) and 82N1
# (cluster traffic) and keeps its data in ./cluster/nodeN; the audit log is ./cluster/audit.log. Start the three (`bao server -config=nodeN.hcl`),
# `bao operator init` one of them, then `bao operator unseal` all three with the same key: an unsealed new
# node joins through retry_join. On separate hosts, replace 127.0.0.1 with each host's address.
#
# Every node carries the same plugin block and the same plugin file: whichever node is active (and each
# standby, which serves reads itself) runs the plugin from its own plugin_directory.

storage "raft" {
  path    = "{{DATA_DIR}}/raft"
  node_id = "{{NODE_ID}}"
  # Raft's fastest timing (the default, 5, is for minimal machines): OpenBao recommends 1 in production;
  # it also makes leader election, and so failover, take about a second instead of several.
  performance_multiplier = 1

  # The other two nodes: an uninitialized node asks each for the cluster and joins the one that answers.
  retry_join {
    leader_api_addr = "http://127.0.0.1:{{PEER1_API_PORT}}"
  }
  retry_join {
    leader_api_addr = "http://127.0.0.1:{{PEER2_API_PORT}}"
  }
}

# Plain HTTP on loopback for a single-machine cluster; across hosts use TLS (tls_cert_file / tls_key_file and
# leader_ca_cert_file in retry_join). Cluster traffic (cluster_address) is always TLS, with certificates the
# cluster makes itself.
listener "tcp" {
  address         = "127.0.0.1:{{API_PORT}}"
  cluster_address = "127.0.0.1:{{CLUSTER_PORT}}"
  tls_disable     = true
}
api_addr     = "http://127.0.0.1:{{API_PORT}}"
cluster_addr = "https://127.0.0.1:{{CLUSTER_PORT}}"
# No disable_mlock: OpenBao removed memory locking, and the option only logs "unknown or unsupported field".

# Declarative install (no `bao plugin register`): each node registers the block at start and on SIGHUP
# (see dev.hcl: the sha256 must match the file, and the version the one it reports).
plugin_directory     = "{{PLUGIN_DIRECTORY}}"
plugin_auto_register = true

plugin "secret" "vault-plugin-secrets-llm" {
  command   = "vault-plugin-secrets-llm"
  version   = "{{PLUGIN_VERSION}}"
  sha256sum = "{{PLUGIN_SHA256}}"
}

# The audit table is cluster-wide, so every node declares the same device with the same options: a node whose
# file_path differs fails its post-unseal setup over and over and can never take over. Each node writes what
# it serves to that path on its own disk; on one machine the three nodes append to one file.
audit "file" "audit-file" {
  options {
    file_path = "{{AUDIT_LOG}}"
  }
}
