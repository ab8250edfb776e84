"""Bad input through a real OpenBao: every mistake is a 400 that names the field to fix, and a rejected write
changes nothing (read back after it). Config reads never show the admin key.

The mounts are shared by the module (one per provider); every case writes names of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import pytest
from devkit.bao import BaoServer
from engine_support import PROVIDER_NAMES, EngineMount, Unmounter, VaultApi, engine_mount, errors_of

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def mounts(bao: BaoServer, api: VaultApi, unmounter: Unmounter) -> Iterator[dict[str, EngineMount]]:
    """One mount per provider, each with connection `main`, role `base` and a connection `restricted`
    that allows only role `other`."""
    with ExitStack() as stack:
        found = {
            p: stack.enter_context(engine_mount(bao, api, unmounter, p, "validation")) for p in PROVIDER_NAMES
        }
        for m in found.values():
            m.configure()
            m.configure("restricted", allowed_roles="other")
            m.add_role("base", ttl="1m", max_ttl="10m")
            m.add_role("restricted-role", connection="restricted")
        yield found


@dataclass(frozen=True)
class Case:
    id: str
    path: str
    body: dict[str, Any]
    field: str  # the field the message must name
    provider: str = "openrouter"
    extra: tuple[str, ...] = ()  # more words the message must contain
    conn: bool = False  # fill in the connection's provider/admin_key/base_url
    role: bool = False  # fill in connection=main and what the provider's roles need
    quoted: bool = True  # the message names the field in quotes, as the engine's own messages do
    readback: str | None = None  # path whose state must not change; default: `path`


CASES = [
    # --- connections
    Case("unknown-provider", "config/c1", {"provider": "mistral"}, "provider", conn=True, extra=("openai",)),
    Case("missing-provider", "config/c2", {"provider": None}, "provider", conn=True),
    Case("missing-admin-key", "config/c3", {"admin_key": None}, "admin_key", conn=True),
    Case("blank-admin-key", "config/c4", {"admin_key": "   "}, "admin_key", conn=True),
    Case("oversized-admin-key", "config/c5", {"admin_key": "k" * 5000}, "admin_key", conn=True),
    Case(
        "admin-key-refused", "config/c6", {"admin_key": "adm-wrong-key"}, "admin_key", conn=True, quoted=False
    ),
    Case("base-url-scheme", "config/c7", {"base_url": "ftp://127.0.0.1/x"}, "base_url", conn=True),
    Case("base-url-credentials", "config/c8", {"base_url": "http://u:p@127.0.0.1:1"}, "base_url", conn=True),
    Case("base-url-oversized", "config/c9", {"base_url": "http://h/" + "a" * 3000}, "base_url", conn=True),
    Case(
        "litellm-needs-base-url", "config/c10", {"base_url": None}, "base_url", provider="litellm", conn=True
    ),
    Case("org-id-not-openai", "config/c11", {"organization_id": "org-1"}, "organization_id", conn=True),
    Case(
        "allowed-roles-bad-name", "config/c12", {"allowed_roles": "ok,bad role"}, "allowed_roles", conn=True
    ),
    Case("allowed-roles-not-a-list", "config/c13", {"allowed_roles": {"a": 1}}, "allowed_roles", conn=True),
    Case("verify-not-a-bool", "config/c14", {"verify": "maybe"}, "verify", conn=True),
    Case("connection-name-slash", "config/a/b", {}, "name", conn=True),
    Case("connection-name-oversized", "config/" + "n" * 200, {}, "name", conn=True),
    Case("provider-change", "config/main", {"provider": "litellm"}, "provider"),
    Case(
        "update-bad-roles-keeps-url",
        "config/main",
        {"base_url": "http://127.0.0.1:9", "allowed_roles": "a b"},
        "allowed_roles",
    ),
    Case(
        "update-refused-key-keeps-all",
        "config/main",
        {"admin_key": "adm-wrong", "allowed_roles": "x"},
        "admin_key",
        quoted=False,
    ),
    # --- roles
    Case("unknown-connection", "roles/r1", {"connection": "nope"}, "connection"),
    Case("missing-connection", "roles/r2", {"ttl": "1m"}, "connection"),
    Case("ttl-over-max-ttl", "roles/r3", {"ttl": "2h", "max_ttl": "1h"}, "ttl", role=True),
    Case("max-ttl-over-mount-max", "roles/r4", {"max_ttl": "10000h"}, "max_ttl", role=True),
    Case("malformed-duration", "roles/r5", {"ttl": "soon"}, "ttl", role=True),
    Case("malformed-number", "roles/r6", {"spend_limit": "lots"}, "spend_limit", role=True),
    Case("negative-spend-limit", "roles/r7", {"spend_limit": -5}, "spend_limit", role=True),
    Case("malformed-list", "roles/r8", {"models": {"gpt": 1}}, "models", provider="litellm", role=True),
    Case(
        "too-many-models",
        "roles/r9",
        {"models": [f"m{i}" for i in range(200)]},
        "models",
        "litellm",
        role=True,
    ),
    Case("malformed-map", "roles/r10", {"metadata": "no-equals-sign"}, "metadata", "litellm", role=True),
    Case("template-without-random", "roles/r11", {"name_template": "{{role}}"}, "name_template", role=True),
    Case(
        "template-oversized",
        "roles/r12",
        {"name_template": "{{random}}" + "x" * 80},
        "name_template",
        role=True,
    ),
    Case(
        "template-unknown-placeholder",
        "roles/r13",
        {"name_template": "{{x}}{{random}}"},
        "name_template",
        role=True,
    ),
    Case("role-name-slash", "roles/a/b", {}, "name", role=True),
    Case("openai-spend-limit", "roles/r14", {"spend_limit": 5}, "spend_limit", provider="openai", role=True),
    Case("openai-models", "roles/r15", {"models": "gpt-4o"}, "models", provider="openai", role=True),
    Case(
        "openai-needs-project", "roles/r16", {"project_id": None}, "project_id", provider="openai", role=True
    ),
    Case("openrouter-models", "roles/r17", {"models": "gpt-4o"}, "models", role=True),
    Case("openrouter-metadata", "roles/r18", {"metadata": {"team": "a"}}, "metadata", role=True),
    Case(
        "project-id-not-openai",
        "roles/r19",
        {"project_id": "proj_default"},
        "project_id",
        role=True,
        extra=("openrouter keys belong to no project",),
    ),
    Case(
        "openai-project-name",
        "roles/r20",
        {"project_id": "My Project"},
        "project_id",
        provider="openai",
        role=True,
        extra=("not an OpenAI project id", "proj_abc123"),
    ),
    Case(
        "openai-project-path-trick",
        "roles/r21",
        {"project_id": "proj_default/../../admin_api_keys"},
        "project_id",
        provider="openai",
        role=True,
        extra=("not an OpenAI project id",),
    ),
    Case("update-bad-template-keeps-ttl", "roles/base", {"ttl": "5m", "name_template": "x"}, "name_template"),
    # --- the sweep's settings
    Case("orphan-age-below-floor", "tidy/config", {"min_orphan_age": "10s"}, "min_orphan_age"),
    Case("malformed-interval", "tidy/config", {"interval": "often", "expired_grace": "1m"}, "interval"),
]


def request_body(case: Case, m: EngineMount) -> dict[str, Any]:
    base: dict[str, Any] = {}
    if case.conn:
        base = {"provider": m.spec.name, "admin_key": m.admin_key, "base_url": m.emu_server.base_url}
    if case.role:
        base = {"connection": "main", **m.spec.role_fields}
    merged = {**base, **case.body}
    return {k: v for k, v in merged.items() if v is not None}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_a_400_naming_the_field_and_nothing_is_written(
    mounts: dict[str, EngineMount], case: Case
) -> None:
    m = mounts[case.provider]
    readback = case.readback or case.path
    before = m.read(readback)
    creates_before = m.emulator.create_count

    status, body = m.write(case.path, **request_body(case, m))

    message = errors_of(body)
    assert status == 400, (status, body)
    assert (f'"{case.field}"' if case.quoted else case.field) in message, message
    for word in case.extra:
        assert word in message, message
    assert m.admin_key not in message  # a rejected write never echoes the admin key
    assert _same_data(m.read(readback), before)  # nothing half-written
    assert m.emulator.create_count == creates_before


def _same_data(after: tuple[int, dict[str, Any]], before: tuple[int, dict[str, Any]]) -> bool:
    """Reads of the same record differ only in request ids: compare status and data."""
    return after[0] == before[0] and after[1].get("data") == before[1].get("data")


@pytest.mark.parametrize("provider", PROVIDER_NAMES)
def test_creds_refusals_name_the_problem(mounts: dict[str, EngineMount], provider: str) -> None:
    m = mounts[provider]
    creates = m.emulator.create_count

    status, body = m.read("creds/nope")
    assert status == 400 and "nope" in errors_of(body) and "role" in errors_of(body), body

    status, body = m.read("creds/restricted-role")
    assert status == 400, body
    assert "allowed_roles" in errors_of(body) and "restricted-role" in errors_of(body)

    status, body = m.read("creds/a/b")
    assert status == 400 and '"role"' in errors_of(body), body

    assert m.emulator.create_count == creates  # no key was minted for any of them
    assert m.emulator.live_keys() == []


@pytest.mark.parametrize("provider", PROVIDER_NAMES)
def test_config_read_never_returns_the_admin_key(mounts: dict[str, EngineMount], provider: str) -> None:
    m = mounts[provider]
    status, body = m.read("config/main")
    assert status == 200, body
    data = body["data"]
    assert data["admin_key_set"] is True
    assert "admin_key" not in data
    assert data["provider"] == provider
    assert data["base_url"] == m.emu_server.base_url
    assert m.admin_key not in str(body)

    status, listing = m.call("LIST", "config")
    assert status == 200 and sorted(listing["data"]["keys"]) == ["main", "restricted"]
    assert m.admin_key not in str(listing)

    # An update that leaves admin_key out keeps the stored key (the engine can still mint with it).
    m.must_write("config/main", allowed_roles="base,other")
    lease = m.creds("base")
    assert m.infer(lease.api_key) == 200
    m.api.ok("PUT", "sys/leases/revoke", json={"lease_id": lease.lease_id})
    m.must_write("config/main", allowed_roles="")
    assert m.admin_key not in str(m.read("config/main")[1])
