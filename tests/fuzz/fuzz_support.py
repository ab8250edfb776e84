"""Helpers for the hostile-input suite: the engine on a real OpenBao (mounted at `llm`), healthy provider
emulators, the operations of the plugin's own OpenAPI document, hypothesis strategies for hostile input,
and the rules every answer must follow.

A uniquely named module (not conftest), so test directories without __init__.py cannot shadow it.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import httpx
import psutil
from devkit.bao import BaoServer, kill_leftovers
from devkit.build import build_engine
from hypothesis import strategies as st
from llm_emulators import LiteLLMEmulator, OpenAIEmulator, OpenRouterEmulator
from llm_emulators.core import Emulator, EmulatorServer

MOUNT = "llm"
PLUGIN_NAME = "vault-plugin-secrets-llm"
MIB = 1 << 20
INTERNAL_ERROR = "internal error; see the plugin's log for details"
# Sent by error_to_pb for every exception no handler expected: the log line behind each 500.
UNEXPECTED_LOG_LINE = "unexpected error in"
# Two malloc arenas instead of glibc's default 8 per core: with the default, each pool thread that parses
# a multi-MB body keeps that high water mark in an arena of its own, and which threads get one varies from
# run to run, so RSS wanders by +-15 MB between identical passes and hides what the suite looks for: a leak.
PLUGIN_ENV = ["MALLOC_ARENA_MAX=2"]
FUZZ_POLICY = f'path "{MOUNT}/*" {{ capabilities = ["create", "read", "update", "delete", "list"] }}'


# --- the target: one server, one mount, healthy emulators ------------------------------------------------


@dataclass(frozen=True)
class Provider:
    name: str
    emulator: Emulator
    server: EmulatorServer
    admin_key: str

    @property
    def connection(self) -> str:
        return f"healthy-{self.name}"

    @property
    def role(self) -> str:
        return f"healthy-{self.name}"


@dataclass
class Target:
    """The engine mounted at `llm` on a dev server, with a connection and a role per healthy emulator.

    Requests go out with a token whose policy covers `llm/*` only: a path trick that escapes the mount
    (`llm/roles/../../sys/seal`) meets a 403, never the server's own endpoints.
    """

    server: BaoServer
    plugin_file: Path
    providers: dict[str, Provider]
    http: httpx.Client  # the fuzz token
    root_http: httpx.Client

    @property
    def healthy_connections(self) -> frozenset[str]:
        return frozenset(p.connection for p in self.providers.values())

    @property
    def healthy_roles(self) -> tuple[str, ...]:
        return tuple(p.role for p in self.providers.values())

    def plugin_processes(self) -> list[psutil.Process]:
        """The bootloader of the one-file build (the host's child) and the Python child doing the work."""
        procs: list[psutil.Process] = []
        for boot in self.server.plugin_processes(self.plugin_file):
            procs.append(boot)
            procs.extend(boot.children(recursive=True))
        return procs

    def plugin_pids(self) -> list[int]:
        return sorted(p.pid for p in self.plugin_processes())

    def plugin_rss(self) -> int:
        """Bytes resident over all the plugin's processes."""
        total = 0
        for proc in self.plugin_processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                total += proc.memory_info().rss
        return total

    def log_text(self) -> str:
        return self.server.log_path.read_text(errors="replace")

    def ensure_healthy(self) -> None:
        """(Re)write the healthy connections and roles (a fuzzed write or delete may have changed a role)."""
        for p in self.providers.values():
            body = {"provider": p.name, "admin_key": p.admin_key, "base_url": p.server.base_url}
            _check(self.http.post(f"{MOUNT}/config/{p.connection}", json=body))
            role = {"connection": p.connection, "ttl": "1h", "max_ttl": "2h", **ROLE_FIELDS.get(p.name, {})}
            _check(self.http.delete(f"{MOUNT}/roles/{p.role}"))  # an update would keep fuzzed fields
            _check(self.http.post(f"{MOUNT}/roles/{p.role}", json=role))


def _vault_http(server: BaoServer, token: str) -> httpx.Client:
    return httpx.Client(base_url=f"{server.addr}/v1/", headers={"X-Vault-Token": token}, timeout=90)


def _check(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code in (200, 204), (
        resp.request.method,
        resp.request.url,
        resp.status_code,
        resp.text,
    )
    return dict(resp.json()) if resp.content else {}


EMULATORS = {
    "openai": lambda key: OpenAIEmulator(key, projects=("proj_default",)),
    "openrouter": OpenRouterEmulator,
    "litellm": LiteLLMEmulator,
}
ROLE_FIELDS: dict[str, dict[str, Any]] = {"openai": {"project_id": "proj_default"}}


@contextlib.contextmanager
def running_target(workdir: Path) -> Iterator[Target]:
    """Build the one-file plugin, start the server, mount `llm`, wire one healthy emulator per provider.
    Everything is stopped by PID at exit, whatever failed."""
    plugin_dir = workdir / "plugins"
    plugin_dir.mkdir()
    plugin_file, sha256 = build_engine(plugin_dir)
    server = BaoServer(workdir / "bao", plugin_dir)
    (workdir / "bao").mkdir()
    with contextlib.ExitStack() as stack:
        server.start()
        stack.callback(_stop_server, server, plugin_file)
        server.register_plugin(PLUGIN_NAME, plugin_file.name, sha256, env=PLUGIN_ENV)
        server.enable(PLUGIN_NAME, MOUNT)
        root_http = stack.enter_context(_vault_http(server, server.root_token))
        _check(root_http.put("sys/policies/acl/fuzz", json={"policy": FUZZ_POLICY}))
        token = _check(root_http.post("auth/token/create", json={"policies": ["fuzz"], "ttl": "2h"}))
        http = stack.enter_context(_vault_http(server, token["auth"]["client_token"]))
        providers: dict[str, Provider] = {}
        for name, make in EMULATORS.items():
            admin_key = f"adm-{name}-{secrets.token_hex(12)}"
            emulator = make(admin_key)
            emu_server = stack.enter_context(emulator.serve())
            providers[name] = Provider(name, emulator, emu_server, admin_key)
        target = Target(server, plugin_file, providers, http, root_http)
        stack.callback(_revoke_all, root_http)  # runs before the emulators stop
        target.ensure_healthy()
        yield target


def _revoke_all(root_http: httpx.Client) -> None:
    with contextlib.suppress(httpx.HTTPError):
        root_http.put(f"sys/leases/revoke-prefix/{MOUNT}/", timeout=120)


def _stop_server(server: BaoServer, plugin_file: Path) -> None:
    pids: list[int] = []
    with contextlib.suppress(psutil.Error):
        for boot in server.plugin_processes(plugin_file):
            pids.append(boot.pid)
            pids.extend(c.pid for c in boot.children(recursive=True))
    server.stop()
    survivors = kill_leftovers(pids, timeout=10)
    assert not survivors, f"plugin processes {survivors} outlived the stopped server"


def fetch_openapi(target: Target) -> dict[str, Any]:
    resp = target.root_http.get("sys/internal/specs/openapi")
    return dict(_check(resp))


# --- the operations of the OpenAPI document --------------------------------------------------------------


@dataclass(frozen=True)
class ApiOperation:
    """One operation of the plugin's OpenAPI document, as a client calls it."""

    method: str  # GET, POST, DELETE; a list is GET with ?list=true, as the document says
    template: str  # e.g. /llm/roles/{name}
    operation_id: str
    path_params: tuple[str, ...]
    query: dict[str, str]  # required constant query parameters (list=true)
    body: dict[str, dict[str, Any]]  # property -> schema, for operations with a request body

    @property
    def label(self) -> str:
        return f"{self.method}{'(list)' if self.query else ''} {self.template}"

    def url(self, params: dict[str, str]) -> str:
        """The URL path under /v1/, with each (already encoded) path parameter put in."""
        path = self.template.lstrip("/")
        for name, value in params.items():
            path = path.replace("{" + name + "}", value)
        return path


def _component_name(operation_id: str) -> str:
    """OpenBao's name for an operation's body schema: llm-write-roles-name -> LlmWriteRolesNameRequest."""
    return "".join(part.capitalize() for part in operation_id.split("-")) + "Request"


def request_body_schema(doc: dict[str, Any], op: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The body's properties. OpenBao 2.7 drops the `$ref` a plugin puts in requestBody (the merged document
    says `schema: {}`) but keeps the component, named after the operation id: look it up by that name."""
    schema = op["requestBody"]["content"]["application/json"]["schema"]
    ref = schema.get("$ref")
    name = ref.rsplit("/", 1)[-1] if ref else _component_name(op["operationId"])
    component = doc["components"]["schemas"].get(name)
    assert component is not None, f"no request body schema {name!r} for {op['operationId']}"
    return dict(component["properties"])


def operations_from_openapi(doc: dict[str, Any], mount: str = MOUNT) -> list[ApiOperation]:
    ops: list[ApiOperation] = []
    for template, item in sorted(doc["paths"].items()):
        if not template.startswith(f"/{mount}/"):
            continue
        shared = item.get("parameters", [])
        for method in ("get", "post", "delete"):
            op = item.get(method)
            if op is None:
                continue
            params = [*shared, *op.get("parameters", [])]
            path_params = tuple(p["name"] for p in params if p["in"] == "path")
            query = {
                p["name"]: p["schema"]["enum"][0]
                for p in params
                if p["in"] == "query" and p.get("required") and p["schema"].get("enum")
            }
            body = request_body_schema(doc, op) if "requestBody" in op else {}
            ops.append(ApiOperation(method.upper(), template, op["operationId"], path_params, query, body))
    return ops


# --- hostile values --------------------------------------------------------------------------------------


class Deep:
    """Lists or objects nested `depth` levels, written into the body's JSON text as is (json.dumps of such
    a value would itself recurse too deeply)."""

    def __init__(self, depth: int, kind: str) -> None:
        self.depth = depth
        self.kind = kind

    def text(self) -> str:
        if self.kind == "list":
            return "[" * self.depth + "]" * self.depth
        return '{"a":' * self.depth + "1" + "}" * self.depth


DEEP_DEPTHS = (33, 200, 980, 2000, 9000)

HOSTILE_STRINGS = (
    "",
    " ",
    "..",
    "../../sys/seal",
    "%2f",
    "a/b",
    "\x00",
    "a\x00b",
    "\u202e",
    "\ufeff",
    "\u0661\u0662",
    "\U0001d7d9",
    "\U0001f600" * 10,
    "${jndi:ldap://x}",
    "{{random}}",
    "'; DROP TABLE roles; --",
    "<script>",
    "\r\nX-Injected: 1",
    "null",
    "true",
    "-1",
    "1e400",
    "NaN",
    "9" * 400,
    "x" * 4097,
)

DURATIONS = (
    "1ns",
    "500ms",
    "999ms",
    "1.5s",
    "0.5",
    "\u0661\u0662s",
    "\uff11\uff12s",
    "99999999999999999999h",
    "876001h",
    "-1s",
    "1h-1m",
    "1e3",
    "0x10",
    "10 s",
    "1h" * 40,
    "",
    "0",
    "0s",
    "15m",
    "1h",
    "2h",
    0,
    1,
    -1,
    59,
    3600,
    2**63,
    2**64,
    10**30,
    1.5,
    1e300,
)


def huge_strings() -> st.SearchStrategy[str]:
    """Strings past every field limit, up to 1 MB."""
    return st.builds(
        lambda char, size: char * size,
        st.sampled_from(["x", "\u00e9", "\U0001f600", "\x00", "[", "{", "%", "\\"]),
        st.sampled_from([4097, 70_000, MIB]),
    )


def hostile_text() -> st.SearchStrategy[str]:
    return st.one_of(st.text(max_size=40), st.sampled_from(HOSTILE_STRINGS), huge_strings())


def wrong_types() -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=10),
    )
    nested = st.recursive(
        scalars,
        lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3),
        max_leaves=8,
    )
    deep = st.builds(Deep, st.sampled_from(DEEP_DEPTHS), st.sampled_from(["list", "object"]))
    return st.one_of(nested, deep)


def valid_names() -> st.SearchStrategy[str]:
    return st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,20}[A-Za-z0-9])?", fullmatch=True)


def value_for(prop: str, schema: dict[str, Any], target: Target) -> st.SearchStrategy[Any]:
    """Values for one body property: some well-formed, most hostile."""
    kind = schema.get("type")
    fmt = schema.get("format")
    good: st.SearchStrategy[Any]
    if prop == "connection":
        good = st.sampled_from([*sorted(target.healthy_connections), "fuzz-conn", "missing"])
    elif prop == "provider":
        good = st.sampled_from([*schema.get("enum", []), "anthropic", "OpenAI"])
    elif prop == "admin_key":
        good = st.sampled_from([p.admin_key for p in target.providers.values()] + ["adm-wrong"])
    elif prop == "base_url":
        urls = [p.server.base_url for p in target.providers.values()]
        # A dead loopback port is a provider failure on purpose (and a slow one: retries), so it is rare.
        good = st.sampled_from(
            [*urls, *urls, *urls, "http://127.0.0.1:1", "ftp://x", "http://[::1", "http://a..b"]
        )
    elif prop == "project_id":
        good = st.sampled_from(["proj_default", "proj_missing", "..", "a/b", "%2e%2e"])
    elif fmt == "seconds":
        good = st.sampled_from(DURATIONS)
    elif kind == "boolean":
        good = st.sampled_from([True, False, "true", "false", "1", "0", "maybe", 2, "\u0661"])
    elif kind == "number":
        good = st.one_of(
            st.floats(allow_nan=False, allow_infinity=False),
            st.integers(min_value=-(2**70), max_value=2**70),
            st.sampled_from(["5", "1e400", "inf", "nan", "\u0665", "1_000", 1e308, 2**1100]),
        )
    elif kind == "integer":
        good = st.one_of(st.integers(), st.sampled_from([2**63, -(2**63) - 1, "\u0661\u0662", "9" * 30]))
    elif kind == "array":
        good = st.one_of(
            st.lists(st.text(max_size=12), max_size=5),
            st.lists(st.just("m"), min_size=257, max_size=300),
            st.text(max_size=30),
            st.lists(wrong_types(), max_size=3),
        )
    elif kind == "object":
        good = st.one_of(
            st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=4),
            st.dictionaries(st.text(max_size=6), st.text(max_size=3), min_size=65, max_size=70),
            st.sampled_from(["k=v,k2=v2", '{"k": "v"}', "novalue", "{bad", '{"a": {"b": 1}}']),
            st.dictionaries(st.text(max_size=5), wrong_types(), max_size=3),
        )
    else:
        good = st.text(max_size=30)
    return st.one_of(good, good, hostile_text(), wrong_types())


def valid_bodies(op: ApiOperation, target: Target) -> st.SearchStrategy[dict[str, Any]]:
    """Bodies the operation accepts, to start mutations from (a random body is rarely valid as a whole)."""
    if op.template.endswith("/config/{name}"):
        return st.builds(
            lambda p, verify: {
                "provider": p.name,
                "admin_key": p.admin_key,
                "base_url": p.server.base_url,
                **({} if verify is None else {"verify": verify}),
            },
            st.sampled_from(list(target.providers.values())),
            st.sampled_from([None, True, False]),
        )
    if op.template.endswith("/roles/{name}"):
        # A fuzz connection (maybe written with a dead URL), or a healthy one with what its provider needs.
        per_provider = [
            {"connection": p.connection, **ROLE_FIELDS.get(p.name, {})} for p in target.providers.values()
        ]
        return st.sampled_from([*per_provider, {"connection": "fuzz-conn"}]).map(
            lambda base: {**base, "ttl": "1h", "max_ttl": "2h"}
        )
    if op.template.endswith("/tidy/config"):
        return st.just({"interval": "5m", "min_orphan_age": "10m", "expired_grace": "2m"})
    return st.just({})


def body_for(op: ApiOperation, target: Target) -> st.SearchStrategy[dict[str, Any]]:
    """A body: a valid one with one declared property given a drawn value (good or hostile), or any subset
    of the declared properties with drawn values; either with a few unknown keys."""
    unknown = st.dictionaries(
        st.one_of(st.text(max_size=12), st.sampled_from(["x" * 70_000, "\x00", "ttl ", "TTL"])),
        wrong_types(),
        max_size=3,
    )
    if not op.body:
        return unknown
    declared = st.fixed_dictionaries(
        {}, optional={name: value_for(name, schema, target) for name, schema in op.body.items()}
    )
    one_change = st.sampled_from(sorted(op.body)).flatmap(
        lambda name: value_for(name, op.body[name], target).map(lambda value: (name, value))
    )
    mutated = st.builds(
        lambda base, change: {**base, change[0]: change[1]}, valid_bodies(op, target), one_change
    )
    return st.builds(lambda a, b: {**b, **a}, st.one_of(mutated, mutated, declared), unknown | st.just({}))


# Raw bodies that are not a JSON object at all (Vault answers most of these itself).
RAW_BODIES = (
    "[]",
    "null",
    '"x"',
    "{",
    "x" * MIB,
    "[" * 9000 + "]" * 9000,
    '{"a": ' + "[" * 980 + "]" * 980 + "}",
    '{"metadata": "' + '{\\"a\\":' * 990 + '\\"v\\"' + "}" * 990 + '"}',
)


def encode_body(body: dict[str, Any]) -> str:
    """JSON text of `body`, with every Deep value written in as raw nested brackets."""
    deep: dict[str, Deep] = {}

    def placeholder(value: Any) -> str:
        if isinstance(value, Deep):
            token = f"__deep_{len(deep)}_{secrets.token_hex(4)}__"
            deep[token] = value
            return token
        raise TypeError(type(value).__name__)

    text = json.dumps(body, default=placeholder, ensure_ascii=False)
    for token, value in deep.items():
        text = text.replace(json.dumps(token), value.text())
    return text


def path_segments(names: tuple[str, ...]) -> st.SearchStrategy[str]:
    """A path parameter, URL-encoded as it goes on the wire: known names, new names, and path tricks.

    Invalid UTF-8 (%ff) is left out: OpenBao answers it with a 500 before the plugin is called (see
    test_invalid_utf8_in_a_path_is_refused_by_the_host).
    """
    return st.one_of(
        st.sampled_from(names),
        st.sampled_from(names),
        valid_names(),
        st.text(max_size=20).map(lambda s: quote(s, safe="")),
        st.sampled_from(
            [
                "..",
                ".",
                "%2e%2e",
                "a%2fb",
                "%2f",
                "..%2f..%2fsys%2fseal",
                "../../sys/seal",
                "a%00b",
                "%0a",
                "x" * 129,
                "x" * 5000,
                quote("\u03c1\u03cc\u03bb\u03bf\u03c2"),
                quote("\u0661\u0662"),
                "%e2%80%ae",
                "a%20b",
                "*",
                "a%3fb",
                "a%23b",
                "r1/",
                "-a",
                "a-",
                "_",
            ]
        ),
    )


@dataclass(frozen=True)
class Call:
    """One request as sent, for the assertion messages."""

    op: ApiOperation
    url: str
    query: dict[str, str]
    body_text: str | None

    def describe(self) -> str:
        body = "" if self.body_text is None else self.body_text
        shown = body if len(body) <= 300 else f"{body[:300]}... ({len(body)} characters)"
        url = self.url if len(self.url) <= 300 else f"{self.url[:300]}... ({len(self.url)} characters)"
        return f"{self.op.method} /v1/{url} {self.query or ''} {shown}"


def send(target: Target, call: Call) -> httpx.Response:
    headers = {"Content-Type": "application/json"} if call.body_text is not None else {}
    return target.http.request(
        call.op.method,
        call.url,
        content=None if call.body_text is None else call.body_text.encode("utf-8", "surrogatepass"),
        headers=headers,
        params=call.query or None,
    )


def names_for(op: ApiOperation, target: Target) -> tuple[str, ...]:
    """Known names for a path parameter. The healthy connections are never written or deleted by the fuzz
    (a 502 on their roles would then be no bug); roles are restored before each operation's run."""
    if "/config/" in op.template:
        fuzz = ("fuzz-conn", "fuzz-conn-2")
        return (*fuzz, *sorted(target.healthy_connections)) if op.method == "GET" else fuzz
    return (*target.healthy_roles, "fuzz-role", "missing")


def query_for(op: ApiOperation) -> st.SearchStrategy[dict[str, str]]:
    """Query parameters: a read passes them to the plugin as request data. (Not `list`: OpenBao reads that
    one itself and answers a value that is not a boolean with an empty 400.)"""
    if op.method != "GET":
        return st.just(dict(op.query))
    extra = st.dictionaries(
        st.sampled_from(["ttl", "name", "role", "x", "\u0661"]),
        st.one_of(st.sampled_from([d for d in DURATIONS if isinstance(d, str)]), st.text(max_size=30)),
        max_size=2,
    )
    return extra.map(lambda q: {**q, **op.query})


def calls_for(op: ApiOperation, target: Target) -> st.SearchStrategy[Call]:
    segment = path_segments(names_for(op, target))
    params = st.fixed_dictionaries({name: segment for name in op.path_params})
    bodies: st.SearchStrategy[str | None] = st.none()
    if op.method == "POST":
        generated = body_for(op, target).map(encode_body)
        bodies = st.one_of(generated, generated, generated, st.sampled_from(RAW_BODIES))
    return st.builds(lambda p, q, b: Call(op, op.url(p), q, b), params, query_for(op), bodies)


# --- what every answer must look like --------------------------------------------------------------------


@dataclass
class Tally:
    """Requests sent and statuses seen, per operation, for the report."""

    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, label: str, status: int) -> None:
        with self.lock:
            self.statuses[(label, status)] += 1

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    def by_status(self) -> dict[int, int]:
        out: Counter[int] = Counter()
        for (_, status), n in self.statuses.items():
            out[status] += n
        return dict(sorted(out.items()))


