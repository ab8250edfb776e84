#!/usr/bin/env bash
# Get an LLM API key from Vault/OpenBao, use it with curl, renew its lease, and revoke it when done.
#
#   BAO_ADDR=https://openbao:8200 BAO_TOKEN=... examples/shell/chat.sh [ROLE] [PROMPT]
#
# Settings: BAO_ADDR/BAO_TOKEN (or VAULT_ADDR/VAULT_TOKEN), LLM_MOUNT (default llm), OPENAI_BASE_URL
# (default https://api.openai.com/v1; the demo's emulator for a local run), OPENAI_MODEL, VAULT_CLI (default
# bao; `vault` works the same). Needs that CLI, curl and jq. The key is never printed nor put on a command
# line (where `ps` would show it).
set -euo pipefail

role=${1:-${LLM_ROLE:-chatbot}}
prompt=${2:-"Say hello in five words."}
mount=${LLM_MOUNT:-llm}
cli=${VAULT_CLI:-bao}
base_url=${OPENAI_BASE_URL:-https://api.openai.com/v1}
model=${OPENAI_MODEL:-gpt-4o-mini}

for tool in "$cli" curl jq; do
  command -v "$tool" >/dev/null || { echo "chat.sh: needs $tool on PATH" >&2; exit 1; }
done

# Each read of creds/<role> creates a new key: read once, as JSON, and take every field from that.
creds=$("$cli" read -format=json "$mount/creds/$role")
lease_id=$(jq -r .lease_id <<<"$creds")
key_id=$(jq -r .data.key_id <<<"$creds")
api_key=$(jq -r .data.api_key <<<"$creds")
echo "key $key_id under lease $lease_id ($(jq -r .lease_duration <<<"$creds") s)"
unset creds

# However the script ends, end the lease; the engine then deletes the key at the provider. (The CLI queues
# the revocation and returns at once; the server retries it if the provider is down.)
revoke() {
  if "$cli" lease revoke "$lease_id" >/dev/null; then
    echo "revoked lease $lease_id: the engine deletes key $key_id at the provider"
  fi
}
trap revoke EXIT

chat() {
  # The Authorization header reaches curl as a config file on a pipe, not as an argument.
  curl -fsS "$base_url/chat/completions" \
    --config <(printf 'header = "Authorization: Bearer %s"\n' "$api_key") \
    -H 'Content-Type: application/json' \
    -d "$(jq -n --arg model "$model" --arg prompt "$1" \
      '{model: $model, messages: [{role: "user", content: $prompt}]}')" |
    jq -r '.choices[0].message.content'
}

# (An assignment, not `echo "$(chat)"`: so a failed call stops the script, under set -e.)
answer=$(chat "$prompt")
echo "answer: $answer"

# A longer job renews its lease at about two thirds of its duration (it cannot pass the role's max_ttl).
left=$("$cli" lease renew -format=json "$lease_id" | jq -r .lease_duration)
echo "renewed: $left s left"
answer=$(chat "$prompt")
echo "answer: $answer"
