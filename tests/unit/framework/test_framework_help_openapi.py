from __future__ import annotations

import json

import pytest
from framework_sample import Sample
from vaultplugin.framework import (
    Backend,
    Field,
    FieldType,
    Operation,
    Path,
    Request,
    Response,
    UnsupportedPath,
    expand_pattern,
)


def help_request(path: str) -> Request:
    return Request(operation="help", path=path, data={"requestResponsePrefix": "llm"})


def test_root_help_has_help_and_openapi(sample: Sample) -> None:
    resp = sample.backend.handle_request(help_request(""))
    assert resp is not None
    assert set(resp.data) == {"help", "openapi"}
    assert "The sample backend issues tokens." in resp.data["help"]
    assert "Manage roles." in resp.data["help"]
    doc = resp.data["openapi"]
    json.dumps(doc)  # must survive the wire as JSON
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) >= {"/roles", "/roles/{name}", "/creds/{name}", "/creds/special"}


def test_openapi_operations_params_and_body(sample: Sample) -> None:
    resp = sample.backend.handle_request(help_request(""))
    assert resp is not None
    doc = resp.data["openapi"]
    roles = doc["paths"]["/roles/{name}"]
    assert roles["description"] == "Manage roles."
    assert "x-vault-createSupported" not in roles  # only an explicit create handler sets it
    assert [p["name"] for p in roles["parameters"]] == ["name"]
    assert roles["parameters"][0]["in"] == "path" and roles["parameters"][0]["required"]
    assert set(roles) >= {"get", "post", "delete"}
    assert roles["post"]["operationId"] == "llm-write-roles-name"
    assert roles["post"]["summary"] == "Write a role."
    assert roles["delete"]["responses"] == {"204": {"description": "empty body"}}
    ref = roles["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    props = schema["properties"]
    assert props["ttl"] == {
        "type": "integer",
        "format": "seconds",
        "description": "Lease TTL of issued tokens.",
        "default": "1h",
    }
    assert props["models"]["type"] == "array" and props["models"]["items"] == {"type": "string"}
    assert props["api_key"]["x-vault-displayAttrs"] == {"sensitive": True}
    assert "name" not in props  # path parameters are not in the body
    listing = doc["paths"]["/roles"]["get"]
    assert listing["parameters"][0]["name"] == "list"
    assert listing["parameters"][0]["schema"]["enum"] == ["true"]


def test_openapi_read_and_list_on_one_path() -> None:
    def h(req: Request, d: object) -> Response:
        return Response()

    b = Backend(paths=[Path("things/?", operations={Operation.READ: h, Operation.LIST: h})])
    doc = b.handle_request(help_request(""))
    assert doc is not None
    get = doc.data["openapi"]["paths"]["/things"]["get"]
    assert get["operationId"] == "llm-read-things"
    assert get["parameters"][0]["name"] == "list" and "required" not in get["parameters"][0]


def test_path_help_lists_fields_and_descriptions(sample: Sample) -> None:
    resp = sample.backend.handle_request(help_request("roles/alpha"))
    assert resp is not None
    text = resp.data["help"]
    assert "Request:        roles/alpha" in text
    assert "Matching Route: ^roles/(?P<name>" in text
    assert "Manage roles." in text
    assert "## PARAMETERS" in text
    assert "ttl (duration (sec))" in text and "Lease TTL of issued tokens." in text
    assert "default: 1h" in text
    assert "models (comma-separated strings)" in text
    assert "## DESCRIPTION" in text and "Roles say which models a token may use." in text
    assert "update: Write a role." in text
    assert list(resp.data["openapi"]["paths"]) == ["/roles/{name}"]


def test_sensitive_default_is_not_shown() -> None:
    b = Backend(
        paths=[
            Path(
                "config",
                fields={"key": Field(FieldType.STRING, "Admin key.", default="sk-123", sensitive=True)},
                operations={Operation.UPDATE: lambda r, d: None},
            )
        ]
    )
    resp = b.handle_request(help_request("config"))
    root = b.handle_request(help_request(""))
    assert resp is not None and root is not None
    assert "sk-123" not in json.dumps(resp.data) and "sk-123" not in json.dumps(root.data)


def test_help_for_unknown_path_is_404_but_root_never_fails(sample: Sample) -> None:
    with pytest.raises(UnsupportedPath):
        sample.backend.handle_request(help_request("nope"))
    weird = Backend(help="x", paths=[Path(r"raw/.*", operations={Operation.READ: lambda r, d: None})])
    resp = weird.handle_request(Request(operation="help", path=""))
    assert resp is not None
    # Unpublishable patterns are listed by their regex, with no operations.
    assert resp.data["openapi"]["paths"]["/raw/.*"] == {"description": ""}


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (r"roles/?$", ["roles"]),
        (r"roles/(?P<name>\w(([\w.-]+)?\w)?)", ["roles/{name}"]),
        (r"creds/(?P<name>\w+)(/(?P<x>\w+))?", ["creds/{name}", "creds/{name}/{x}"]),
        (r"config(/(root|rotate))?", ["config", "config/root", "config/rotate"]),
        (r"^rotate\-root$", ["rotate-root"]),
    ],
)
def test_expand_pattern(pattern: str, expected: list[str]) -> None:
    assert expand_pattern(pattern) == expected