def error_text(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text
    return " ".join(str(e) for e in body.get("errors") or []) if isinstance(body, dict) else resp.text


def _decoded_path(call: Call) -> str:
    return unquote(call.url)


TALLY = Tally()  # every request of the session, for the summary (see conftest.py)
FIGURES: dict[str, Any] = {}  # measured figures for the summary


def check_answer(target: Target, call: Call, resp: httpx.Response) -> None:
    """The rules: never a 500; a 502 only where a provider failed on purpose; a 400 says what is wrong."""
    status = resp.status_code
    message = error_text(resp)
    where = f"{call.describe()} -> {status} {message[:500]}"
    assert status < 500 or status in (502, 503), where
    assert INTERNAL_ERROR not in message, where
    if status == 503:
        # The one 503 the engine sends on purpose: a tidy while a sweep is running.
        assert call.op.template.endswith("/tidy") and "try again" in message, where
    if status == 502:
        assert_provider_failed_on_purpose(target, call, message, where)
    if status == 400 and not message.strip():
        # OpenBao refuses a path with a non-printable character itself, with an empty 400.
        assert not _decoded_path(call).isprintable(), where
    if status == 403:
        if call.op.template.endswith("/metrics/public"):
            # The one 403 the engine sends on purpose: unauthenticated metrics while they are off.
            assert "unauthenticated metrics are off" in message, where
            return
        # Otherwise only a path trick that left the mount meets the policy.
        assert not httpx.URL(f"http://h/v1/{call.url}").path.startswith(f"/v1/{MOUNT}/"), where


def assert_provider_failed_on_purpose(target: Target, call: Call, message: str, where: str) -> None:
    """A 502 is a provider failure: allowed only for creds of a role whose connection is not one of the
    healthy ones (the fuzz wrote a dead URL or a wrong admin key into a connection of its own)."""
    assert call.op.template.endswith("/creds/{role}") and call.method == "GET", where
    role_url = call.url.replace(f"{MOUNT}/creds/", f"{MOUNT}/roles/", 1)
    role = target.http.get(role_url)
    assert role.status_code == 200, f"{where}; role read: {role.status_code}"
    connection = role.json()["data"]["connection"]
    assert connection not in target.healthy_connections, (
        f"{where}; a healthy connection ({connection}) failed"
    )
    assert re.search(r"(openai|openrouter|litellm)", message), where
