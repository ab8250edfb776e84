# llm-security: the security team. Decides who gets which keys (roles: TTLs, spend caps, models), runs the
# orphan sweep, and finds and revokes issued keys. Cannot see or change provider connections (llm/config/),
# which hold the admin keys, and cannot read keys (llm/creds/).

# Roles: create, read, update, delete, list; and roles/<name>/revoke-keys, which deletes every key of a role at
# the provider at once (incident response).
path "llm/roles" {
  capabilities = ["list"]
}
path "llm/roles/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}

# The orphan sweep: run it now (tidy), and when and how it runs (tidy/config).
path "llm/tidy" {
  capabilities = ["update"]
}
path "llm/tidy/config" {
  capabilities = ["read", "update"]
}

# Leases of the engine's keys. Listing is by prefix, LIST sys/leases/lookup/llm/creds/<role>/, on a
# root-protected path: it needs sudo as well.
path "sys/leases/lookup/llm/*" {
  capabilities = ["list", "sudo"]
}
# Looking one up takes the lease id in the body only (PUT sys/leases/lookup), so this path cannot be narrowed
# to llm/; it shows a lease's times, never its secret. ("default" grants it too.)
path "sys/leases/lookup" {
  capabilities = ["update"]
}

# Revoke one key (PUT sys/leases/revoke/<lease_id>, as `bao lease revoke` sends it) or every key of a role
# (`bao lease revoke -prefix llm/creds/<role>`, root-protected: sudo). The body's lease_id would override the
# URL's: denied.
path "sys/leases/revoke/llm/*" {
  capabilities      = ["update"]
  denied_parameters = {
    "lease_id" = []
  }
}
path "sys/leases/revoke-prefix/llm/*" {
  capabilities = ["update", "sudo"]
}

# Not here, on purpose: sys/leases/revoke-force, which drops leases WITHOUT calling the plugin, so their keys
# would stay alive at the provider; and llm/config/*, llm/creds/*.
