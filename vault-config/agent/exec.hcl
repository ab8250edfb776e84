# OpenBao Agent as the application's process supervisor (`bao agent -config=exec.hcl` as the container's
# entrypoint, or as the systemd unit's ExecStart): it logs in, reads llm/creds/chatbot, starts the application
# with OPENAI_API_KEY in its environment, renews the lease while the application runs, and, when it reads a new
# key shortly before the old one's max_ttl, restarts the application with the new key. For applications that
# read their key once, at start. The agent forwards stdin/stdout/stderr and exits with the application's code.
#
# Adapt: the server address, the auth role, the engine's mount and role (`llm/creds/chatbot`), the command.
# Renewal and rotation timing are those described in sidecar.hcl: a renewal every ~2/3 of the TTL and a new key
# (so a restart) once per max_ttl, between ~10% and ~80% of a TTL before the old key is deleted.

vault {
  # With TLS from a private CA, also set ca_cert (or BAO_CACERT in the agent's environment).
  address = "https://openbao.openbao.svc:8200"
}

# The pod's service account token, as in sidecar.hcl. On a VM:
#   method "approle" {
#     config = {
#       role_id_file_path                   = "/etc/chatbot/role-id"
#       secret_id_file_path                 = "/etc/chatbot/secret-id"
#       remove_secret_id_file_after_reading = false
#     }
#   }
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
  exit_on_retry_failure = true
}

# One `secret` read for the key. Render nothing that changes on renewal (lease_duration): every change of an
# env_template restarts the application.
env_template "OPENAI_API_KEY" {
  contents             = "{{ with secret \"llm/creds/chatbot\" }}{{ .Data.api_key }}{{ end }}"
  error_on_missing_key = true
}

# A fixed value needs no secret; e.g. for a key issued through an OpenRouter connection:
# env_template "OPENAI_BASE_URL" {
#   contents = "https://openrouter.ai/api/v1"
# }

exec {
  command                   = ["/app/bin/chatbot"]
  restart_on_secret_changes = "always"
  # 2 s after a new key is read (the agent debounces changes; the first start waits 2 s too), the application
  # gets this signal, then 30 s to exit before SIGKILL, and starts again with the new key.
  restart_stop_signal = "SIGTERM"
}
