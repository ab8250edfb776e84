# llm-app: one application that uses the LLM secrets engine mounted at llm/ with the role "chatbot".
#
# One copy of this policy per role, so an app can only ever get keys of its own role. For role ROLE:
#   sed 's/chatbot/ROLE/g' llm-app.hcl > llm-app-ROLE.hcl
#   bao policy write llm-app-ROLE llm-app-ROLE.hcl
# (and replace llm/ too if the engine is mounted elsewhere). Give the app's auth role (AppRole, Kubernetes,
# ...) this policy and nothing else.

# A new key for the role, under a lease.
path "llm/creds/chatbot" {
  capabilities = ["read"]
}

# Renew and revoke the role's leases by lease id in the URL: PUT sys/leases/renew/<lease_id> and
# PUT sys/leases/revoke/<lease_id> (what `bao lease revoke <lease_id>` sends). Lease ids of this role start
# with llm/creds/chatbot/, so these paths cover its leases and no other role's.
#
# Both endpoints also accept a lease_id in the request body, and the body wins over the URL: without the
# denial below, a request to an allowed URL could name any other lease in its body. (`sync` and `increment`
# stay allowed.)
path "sys/leases/renew/llm/creds/chatbot/*" {
  capabilities      = ["update"]
  denied_parameters = {
    "lease_id" = []
  }
}
path "sys/leases/revoke/llm/creds/chatbot/*" {
  capabilities      = ["update"]
  denied_parameters = {
    "lease_id" = []
  }
}

# Not here, on purpose: sys/leases/renew with the lease id in the body (what `bao lease renew`, hvac's
# renew_secret and Vault Agent send). The built-in "default" policy already grants it to every token, for
# any lease id; renewing extends a lease only up to the role's max_ttl and discloses nothing, so it is left
# to "default". A token created with no_default_policy must renew by URL, as above.
