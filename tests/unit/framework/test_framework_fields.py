from __future__ import annotations

from typing import Any

import pytest
from vaultplugin.framework import BadRequest, Field, FieldData, FieldType, format_duration, parse_duration


def parse(ftype: FieldType, value: Any, **kw: Any) -> Any:
    return Field(ftype, "d", **kw).parse("f", value)


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        (90, 90),
        ("90", 90),
        ("90s", 90),
        ("15m", 900),
        ("1h30m", 5400),
        ("2h", 7200),
        ("0", 0),
        (0, 0),
        ("1.5h", 5400),
        ("1d", 86400),
        (12.0, 12),
        ("2000ms", 2),
    ],
)
def test_duration_accepts_seconds_and_go_strings(raw: Any, seconds: int) -> None:
    assert parse(FieldType.DURATION, raw) == seconds


@pytest.mark.parametrize("raw", ["15x", "-5s", "-1", -3, "", "h", "1h 30m", True, [1], "1.2.3s"])
def test_duration_rejects_malformed_or_negative(raw: Any) -> None:
    with pytest.raises(BadRequest) as err:
        Field(FieldType.DURATION).parse("ttl", raw)
    assert 'invalid value for "ttl"' in err.value.message
    assert "examples: 30s, 15m, 1h" in err.value.message


def test_duration_error_message_shape() -> None:
    with pytest.raises(BadRequest) as err:
        Field(FieldType.DURATION).parse("ttl", "15x")
    assert err.value.message == 'invalid value for "ttl": "15x" is not a duration (examples: 30s, 15m, 1h)'


def test_format_and_parse_duration_helpers() -> None:
    assert parse_duration("1h30m") == 5400
    assert format_duration(5400) == "1h30m0s"
    assert format_duration(0) == "0s"


def test_scalar_types() -> None:
    assert parse(FieldType.INT, "42") == 42
    assert parse(FieldType.INT, 42.0) == 42
    assert parse(FieldType.FLOAT, "0.5") == 0.5
    assert parse(FieldType.BOOL, "true") is True
    assert parse(FieldType.BOOL, "0") is False
    assert parse(FieldType.STRING, 12) == "12"
    for ftype, bad in [
        (FieldType.INT, "4.2"),
        (FieldType.INT, True),
        (FieldType.FLOAT, "nan"),
        (FieldType.BOOL, "maybe"),
        (FieldType.STRING, {"a": 1}),
    ]:
        with pytest.raises(BadRequest, match='"f"'):
            parse(ftype, bad)


def test_lists_accept_json_lists_and_comma_strings() -> None:
    assert parse(FieldType.COMMA_STRING_LIST, "a, b,,c") == ["a", "b", "c"]
    assert parse(FieldType.COMMA_STRING_LIST, ["a", "b"]) == ["a", "b"]
    assert parse(FieldType.COMMA_STRING_LIST, "") == []
    with pytest.raises(BadRequest, match="more than 256 items"):
        parse(FieldType.COMMA_STRING_LIST, [str(i) for i in range(257)])
    with pytest.raises(BadRequest, match="not a list"):
        parse(FieldType.COMMA_STRING_LIST, [{"x": 1}])


def test_maps_accept_objects_and_kv_strings() -> None:
    assert parse(FieldType.MAP, {"a": "1", "b": 2}) == {"a": "1", "b": "2"}
    assert parse(FieldType.MAP, "a=1, b=x=y") == {"a": "1", "b": "x=y"}
    assert parse(FieldType.MAP, '{"k": "v"}') == {"k": "v"}
    assert parse(FieldType.MAP, ["k=v"]) == {"k": "v"}
    for bad in ["novalue", {"a": {"nested": 1}}, 5, "{bad json"]:
        with pytest.raises(BadRequest, match='invalid value for "f"'):
            parse(FieldType.MAP, bad)
    with pytest.raises(BadRequest, match="more than 256 entries"):
        parse(FieldType.MAP, {str(i): "v" for i in range(257)})


def test_size_limits_name_the_field() -> None:
    with pytest.raises(BadRequest, match=r'"note".*longer than 4096'):
        Field(FieldType.STRING).parse("note", "x" * 4097)
    with pytest.raises(BadRequest, match="longer than 5"):
        Field(FieldType.STRING, max_length=5).parse("note", "x" * 6)


def test_name_is_one_path_segment() -> None:
    assert parse(FieldType.NAME, "my-role.v2") == "my-role.v2"
    for bad in ["a/b", "-a", "a-", "", "x" * 129, "a b"]:
        with pytest.raises(BadRequest, match='invalid value for "f"'):
            parse(FieldType.NAME, bad)


def test_allowed_values() -> None:
    f = Field(FieldType.STRING, allowed_values=["openai", "anthropic"])
    assert f.parse("provider", "openai") == "openai"
    with pytest.raises(BadRequest, match='"provider": "x" is not one of: openai, anthropic'):
        f.parse("provider", "x")


def test_sensitive_values_are_never_echoed() -> None:
    f = Field(FieldType.INT, sensitive=True)
    with pytest.raises(BadRequest) as err:
        f.parse("api_key", "sk-secret-value")
    assert "api_key" in err.value.message
    assert "sk-secret" not in err.value.message


def test_long_values_are_truncated_in_errors() -> None:
    with pytest.raises(BadRequest) as err:
        Field(FieldType.INT).parse("n", "9" * 500 + "x")
    assert len(err.value.message) < 150


def test_bad_default_fails_at_definition() -> None:
    with pytest.raises(BadRequest):
        Field(FieldType.DURATION, default="soon")


def test_field_data_get_default_and_get_ok() -> None:
    schema = {
        "ttl": Field(FieldType.DURATION, default="1h"),
        "models": Field(FieldType.COMMA_STRING_LIST),
        "n": Field(FieldType.INT),
    }
    d = FieldData({"n": "3", "extra": 1, "models": None}, schema)
    assert d.get("ttl") == 3600
    assert d.get_ok("ttl") == (3600, False)
    assert d.get_ok("n") == (3, True)
    assert d.get_ok("models") == ([], False)  # JSON null counts as unset
    assert d.get_int("n") == 3
    d.get_list("models").append("x")  # callers get copies
    assert d.get_list("models") == []
    with pytest.raises(KeyError):
        d.get("extra")
    with pytest.raises(TypeError):
        d.get_str("n")


def test_field_data_required() -> None:
    d = FieldData({}, {"model": Field(FieldType.STRING, required=True)})
    d.validate()
    with pytest.raises(BadRequest, match=r'missing required field.*"model"'):
        d.validate(check_required=True)
