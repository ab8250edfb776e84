from __future__ import annotations

import logging
from typing import Any

import pytest
from vaultplugin.framework import (
    Backend,
    InMemoryStorage,
    Request,
    get_wal,
    list_wal,
    put_wal,
)

NOW = 1_000_000.0


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, req: Request, kind: str, data: dict[str, Any]) -> None:
        self.seen.append((kind, data))
        if self.fail:
            raise RuntimeError("upstream down")


def make_backend(callback: Recorder, periodic: Any = None) -> Backend:
    return Backend(
        paths=[],
        wal_rollback=callback,
        wal_kinds={"api_key"},
        wal_min_age_seconds=600,
        periodic=periodic,
        clock=lambda: NOW,
    )


def rollback(b: Backend, storage: InMemoryStorage) -> None:
    assert b.handle_request(Request(operation="rollback", path="", storage=storage)) is None


def test_put_get_list_wal_round_trip() -> None:
    storage = InMemoryStorage()
    wal_id = put_wal(storage, "api_key", {"id": "k1"}, created_at=123.5)
    assert list_wal(storage) == [wal_id]
    entry = get_wal(storage, wal_id)
    assert entry is not None
    assert (entry.kind, entry.data, entry.created_at) == ("api_key", {"id": "k1"}, 123.5)
    assert storage.keys() == [f"wal/{wal_id}"]


def test_old_entry_is_rolled_back_and_deleted() -> None:
    storage, cb = InMemoryStorage(), Recorder()
    put_wal(storage, "api_key", {"id": "k1"}, created_at=NOW - 601)
    rollback(make_backend(cb), storage)
    assert cb.seen == [("api_key", {"id": "k1"})]
    assert list_wal(storage) == []


def test_young_entry_is_untouched() -> None:
    storage, cb = InMemoryStorage(), Recorder()
    wal_id = put_wal(storage, "api_key", {"id": "k1"}, created_at=NOW - 10)
    rollback(make_backend(cb), storage)
    assert cb.seen == []
    assert list_wal(storage) == [wal_id]


def test_min_age_zero_rolls_back_everything() -> None:
    storage, cb = InMemoryStorage(), Recorder()
    put_wal(storage, "api_key", {"id": "k1"}, created_at=NOW)
    b = Backend(paths=[], wal_rollback=cb, wal_kinds={"api_key"}, wal_min_age_seconds=0, clock=lambda: NOW)
    rollback(b, storage)
    assert cb.seen == [("api_key", {"id": "k1"})]  # rolled back, not merely dropped
    assert list_wal(storage) == []


def test_failed_rollback_keeps_entry_and_periodic_still_runs(caplog: pytest.LogCaptureFixture) -> None:
    storage, cb = InMemoryStorage(), Recorder(fail=True)
    ran: list[str] = []
    wal_id = put_wal(storage, "api_key", {"id": "k1"}, created_at=NOW - 700)
    with caplog.at_level(logging.ERROR):
        rollback(make_backend(cb, periodic=lambda req: ran.append("periodic")), storage)
    assert ran == ["periodic"]
    assert cb.seen == [("api_key", {"id": "k1"})]
    assert list_wal(storage) == [wal_id]
    assert "will retry" in caplog.text


def test_failed_periodic_does_not_stop_wal_rollback() -> None:
    storage, cb = InMemoryStorage(), Recorder()
    put_wal(storage, "api_key", {"id": "k1"}, created_at=NOW - 700)

    def periodic(req: Request) -> None:
        raise RuntimeError("boom")

    rollback(make_backend(cb, periodic=periodic), storage)
    assert cb.seen == [("api_key", {"id": "k1"})]
    assert list_wal(storage) == []


def test_unknown_kind_and_corrupt_entries_are_kept() -> None:
    storage, cb = InMemoryStorage(), Recorder()
    odd = put_wal(storage, "something_else", {"id": "x"}, created_at=NOW - 700)
    storage.put("wal/corrupt", b"not json")
    rollback(make_backend(cb), storage)
    assert cb.seen == []
    assert sorted(list_wal(storage)) == sorted([odd, "corrupt"])


def test_wal_rollback_needs_declared_kinds() -> None:
    with pytest.raises(ValueError, match="wal_kinds"):
        Backend(paths=[], wal_rollback=Recorder())
