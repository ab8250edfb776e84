"""The LLM secrets engine: mints short-lived LLM provider API keys under Vault leases."""
