"""The mount's Prometheus metrics on a real OpenBao, scraped the way Prometheus scrapes them.

What a user relies on:
- after a known run of work (keys issued, leases renewed and revoked, a creds read the provider fails, a
  create whose answer was lost, a revoke during a provider outage) the scrape shows exactly that: the
  counters by provider and role, the admin-API calls by operation and outcome, the deletion still owed, the
  unsettled create in the WAL; once the provider is back the owed deletion leaves the gauge;
- `metrics` needs a token whose policy allows it (the shipped vault-config/prometheus/llm-metrics.hcl does,
  and allows nothing else); `metrics/public` answers without a token only while an operator allows it;
- each mount's scrape shows only that mount's figures.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from devkit.waiting import wait_for
from engine_support import EngineMount, errors_of
from llm_emulators.core import Fault
from metrics_e2e_support import labels, metrics_token, plain_token, scrape, series

ROLE = "app"
ISSUED = 6
DURATION = "llm_secrets_provider_request_duration_seconds_count"


def renew(m: EngineMount, lease_id: str) -> None:
    m.api.ok("PUT", "sys/leases/renew", json={"lease_id": lease_id, "increment": 600})


def revoke(m: EngineMount, lease_id: str) -> tuple[int, dict[str, object]]:
    return m.api.call("PUT", "sys/leases/revoke", json={"lease_id": lease_id})


@pytest.mark.timeout(120)
def test_scrape_shows_exactly_what_happened(metrics_mount: Callable[[str], EngineMount]) -> None:
    m = metrics_mount("litellm")  # LiteLLM: renewals extend the key's expiry at the provider too
    m.must_write("tidy/config", interval="0")  # no sweep: only what the test does happens
    m.add_role(ROLE, ttl="10m", max_ttl="1h")
    token = metrics_token(m)
    emu = m.emulator

    leases = [m.creds(ROLE) for _ in range(ISSUED)]
    renew(m, leases[0].lease_id)
    renew(m, leases[0].lease_id)
    renew(m, leases[1].lease_id)
    for lease in leases[2:5]:
        status, body = revoke(m, lease.lease_id)
        assert status == 204, body
    # A creds read the provider fails: its create answers 500.
    emu.set_faults(Fault.server_error(times=None, op="create"))
    status, body = m.read(f"creds/{ROLE}")
    assert status == 502, body
    # A create whose answer is lost: the key may exist, the WAL entry stays for the rollback.
    emu.set_faults(Fault.drop_after_create())
    status, body = m.read(f"creds/{ROLE}")
    assert status == 502 and "may have been created" in errors_of(body), body
    # A revoke during a delete outage: Vault is told it failed, the key goes into the deletion queue.
    outage = Fault.server_error(times=None, status=503, op="delete")
    emu.set_faults(outage)
    status, body = revoke(m, leases[5].lease_id)
    assert status >= 400 and "deletion is queued" in errors_of(body), (status, body)

    s = scrape(m, token).samples()
    refused_attempts = outage.hits
    role = labels(provider="litellm", role=ROLE)
    assert series(s, "llm_secrets_keys_issued_total") == {role: ISSUED}
    assert series(s, "llm_secrets_keys_renewed_total") == {role: 3}
    assert series(s, "llm_secrets_keys_revoked_total") == {role: 3}
    assert series(s, "llm_secrets_key_failures_total") == {
        labels(provider="litellm", role=ROLE, operation="issue"): 2,
        labels(provider="litellm", role=ROLE, operation="revoke"): 1,
    }
    calls = series(s, DURATION)
    assert calls[labels(provider="litellm", operation="create", outcome="ok")] == ISSUED
    assert calls[labels(provider="litellm", operation="create", outcome="error")] == 2
    assert calls[labels(provider="litellm", operation="extend", outcome="ok")] == 3
    assert calls[labels(provider="litellm", operation="delete", outcome="ok")] == 3
    # The failed deletes: the revoke's, then the deletion queue's retries (going on meanwhile). Each is one
    # call, its own retries included, so the emulator refused at least as many attempts.
    refused = calls[labels(provider="litellm", operation="delete", outcome="error")]
    assert 1 <= refused <= refused_attempts, (refused, refused_attempts)
    errors = series(s, "llm_secrets_provider_request_errors_total")
    assert errors[labels(provider="litellm", operation="create", kind="unavailable")] == 1
    assert errors[labels(provider="litellm", operation="create", kind="outcome_unknown")] == 1
    owed = series(s, "llm_secrets_deletions_outstanding")
    assert owed == {labels(connection="main", provider="litellm"): 1}
    assert series(s, "llm_secrets_wal_entries") == {labels(kind="llm_create_key"): 1}
    assert series(s, "llm_secrets_connections") == {labels(provider="litellm"): 1}
    assert series(s, "llm_secrets_scrape_errors") == {labels(): 0}
    assert series(s, "process_resident_memory_bytes")[labels()] > 10e6  # the plugin process's own

    # The provider is back: the deletion queue deletes the key, and the gauge empties.
    emu.set_faults()
    wait_for(
        lambda: not series(scrape(m, token).samples(), "llm_secrets_deletions_outstanding"),
        timeout=30,
        what="the deletion queue to delete the key once the provider is back",
        interval=0.5,
    )
    assert m.is_deleted_at_provider(leases[5].key_id)
    status, body = revoke(m, leases[5].lease_id)  # Vault's retry now succeeds: the key is known gone
    assert status == 204, body
    s = scrape(m, token).samples()
    assert series(s, "llm_secrets_keys_revoked_total") == {role: 4}
    assert series(s, DURATION)[labels(provider="litellm", operation="delete", outcome="ok")] == 4
    assert series(s, "llm_secrets_deletions_outstanding") == {}
    # The live keys' values appear nowhere in the text.
    text = scrape(m, token).text
    assert not [lease for lease in leases if lease.api_key in text]
    assert m.admin_key not in text


@pytest.mark.timeout(90)
def test_who_may_scrape(metrics_mount: Callable[[str], EngineMount]) -> None:
    m = metrics_mount("openrouter")
    token = metrics_token(m)

    assert scrape(m, None).status == 403
    assert scrape(m, plain_token(m)).status == 403
    assert scrape(m, token).status == 200
    # The scrape token reads the metrics and nothing else.
    for sub in (f"creds/{ROLE}", "config/main", "metrics/config"):
        assert scrape(m, token, sub).status == 403, sub

    public = scrape(m, None, "metrics/public")
    assert public.status == 403 and "unauthenticated_access=true" in public.text, public
    m.must_write("metrics/config", unauthenticated_access=True)
    public = scrape(m, None, "metrics/public")
    assert series(public.samples(), "llm_secrets_connections") == {labels(provider="openrouter"): 1}
    assert scrape(m, None).status == 403  # the authenticated path still needs its token

    m.must_write("metrics/config", unauthenticated_access=False)
    assert scrape(m, None, "metrics/public").status == 403

    # `bao path-help` still answers in JSON: the raw body is the read's answer only.
    status, body = m.api.call("GET", f"{m.path}/metrics", params={"help": "1"})
    assert status == 200 and "llm_secrets_keys_issued_total" in body["help"], body


@pytest.mark.timeout(90)
def test_each_mount_shows_its_own_figures(metrics_mount: Callable[[str], EngineMount]) -> None:
    busy, idle = metrics_mount("openrouter"), metrics_mount("openrouter")
    for m in (busy, idle):
        m.add_role(ROLE, ttl="10m", max_ttl="1h")
    busy.creds(ROLE)
    busy.creds(ROLE)
    got = series(scrape(busy, metrics_token(busy)).samples(), "llm_secrets_keys_issued_total")
    assert got == {labels(provider="openrouter", role=ROLE): 2}
    assert series(scrape(idle, metrics_token(idle)).samples(), "llm_secrets_keys_issued_total") == {}
