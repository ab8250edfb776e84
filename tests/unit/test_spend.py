"""Spend per lease (llmsecrets/spend.py) on in-memory storage with a fake clock and fake provider clients:
what a revoke reads and keeps, late collection by the tick, and storage that stays bounded."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from llmsecrets import spend
from llmsecrets.models import LeaseRef
from llmsecrets.providers.base import SPEND_LATE, SPEND_LIVE, SPEND_NONE
from llmsecrets.providers.errors import ProviderNotFound, ProviderUnavailable
from llmsecrets.spend import COLLECTED, COLLECTING, FAILED, READ, UNREPORTED, SpendConfig, SpendLedger
from vaultplugin.framework import InMemoryStorage, LeaseInfo

T0 = datetime(2026, 11, 20, 12, tzinfo=UTC).timestamp()
DAY = 86400


@dataclass
class FakeBackend:
    now: float = T0
    deadlines: list[float] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    def deadline(self, seconds: float | None = None) -> float:
        self.deadlines.append(30.0 if seconds is None else seconds)
        return time.monotonic() + (30.0 if seconds is None else seconds)


class LiveClient:
    """Reports spend on the key while it exists (OpenRouter, LiteLLM)."""

    def __init__(self, spent: dict[str, float], fail: Exception | None = None) -> None:
        self.spent = spent
        self.fail = fail
        self.calls = 0

    def spend_kind(self, scope: str) -> str:
        return SPEND_LIVE

    def key_spend(self, key_id: str, *, scope: str, deadline: float) -> float:
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        return self.spent[key_id]

    def keys_spend(
        self, key_ids: Sequence[str], *, scope: str, since: datetime, deadline: float
    ) -> dict[str, float]:
        raise NotImplementedError


class LateClient:
    """Reports spend late, through a usage API (OpenAI); `visible` is what it reports so far."""

    def __init__(self) -> None:
        self.visible: dict[str, float] = {}
        self.calls: list[list[str]] = []
        self.fail: Exception | None = None

    def spend_kind(self, scope: str) -> str:
        return SPEND_LATE if scope.endswith("/api_keys") else SPEND_NONE

    def key_spend(self, key_id: str, *, scope: str, deadline: float) -> float:
        raise NotImplementedError

    def keys_spend(
        self, key_ids: Sequence[str], *, scope: str, since: datetime, deadline: float
    ) -> dict[str, float]:
        self.calls.append(list(key_ids))
        if self.fail is not None:
            raise self.fail
        return {k: self.visible.get(k, 0.0) for k in key_ids}


class NoSpendClient:
    """A client with no spend methods at all (xAI, Fireworks)."""


def ref(key_id: str, role: str = "ci", provider: str = "openrouter", scope: str = "") -> LeaseRef:
    return LeaseRef("main", provider, key_id, scope, role, f"vault-0123abcd-{key_id}")


def lease(key_id: str) -> LeaseInfo:
    return LeaseInfo(
        internal_data={},
        ttl=3600,
        max_ttl=7200,
        issue_time=datetime.fromtimestamp(T0 - 600, UTC),
        lease_id=f"llm/creds/ci/{key_id}",
    )


@pytest.fixture
def b() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def ledger(b: FakeBackend) -> SpendLedger:
    return SpendLedger(b)  # type: ignore[arg-type]


@pytest.fixture
def storage() -> InMemoryStorage:
    return InMemoryStorage()


def revoke(ledger: SpendLedger, storage: InMemoryStorage, client: Any, r: LeaseRef) -> spend.Reading | None:
    reading = ledger.read(storage, client, r)
    ledger.keep(storage, r, lease(r.key_id), reading)
    return reading


def test_live_spend_is_read_before_the_delete_kept_per_lease_and_totalled_per_role(
    ledger: SpendLedger, storage: InMemoryStorage, b: FakeBackend, caplog: pytest.LogCaptureFixture
) -> None:
    client = LiveClient({"k1": 0.25, "k2": 1.5, "k3": 0.125})
    with caplog.at_level(logging.INFO, logger="llmsecrets.spend"):
        revoke(ledger, storage, client, ref("k1", "ci"))
        revoke(ledger, storage, client, ref("k2", "ci"))
        revoke(ledger, storage, client, ref("k3", "batch"))
    assert b.deadlines == [2.0, 2.0, 2.0]  # each read bounded by read_timeout
    assert any(
        "spend: role=ci connection=main key_id=k2 " in m and "usd=1.500000" in m for m in caplog.messages
    )
    report = ledger.report(storage, days=7, role=None, top=10)
    assert report["total_usd"] == 1.875
    assert report["roles"] == {
        "batch": {"usd": 0.125, "leases": 1, "unknown": 0, "collecting": 0},
        "ci": {"usd": 1.75, "leases": 2, "unknown": 0, "collecting": 0},
    }
    assert [lease["key_id"] for lease in report["top_leases"]] == ["k2", "k1", "k3"]
    top = report["top_leases"][0]
    assert top["lease_id"] == "llm/creds/ci/k2" and top["status"] == READ and top["role"] == "ci"
    assert top["ended_at"] == "2026-11-20T12:00:00Z" and top["issued_at"] == "2026-11-20T11:50:00Z"
    only = ledger.report(storage, days=1, role="batch", top=10)
    assert only["total_usd"] == 0.125 and [x["key_id"] for x in only["top_leases"]] == ["k3"]
    # A revoke Vault retries overwrites its own record: nothing counts twice.
    client.spent["k1"] = 0.5
    revoke(ledger, storage, client, ref("k1", "ci"))
    assert ledger.report(storage, days=7, role="ci", top=10)["roles"]["ci"]["usd"] == 2.0


def test_a_failed_or_unsupported_read_is_recorded_unknown_and_never_raises(
    ledger: SpendLedger, storage: InMemoryStorage
) -> None:
    down = LiveClient(
        {}, fail=ProviderUnavailable("openrouter", "openrouter: read key usage failed: timed out")
    )
    assert revoke(ledger, storage, down, ref("a")) == spend.Reading(
        None, FAILED, "reading the spend failed: openrouter: read key usage failed: timed out"
    )
    gone = LiveClient({}, fail=ProviderNotFound("openrouter", "gone"))
    assert revoke(ledger, storage, gone, ref("b")).status == FAILED  # type: ignore[union-attr]
    bug = LiveClient({}, fail=KeyError("x"))
    assert revoke(ledger, storage, bug, ref("c")).status == FAILED  # type: ignore[union-attr]
    assert revoke(ledger, storage, NoSpendClient(), ref("d", provider="xai")).status == UNREPORTED  # type: ignore[union-attr]
    late = LateClient()
    sa = revoke(ledger, storage, late, ref("e", provider="openai", scope="proj_1"))
    assert sa is not None and sa.status == UNREPORTED  # a service account per lease
    report = ledger.report(storage, days=1, role=None, top=10)
    assert report["leases"] == 5 and report["unknown"] == 5 and report["total_usd"] == 0


def test_recording_can_be_switched_off(ledger: SpendLedger, storage: InMemoryStorage) -> None:
    ledger.save_config(storage, SpendConfig(enabled=False))
    client = LiveClient({"k": 1.0})
    assert revoke(ledger, storage, client, ref("k")) is None
    assert client.calls == 0  # no provider call at revoke
    assert ledger.report(storage, days=1, role=None, top=10)["leases"] == 0


def test_late_spend_is_collected_by_later_ticks_until_the_window_ends(
    ledger: SpendLedger, storage: InMemoryStorage, b: FakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    late = LateClient()
    monkeypatch.setattr(spend.connections, "client_for_keys", lambda *a: (None, late))
    ledger.save_config(storage, SpendConfig(late_interval=300, late_window=DAY))
    r = ref("key_1", provider="openai", scope="proj_1/api_keys")
    assert revoke(ledger, storage, late, r) == spend.Reading(
        None, COLLECTING, "openai reports spend late; collected after the revoke"
    )
    assert storage.list(spend.PENDING_PREFIX)
    first = ledger.report(storage, days=1, role=None, top=10)
    assert first["collecting"] == 1 and first["unknown"] == 1 and first["top_leases"][0]["usd"] is None

    b.now += 60
    ledger.tick(storage)  # not reported yet: 0 so far, still collecting
    assert late.calls == [["key_1"]]
    rec = ledger.report(storage, days=1, role=None, top=10)["top_leases"][0]
    assert rec["usd"] == 0 and rec["status"] == COLLECTING

    late.visible["key_1"] = 0.375
    b.now += 60
    ledger.tick(storage)  # within late_interval: not asked again
    assert len(late.calls) == 1
    b.now += 300
    ledger.tick(storage)
    assert ledger.report(storage, days=1, role=None, top=10)["total_usd"] == 0.375

    late.fail = ProviderUnavailable("openai", "openai: read costs failed: 503")
    b.now += DAY
    ledger.tick(storage)  # the window is over: the last figure stays, the collection ends
    done = ledger.report(storage, days=2, role=None, top=10)
    assert done["total_usd"] == 0.375 and done["collecting"] == 0
    assert done["top_leases"][0]["status"] == COLLECTED
    assert "collection failed" in done["top_leases"][0]["note"]
    assert storage.list(spend.PENDING_PREFIX) == [] and ledger.pending() == []


def test_pending_collections_survive_a_restart(
    storage: InMemoryStorage, b: FakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    late = LateClient()
    monkeypatch.setattr(spend.connections, "client_for_keys", lambda *a: (None, late))
    revoke(SpendLedger(b), storage, late, ref("key_9", provider="openai", scope="p/api_keys"))  # type: ignore[arg-type]
    late.visible["key_9"] = 2.0
    fresh = SpendLedger(b)  # type: ignore[arg-type]
    fresh.tick(storage)
    assert fresh.report(storage, days=1, role=None, top=1)["total_usd"] == 2.0


def test_storage_stays_bounded(ledger: SpendLedger, storage: InMemoryStorage, b: FakeBackend) -> None:
    ledger.save_config(storage, SpendConfig(retention_days=3, max_leases_per_day=4))
    client = LiveClient({f"k{i}": 0.5 for i in range(200)})
    n = 0
    for _day in range(6):
        for _ in range(10):  # 10 leases a day, 4 kept one by one, the rest in the role totals
            revoke(ledger, storage, client, ref(f"k{n}", role="ci" if n % 2 else "batch"))
            n += 1
        today = spend.day_of(b.now)
        assert len(storage.list(f"{spend.LEASES_PREFIX}{today}/")) == 4
        report = ledger.report(storage, days=1, role=None, top=100)
        assert report["leases"] == 4  # the overflow shows after the next tick
        b.now += 3600
        ledger.tick(storage)
        report = ledger.report(storage, days=1, role=None, top=100)
        assert report["leases"] == 10 and report["total_usd"] == 5.0
        assert len(report["top_leases"]) == 4
        b.now += DAY - 3600
        ledger.tick(storage)  # yesterday compacted, days past retention dropped
        ledger.tick(storage)
    keys = storage.list("spend/days/") + storage.list("spend/leases/") + storage.list("spend/overflow/")
    days_kept = {k.rstrip("/") for k in keys}
    assert len(days_kept) <= 3, keys
    report = ledger.report(storage, days=3, role=None, top=100)
    assert report["leases"] == 20 and report["total_usd"] == 10.0  # the two days still kept, in full
    assert len(report["top_leases"]) == 8  # each day keeps its recorded leases (4 a day)
    assert report["from"] == spend.day_of(b.now - 2 * DAY)


def test_a_compacted_day_answers_as_before(
    ledger: SpendLedger, storage: InMemoryStorage, b: FakeBackend
) -> None:
    client = LiveClient({"a": 0.25, "b": 2.0, "c": 1.0})
    for k, role in (("a", "ci"), ("b", "ci"), ("c", "web")):
        revoke(ledger, storage, client, ref(k, role=role))
    before = ledger.report(storage, days=1, role=None, top=10)
    b.now += DAY + spend.COMPACT_AFTER + 1
    ledger.tick(storage)
    day = spend.day_of(T0)
    assert storage.list(f"{spend.LEASES_PREFIX}{day}/") == []
    assert storage.get(spend.DAYS_PREFIX + day) is not None
    after = ledger.report(storage, days=2, role=None, top=10)
    assert after["roles"] == before["roles"] and after["top_leases"] == before["top_leases"]
    assert ledger.report(storage, days=2, role="ci", top=1)["top_leases"][0]["key_id"] == "b"


@pytest.mark.parametrize(
    "bad",
    [
        {"retention_days": 0},
        {"retention_days": 400},
        {"read_timeout": 0},
        {"late_window": -1},
        {"enabled": "yes"},
    ],
)
def test_config_out_of_range_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SpendConfig.from_storage({**SpendConfig().to_storage(), **bad})
