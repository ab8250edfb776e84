"""Shared plumbing for the provider emulators: key ledger, fault knobs, routing and a loopback HTTP server.

Each provider module defines an :class:`Emulator` subclass with its own routes and error shapes. The whole API
is :meth:`Emulator.handle`, a function from :class:`httpx.Request` to :class:`httpx.Response`; the real HTTP
server (:meth:`Emulator.serve`) converts to and from httpx objects and calls the same function, so the
in-process transport and the socket server share one code path.

Control endpoints, served at the root of every emulator (no auth, loopback only):

* ``GET /_emulator/state``: counts, live keys (without secrets), faults, page size, clock offset.
* ``POST /_emulator/faults``: add faults. Body: one fault object, or
  ``{"faults": [...], "replace": bool, "page_size": int | null, "revoke_admin_key": bool}``.
  A fault object is ``{"kind", "op", "times", "rate", "retry_after", "status", "seconds", "size"}``.
* ``DELETE /_emulator/faults``: remove every fault.
* ``POST /_emulator/reset``: forget every key, count and fault.
* ``POST /_emulator/clock``: ``{"advance": seconds}`` moves the emulator clock forward (for expiry tests
  over a real server).
* ``POST /_emulator/seed``: ``{"name", "created_at"?, "expires_at"?}`` plants an orphan key; answers its
  key id (never the secret).
* ``POST /_emulator/usage``: ``{"cost_per_request"?: USD >= 0, "delay"?: seconds >= 0}``: what each successful
  inference call charges to the key it used, and how long a charge takes to show in the provider's usage
  answers (the emulator's accounting, ``spent`` in the state, is immediate).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import random
import re
import secrets
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Literal, cast, get_args

import httpx

__all__ = [
    "Charge",
    "Emulator",
    "EmulatorServer",
    "Fault",
    "FaultKind",
    "FaultSet",
    "KeyRecord",
    "LiveKey",
    "Op",
    "Request",
    "Route",
    "WireEvent",
]

Op = Literal["create", "delete", "list", "get", "update", "all"]
OPS: tuple[str, ...] = get_args(Op)

JSONDict = dict[str, Any]


# --------------------------------------------------------------------------------------------------- faults


class FaultKind(StrEnum):
    RATE_LIMIT = "rate_limit"
    SERVER_ERROR = "server_error"
    LATENCY = "latency"
    DROP_AFTER_CREATE = "drop_after_create"
    REVOKE_ADMIN_KEY = "revoke_admin_key"
    ECHO_ADMIN_KEY = "echo_admin_key"
    # Wire faults: how the answer travels. They act through the socket server only (`serve()`), except
    # HUGE_BODY, whose body is streamed in-process too.
    TRICKLE = "trickle"
    SLOW_HEADERS = "slow_headers"
    STALL = "stall"
    HANG = "hang"
    HUGE_BODY = "huge_body"


WIRE_FAULTS = (
    FaultKind.TRICKLE,
    FaultKind.SLOW_HEADERS,
    FaultKind.STALL,
    FaultKind.HANG,
    FaultKind.HUGE_BODY,
)
# The response extension that carries a wire fault from `Emulator.handle` to the socket server.
WIRE_FAULT_EXTENSION = "emulator_wire_fault"


@dataclass
class Fault:
    """One fault knob. ``times`` is how many matching admin calls it affects (``None``: every call, forever).

    ``op`` scopes it to one operation (``create``/``delete``/``list``/``get``/``update``) or ``all``.
    Faults apply to admin endpoints only, never to inference or the control endpoints.

    ``rate`` is the chance that a matching call is hit (1.0: every one); a call it spares uses none of
    ``times``. With ``times=None`` it makes a steady background of faults (a soak at 1 %). ``hits`` counts the
    calls it was applied to.

    Misbehaving answers (``seconds`` is the pause between bytes, ``size`` a body size in bytes):

    * ``echo_admin_key``: the call is refused with ``status`` and an error that repeats the admin key;
    * ``trickle``: the real answer's headers at once, then its body one byte every ``seconds``;
    * ``slow_headers``: the status line and headers one byte every ``seconds``, then the body;
    * ``stall``: the headers and half the body, then nothing, and the connection is never closed;
    * ``hang``: the request is read, then nothing: no answer, never closed (the call is not processed);
    * ``huge_body``: a 200 whose JSON body is ``size`` bytes (the call is not processed).

    The socket server notes how each wire fault ended in ``Emulator.wire_log`` (did the client close?).
    """

    kind: FaultKind
    op: Op = "all"
    times: int | None = 1
    rate: float = 1.0
    retry_after: float = 1.0
    status: int = 500
    seconds: float = 0.0
    size: int = 0
    hits: int = 0

    def __post_init__(self) -> None:
        self.kind = FaultKind(self.kind)
        if self.op not in OPS:
            raise ValueError(f"op must be one of {OPS}, got {self.op!r}")
        if self.times is not None and (
            isinstance(self.times, bool) or not isinstance(self.times, int) or self.times < 1
        ):
            raise ValueError("times must be a positive integer or None (forever)")
        if isinstance(self.rate, bool) or not isinstance(self.rate, int | float) or not 0 < self.rate <= 1:
            raise ValueError("rate must be a number in (0, 1]")
        if self.kind is FaultKind.SERVER_ERROR and not 500 <= self.status <= 599:
            raise ValueError("server_error status must be 5xx")
        if self.retry_after < 0 or self.seconds < 0:
            raise ValueError("retry_after and seconds must be >= 0")
        if self.kind is FaultKind.ECHO_ADMIN_KEY and not 400 <= self.status <= 599:
            raise ValueError("echo_admin_key status must be 4xx or 5xx")
        if self.kind in (FaultKind.TRICKLE, FaultKind.SLOW_HEADERS) and self.seconds <= 0:
            raise ValueError(f"{self.kind.value} needs seconds > 0 (the pause between bytes)")
        if self.kind is FaultKind.HUGE_BODY and (isinstance(self.size, bool) or self.size < 1):
            raise ValueError("huge_body needs size >= 1 (bytes)")
        if self.kind is FaultKind.DROP_AFTER_CREATE:
            self.op = "create"

    # Factories, so tests read like the brief: Fault.rate_limit(times=2, retry_after=3).
    @classmethod
    def rate_limit(cls, times: int | None = 1, retry_after: float = 1.0, op: Op = "all") -> Fault:
        return cls(FaultKind.RATE_LIMIT, op=op, times=times, retry_after=retry_after)

    @classmethod
    def server_error(cls, times: int | None = 1, status: int = 500, op: Op = "all") -> Fault:
        return cls(FaultKind.SERVER_ERROR, op=op, times=times, status=status)

    @classmethod
    def latency(cls, seconds: float, times: int | None = None, op: Op = "all") -> Fault:
        return cls(FaultKind.LATENCY, op=op, times=times, seconds=seconds)

    @classmethod
    def drop_after_create(cls, times: int | None = 1) -> Fault:
        return cls(FaultKind.DROP_AFTER_CREATE, op="create", times=times)

    @classmethod
    def revoke_admin_key(cls, times: int | None = None, op: Op = "all") -> Fault:
        return cls(FaultKind.REVOKE_ADMIN_KEY, op=op, times=times)

    @classmethod
    def echo_admin_key(cls, status: int = 401, times: int | None = None, op: Op = "all") -> Fault:
        return cls(FaultKind.ECHO_ADMIN_KEY, op=op, times=times, status=status)

    @classmethod
    def trickle(cls, seconds: float = 2.0, times: int | None = None, op: Op = "all") -> Fault:
        return cls(FaultKind.TRICKLE, op=op, times=times, seconds=seconds)

    @classmethod
    def slow_headers(cls, seconds: float = 2.0, times: int | None = None, op: Op = "all") -> Fault:
        return cls(FaultKind.SLOW_HEADERS, op=op, times=times, seconds=seconds)

    @classmethod
    def stall(cls, times: int | None = None, op: Op = "all") -> Fault:
        return cls(FaultKind.STALL, op=op, times=times)

    @classmethod
    def hang(cls, times: int | None = None, op: Op = "all") -> Fault:
        return cls(FaultKind.HANG, op=op, times=times)

    @classmethod
    def huge_body(cls, size: int = 64 * 1024 * 1024, times: int | None = None, op: Op = "all") -> Fault:
        return cls(FaultKind.HUGE_BODY, op=op, times=times, size=size)

    def matches(self, kind: FaultKind, op: str) -> bool:
        return self.kind is kind and self.op in ("all", op)

    def to_json(self) -> JSONDict:
        return {
            "kind": self.kind.value,
            "op": self.op,
            "times": self.times,
            "rate": self.rate,
            "retry_after": self.retry_after,
            "status": self.status,
            "seconds": self.seconds,
            "size": self.size,
            "hits": self.hits,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Fault:
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        if "kind" not in data:
            raise ValueError("a fault needs a 'kind'")
        return cls(**data)


class FaultSet:
    """A thread-safe, ordered set of faults. Each matching admin call consumes one use of the first match
    that fires (a fault with ``rate`` < 1 fires on that share of its matching calls)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._random = random.Random()  # noqa: S311 - fault injection, not security

    def seed(self, value: int) -> None:
        """Make the draws of faults with ``rate`` < 1 repeatable."""
        with self._lock:
            self._random.seed(value)

    def _fires(self, fault: Fault) -> bool:
        """With the lock held: whether `fault` hits this call; if so, count it and use one of its times."""
        if fault.rate < 1.0 and self._random.random() >= fault.rate:
            return False
        fault.hits += 1
        if fault.times is not None:
            fault.times -= 1
            if fault.times == 0:
                self._faults.remove(fault)
        return True

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def extend(self, faults: Iterable[Fault]) -> None:
        with self._lock:
            self._faults.extend(faults)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def remove_kind(self, kind: FaultKind) -> None:
        with self._lock:
            self._faults = [f for f in self._faults if f.kind is not kind]

    def __iter__(self) -> Iterator[Fault]:
        with self._lock:
            return iter(list(self._faults))

    def __len__(self) -> int:
        with self._lock:
            return len(self._faults)

    def take(self, kind: FaultKind, op: str) -> Fault | None:
        """Consume one use of the first fault of ``kind`` that matches ``op``; None if there is none."""
        with self._lock:
            for fault in list(self._faults):
                if fault.matches(kind, op) and self._fires(fault):
                    return fault
        return None

    def take_any(self, kinds: Iterable[FaultKind], op: str) -> Fault | None:
        """Consume one use of the first fault of any of ``kinds`` that matches ``op``."""
        wanted = set(kinds)
        with self._lock:
            for fault in list(self._faults):
                if fault.kind in wanted and fault.matches(fault.kind, op) and self._fires(fault):
                    return fault
            return None

    def take_each(self, kind: FaultKind, op: str) -> list[Fault]:
        """Consume one use of every fault of ``kind`` that matches ``op`` (latencies add up)."""
        with self._lock:
            return [f for f in list(self._faults) if f.matches(kind, op) and self._fires(f)]

    # Convenience adders.
    def rate_limit(self, times: int | None = 1, retry_after: float = 1.0, op: Op = "all") -> Fault:
        return self.add(Fault.rate_limit(times=times, retry_after=retry_after, op=op))

    def server_error(self, times: int | None = 1, status: int = 500, op: Op = "all") -> Fault:
        return self.add(Fault.server_error(times=times, status=status, op=op))

    def latency(self, seconds: float, times: int | None = None, op: Op = "all") -> Fault:
        return self.add(Fault.latency(seconds, times=times, op=op))

    def drop_after_create(self, times: int | None = 1) -> Fault:
        return self.add(Fault.drop_after_create(times=times))

    def revoke_admin_key(self, times: int | None = None, op: Op = "all") -> Fault:
        return self.add(Fault.revoke_admin_key(times=times, op=op))


