"""Storage helpers: an in-memory Storage for tests and JSON records on top of any Storage."""

from __future__ import annotations

import builtins
import json
import threading
from typing import Any

from vaultplugin.framework.logical import Storage


class InMemoryStorage:
    """A thread-safe Storage held in a dict: the unit tests' stand-in for Vault's barrier."""

    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            return self._data.get(key)

    def put(self, key: str, value: bytes) -> None:
        with self._lock:
            self._data[key] = bytes(value)

    def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)

    def list(self, prefix: str) -> list[str]:
        with self._lock:
            children: set[str] = set()
            for key in self._data:
                if not key.startswith(prefix):
                    continue
                rest = key[len(prefix) :]
                head, sep, _ = rest.partition("/")
                children.add(head + sep)
            return sorted(children)

    def keys(self) -> builtins.list[str]:  # `list` here is the method above
        with self._lock:
            return sorted(self._data)


def list_leaves(storage: Storage, prefix: str) -> list[str]:
    """The entries directly under `prefix`, without the sub-folders `Storage.list` also returns."""
    return [key for key in storage.list(prefix) if not key.endswith("/")]


def get_json(storage: Storage, key: str) -> dict[str, Any] | None:
    raw = storage.get(key)
    if raw is None:
        return None
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError(f"storage entry {key!r} is not a JSON object")
    return value


def put_json(storage: Storage, key: str, value: dict[str, Any]) -> None:
    storage.put(key, json.dumps(value, separators=(",", ":"), sort_keys=True).encode())
