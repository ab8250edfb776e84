"""The lean HTTP/1.1 client behind every direct provider call, on real loopback sockets: framing (length,
chunked, close), keep-alive reuse and a server that closed an idle connection, informational answers,
malformed answers, TLS with verification, and the call budget's deadline and abort.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from llm_emulators import OpenRouterEmulator
from llmsecrets.providers import KeySpec, ProviderUnavailable
from llmsecrets.providers.budget import Abort, CallBudget
from llmsecrets.providers.bulkhead import Bulkhead
from llmsecrets.providers.http import ProviderHTTP
from llmsecrets.providers.http11 import Http11Pool
from llmsecrets.providers.openrouter import OpenRouterClient
from llmsecrets.providers.transport import GuardedTransport, runs_here
from vaultplugin.transport.hub import Hub

pytestmark = pytest.mark.timeout(60)

T = TypeVar("T")
OK_JSON = b'{"ok":true}'
ADMIN = "sk-or-v1-http11-test-0123456789abcdef"

# A handler reads one request (head and body) and returns the raw bytes to answer with, or None to close.
Answer = Callable[[bytes, bytes], bytes | None]


def reply(body: bytes = OK_JSON, status: str = "200 OK", extra: str = "") -> bytes:
    return f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


class ScriptedServer:
    """A loopback HTTP/1.1 server answering each request with `answer(head, body)`; counts connections.
    With `close_after`, it closes each connection once it has answered (as an idle timeout would)."""

    def __init__(self, answer: Answer, tls: ssl.SSLContext | None = None, close_after: bool = False) -> None:
        self._answer = answer
        self._tls = tls
        self._close_after = close_after
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self.connections = 0
        self.requests: list[bytes] = []
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self._sock.settimeout(0.05)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self._tls is not None:
                conn = self._tls.wrap_socket(conn, server_side=True)
            data = b""
            while not self._stop.is_set():
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, data = data.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(data) < length:
                    data += conn.recv(65536)
                body, data = data[:length], data[length:]
                self.requests.append(head + b"\r\n\r\n" + body)
                out = self._answer(head, body)
                if out is None:
                    return
                conn.sendall(out)
                if self._close_after:
                    return
        except (OSError, ssl.SSLError):
            return
        finally:
            conn.close()

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._stop.set()
        self._sock.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(answer: Answer, tls: ssl.SSLContext | None = None, close_after: bool = False) -> ScriptedServer:
        servers.append(ScriptedServer(answer, tls, close_after))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def pool() -> Http11Pool:
    return Http11Pool(ssl_context=ssl.create_default_context())


def get(p: Http11Pool, url: str, method: str = "GET", **kwargs: object) -> tuple[httpx.Response, bytes]:
    response = p.handle(httpx.Request(method, url, **kwargs))  # type: ignore[arg-type]
    try:
        return response, b"".join(response.iter_raw())
    finally:
        response.close()


def test_a_length_framed_answer_and_the_request_as_sent(serve: Callable[..., ScriptedServer]) -> None:
    server = serve(lambda head, body: reply(b'{"echo":' + body + b"}", "201 Created", "X-Test: yes\r\n"))
    response, body = get(pool(), server.url() + "/api/v1/keys?offset=3", "POST", json={"a": 1})
    assert (response.status_code, body) == (201, b'{"echo":{"a":1}}')
    assert response.headers["x-test"] == "yes"
    sent = server.requests[0]
    assert sent.startswith(b"POST /api/v1/keys?offset=3 HTTP/1.1\r\n")
    assert b"Content-Type: application/json" in sent and sent.endswith(b'\r\n\r\n{"a":1}')


def test_sequential_calls_share_one_connection(serve: Callable[..., ScriptedServer]) -> None:
    server = serve(lambda head, body: reply())
    p = pool()
    for _ in range(5):
        assert get(p, server.url() + "/x")[1] == OK_JSON
    assert server.connections == 1


def test_a_connection_the_server_closed_while_idle_is_not_reused(
    serve: Callable[..., ScriptedServer],
) -> None:
    server = serve(lambda head, body: reply(), close_after=True)  # no "Connection: close": an idle timeout
    p = pool()
    assert get(p, server.url() + "/x")[1] == OK_JSON
    time.sleep(0.05)  # the server's FIN reaches the idle connection
    assert get(p, server.url() + "/x")[1] == OK_JSON  # a new connection, not an error
    assert server.connections == 2


def test_a_server_that_closes_without_answering(serve: Callable[..., ScriptedServer]) -> None:
    server = serve(lambda head, body: None)
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        get(pool(), server.url() + "/x")


def test_connection_close_is_honoured(serve: Callable[..., ScriptedServer]) -> None:
    server = serve(lambda head, body: reply(extra="Connection: close\r\n"))
    p = pool()
    get(p, server.url() + "/x")
    get(p, server.url() + "/x")
    assert server.connections == 2


def test_a_chunked_answer_with_extensions_and_trailers(serve: Callable[..., ScriptedServer]) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'4;ext=1\r\n{"a"\r\n6\r\n:[1,2]\r\n1\r\n}\r\n0\r\nX-Trailer: t\r\n\r\n'
    )
    server = serve(lambda head, body: chunked)
    p = pool()
    assert get(p, server.url() + "/x")[1] == b'{"a":[1,2]}'
    assert get(p, server.url() + "/x")[1] == b'{"a":[1,2]}'
    assert server.connections == 1  # read to its end: reused


def test_an_answer_ended_by_the_close(serve: Callable[..., ScriptedServer]) -> None:
    server = serve(lambda head, body: b"HTTP/1.0 200 OK\r\n\r\n" + OK_JSON, close_after=True)
    p = pool()
    assert get(p, server.url() + "/x")[1] == OK_JSON  # no length: the body is everything up to the close
    assert get(p, server.url() + "/x")[1] == OK_JSON
    assert server.connections == 2


def test_informational_answers_are_skipped(serve: Callable[..., ScriptedServer]) -> None:
    server = serve(
        lambda head, body: b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\n\r\n" + reply()
    )
    assert get(pool(), server.url() + "/x")[1] == OK_JSON


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"SMTP ready\r\n\r\n", "not an HTTP/1.x status line"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", "invalid Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort", "bytes of the answer missing"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "invalid chunk size"),
    ],
)
def test_malformed_answers_are_protocol_errors(
    serve: Callable[..., ScriptedServer], raw: bytes, message: str
) -> None:
    server = serve(lambda head, body: raw, close_after=True)
    with pytest.raises(httpx.RemoteProtocolError, match=message):
        get(pool(), server.url() + "/x")


def test_refused_and_unsupported() -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    with pytest.raises(httpx.ConnectError):
        get(pool(), f"http://127.0.0.1:{port}/x")
    with pytest.raises(httpx.UnsupportedProtocol):
        get(pool(), "ftp://127.0.0.1/x")


def _tls_contexts(tmp: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) contexts: a self-signed certificate for 127.0.0.1 that the client trusts."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "provider.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert_path, key_path)
    client = ssl.create_default_context(cafile=str(cert_path))
    return server, client


def test_tls_is_verified_and_kept_alive(serve: Callable[..., ScriptedServer], tmp_path: Path) -> None:
    server_ctx, client_ctx = _tls_contexts(tmp_path)
    server = serve(lambda head, body: reply(), tls=server_ctx)
    trusting = Http11Pool(ssl_context=client_ctx)
    for _ in range(3):
        assert get(trusting, server.url("https") + "/x")[1] == OK_JSON
    assert server.connections == 1
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        get(pool(), server.url("https") + "/x")  # the system's roots do not know this certificate


def test_a_real_client_call_through_the_guarded_transport() -> None:
    emu = OpenRouterEmulator(ADMIN)
    with emu.serve() as server:
        client = OpenRouterClient(admin_key=ADMIN, base_url=server.base_url)
        issued = client.create_key(KeySpec(name="vault-0badc0de-x"), deadline=time.monotonic() + 10)
        assert emu.find_key(issued.key_id) is not None
        assert client.delete_key(issued.key_id, deadline=time.monotonic() + 10) is True
        assert client.delete_key(issued.key_id, deadline=time.monotonic() + 10) is False  # 404: gone
        assert isinstance(client._http._transport, GuardedTransport)


def test_a_read_is_cut_to_the_calls_deadline_and_ends_on_abort(serve: Callable[..., ScriptedServer]) -> None:
    release = threading.Event()

    def hang(head: bytes, body: bytes) -> bytes | None:
        release.wait(10)
        return None

    server = serve(hang)
    try:
        started = time.monotonic()
        with CallBudget(0.4), pytest.raises(httpx.ReadTimeout):
            get(pool(), server.url() + "/x")
        assert time.monotonic() - started < 1.0

        def abort_soon(budget: CallBudget) -> None:
            time.sleep(0.2)
            budget.abort(Abort.CANCELLED)

        started = time.monotonic()
        with CallBudget(10.0) as budget:
            threading.Thread(target=abort_soon, args=(budget,), daemon=True).start()
            with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError, httpx.ReadTimeout)):
                get(pool(), server.url() + "/x")
        assert time.monotonic() - started < 1.5
    finally:
        release.set()


def test_provider_http_over_it_reports_a_dropped_answer(serve: Callable[..., ScriptedServer]) -> None:
    server = serve(lambda head, body: None)
    http = ProviderHTTP(provider="openrouter", base_url=server.url() + "/api/v1", admin_key=ADMIN)
    with pytest.raises(ProviderUnavailable, match="no response"):
        http.call("GET", "/keys", op="list keys", deadline=time.monotonic() + 5)


# --- on the plugin's hub: every wait suspends the call, and the hub thread serves others meanwhile


class HubRun:
    """Runs a function as a call on a fresh hub; counts the hub's ticks meanwhile (a hub blocked by the call
    would not tick) and the work it handed to threads."""

    def __init__(self) -> None:
        self.offloaded = 0
        self.ticks = 0
        self.ticks_during = 0  # of the last call: 0 if it held the hub throughout
        self.hub = Hub(offload=self._offload)
        self._ticking = True
        self.hub.call_soon_threadsafe(self._tick)

    def _offload(self, work: Callable[[], None]) -> None:
        self.offloaded += 1
        threading.Thread(target=work, daemon=True).start()

    def _tick(self) -> None:
        if self._ticking:
            self.ticks += 1
            self.hub.call_later(0.02, self._tick)

    def run(self, fn: Callable[[], T]) -> tuple[T | Exception, str]:
        """(what fn returned or raised, the thread it ended on)."""
        outcome: list[tuple[T | Exception, str]] = []
        done = threading.Event()

        def call() -> None:
            value: T | Exception
            ticks_before = self.ticks
            try:
                value = fn()
            except Exception as exc:
                value = exc
            self.ticks_during = self.ticks - ticks_before
            outcome.append((value, threading.current_thread().name))
            done.set()

        self.hub.call_soon_threadsafe(self.hub.spawn, call)
        assert done.wait(20), "the call on the hub did not end"
        return outcome[0]

    def close(self) -> None:
        self._ticking = False
        self.hub.close()


@pytest.fixture
def hub_run() -> Iterator[HubRun]:
    runner = HubRun()
    yield runner
    runner.close()


def slow_reply(seconds: float) -> Answer:
    def answer(head: bytes, body: bytes) -> bytes:
        time.sleep(seconds)
        return reply()

    return answer


def test_on_the_hub_a_tls_call_never_leaves_the_hub_thread(
    serve: Callable[..., ScriptedServer], tmp_path: Path, hub_run: HubRun
) -> None:
    server_ctx, client_ctx = _tls_contexts(tmp_path)
    server = serve(slow_reply(0.3), tls=server_ctx)
    trusting = Http11Pool(ssl_context=client_ctx)

    def two_calls() -> list[bytes]:
        with CallBudget(5.0):
            return [get(trusting, server.url("https") + "/x")[1] for _ in range(2)]

    value, thread = hub_run.run(two_calls)
    assert value == [OK_JSON, OK_JSON]
    assert thread == "hub"
    assert hub_run.offloaded == 0  # connect, handshake, send and read all waited on the hub
    assert hub_run.ticks_during >= 3  # ~0.6 s of answers: the hub went on meanwhile
    assert server.connections == 1  # kept alive, reused on the hub
    untrusting = pool()

    def refused() -> bytes:
        return get(untrusting, server.url("https") + "/x")[1]

    error, _ = hub_run.run(refused)
    assert isinstance(error, httpx.ConnectError) and "CERTIFICATE_VERIFY_FAILED" in str(error)


def test_on_the_hub_a_trickling_answer_ends_by_the_calls_deadline(hub_run: HubRun) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def trickle() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
            while not stop.is_set():
                with contextlib.suppress(OSError):
                    conn.sendall(b"x")
                time.sleep(0.05)

    threading.Thread(target=trickle, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/x"
    try:

        def call() -> tuple[object, float]:
            started = time.monotonic()
            try:
                with CallBudget(0.5):
                    get(pool(), url)
            except httpx.TimeoutException as exc:
                return exc, time.monotonic() - started
            return None, time.monotonic() - started

        outcome, thread = hub_run.run(call)
        assert isinstance(outcome, tuple)
        error, took = outcome
        assert isinstance(error, httpx.ReadTimeout) and thread == "hub"
        assert 0.45 < took < 1.0  # the byte every 50 ms restarts no timeout
        assert hub_run.ticks_during >= 3
    finally:
        stop.set()
        listener.close()


def test_on_the_hub_an_abort_ends_a_waiting_read_at_once(
    serve: Callable[..., ScriptedServer], hub_run: HubRun
) -> None:
    release = threading.Event()

    def hang(head: bytes, body: bytes) -> bytes | None:
        release.wait(10)
        return None

    server = serve(hang)

    def call() -> tuple[object, float]:
        started = time.monotonic()
        with CallBudget(10.0) as budget:
            threading.Timer(0.2, budget.abort, args=(Abort.CANCELLED,)).start()  # Vault's cancellation
            try:
                get(pool(), server.url() + "/x")
            except httpx.HTTPError as exc:
                return exc, time.monotonic() - started
        return None, time.monotonic() - started

    try:
        outcome, _ = hub_run.run(call)
        assert isinstance(outcome, tuple)
        error, took = outcome
        assert isinstance(error, httpx.ReadError | httpx.RemoteProtocolError)
        assert took < 1.0
    finally:
        release.set()


def test_a_dns_lookup_is_bounded_by_the_calls_budget(
    monkeypatch: pytest.MonkeyPatch, hub_run: HubRun
) -> None:
    """getaddrinfo has no timeout: a resolver that hangs must not hold a call (or the hub) past its budget."""
    resolver_released = threading.Event()
    real = socket.getaddrinfo

    def hanging(host: str, *args: object, **kwargs: object) -> object:
        if host == "provider.example":
            resolver_released.wait(10)
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", hanging)

    def call() -> tuple[object, float]:
        started = time.monotonic()
        try:
            with CallBudget(0.3):
                get(pool(), "http://provider.example:9/x")
        except httpx.HTTPError as exc:
            return exc, time.monotonic() - started
        return None, time.monotonic() - started

    try:
        outcome, thread = hub_run.run(call)
        assert isinstance(outcome, tuple)
        error, took = outcome
        assert isinstance(error, httpx.ConnectTimeout) and "DNS" in str(error) and thread == "hub"
        assert took < 0.8
        assert hub_run.ticks_during >= 3  # the lookup ran on a thread; the hub went on
        error, took = call()  # off the hub: the same bound
        assert isinstance(error, httpx.ConnectTimeout) and took < 0.8
    finally:
        resolver_released.set()


def test_on_the_hub_a_call_moves_to_a_thread_where_it_could_block(hub_run: HubRun) -> None:
    """A transport whose waits are not the hub's (a proxy's pool, a test's mock), or a bulkhead nearly full
    (waiting for a slot would hold the hub), sends the call to a pool thread by itself."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(threading.current_thread().name)
        return httpx.Response(200, json={"data": []})

    mock = ProviderHTTP(
        provider="openrouter",
        base_url="http://127.0.0.1:9/api/v1",
        admin_key=ADMIN,
        transport=httpx.MockTransport(handler),
    )
    value, thread = hub_run.run(
        lambda: mock.call("GET", "/keys", op="list keys", deadline=time.monotonic() + 5)
    )
    assert value == {"data": []} and thread == "hub"  # the call resumed on the hub with the answer
    assert seen and seen[0] != "hub" and hub_run.offloaded == 1

    bulkhead = Bulkhead(4)
    assert runs_here(GuardedTransport(), bulkhead)  # off the hub: always
    checks: list[bool] = []
    hub_run.run(lambda: checks.append(runs_here(GuardedTransport(), bulkhead)))
    with contextlib.ExitStack() as held:
        for n in range(3):  # a quarter of the slots left: too few to spare
            held.enter_context(bulkhead.slot("openrouter", f"call {n}"))
        hub_run.run(lambda: checks.append(runs_here(GuardedTransport(), bulkhead)))
    hub_run.run(lambda: checks.append(runs_here(GuardedTransport(proxy="http://127.0.0.1:9"), None)))
    assert checks == [True, False, False]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/keys", {"name": "vault-0badc0de-ci", "limit": 1.5, "note": "für café ☕"}),
        ("DELETE", "/keys/sk%2For%2Fid", None),
        ("PATCH", "keys/a-b_c.d~e", {"disabled": True}),
        ("GET", "/keys/with space/é", None),  # needs encoding: built by httpx
        ("GET", "/a/../keys", None),  # httpx normalises it: built by httpx
    ],
)
def test_requests_built_as_bytes_are_what_httpx_would_send(
    serve: Callable[..., ScriptedServer], method: str, path: str, body: object
) -> None:
    """The direct path builds requests without httpx.Request: byte for byte the same request."""
    server = serve(lambda head, body: reply())
    base = server.url() + "/api/v1"
    seen: list[bytes] = []
    for direct in (True, False):
        http = ProviderHTTP(provider="openrouter", base_url=base, admin_key=ADMIN)
        assert http._direct is not None
        if not direct:
            http._direct = None  # the httpx.Request path
        assert http.call(method, path, op="test", json=body, deadline=time.monotonic() + 5) == {"ok": True}
        seen.append(server.requests[-1])
    assert seen[0] == seen[1]
    assert seen[0].startswith(f"{method} /api/v1/".encode())
    assert b"Authorization: Bearer " + ADMIN.encode() in seen[0]
