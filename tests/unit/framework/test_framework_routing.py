from __future__ import annotations

import pytest
from framework_sample import Sample
from vaultplugin.framework import (
    Backend,
    BadRequest,
    Field,
    FieldData,
    FieldType,
    Operation,
    Path,
    Request,
    Response,
    UnsupportedOperation,
    UnsupportedPath,
    VaultError,
    options_regex,
)


def test_route_passes_captures_and_typed_body(sample: Sample) -> None:
    b = sample.backend
    resp = b.handle_request(sample.request("update", "roles/alpha", ttl="15m", models="a,b"))
    assert resp is not None and resp.data == {"ok": True}
    assert resp.warnings == []
    read = b.handle_request(sample.request("read", "roles/alpha"))
    assert read is not None and read.data == {"ttl": 900, "models": ["a", "b"]}


def test_first_matching_path_wins(sample: Sample) -> None:
    routed = sample.backend.route("creds/special")
    assert routed is not None
    path, captures = routed
    assert path.pattern.startswith("creds/(?P<name>")
    assert captures == {"name": "special"}


def test_unknown_path_is_404_and_unknown_operation_405(sample: Sample) -> None:
    with pytest.raises(UnsupportedPath):
        sample.backend.handle_request(sample.request("read", "nope"))
    with pytest.raises(UnsupportedPath):  # a name cannot contain '/'
        sample.backend.handle_request(sample.request("read", "roles/a/b"))
    with pytest.raises(UnsupportedOperation):
        sample.backend.handle_request(sample.request("delete", "creds/x"))


def test_list_path_matches_with_and_without_slash(sample: Sample) -> None:
    sample.backend.handle_request(sample.request("update", "roles/a"))
    for path in ("roles", "roles/"):
        resp = sample.backend.handle_request(sample.request("list", path))
        assert resp is not None and resp.data == {"keys": ["a"]}


def test_create_falls_back_to_update_and_back() -> None:
    seen: list[str] = []

    def handler(req: Request, d: FieldData) -> Response:
        seen.append(req.operation)
        return Response()

    b = Backend(
        paths=[
            Path("only-update", operations={Operation.UPDATE: handler}),
            Path("only-create", operations={Operation.CREATE: handler}),
        ]
    )
    b.handle_request(Request(operation="create", path="only-update"))
    b.handle_request(Request(operation="update", path="only-create"))
    assert seen == ["create", "update"]


def test_validation_errors_are_400_naming_field(sample: Sample) -> None:
    with pytest.raises(BadRequest, match='invalid value for "ttl": "15x"'):
        sample.backend.handle_request(sample.request("update", "roles/a", ttl="15x"))


def test_required_fields_only_checked_on_writes() -> None:
    def ok(req: Request, d: FieldData) -> Response:
        return Response()

    b = Backend(
        paths=[
            Path(
                "thing",
                fields={"model": Field(FieldType.STRING, required=True)},
                operations={Operation.UPDATE: ok, Operation.READ: ok},
            )
        ]
    )
    b.handle_request(Request(operation="read", path="thing"))
    with pytest.raises(BadRequest, match='"model"'):
        b.handle_request(Request(operation="update", path="thing"))


def test_unknown_parameters_are_ignored_with_warning(sample: Sample) -> None:
    resp = sample.backend.handle_request(sample.request("update", "roles/a", zeta=1, alpha="x"))
    assert resp is not None
    assert resp.warnings == ["Endpoint ignored these unrecognized parameters: [alpha zeta]"]


def test_path_captures_override_body(sample: Sample) -> None:
    resp = sample.backend.handle_request(sample.request("update", "roles/a", name="b"))
    assert resp is not None
    assert sample.calls[-1] == ("write", {"op": "update", "name": "a"})
    assert any("replaced the value of these parameters" in w and "[name]" in w for w in resp.warnings)


def test_resolve_path_answers_the_request_path_of_a_known_route(sample: Sample) -> None:
    # The host uses the answer as the request's path from then on: it must be the path, not the regex.
    resp = sample.backend.handle_request(sample.request("resolve-path", "roles/a"))
    assert resp is not None
    assert resp.data == {"path": "roles/a"}
    with pytest.raises(UnsupportedPath):
        sample.backend.handle_request(sample.request("resolve-path", "nope"))


def test_existence_check(sample: Sample) -> None:
    b = sample.backend
    assert b.handle_existence_check(sample.request("create", "roles/a")) == (True, False)
    b.handle_request(sample.request("create", "roles/a"))
    assert sample.calls[-1] == ("write", {"op": "create", "name": "a"})
    assert b.handle_existence_check(sample.request("update", "roles/a")) == (True, True)
    # No existence check declared -> (False, False).
    assert b.handle_existence_check(sample.request("update", "creds/a")) == (False, False)
    with pytest.raises(UnsupportedPath):
        b.handle_existence_check(sample.request("update", "nope"))
    with pytest.raises(VaultError):
        b.handle_existence_check(sample.request("read", "roles/a"))


def test_options_regex_and_go_style_classes() -> None:
    def echo(req: Request, d: FieldData) -> Response:
        return Response(data={"kind": d.get_str("kind"), "name": d.get_str("name")})

    b = Backend(
        paths=[
            Path(
                # Go's `[\w-.]` is not valid in Python's re; the framework accepts it anyway.
                r"keys/" + options_regex("kind", ["a.b", "c"]) + r"/(?P<name>\w(([\w-.]+)?\w)?)",
                fields={"kind": Field(FieldType.STRING), "name": Field(FieldType.NAME)},
                operations={Operation.READ: echo},
            )
        ]
    )
    resp = b.handle_request(Request(operation="read", path="keys/a.b/x-y.z"))
    assert resp is not None and resp.data == {"kind": "a.b", "name": "x-y.z"}
    with pytest.raises(UnsupportedPath):
        b.handle_request(Request(operation="read", path="keys/aXb/x"))


def test_undeclared_capture_is_a_definition_error() -> None:
    with pytest.raises(ValueError, match="undeclared"):
        Path(r"roles/(?P<name>\w+)")


def test_lifecycle_hooks() -> None:
    events: list[str] = []

    class System:
        def default_lease_ttl(self) -> float:
            return 60.0

        def max_lease_ttl(self) -> float:
            return 120.0

    b = Backend(
        paths=[],
        initialize=lambda storage: events.append("init"),
        clean=lambda: events.append("clean"),
        invalidate=lambda key: events.append("inv:" + key),
    )
    with pytest.raises(VaultError):
        _ = b.system
    b.setup({"plugin_name": "llm"}, System())
    assert b.system.max_lease_ttl() == 120.0
    assert b.config == {"plugin_name": "llm"}
    b.initialize(Sample().storage)
    b.invalidate("config")
    b.cleanup()
    assert events == ["init", "inv:config", "clean"]


def test_every_handler_runs_on_the_hub_but_rollback_and_help(sample: Sample) -> None:
    """No handler says where it runs: it blocks only through framework.runtime, which suspends it on the hub.
    Rollback (periodic work that may run long) and help (large documents) run on pool threads."""
    backend = sample.backend
    for operation in (
        "resolve-path",
        "create",
        "read",
        "update",
        "patch",
        "delete",
        "list",
        "renew",
        "revoke",
    ):
        assert backend.runs_on_hub(operation), operation
    for operation in ("rollback", "help"):
        assert not backend.runs_on_hub(operation), operation
