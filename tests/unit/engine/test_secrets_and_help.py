"""Secrets stay where they belong; help text reads like a manual; the backend's plumbing works."""

from __future__ import annotations

import logging

import pytest
from engine_env import ADMIN_KEYS, Env
from llmsecrets.main import main
from llmsecrets.version import VERSION
from vaultplugin.framework import Operation, Request, UnsupportedPath, UpstreamError


def test_no_key_value_in_storage_internal_data_or_logs(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    issued: list[str] = []
    for provider in ("openai", "openrouter", "litellm"):
        role = env.setup_provider(provider)
        keep = env.creds(role)
        issued.append(keep.data["api_key"])
        assert keep.secret is not None
        assert keep.data["api_key"] not in repr(keep.secret.internal_data)
        env.renew(keep, increment=900)
        gone = env.creds(role)
        issued.append(gone.data["api_key"])
        env.revoke(gone)
        env.emus[provider].faults.server_error(times=None, op="delete")
        with pytest.raises(UpstreamError) as err:
            env.revoke(keep)
        assert keep.data["api_key"] not in err.value.message
        env.emus[provider].faults.clear()
        env.emus[provider].faults.drop_after_create()
        with pytest.raises(UpstreamError):
            env.read(f"creds/{role}")
    env.clock.advance(3600 * 3)
    env.rollback()
    env.request(Operation.UPDATE, "tidy")

    dump = env.storage_dump()
    logs = "\n".join(r.getMessage() + repr(r.args) for r in caplog.records)
    assert len(issued) == 6
    for secret in issued:
        assert secret not in dump
        assert secret not in logs
    for admin_key in ADMIN_KEYS.values():
        assert admin_key not in logs
    assert "sweep done" in logs and "issued key" in logs  # the log did capture the engine's work


def test_config_read_and_errors_never_show_admin_key(env: Env) -> None:
    env.connect("openai", organization_id="org-FAKE")
    resp = env.read("config/openai")
    assert resp is not None
    assert ADMIN_KEYS["openai"] not in repr(resp.data)
    conn = env.backend.connection(env.storage, "openai")
    assert ADMIN_KEYS["openai"] not in repr(conn)


def test_path_help_for_creds_is_a_manual_page(env: Env) -> None:
    resp = env.request(Operation.HELP, "creds/x")
    assert resp is not None
    text = resp.data["help"]
    for phrase in ("api_key", "expires_at", "Lease behaviour", "renewed", "Example", "bao read llm/creds/"):
        assert phrase in text
    assert "openapi" in resp.data


@pytest.mark.parametrize("path", ["config/x", "roles/x", "tidy", "tidy/config", "config/", "roles/"])
def test_every_path_and_field_has_help(env: Env, path: str) -> None:
    resp = env.request(Operation.HELP, path)
    assert resp is not None
    assert "<no description>" not in resp.data["help"]
    assert "<no synopsis>" not in resp.data["help"]


def test_root_help_and_openapi(env: Env) -> None:
    resp = env.backend.handle_request(
        Request(operation=Operation.HELP, path="", data={"requestResponsePrefix": "llm"})
    )
    assert resp is not None
    assert "LLM secrets engine" in resp.data["help"]
    paths = resp.data["openapi"]["paths"]
    assert any("creds" in p for p in paths) and any("config" in p for p in paths)


def test_version_and_main_entry_point() -> None:
    assert VERSION.startswith("v")
    assert callable(main)


def test_resolve_path_answers_the_request_path(env: Env) -> None:
    # OpenBao uses the answer as the request's path from then on: it must be the path, not a pattern.
    for path in ("creds/x", "config/openai", "roles/", "tidy/config"):
        resp = env.request(Operation.RESOLVE_PATH, path)
        assert resp is not None and resp.data["path"] == path
    with pytest.raises(UnsupportedPath):
        env.request(Operation.RESOLVE_PATH, "nope/x")