@dataclass(frozen=True)
class Charge:
    """One inference call's cost, charged to a key at ``at`` (emulator clock). ``usage_id`` is the id the
    provider's usage reports group by (OpenAI: the API key id, which a service account's key does not share
    with its account); ``project_id`` where the provider has projects."""

    at: float
    key_id: str
    usage_id: str
    usd: float
    model: str = ""
    project_id: str | None = None


@dataclass(frozen=True)
class WireEvent:
    """How one wire fault ended at the socket server: ``client_closed`` is True when the client closed the
    connection before the emulator finished (it gave up), and ``ended - started`` how long that took."""

    kind: FaultKind
    started: float  # time.monotonic()
    ended: float
    client_closed: bool

    @property
    def seconds(self) -> float:
        return self.ended - self.started


# --------------------------------------------------------------------------------------------------- ledger


@dataclass(frozen=True)
class LiveKey:
    """A snapshot of one key that exists at the provider (not deleted). Secrets are kept out of repr."""

    key_id: str
    name: str
    secret: str = field(repr=False)
    created_at: float
    expires_at: float | None
    disabled: bool
    expired: bool = False
    project_id: str | None = None
    limit: float | None = None
    models: tuple[str, ...] = ()
    max_budget: float | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    usage: float = 0.0

    def to_json(self) -> JSONDict:
        """A JSON view without the secret."""
        data = dataclasses.asdict(self)
        del data["secret"]
        data["models"] = list(self.models)
        data["metadata"] = dict(self.metadata)
        return data


