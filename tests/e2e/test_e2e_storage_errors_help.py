"""Storage round-trips, error statuses, path-help and OpenAPI, through a real OpenBao's HTTP API."""

from __future__ import annotations

import json

import pytest
from e2e_support import Mount
from testbackend import BAD_REQUEST_MESSAGE, INTERNAL_DETAIL, UPSTREAM_MESSAGE

pytestmark = pytest.mark.timeout(60)


def test_storage_round_trip(mount: Mount) -> None:
    """Write, read back, list, overwrite and delete entries: the plugin reaches Vault's storage both ways."""
    status, body = mount.write("kv/alpha", value="first", count=1)
    assert status == 200, body
    assert body["data"] == {"operation": "create"}  # the existence check said: not there yet
    status, body = mount.write("kv/beta.2", value="second")
    assert status == 200, body

    assert mount.read("kv/alpha")["data"] == {"value": "first", "count": 1}
    status, body = mount.api.call("LIST", f"{mount.path}/kv")
    assert status == 200, body
    assert sorted(body["data"]["keys"]) == ["alpha", "beta.2"]

    status, body = mount.write("kv/alpha", value="replaced", count=2)
    assert status == 200, body
    assert body["data"] == {"operation": "update"}  # it exists now
    assert mount.read("kv/alpha")["data"] == {"value": "replaced", "count": 2}

    status, _ = mount.api.call("DELETE", f"{mount.path}/kv/alpha")
    assert status == 204
    status, _ = mount.api.call("GET", f"{mount.path}/kv/alpha")
    assert status == 404  # no response from the plugin: not found
    status, body = mount.api.call("LIST", f"{mount.path}/kv")
    assert body["data"]["keys"] == ["beta.2"]


def test_storage_values_survive_a_new_plugin_process(mount: Mount) -> None:
    """Data lives in Vault's storage, not in the plugin: a reload (new process) still reads it."""
    mount.write("kv/kept", value="still here", count=7)
    old_pid = mount.pid()
    status, body = mount.api.call("PUT", "sys/plugins/reload/backend", json={"mounts": [mount.path]})
    assert status in (200, 204), body
    assert mount.read("kv/kept")["data"] == {"value": "still here", "count": 7}
    assert mount.pid() != old_pid


def _error_message(body: dict[str, object]) -> str:
    """The one error Vault reports (it wraps plugin errors as "1 error occurred: * <message>")."""
    errors = body.get("errors")
    assert isinstance(errors, list) and len(errors) == 1, body
    message = str(errors[0])
    assert "Traceback" not in message and 'File "' not in message, message
    return message


def test_bad_request_is_400_with_the_backend_message(mount: Mount) -> None:
    status, body = mount.api.call("GET", f"{mount.path}/errors/bad-request")
    assert status == 400
    assert BAD_REQUEST_MESSAGE in _error_message(body)


def test_invalid_field_is_400_naming_the_field(mount: Mount) -> None:
    status, body = mount.write("config", ttl="soon")  # a path without an existence check
    assert status == 400, body
    message = _error_message(body)
    assert "ttl" in message and "duration" in message, message


def test_invalid_field_on_a_path_with_existence_check_is_400(mount: Mount) -> None:
    """Vault runs the existence check (which validates fields) before a write: a bad value is still a 400."""
    status, body = mount.write("kv/x", value="v", count="not-a-number")
    assert status == 400, body
    message = _error_message(body)
    assert "count" in message and "not an integer" in message, message


def test_missing_required_field_is_400(mount: Mount) -> None:
    status, body = mount.write("kv/x", count=3)
    assert status == 400
    assert "value" in _error_message(body)


def test_upstream_error_is_502_with_the_backend_message(mount: Mount) -> None:
    status, body = mount.api.call("GET", f"{mount.path}/errors/upstream")
    assert status == 502
    assert UPSTREAM_MESSAGE in _error_message(body)


def test_unsupported_operation_is_405(mount: Mount) -> None:
    status, body = mount.write("errors/read-only", anything="x")
    assert status == 405, body
    assert "unsupported operation" in _error_message(body)
    assert mount.read("errors/read-only")["data"] == {"read_only": True}


def test_unknown_path_is_404(mount: Mount) -> None:
    status, body = mount.api.call("GET", f"{mount.path}/no/such/path")
    assert status == 404
    assert "unsupported path" in _error_message(body)


def test_unexpected_exception_is_500_without_details(mount: Mount) -> None:
    """An unexpected error is a generic 500: no exception text, no stack trace reaches the caller."""
    status, body = mount.api.call("GET", f"{mount.path}/errors/internal")
    assert status == 500
    text = json.dumps(body)
    assert INTERNAL_DETAIL not in text
    assert "Traceback" not in text and "RuntimeError" not in text
    assert "internal error" in text


def test_path_help_shows_synopsis_and_fields(mount: Mount) -> None:
    help_text = mount.read("kv/some-name", help=1)["help"]
    assert "Store, read and delete one key-value entry." in help_text
    assert "The value to store under this name." in help_text
    assert "A number stored beside the value." in help_text
    assert "Name of the key-value entry." in help_text

    lease_help = mount.read("lease", help=1)["help"]
    assert "Issue a renewable leased value." in lease_help
    assert "Lease TTL for this read; overrides the config." in lease_help


def test_root_help_lists_every_path(mount: Mount) -> None:
    help_text = mount.read("", help=1)["help"]
    for synopsis in (
        "List the key-value entries.",
        "Issue a renewable leased value.",
        "Write a WAL entry, then kill the plugin process.",
        "Always answers 502.",
    ):
        assert synopsis in help_text


def test_openapi_document_has_the_backend_paths_and_fields(mount: Mount) -> None:
    doc = mount.read("../sys/internal/specs/openapi")
    paths = doc["paths"]
    kv_path = f"/{mount.path}/kv/{{name}}"
    assert kv_path in paths, sorted(p for p in paths if p.startswith(f"/{mount.path}/"))
    assert f"/{mount.path}/lease" in paths
    assert f"/{mount.path}/errors/upstream" in paths
    text = json.dumps(doc)
    assert "The value to store under this name." in text
    assert "Lease TTL for this read; overrides the config." in text
    # The path parameter is documented with its description.
    params = {p["name"]: p for p in paths[kv_path].get("parameters", [])}
    assert params["name"]["description"] == "Name of the key-value entry."
    assert "post" in paths[kv_path] and "get" in paths[kv_path] and "delete" in paths[kv_path]
