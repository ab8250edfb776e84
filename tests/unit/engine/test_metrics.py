"""The mount's Prometheus metrics (`metrics`, `metrics/public`, `metrics/config`), read the way Prometheus
reads them: the raw body the host would send, parsed by prometheus_client's own text parser.

What a user relies on: every figure counts exactly what happened on this mount (and only this mount), the
scrape-time gauges show what storage holds now, the public path stays shut until an operator opens it, and no
key or admin key ever appears in the text.
"""

from __future__ import annotations

import base64
import re
import time
from pathlib import Path
from typing import Any

import pytest
from engine_env import ADMIN_KEYS, Env
from llm_emulators import AnthropicEmulator
from llm_emulators.core import Fault
from llmsecrets import metrics
from prometheus_client.parser import text_string_to_metric_families
from vaultplugin.framework import CodedError, Operation, Request, StorageError, UpstreamError

PROVIDERS_DIR = Path(metrics.__file__).parent / "providers"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def body_of(data: dict[str, Any]) -> str:
    assert data["http_status_code"] == 200
    assert data["http_content_type"] == metrics.CONTENT_TYPE
    return base64.b64decode(data["http_raw_body"]).decode()


def scrape_text(env: Env, path: str = "metrics", *, unauthenticated: bool = False) -> str:
    req = Request(operation=Operation.READ, path=path, storage=env.storage, unauthenticated=unauthenticated)
    resp = env.backend.handle_request(req)
    assert resp is not None
    return body_of(resp.data)


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def scrape(env: Env) -> Samples:
    return parse(scrape_text(env))


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def series(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


def test_counts_match_what_happened(env: Env) -> None:
    router = env.setup_provider("openrouter", name="chat")
    lite = env.setup_provider("litellm", name="batch")
    chat = [env.creds(router) for _ in range(3)]
    batch = [env.creds(lite) for _ in range(2)]
    env.renew(batch[0], increment=600)
    env.renew(batch[0], increment=600)
    env.renew(batch[1], increment=600)
    env.renew(chat[0], increment=600)  # OpenRouter: nothing to extend at the provider, still a renewal
    for resp in chat[:2]:
        env.revoke(resp)
    env.revoke(batch[0])
    env.emus["openrouter"].faults.server_error(times=None, status=500, op="create")
    with pytest.raises(UpstreamError):
        env.creds(router)
    env.emus["openrouter"].faults.clear()

    s = scrape(env)
    assert series(s, "llm_secrets_keys_issued_total") == {
        frozenset({("provider", "openrouter"), ("role", "chat")}): 3,
        frozenset({("provider", "litellm"), ("role", "batch")}): 2,
    }
    assert series(s, "llm_secrets_keys_renewed_total") == {
        frozenset({("provider", "litellm"), ("role", "batch")}): 3,
        frozenset({("provider", "openrouter"), ("role", "chat")}): 1,
    }
    assert series(s, "llm_secrets_keys_revoked_total") == {
        frozenset({("provider", "openrouter"), ("role", "chat")}): 2,
        frozenset({("provider", "litellm"), ("role", "batch")}): 1,
    }
    assert series(s, "llm_secrets_key_failures_total") == {
        frozenset({("provider", "openrouter"), ("role", "chat"), ("operation", "issue")}): 1,
    }
    # Every admin call is in the latency histogram: OpenRouter's create is one call, its delete one.
    count = "llm_secrets_provider_request_duration_seconds_count"
    assert value(s, count, provider="openrouter", operation="create", outcome="ok") == 3
    assert value(s, count, provider="openrouter", operation="create", outcome="error") == 1
    assert value(s, count, provider="openrouter", operation="delete", outcome="ok") == 2
    assert value(s, count, provider="litellm", operation="extend", outcome="ok") == 3
    assert value(s, count, provider="litellm", operation="create", outcome="ok") == 2
    errors = series(s, "llm_secrets_provider_request_errors_total")
    assert errors == {
        frozenset({("provider", "openrouter"), ("operation", "create"), ("kind", "unavailable")}): 1
    }
    inf = value(s, "llm_secrets_provider_request_duration_seconds_bucket", provider="openrouter",
                operation="create", outcome="ok", le="+Inf")  # fmt: skip
    assert inf == 3


def test_a_refused_admin_key_counts_as_an_auth_failure(env: Env) -> None:
    role = env.setup_provider("openrouter", name="chat")
    env.emus["openrouter"].faults.revoke_admin_key()
    with pytest.raises(UpstreamError):
        env.creds(role)
    s = scrape(env)
    assert (
        value(s, "llm_secrets_key_failures_total", provider="openrouter", role="chat", operation="issue") == 1
    )
    errors = series(s, "llm_secrets_provider_request_errors_total")
    assert errors == {frozenset({("provider", "openrouter"), ("operation", "create"), ("kind", "auth")}): 1}
    assert value(s, "llm_secrets_keys_issued_total", provider="openrouter", role="chat") is None


def test_a_failed_revoke_is_counted_and_its_deletion_shows_until_done(env: Env) -> None:
    role = env.setup_provider("openrouter", name="chat")
    resp = env.creds(role)
    env.emus["openrouter"].faults.server_error(times=None, status=503, op="delete")
    with pytest.raises(UpstreamError):
        env.revoke(resp)  # the lease still runs: Vault is told it failed, the key is queued
    env.clock.advance(30)
    s = scrape(env)
    assert (
        value(s, "llm_secrets_key_failures_total", provider="openrouter", role="chat", operation="revoke")
        == 1
    )
    assert value(s, "llm_secrets_keys_revoked_total", provider="openrouter", role="chat") is None
    assert value(s, "llm_secrets_deletions_outstanding", connection="openrouter", provider="openrouter") == 1
    age = value(s, "llm_secrets_deletions_oldest_age_seconds", connection="openrouter", provider="openrouter")
    assert age == 30

    env.emus["openrouter"].faults.clear()
    assert env.backend.deletions.run_pass(env.storage) == 1
    env.revoke(resp)  # Vault's retry: the tombstone answers it
    s = scrape(env)
    assert series(s, "llm_secrets_deletions_outstanding") == {}
    assert value(s, "llm_secrets_keys_revoked_total", provider="openrouter", role="chat") == 1


def test_wal_entries_by_kind_while_a_create_is_unsettled(env: Env) -> None:
    role = env.setup_provider("openrouter", name="chat")
    assert series(scrape(env), "llm_secrets_wal_entries") == {}
    env.emus["openrouter"].faults.drop_after_create()
    with pytest.raises(UpstreamError):
        env.creds(role)
    env.clock.advance(5)
    s = scrape(env)
    assert series(s, "llm_secrets_wal_entries") == {frozenset({("kind", "llm_create_key")}): 1}
    assert value(s, "llm_secrets_wal_oldest_age_seconds", kind="llm_create_key") == 5
    outcome = value(s, "llm_secrets_provider_request_errors_total", provider="openrouter", operation="create",
                    kind="outcome_unknown")  # fmt: skip
    assert outcome == 1
    env.clock.advance(700)  # past the WAL's minimum age: the rollback settles it
    env.rollback()
    assert series(scrape(env), "llm_secrets_wal_entries") == {}


def test_sweep_results_and_interval(env: Env) -> None:
    role = env.setup_provider("openrouter", name="chat")
    env.creds(role)  # a live key: the sweep keeps it
    s = scrape(env)
    assert value(s, "llm_secrets_sweep_interval_seconds") == 300
    assert value(s, "llm_secrets_sweeps_total") == 0
    assert series(s, "llm_secrets_sweep_last_keys") == {}

    env.clock.advance(7200)  # past the lease max + grace: the key is the sweep's to delete
    env.backend.sweeper.run(env.storage)
    s = scrape(env)
    assert value(s, "llm_secrets_sweeps_total") == 1
    assert value(s, "llm_secrets_sweep_deleted_keys_total", reason="expired") == 1
    assert value(s, "llm_secrets_sweep_last_keys", result="expired") == 1
    assert value(s, "llm_secrets_sweep_last_keys", result="failed") == 0
    assert value(s, "llm_secrets_sweep_last_run_timestamp_seconds") == env.clock()


def test_connections_and_admin_key_age(env: Env) -> None:
    env.connect("openrouter", name="a")
    env.clock.advance(3600)
    env.connect("openrouter", name="b")
    env.connect("litellm", name="c")
    env.clock.advance(86400)
    env.connect("litellm", name="c")  # a write with the same admin key does not make it newer
    s = scrape(env)
    assert series(s, "llm_secrets_connections") == {
        frozenset({("provider", "openrouter")}): 2,
        frozenset({("provider", "litellm")}): 1,
    }
    ages = series(s, "llm_secrets_admin_key_age_seconds")
    assert ages == {
        frozenset({("connection", "a"), ("provider", "openrouter")}): 3600 + 86400,
        frozenset({("connection", "b"), ("provider", "openrouter")}): 86400,
        frozenset({("connection", "c"), ("provider", "litellm")}): 86400,
    }


def test_each_mount_counts_only_its_own() -> None:
    one, two = Env(), Env()
    one.creds(one.setup_provider("openrouter", name="chat"))
    two.setup_provider("openrouter", name="chat")
    assert value(scrape(one), "llm_secrets_keys_issued_total", provider="openrouter", role="chat") == 1
    assert value(scrape(two), "llm_secrets_keys_issued_total", provider="openrouter", role="chat") is None


def test_public_path_is_shut_until_enabled(env: Env) -> None:
    special = env.backend.special_paths()
    assert special.unauthenticated == ("metrics/public",)  # the only path without a token
    read = env.read("metrics/config")
    assert read is not None and read.data == {"unauthenticated_access": False}
    with pytest.raises(CodedError, match="metrics/config unauthenticated_access=true") as refused:
        scrape_text(env, "metrics/public", unauthenticated=True)
    assert refused.value.code == 403

    env.write("metrics/config", unauthenticated_access=True)
    read = env.read("metrics/config")
    assert read is not None and read.data == {"unauthenticated_access": True}
    text = scrape_text(env, "metrics/public", unauthenticated=True)
    assert "llm_secrets_build_info" in text

    env.write("metrics/config", unauthenticated_access=False)
    with pytest.raises(CodedError):
        scrape_text(env, "metrics/public", unauthenticated=True)


def test_no_secret_in_the_text(env: Env) -> None:
    role = env.setup_provider("openrouter", name="chat")
    keys = [env.creds(role).data["api_key"] for _ in range(2)]
    # An error that repeats the admin key.
    env.emus["openrouter"].faults.add(Fault.echo_admin_key(times=1, op="create"))
    with pytest.raises(UpstreamError):
        env.creds(role)
    text = scrape_text(env)
    for secret in (*keys, ADMIN_KEYS["openrouter"]):
        assert secret not in text


def test_a_part_that_cannot_be_read_is_left_out_and_counted(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    env.setup_provider("openrouter", name="chat")
    real_list = env.storage.list

    def failing_list(prefix: str) -> list[str]:
        if prefix == "wal/":
            raise StorageError("storage is down")
        return real_list(prefix)

    monkeypatch.setattr(env.storage, "list", failing_list)
    s = scrape(env)
    assert value(s, "llm_secrets_scrape_errors") == 1
    assert series(s, "llm_secrets_wal_entries") == {}
    assert value(s, "llm_secrets_connections", provider="openrouter") == 1  # the other parts are there


def test_every_provider_call_has_a_known_operation() -> None:
    """The latency histogram's `operation` comes from the `op` each client names its calls by: a new call
    whose name fits no operation would land in "other" unnoticed."""
    names: set[str] = set()
    for source in PROVIDERS_DIR.glob("*.py"):
        names.update(re.findall(r'\bop(?:=| = )f?"([^"{]+)', source.read_text()))
    assert len(names) >= 15, names  # the pattern still finds them
    unknown = sorted(n for n in names if metrics.operation_of(n) == "other")
    assert unknown == [], f"add a word of these to metrics._OPERATION_WORDS: {unknown}"
    assert metrics.operation_of("create service account api key") == "create"
    assert metrics.operation_of("key info") == "get"
    assert metrics.operation_of("give the service account role member") == "update"
    assert metrics.operation_of("frobnicate") == "other"


def test_the_counters_cost_microseconds() -> None:
    """The engine counts on every creds read (budget: a creds read costs about 1 ms of plugin CPU)."""
    m = metrics.EngineMetrics(process=False)
    m.issued("openrouter", "chat")
    m.provider_call("openrouter", "create key", 0.01, None)
    rounds = 20_000
    started = time.perf_counter()
    for _ in range(rounds):
        m.issued("openrouter", "chat")
        m.provider_call("openrouter", "create key", 0.01, None)
    per_read = (time.perf_counter() - started) / rounds
    assert per_read < 50e-6, f"{per_read * 1e6:.1f} us per creds read"


def test_checkout_sets_by_state(env: Env) -> None:
    """Anthropic check-out sets: how many keys are free, lent, still to be deactivated (active meanwhile)."""
    admin = "sk-ant-admin01-FAKE-TEST-0000000000"
    emu = AnthropicEmulator(admin, clock=env.clock)
    env.emus["anthropic"] = emu
    env.write("config/anth", provider="anthropic", admin_key=admin)
    keys = {k.key_id: k.secret for k in (emu.add_key(f"team-{i}", status="inactive") for i in range(3))}
    env.write("sets/team", connection="anth", ttl="10m", max_ttl="1h", keys=keys)
    state = ("set", "team"), ("connection", "anth")
    s = scrape(env)
    assert series(s, "llm_secrets_checkout_keys") == {
        frozenset({*state, ("state", "free")}): 3,
        frozenset({*state, ("state", "checked_out")}): 0,
        frozenset({*state, ("state", "deactivating")}): 0,
        frozenset({*state, ("state", "unusable")}): 0,
    }
    lent = [env.read("sets/team/creds") for _ in range(2)]
    emu.set_faults(Fault.server_error(times=None, status=529, op="update"))
    with pytest.raises(UpstreamError):
        env.revoke(lent[0])  # the key stays active: it awaits deactivation
    env.clock.advance(40)
    s = scrape(env)
    by_state = {dict(labels)["state"]: v for labels, v in series(s, "llm_secrets_checkout_keys").items()}
    assert by_state == {"free": 1, "checked_out": 1, "deactivating": 1, "unusable": 0}
    assert series(s, "llm_secrets_checkout_deactivating_oldest_age_seconds") == {frozenset(state): 40}
