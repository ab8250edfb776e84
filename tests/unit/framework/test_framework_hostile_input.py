"""Hostile input at the framework's edges: nesting deep enough to break a recursive decoder, durations that
would round to 0 (the mount default), digits and letters of other scripts, numbers out of range.

Each bad input must be a BadRequest (a 400) whose message names the field and says what to send.
The same inputs are sent through a real OpenBao server in tests/fuzz/.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path as FsPath
from typing import Any

import pytest
from framework_sample import Sample
from vaultplugin.broker import Broker
from vaultplugin.framework import BadRequest, Field, FieldType, parse_duration
from vaultplugin.framework.durations import DurationError
from vaultplugin.framework.errors import ErrType
from vaultplugin.framework.json_input import MAX_JSON_DEPTH, JsonInputError, check_depth, loads
from vaultplugin.framework.path import Path, generic_name_regex
from vaultplugin.proto import backend_pb2 as pb
from vaultplugin.server import PluginServer
from vaultplugin.transport.tls import client_context, generate_plugin_certificate
from vaultplugin.wire import request_from_pb

NESTED_980 = "[" * 980 + "]" * 980  # what Python's recursive JSON decoder fails on (issue 8)


def nested_lists(depth: int) -> str:
    return "[" * depth + "]" * depth


def parse(ftype: FieldType, value: Any, name: str = "f") -> Any:
    return Field(ftype, "d").parse(name, value)


def refusal(ftype: FieldType, value: Any, name: str = "ttl") -> str:
    with pytest.raises(BadRequest) as err:
        parse(ftype, value, name)
    message = err.value.message
    assert message.startswith(f'invalid value for "{name}": '), message
    return message


# --- nesting ---------------------------------------------------------------------------------------------


def test_json_nesting_up_to_the_limit_decodes() -> None:
    assert loads(nested_lists(MAX_JSON_DEPTH)) is not None
    check_depth('{"a": "' + "[" * 5000 + '"}')  # brackets inside a string are text, not nesting
    check_depth('{"a": "\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}')  # an escaped quote does not end it


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 980, 5000, 10_000])
def test_json_nested_deeper_than_the_limit_is_refused_with_what_to_send(depth: int) -> None:
    with pytest.raises(JsonInputError) as err:
        loads('{"x": ' + nested_lists(depth) + "}")
    message = str(err.value)
    assert f"more than {MAX_JSON_DEPTH} levels deep" in message
    assert "a list of strings or a flat map of strings" in message


def test_nesting_is_counted_however_the_brackets_are_laid_out() -> None:
    # A staircase ([[],[[],[[],0]]]) has no long run of opening brackets, and still nests a level a step.
    loads("[[]," * (MAX_JSON_DEPTH - 1) + "0" + "]" * (MAX_JSON_DEPTH - 1))
    with pytest.raises(JsonInputError, match="levels deep"):
        loads("[[]," * (MAX_JSON_DEPTH + 8) + "0" + "]" * (MAX_JSON_DEPTH + 8))
    alternating = '{"a":[' * 17 + "1" + "]}" * 17  # 34 levels, lists and objects in turn
    with pytest.raises(JsonInputError, match="levels deep"):
        loads(alternating)
    loads("[" + ",".join(["[]"] * 10_000) + "]")  # wide, not deep


def test_unbalanced_brackets_are_reported_as_invalid_json_not_as_depth() -> None:
    with pytest.raises(JsonInputError, match="is not valid JSON"):
        loads("[" * 5 + "}" * 40)


def test_json_that_is_not_json_names_what_was_wrong() -> None:
    with pytest.raises(JsonInputError, match="request data is not valid JSON"):
        loads('{"a": ')
    with pytest.raises(JsonInputError, match="too many digits"):
        loads('{"a": ' + "9" * 5000 + "}")


def test_a_map_field_sent_as_deep_json_text_is_a_400() -> None:
    deep_map = '{"a":' * 990 + '"v"' + "}" * 990
    message = refusal(FieldType.MAP, deep_map, "metadata")
    assert "is not a JSON object of strings" in message


def _plugin_server(tmp_path: FsPath) -> PluginServer:
    cert = generate_plugin_certificate()
    broker = Broker(client_context(cert, cert.cert_pem.decode(), tmp_path))
    sample = Sample()
    server = PluginServer(lambda: sample.backend, "v0", broker, threading.Event())
    server._backend = sample.backend  # as after Setup
    server._storage = sample.storage
    return server


def _request(operation: str, data: str) -> pb.HandleRequestArgs:
    return pb.HandleRequestArgs(request=pb.Request(operation=operation, path="roles/r1", data=data))


@pytest.mark.parametrize("operation", ["update", "read", "resolve-path"])
def test_deeply_nested_request_data_answers_400_not_500(operation: str, tmp_path: FsPath) -> None:
    # Was: RecursionError in wire.request_from_pb -> "internal error" (500).
    server = _plugin_server(tmp_path)
    reply = server.handle_request(_request(operation, '{"x": ' + NESTED_980 + "}"))
    assert not reply.HasField("err"), reply.err
    error = json.loads(reply.response.data)["error"]
    assert error.startswith("request data nests lists or objects more than 32 levels deep")


def test_deeply_nested_data_in_an_existence_check_is_a_user_error(tmp_path: FsPath) -> None:
    # Vault shows a "user error" from an existence check as a 400; anything else would be a 500.
    reply = _plugin_server(tmp_path).handle_existence_check(_request("create", '{"x": ' + NESTED_980 + "}"))
    assert reply.err.err_type == ErrType.USER_ERROR
    assert "levels deep" in reply.err.err_msg


def test_request_data_that_is_not_an_object_is_a_bad_request() -> None:
    with pytest.raises(BadRequest, match="request data is not a JSON object"):
        request_from_pb(pb.Request(operation="update", path="x", data="[1]"), None)


# --- durations -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["1ns", "500ms", "999ms", "1.5s", "0.5", "1s500ms", "90.5", 1.5, 0.001])
def test_durations_that_are_not_whole_seconds_are_refused_not_rounded_to_zero(raw: Any) -> None:
    # Was: stored as 0, which a role's ttl reads as the mount default (32 days on a dev server).
    message = refusal(FieldType.DURATION, raw)
    assert "is not a whole number of seconds" in message
    assert "examples: 30s, 15m, 1h" in message


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [("1000ms", 1), ("1.5m", 90), ("0.5h", 1800), ("1h0m0s", 3600), ("0", 0), ("0s", 0), (0, 0), (3.0, 3)],
)
def test_sub_second_units_that_add_up_to_whole_seconds_are_accepted(raw: Any, seconds: int) -> None:
    assert parse_duration(raw) == seconds


@pytest.mark.parametrize("raw", ["\u0661\u0662s", "\u0661\u0662", "1\u0662m", "\uff11\uff12s"])
def test_durations_with_digits_of_other_scripts_are_refused(raw: str) -> None:
    # Was: Arabic-Indic "12s" accepted as 12 s (Python's \d and float() take any Unicode digit).
    message = refusal(FieldType.DURATION, raw)
    assert "is not a duration" in message
    if raw != "\u0661\u0662":  # the bare number form fails before the unit parser can say why
        assert "ASCII 0-9" in message


@pytest.mark.parametrize(
    ("raw", "phrase"),
    [
        ("99999999999999999999h", "is longer than the maximum of 876000h"),
        (10**30, "is longer than the maximum of 876000h"),
        (1e300, "is longer than the maximum of 876000h"),
        ("876001h", "is longer than the maximum of 876000h"),
        ("9" * 65, "is longer than 64 characters"),
        ("1h" * 1000, "is longer than 64 characters"),
        (float("inf"), "is not a duration"),
        (float("nan"), "is not a duration"),
        ("-1ns", "must not be negative"),
    ],
)
def test_overflowing_durations_are_refused(raw: Any, phrase: str) -> None:
    assert phrase in refusal(FieldType.DURATION, raw)


def test_the_longest_duration_is_still_accepted() -> None:
    assert parse_duration("876000h") == 876000 * 3600
    with pytest.raises(DurationError):
        parse_duration("876000h1s")


# --- numbers and names -----------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["\u0661\u0662", "\uff14\uff12", "4_2", " 4 2 "])
def test_integers_take_ascii_digits_only(raw: str) -> None:
    assert "use ASCII digits" in refusal(FieldType.INT, raw, "n")


@pytest.mark.parametrize("raw", [2**63, -(2**63) - 1, "9" * 5000, 1e300])
def test_integers_out_of_int64_range_are_refused(raw: Any) -> None:
    assert "is out of range" in refusal(FieldType.INT, raw, "n")


def test_integers_at_the_edges_of_int64_are_accepted() -> None:
    assert parse(FieldType.INT, str(2**63 - 1)) == 2**63 - 1
    assert parse(FieldType.INT, -(2**63)) == -(2**63)


@pytest.mark.parametrize(("raw", "phrase"), [("\u0661.5", "use ASCII digits"), ("1_000", "use ASCII digits")])
def test_floats_take_ascii_digits_only(raw: str, phrase: str) -> None:
    assert phrase in refusal(FieldType.FLOAT, raw, "spend_limit")


@pytest.mark.parametrize("raw", [float("inf"), float("-inf"), float("nan"), 10**400, "1e400"])
def test_floats_must_be_finite(raw: Any) -> None:
    assert "is out of range" in refusal(FieldType.FLOAT, raw, "spend_limit")


@pytest.mark.parametrize("raw", ["\u03c1\u03cc\u03bb\u03bf\u03c2", "caf\u00e9", "a\u0661", "\uff41"])
def test_names_are_ascii_like_go_names(raw: str) -> None:
    # Was: accepted (Python's \w is Unicode), so a key was minted under a name a Go plugin refuses.
    assert "use ASCII letters, digits" in refusal(FieldType.NAME, raw, "name")


def test_route_patterns_match_ascii_words_only() -> None:
    path = Path("roles/" + generic_name_regex("name"), fields={"name": Field(FieldType.NAME)})
    assert path.match("roles/dev-1") == {"name": "dev-1"}
    assert path.match("roles/\u03c1\u03cc\u03bb\u03bf\u03c2") is None
    assert path.match("roles/\u0661") is None
