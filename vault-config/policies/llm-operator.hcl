# llm-operator: the platform operator. Runs the engine: provider connections (with their admin keys), the
# plugin in the catalog, and the llm/ mount itself (enable, disable, tune, upgrade, reload). Cannot read
# keys (llm/creds/) nor manage roles or leases: that is the security team's job (llm-security).

# Provider connections: create, read (never returns the admin key), update, delete, list; and
# config/<name>/revoke-keys, which deletes every key issued through a connection at once (a leaked admin key).
path "llm/config" {
  capabilities = ["list"]
}
path "llm/config/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}

# The plugin in the catalog: register, look up, remove versions of vault-plugin-secrets-llm (a declarative
# `plugin` block in the server config does the same without this), and list what is registered. The
# catalog's paths are root-protected: they need sudo as well.
path "sys/plugins/catalog/secret/vault-plugin-secrets-llm" {
  capabilities = ["create", "read", "update", "delete", "sudo"]
}
path "sys/plugins/catalog/secret" {
  capabilities = ["list", "sudo"]
}
path "sys/plugins/catalog" {
  capabilities = ["read"]
}
# Restart the plugin's processes, e.g. after an upgrade (`bao plugin reload -mounts=llm/`).
path "sys/plugins/reload/backend" {
  capabilities = ["update"]
}

# The mount: enable and disable llm/ (disabling revokes every key it issued), read and tune its settings
# (TTLs, plugin_version for upgrades), and see the mount table.
path "sys/mounts/llm" {
  capabilities = ["create", "read", "update", "delete"]
}
path "sys/mounts/llm/tune" {
  capabilities = ["read", "update"]
}
path "sys/mounts" {
  capabilities = ["read"]
}
