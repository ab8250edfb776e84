"""`raw_response`: a body of the backend's own (a Prometheus scrape) instead of Vault's JSON envelope.

The host answers raw when the response data has `http_status_code`; it decodes a string `http_raw_body` as
base64 when it can and uses it verbatim otherwise. What a user relies on: the bytes the backend meant arrive,
whatever they look like, with the status and Content-Type it chose. (The e2e metrics suite checks the same on
a real OpenBao.)
"""

from __future__ import annotations

import base64
import binascii
import json

import pytest
from vaultplugin import wire
from vaultplugin.framework import Backend, FieldData, Operation, Path, Request, Response, raw_response


def host_body(data: dict[str, object]) -> bytes:
    """The body the host sends for a string `http_raw_body`: base64-decoded if that works, else as is."""
    text = data["http_raw_body"]
    assert isinstance(text, str)
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        return text.encode()


@pytest.mark.parametrize(
    "body",
    [
        b"# HELP x y\n# TYPE x counter\nx_total 1\n",
        b"abcd",  # plain text that is also valid base64: must not be decoded into other bytes
        b"",
        bytes(range(256)),
    ],
)
def test_body_arrives_as_given_with_status_and_type(body: bytes) -> None:
    resp = raw_response(body, content_type="text/plain; version=0.0.4; charset=utf-8", status=203)
    # What crosses the wire is JSON (`pb.Response.data`), as the host decodes it.
    sent = json.loads(wire.response_to_pb(resp).data)
    assert sent["http_status_code"] == 203
    assert sent["http_content_type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert host_body(sent) == body
    assert resp.secret is None


def test_cache_control_is_sent_only_when_given() -> None:
    assert "http_raw_cache_control" not in raw_response(b"x", content_type="text/plain").data
    resp = raw_response(b"x", content_type="text/plain", cache_control="no-store")
    assert resp.data["http_raw_cache_control"] == "no-store"


def test_a_handler_can_return_it_through_the_backend() -> None:
    def read(req: Request, d: FieldData) -> Response:
        return raw_response(b"hello\n", content_type="text/plain")

    backend = Backend(paths=[Path("hello", operations={Operation.READ: read})])
    resp = backend.handle_request(Request(operation=Operation.READ, path="hello"))
    assert resp is not None
    assert resp.data["http_status_code"] == 200
    assert host_body(resp.data) == b"hello\n"