@dataclass
class KeyRecord:
    """The emulator's own mutable record of a key; providers keep their extra fields in ``extra``."""

    key_id: str
    name: str
    secret: str = field(repr=False)
    created_at: float
    expires_at: float | None = None
    disabled: bool = False
    deleted_at: float | None = None
    updated_at: float | None = None
    project_id: str | None = None
    limit: float | None = None
    models: list[str] = field(default_factory=list)
    max_budget: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    usage: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def deleted(self) -> bool:
        return self.deleted_at is not None

    def expired_at(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def snapshot(self, now: float) -> LiveKey:
        return LiveKey(
            key_id=self.key_id,
            name=self.name,
            secret=self.secret,
            created_at=self.created_at,
            expires_at=self.expires_at,
            disabled=self.disabled,
            expired=self.expired_at(now),
            project_id=self.project_id,
            limit=self.limit,
            models=tuple(self.models),
            max_budget=self.max_budget,
            metadata=dict(self.metadata),
            usage=self.usage,
        )


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# --------------------------------------------------------------------------------------------------- routing


@dataclass
class Request:
    """What a route handler sees: the httpx request plus parsed pieces."""

    raw: httpx.Request
    method: str
    path: str
    params: dict[str, str]
    token: str | None

    @property
    def query(self) -> httpx.QueryParams:
        return self.raw.url.params

    @property
    def body(self) -> bytes:
        return self.raw.content


class BodyError(Exception):
    """The request body is not a JSON object."""


def json_object(req: Request) -> JSONDict:
    """The body as a JSON object; raises :class:`BodyError` on anything else (empty body counts as {})."""
    if not req.body.strip():
        raise BodyError("empty body")
    try:
        data = json.loads(req.body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BodyError(str(exc)) from None
    if not isinstance(data, dict):
        raise BodyError("body is not a JSON object")
    return cast(JSONDict, data)


Handler = Callable[[Request], httpx.Response]
RouteKind = Literal["admin", "inference"]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    op: str
    handler: Handler
    kind: RouteKind = "admin"


class DroppedResponse(httpx.RemoteProtocolError):
    """The emulator performed the request but "lost" the response (drop_after_create)."""


def json_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=body, headers=dict(headers or {}))


def huge_json_response(size: int) -> httpx.Response:
    """A 200 whose body is exactly `size` bytes (a JSON object when it fits), streamed in 64 KB pieces."""
    head, tail = b'{"data":"', b'"}'
    filler = size - len(head) - len(tail)

    def body() -> Iterator[bytes]:
        if filler < 0:
            yield b" " * size
            return
        yield head
        left = filler
        while left > 0:
            piece = min(left, 64 * 1024)
            yield b"x" * piece
            left -= piece
        yield tail

    return httpx.Response(200, headers={"Content-Type": "application/json"}, content=body())


def gateway_page(status: int) -> httpx.Response:
    """What a CDN in front of a hosted API answers for 502: an HTML page, not the provider's JSON."""
    title = f"{status} Bad Gateway"
    html = f"<html><head><title>{title}</title></head><body><center><h1>{title}</h1></center></body></html>"
    return httpx.Response(status, text=html, headers={"Content-Type": "text/html"})


def iso_z(ts: float) -> str:
    """ISO-8601 UTC with milliseconds and a Z suffix (OpenRouter style)."""
    dt = datetime.fromtimestamp(ts, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def iso_offset(ts: float) -> str:
    """Python's isoformat with +00:00 (LiteLLM style)."""
    return datetime.fromtimestamp(ts, UTC).isoformat()


def retry_after_header(seconds: float) -> str:
    """Retry-After as whole seconds (HTTP allows nothing finer), rounded up so clients never retry early."""
    return str(max(0, math.ceil(seconds)))


def random_token(nbytes: int = 24) -> str:
    return secrets.token_urlsafe(nbytes)


def random_id(nchars: int = 24) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(nchars))


# --------------------------------------------------------------------------------------------------- emulator


class Emulator:
    """Base class: ledger, faults, control endpoints and the admin-call pipeline.

    Subclasses set ``provider``, ``path_prefix``, ``DEFAULT_ADMIN_KEY`` and implement ``_routes`` plus the
    error builders. The admin-call pipeline is: latency -> auth (with revoke_admin_key) -> rate_limit ->
    server_error -> handler -> drop_after_create (only on a 2xx create).
    """

    provider: ClassVar[str] = ""
    path_prefix: ClassVar[str] = ""
    DEFAULT_ADMIN_KEY: ClassVar[str] = ""
    # Largest page the provider serves; set_page_size() may lower it for tests.
    MAX_PAGE_SIZE: ClassVar[int] = 100

    # Seconds before a charge shows in the provider's usage answers (OpenAI's usage API reports late).
    DEFAULT_USAGE_DELAY: ClassVar[float] = 0.0

    def __init__(self, admin_key: str | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.admin_key = admin_key if admin_key is not None else self.DEFAULT_ADMIN_KEY
        if not self.admin_key:
            raise ValueError("admin_key must not be empty")
        self._base_clock = clock
        self._clock_offset = 0.0
        self.faults = FaultSet()
        # One lock for the ledger: the real server is threaded.
        self._lock = threading.RLock()
        self._records: dict[str, KeyRecord] = {}
        self._by_digest: dict[str, str] = {}
        self._deleted_ids: list[str] = []
        self.create_count = 0
        self.delete_count = 0
        self.page_size_cap: int | None = None
        # Cost charged to a key per successful chat completion (USD), for spend/limit checks.
        self.cost_per_request = 0.001
        self.usage_delay = self.DEFAULT_USAGE_DELAY
        self._charges: list[Charge] = []
        self.wire_log: list[WireEvent] = []  # appended by the socket server's threads
        self._routes: list[Route] = self._build_routes()

    # ---- public Python API

    @property
    def base_path(self) -> str:
        """An absolute in-process base URL: ``httpx.Client(transport=MockTransport(emu.handle), base_url=…)``.

        The host is under ``.invalid`` (RFC 2606), so a client that forgets the mock transport cannot reach
        anything real.
        """
        return f"http://{self.provider}.emulator.invalid{self.path_prefix}"

    def client(self, **kwargs: Any) -> httpx.Client:
        """An httpx client wired to :meth:`handle` (no sockets)."""
        return httpx.Client(transport=httpx.MockTransport(self.handle), base_url=self.base_path, **kwargs)

    def now(self) -> float:
        return self._base_clock() + self._clock_offset

    def advance_clock(self, seconds: float) -> None:
        """Move this emulator's clock forward (on top of the injected clock)."""
        self._clock_offset += seconds

    def set_faults(self, *faults: Fault) -> None:
        """Replace every fault with these."""
        self.faults.clear()
        self.faults.extend(faults)

    def revoke_admin_key(self) -> None:
        """From now on every admin call gets 401 (until :meth:`restore_admin_key` or reset)."""
        self.faults.revoke_admin_key()

    def restore_admin_key(self) -> None:
        self.faults.remove_kind(FaultKind.REVOKE_ADMIN_KEY)

    def set_page_size(self, n: int | None) -> None:
        """Lower the largest page the server returns (None restores the provider's own limits)."""
        if n is not None and n < 1:
            raise ValueError("page size must be >= 1")
        self.page_size_cap = n

    def live_keys(self) -> list[LiveKey]:
        """Keys that exist at the provider (not deleted), in creation order. Expired keys are included."""
        now = self.now()
        with self._lock:
            return [r.snapshot(now) for r in self._records.values() if not r.deleted]

    def deleted_key_ids(self) -> list[str]:
        """Key ids deleted through the API, in order."""
        with self._lock:
            return list(self._deleted_ids)

    def find_key(self, key_id: str) -> LiveKey | None:
        with self._lock:
            rec = self._records.get(key_id)
            return None if rec is None or rec.deleted else rec.snapshot(self.now())

    def add_usage(self, key_id: str, usd: float) -> None:
        """Charge spend to a key (for limit / budget tests)."""
        with self._lock:
            self._charge(self._records[key_id], usd=usd)

    def spent(self, key_id: str) -> float:
        """Everything charged to a key so far, deleted keys included (the emulator's own accounting, with no
        reporting delay); 0.0 for a key never charged."""
        with self._lock:
            return sum(c.usd for c in self._charges if c.key_id == key_id)

    def charges(self) -> list[Charge]:
        with self._lock:
            return list(self._charges)

    def set_usage(self, *, cost_per_request: float | None = None, delay: float | None = None) -> None:
        for name, value in (("cost_per_request", cost_per_request), ("delay", delay)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float) or value < 0
            ):
                raise ValueError(f"{name} must be a number >= 0")
        with self._lock:
            if cost_per_request is not None:
                self.cost_per_request = float(cost_per_request)
            if delay is not None:
                self.usage_delay = float(delay)

    def seed_key(
        self,
        name: str = "orphan",
        *,
        created_at: float | None = None,
        expires_at: float | None = None,
        disabled: bool = False,
        project_id: str | None = None,
    ) -> LiveKey:
        """Plant a key as if someone created it earlier (for sweep tests). Does not count as a create."""
        with self._lock:
            rec = self._new_record(name, created_at=self.now() if created_at is None else created_at)
            rec.expires_at = expires_at
            rec.disabled = disabled
            self._seed_extras(rec, project_id)
            self._store(rec)
            return rec.snapshot(self.now())

    def reset(self) -> None:
        with self._lock:
            self._records.clear()
            self._by_digest.clear()
            self._deleted_ids.clear()
            self.create_count = 0
            self.delete_count = 0
            self.page_size_cap = None
            self._clock_offset = 0.0
            self.faults.clear()
            self._charges.clear()
            self._reset_provider()

    def state(self) -> JSONDict:
        with self._lock:
            return {
                "provider": self.provider,
                "create_count": self.create_count,
                "delete_count": self.delete_count,
                "deleted_key_ids": list(self._deleted_ids),
                "live_keys": [k.to_json() for k in self.live_keys()],
                "faults": [f.to_json() for f in self.faults],
                "page_size": self.page_size_cap,
                "clock_offset": self._clock_offset,
                "now": self.now(),
                "cost_per_request": self.cost_per_request,
                "usage_delay": self.usage_delay,
                "spent": self._spent_by_key(),
                **self._provider_state(),
            }

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> EmulatorServer:
        """Start a threaded HTTP server on loopback; use as a context manager or call ``.stop()``."""
        return EmulatorServer(self, host, port)

    # ---- the whole API as a function

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.startswith("/_emulator/") or path == "/_emulator":
            return self._control(request)
        matched_path = False
        for route in self._routes:
            m = route.pattern.fullmatch(path)
            if m is None:
                continue
            matched_path = True
            if route.method != request.method:
                continue
            req = Request(request, request.method, path, m.groupdict(), bearer_token(request))
            if route.kind == "inference":
                with self._lock:
                    return route.handler(req)
            return self._admin_call(route, req)
        return self._not_found(request.method, path, method_mismatch=matched_path)

    def _admin_call(self, route: Route, req: Request) -> httpx.Response:
        op = route.op
        delay = sum(f.seconds for f in self.faults.take_each(FaultKind.LATENCY, op))
        if delay:
            time.sleep(delay)
        wire = self.faults.take_any(WIRE_FAULTS, op)
        if wire is not None and wire.kind is FaultKind.HUGE_BODY:
            response = huge_json_response(wire.size)
        elif wire is not None and wire.kind is FaultKind.HANG:
            response = json_response(504, {"error": {"message": "emulator: hang acts through serve() only"}})
        else:
            response = self._answer(route, req, op)
        if wire is not None:
            response.extensions[WIRE_FAULT_EXTENSION] = wire
        return response

    def _answer(self, route: Route, req: Request, op: str) -> httpx.Response:
        with self._lock:
            denied = self._check_admin_auth(req, op)
            if denied is not None:
                return denied
            if (echo := self.faults.take(FaultKind.ECHO_ADMIN_KEY, op)) is not None:
                return self._err_echo_admin_key(echo.status, req.token or "")
            if (rl := self.faults.take(FaultKind.RATE_LIMIT, op)) is not None:
                resp = self._err_rate_limited(rl.retry_after)
                resp.headers["Retry-After"] = retry_after_header(rl.retry_after)
                return resp
            if (se := self.faults.take(FaultKind.SERVER_ERROR, op)) is not None:
                return self._err_server(se.status)
            response = route.handler(req)
            if op == "create" and 200 <= response.status_code < 300:
                self.create_count += 1
                if self.faults.take(FaultKind.DROP_AFTER_CREATE, op) is not None:
                    raise DroppedResponse("Server disconnected without sending a response.", request=req.raw)
            return response

    def _check_admin_auth(self, req: Request, op: str) -> httpx.Response | None:
        token = req.token
        if not token:
            return self._err_missing_auth()
        if secrets.compare_digest(token.encode(), self.admin_key.encode()):
            if self.faults.take(FaultKind.REVOKE_ADMIN_KEY, op) is not None:
                return self._err_invalid_auth()
            return None
        if self._lookup_secret(token) is not None:
            return self._err_issued_key_on_admin()
        return self._err_invalid_auth()

    def is_admin_token(self, token: str | None) -> bool:
        return token is not None and secrets.compare_digest(token.encode(), self.admin_key.encode())

    # ---- ledger helpers for subclasses (call with self._lock held)

    def _store(self, rec: KeyRecord) -> None:
        self._records[rec.key_id] = rec
        self._by_digest[secret_digest(rec.secret)] = rec.key_id

    def _lookup_secret(self, secret: str) -> KeyRecord | None:
        """The record a secret belongs to, deleted ones included (callers decide what dead means)."""
        key_id = self._by_digest.get(secret_digest(secret))
        return None if key_id is None else self._records.get(key_id)

    def _get_live(self, key_id: str) -> KeyRecord | None:
        rec = self._records.get(key_id)
        return None if rec is None or rec.deleted else rec

    def _mark_deleted(self, rec: KeyRecord) -> None:
        rec.deleted_at = self.now()
        self._deleted_ids.append(rec.key_id)
        self.delete_count += 1

    def _charge(
        self, rec: KeyRecord, *, usd: float | None = None, usage_id: str | None = None, model: str = ""
    ) -> None:
        """Charge one inference call (or ``usd``) to ``rec``: its live total (limits, budgets) and the ledger
        the usage answers are made from."""
        cost = self.cost_per_request if usd is None else usd
        rec.usage += cost
        self._charges.append(
            Charge(self.now(), rec.key_id, usage_id or rec.key_id, cost, model, rec.project_id)
        )

    def _reported_usage(self, rec: KeyRecord) -> float:
        """What the provider's usage answers show for ``rec``: charges older than the reporting delay."""
        visible_until = self.now() - self.usage_delay
        return sum(c.usd for c in self._charges if c.key_id == rec.key_id and c.at <= visible_until)

    def _spent_by_key(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for c in self._charges:
            out[c.key_id] = out.get(c.key_id, 0.0) + c.usd
        return out

    def _records_in_order(self) -> list[KeyRecord]:
        return list(self._records.values())

    def _page_cap(self, n: int) -> int:
        return n if self.page_size_cap is None else min(n, self.page_size_cap)

    # ---- control endpoints

    def _control(self, request: httpx.Request) -> httpx.Response:
        name = request.url.path.removeprefix("/_emulator").strip("/")
        method = request.method
        try:
            if name == "state" and method == "GET":
                return json_response(200, self.state())
            if name == "faults" and method == "DELETE":
                self.faults.clear()
                return json_response(200, {"faults": []})
            if name == "reset" and method == "POST":
                self.reset()
                return json_response(200, self.state())
            body = _control_body(request)
            if name == "faults" and method == "POST":
                return self._control_faults(body)
            if name == "clock" and method == "POST":
                self.advance_clock(float(body.get("advance", 0)))
                return json_response(200, {"now": self.now(), "clock_offset": self._clock_offset})
            if name == "usage" and method == "POST":
                self.set_usage(cost_per_request=body.get("cost_per_request"), delay=body.get("delay"))
                return json_response(
                    200, {"cost_per_request": self.cost_per_request, "delay": self.usage_delay}
                )
            if name == "seed" and method == "POST":
                key = self.seed_key(
                    str(body.get("name", "orphan")),
                    created_at=_opt_float(body.get("created_at")),
                    expires_at=_opt_float(body.get("expires_at")),
                    disabled=bool(body.get("disabled", False)),
                    project_id=cast("str | None", body.get("project_id")),
                )
                return json_response(201, key.to_json())
        except (ValueError, TypeError) as exc:
            return json_response(400, {"error": f"bad control request: {exc}"})
        return json_response(404, {"error": f"no control endpoint {method} /_emulator/{name}"})

    def _control_faults(self, body: JSONDict) -> httpx.Response:
        if "kind" in body:
            faults = [Fault.from_json(body)]
        else:
            raw = body.get("faults", [])
            if not isinstance(raw, list):
                raise ValueError("'faults' must be a list")
            faults = [Fault.from_json(f) for f in raw]
        if body.get("revoke_admin_key"):
            faults.append(Fault.revoke_admin_key())
        if body.get("replace"):
            self.faults.clear()
        if "page_size" in body:
            ps = body["page_size"]
            self.set_page_size(None if ps is None else int(ps))
        self.faults.extend(faults)
        return json_response(
            200, {"faults": [f.to_json() for f in self.faults], "page_size": self.page_size_cap}
        )

    # ---- to be provided by subclasses

    def _build_routes(self) -> list[Route]:
        raise NotImplementedError

    def _new_record(self, name: str, *, created_at: float) -> KeyRecord:
        raise NotImplementedError

    def _seed_extras(self, rec: KeyRecord, project_id: str | None) -> None:
        if project_id is not None:
            raise ValueError(f"{self.provider} keys have no project")

    def _reset_provider(self) -> None:
        return None

    def _provider_state(self) -> JSONDict:
        return {}

    def _err_missing_auth(self) -> httpx.Response:
        raise NotImplementedError

    def _err_invalid_auth(self) -> httpx.Response:
        raise NotImplementedError

    def _err_issued_key_on_admin(self) -> httpx.Response:
        raise NotImplementedError

    def _err_rate_limited(self, retry_after: float) -> httpx.Response:
        raise NotImplementedError

    def _err_server(self, status: int) -> httpx.Response:
        raise NotImplementedError

    def _not_found(self, method: str, path: str, *, method_mismatch: bool) -> httpx.Response:
        raise NotImplementedError

    def _err_echo_admin_key(self, status: int, token: str) -> httpx.Response:
        """A provider (or a proxy in front of it) that repeats the credential it was sent."""
        message = f"Incorrect API key provided: {token}. The key '{token}' cannot be used here."
        if status >= 500:
            page = f"<html><body><h1>{status}</h1><p>upstream refused: Bearer {token}</p></body></html>"
            return httpx.Response(status, text=page, headers={"Content-Type": "text/html"})
        return json_response(
            status,
            {
                "error": {
                    "message": message,
                    "type": "invalid_request_error",
                    "code": "invalid_api_key",
                    "param": token,
                }
            },
        )


def bearer_token(request: httpx.Request) -> str | None:
    value: str | None = request.headers.get("authorization")
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _control_body(request: httpx.Request) -> JSONDict:
    if not request.content.strip():
        return {}
    data = json.loads(request.content)
    if not isinstance(data, dict):
        raise ValueError("body must be a JSON object")
    return cast(JSONDict, data)


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def route(method: str, pattern: str, op: str, handler: Handler, kind: RouteKind = "admin") -> Route:
    return Route(method, re.compile(pattern), op, handler, kind)


# --------------------------------------------------------------------------------------------------- server


_HOP_HEADERS = frozenset(
    {"content-length", "transfer-encoding", "connection", "keep-alive", "content-encoding"}
)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle + delayed ACK cost ~40 ms a call.
    disable_nagle_algorithm = True
    server: _Server

    def _serve(self) -> None:
        emulator = self.server.emulator
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked()
        else:
            body = self.rfile.read(int(length)) if length else b""
        url = f"http://127.0.0.1:{self.server.server_port}{self.path}"
        request = httpx.Request(self.command, url, headers=list(self.headers.items()), content=body)
        try:
            response = emulator.handle(request)
        except httpx.TransportError:
            # The response is "lost": close the connection without a byte of answer.
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        except Exception as exc:
            # Never echo request data (it may hold keys); the exception type is enough.
            response = json_response(500, {"error": {"message": f"emulator bug: {type(exc).__name__}"}})
        wire = response.extensions.get(WIRE_FAULT_EXTENSION)
        if isinstance(wire, Fault):
            self.close_connection = True
            started = time.monotonic()
            client_closed = self._answer_badly(response, wire)
            emulator.wire_log.append(WireEvent(wire.kind, started, time.monotonic(), client_closed))
            return
        content = response.read()
        self.send_response(response.status_code)
        for name, value in response.headers.multi_items():
            if name.lower() not in _HOP_HEADERS:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(content)

    @staticmethod
    def _head(response: httpx.Response, length: int) -> bytes:
        """Status line and headers, built whole so a wire fault can send them as it likes."""
        lines = [f"HTTP/1.1 {response.status_code} {response.reason_phrase}"]
        lines += [f"{k}: {v}" for k, v in response.headers.multi_items() if k.lower() not in _HOP_HEADERS]
        lines += [f"Content-Length: {length}", "", ""]
        return "\r\n".join(lines).encode("latin-1")

    # ---- wire faults: each returns True when the client closed the connection first

    def _answer_badly(self, response: httpx.Response, fault: Fault) -> bool:
        try:
            if fault.kind is FaultKind.HANG:
                return self._hold_open()
            if fault.kind is FaultKind.HUGE_BODY:
                self.connection.sendall(self._head(response, fault.size))
                for chunk in response.iter_raw():
                    self.connection.sendall(chunk)
                return False
            content = response.read()
            head = self._head(response, len(content))
            if fault.kind is FaultKind.SLOW_HEADERS:
                if self._trickle(head, fault.seconds):
                    return True
                self.connection.sendall(content)
                return False
            self.connection.sendall(head)
            if fault.kind is FaultKind.TRICKLE:
                return self._trickle(content, fault.seconds)
            self.connection.sendall(content[: len(content) // 2])  # STALL
            return self._hold_open()
        except OSError:
            return True  # the client closed (reset) while we wrote

    def _trickle(self, data: bytes, seconds: float) -> bool:
        for i in range(len(data)):
            self.connection.sendall(data[i : i + 1])
            if i + 1 < len(data) and self._client_gone(seconds):
                return True
        return False

    def _hold_open(self) -> bool:
        """Send nothing and keep the connection until the client closes it or the server stops."""
        while not self.server.stopping.is_set():
            if self._client_gone(0.1):
                return True
        return False

    def _client_gone(self, seconds: float) -> bool:
        """Wait `seconds`; True as soon as the client closes its side (or the server stops)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([self.connection], [], [], min(left, 0.1))
            if readable:
                try:
                    if not self.connection.recv(65536):
                        return True
                except OSError:
                    return True
            if self.server.stopping.is_set():
                return True
        return False

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

    def log_message(self, format: str, *args: Any) -> None:
        # Silent: request lines could carry key material in query strings.
        return


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # socketserver's default backlog is 5: a burst of new connections (a plugin revoking 100 leases at once)
    # overflowed it and the kernel dropped SYNs, so connects took 1-3 s (TCP retransmits), which no real
    # provider's front end does.
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], emulator: Emulator) -> None:
        self.emulator = emulator
        self.stopping = threading.Event()  # ends the handlers that hold a connection open
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout) leaves a broken pipe behind: expected, and nothing to print.
        return


class EmulatorServer:
    """A running loopback server for one emulator. ``with emu.serve() as srv: srv.base_url``."""

    def __init__(self, emulator: Emulator, host: str = "127.0.0.1", port: int = 0) -> None:
        if host not in ("127.0.0.1", "localhost"):
            raise ValueError("the emulators bind to 127.0.0.1 only")
        self.emulator = emulator
        self._server = _Server(("127.0.0.1", port), emulator)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{emulator.provider}-emulator:{self.port}",
            daemon=True,
        )
        self._thread.start()
        self._stopped = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + self.emulator.path_prefix

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> EmulatorServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EmulatorServer({self.emulator.provider!r}, url={self.url!r})"
