# OpenBao Agent (`bao agent -config=sidecar.hcl`; HashiCorp's `vault agent` reads the same file) running beside
# an application: it logs in, reads llm/creds/chatbot, writes the key to a file the application reads, renews
# the lease while the application runs, and writes a NEW key to the same file shortly before the old one
# reaches its max_ttl.
#
# Adapt: the server address, the auth role, the engine's mount and role in the template (`llm/creds/chatbot`),
# and the destination. The application must re-read the file when it changes (or give the template an `exec`
# that tells it to, see below); to have the agent restart the application instead, use exec.hcl.
#
# What the agent does with the lease (OpenBao 2.7, openbao-template's `secret` function):
# - it renews right after the read, then every ~2/3 of the lease duration (plus jitter);
# - once Vault caps a renewal at the lease's max_ttl and what is left is short (within ~4x a grace period of
#   10-20% of the TTL), it stops renewing and reads llm/creds/chatbot again: a new key under a new lease,
#   rendered between ~10% and ~80% of a TTL before the old lease's max_ttl;
# - it never revokes the old lease: Vault revokes it at max_ttl, and the engine deletes that key at the provider
#   then. So the application has from the new render until the old max_ttl to switch keys.
# Role TTLs (set on llm/roles/chatbot): one lease per running application, not per request; e.g. ttl=15m,
# max_ttl=1h: a renewal every ~10 minutes and a new key each hour, arriving 1.5 to 12 minutes early.

vault {
  # The OpenBao API as this pod or host reaches it. With TLS from a private CA, also set
  # ca_cert = "/vault/tls/ca.crt" (or BAO_CACERT in the agent's environment).
  address = "https://openbao.openbao.svc:8200"
}

# Log in with the pod's Kubernetes service account token (the `kubernetes` auth method, mounted at
# auth/kubernetes, whose role `chatbot` binds the service account and grants the app policy: read
# llm/creds/chatbot and renew its leases). On a VM, use `method "approle"` with role_id_file_path and
# secret_id_file_path instead. No sink: the Vault token stays inside the agent; the application only ever sees
# its LLM key.
auto_auth {
  method "kubernetes" {
    mount_path = "auth/kubernetes"
    config = {
      role       = "chatbot"
      token_path = "/var/run/secrets/kubernetes.io/serviceaccount/token"
    }
  }
}

template_config {
  # After its retries (12 by default, with backoff) a template that still cannot be rendered stops the agent,
  # so the pod restarts visibly instead of the application running on with a key about to die.
  exit_on_retry_failure = true
}

# The key as a dotenv file. Only fields the engine always returns are used (api_key, key_id; expires_at exists
# for some providers only), and nothing that changes on renewal (lease_duration): the file is rewritten only
# when there is a new key. LLM_LEASE_ID lets the application (or an operator) find and revoke the lease.
template {
  destination          = "/vault/secrets/openai.env"
  perms                = "0640"
  error_on_missing_key = true
  # (The agent's HCL strips from a <<- heredoc the indentation of its closing EOT, so keep both aligned.)
  contents = <<-EOT
    {{ with secret "llm/creds/chatbot" -}}
    OPENAI_API_KEY={{ .Data.api_key }}
    LLM_KEY_ID={{ .Data.key_id }}
    LLM_LEASE_ID={{ .LeaseID }}
    {{ end -}}
    EOT
  # To tell the application a new key is there, e.g. with SIGHUP (a shared process namespace in a pod):
  # exec {
  #   command = ["/bin/sh", "-c", "kill -HUP \"$(cat /vault/run/chatbot.pid)\""]
  # }
}
