# llm-metrics: the Prometheus scrape token of the LLM secrets engine mounted at llm/. Reads the mount's
# metrics and nothing else: no creds, no config, no roles, no leases.
#   bao policy write llm-metrics llm-metrics.hcl
# (replace llm/ if the engine is mounted elsewhere; one path block per mount scraped).

path "llm/metrics" {
  capabilities = ["read"]
}
