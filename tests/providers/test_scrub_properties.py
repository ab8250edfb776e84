"""`scrub` masks secrets and nothing else (issue 8): ordinary English error messages pass through it unchanged
(it used to turn "create key: not sent" into "create key: [redacted] sent"), and the connection's admin key,
whatever its characters and however it is echoed (raw, JSON-, HTML- or URL-escaped, in part), never
survives it. Properties checked with hypothesis, plus the messages the engine and the providers really send.
"""

from __future__ import annotations

import html
import json
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from llmsecrets.providers import Bulkhead, ProviderBusy, scrub

MIN_FRAGMENT = 12  # providers.errors.MIN_SECRET_FRAGMENT: shorter runs of a key are not a usable secret
BIG = 100_000  # a limit no test text reaches, so truncation is not what is tested

# Words of provider and engine error messages, the names the secret rules key on among them.
WORDS = """
a an the this that it is are was were be been not no none null true false and or but if then when while
of to for in on at by with from into over after before within without again only once all every each
key keys token tokens secret secrets password authorization credential credentials bearer basic auth
api admin management master project projects organization service account accounts model models
create created delete deleted list listed read update updated revoke revoked renew renewed lease leases
request requests response answer answered sent send sending provider providers connection connections
call calls attempt attempts retry retried retrying later limit limited rate exceeded quota budget spend
invalid incorrect missing expired unknown unauthorized forbidden found exists archived disabled refused
error errors failed failure timeout timed out slow slowly busy saturated unavailable gateway proxy
internal server bad malformed unexpected body header headers field value values name names must should
cannot could may might will would provided check your you please try contact support see docs
""".split()  # noqa: SIM905 - a paragraph reads better than 170 quoted words
PROPER = [
    "OpenAI",
    "OpenRouter",
    "LiteLLM",
    "Vault",
    "OpenBao",
    "HTTP",
    "API",
    "JSON",
    "URL",
    "ProviderAuthError",
]
JOINED = [
    "not_sent",
    "gpt-4o-mini",
    "api.openai.com",
    "and/or",
    "x-api-key",
    "HTTP/1.1",
    "e.g",
    "proj_default",
]
NUMBERS = ["0", "1", "4", "30", "404", "429", "502", "1.5s", "30s", "10%", "5xx", "2026-11-26", "1,000"]
NAMES = [
    "key",
    "api_key",
    "api-key",
    "token",
    "secret",
    "password",
    "Authorization",
    "access_token",
    "x-api-key",
]

words = st.sampled_from(WORDS)
plain = st.one_of(
    words,
    words.map(str.capitalize),
    words.map(str.upper),
    st.sampled_from(PROPER + JOINED + NUMBERS),
    st.integers(0, 10**9).map(str),
)


@st.composite
def decorated(draw: st.DrawFn) -> str:
    opening = draw(st.sampled_from(["", "", "", "(", '"', "'"]))
    closing = draw(st.sampled_from(["", "", "", ",", ".", ":", ";", "!", "?", ")", '"', "'", "..."]))
    return opening + draw(plain) + closing


@st.composite
def named(draw: st.DrawFn) -> str:
    """A secret's name and a prose value: "key: not", "token=expired", '"api_key": "missing"'."""
    name = draw(st.sampled_from(NAMES))
    value = draw(plain)
    return draw(
        st.sampled_from(
            [
                f"{name}: {value}",
                f"{name}={value}",
                f"{name}:{value}",
                f'"{name}": "{value}"',
                f"{name}='{value}'",
            ]
        )
    )


@st.composite
def after_scheme(draw: st.DrawFn) -> str:
    return draw(st.sampled_from(["Bearer", "bearer", "Basic", "basic"])) + " " + draw(plain)


piece = st.one_of(decorated(), decorated(), decorated(), named(), after_scheme())
sentences = st.lists(piece, min_size=1, max_size=30).map(" ".join)

# Real messages, as the providers and the engine write them.
REAL = [
    "openrouter: create key: not sent: the provider answers slowly",
    "openai: delete key failed: HTTP 404: No such service account: svc_acct_abc",
    "openrouter: list keys failed: HTTP 401: No auth credentials found",
    "Only management keys can perform this operation",
    "You exceeded your current quota, please check your plan and billing details.",
    "Rate limit reached for requests. Please try again in 20s.",
    "Project proj_default is archived and cannot be modified.",
    "Invalid URL (POST /v1/organization/projects/proj_default/service_accounts)",
    "litellm: create key failed: HTTP 400: Authentication Error, Invalid proxy server token passed. "
    "valid_token=None.",
    "the provider sent its answer too slowly: no complete answer within 30 s (1234 bytes received)",
    "key: not sent; token: missing; secret: unknown; password: expired; Authorization: Bearer token expired",
    "Bearer token expired, basic auth is not supported",
]


def busy_message() -> str:
    bulkhead = Bulkhead(1, max_wait=0.0)
    with bulkhead.slot("openrouter", "openrouter: hold"):
        try:
            with bulkhead.slot("openrouter", "openrouter: create key"):
                pass
        except ProviderBusy as exc:
            return str(exc)
    raise AssertionError("the second call was admitted")


@pytest.mark.parametrize("message", [*REAL, busy_message()])
def test_real_messages_pass_unchanged(message: str) -> None:
    assert scrub(message, limit=BIG) == message


@settings(max_examples=400, deadline=None)
@given(sentences)
@example("openrouter: create key: not sent: the provider answers slowly")
@example("Authorization: Bearer token expired")
def test_ordinary_prose_passes_unchanged(text: str) -> None:
    assert scrub(text, limit=BIG) == text


# --- the admin key ------------------------------------------------------------------------------------

# What an operator may write as admin_key: printable ASCII without spaces (path_config refuses the rest).
admin_keys = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=8, max_size=64)


def shapes(key: str) -> list[str]:
    as_json = json.dumps(key)[1:-1]
    return [key, as_json, as_json.replace("/", "\\/"), html.escape(key), quote(key, safe=""), quote_plus(key)]


@st.composite
def echoes(draw: st.DrawFn) -> tuple[str, str]:
    """An admin key, and a message that echoes it (whole or in part, in any of its shapes) amid prose."""
    key = draw(admin_keys)
    parts: list[str] = []
    for _ in range(draw(st.integers(1, 4))):
        shape = draw(st.sampled_from(shapes(key)))
        if len(shape) > MIN_FRAGMENT and draw(st.booleans()):
            start = draw(st.integers(0, len(shape) - MIN_FRAGMENT))
            shape = shape[start : draw(st.integers(start + MIN_FRAGMENT, len(shape)))]
        glue = draw(st.sampled_from(["", " ", ": ", "=", '"', "'", "Bearer ", "key="]))
        parts += [draw(sentences), glue + shape + draw(st.sampled_from(["", " ", '"', ".", "x", "]"]))]
    parts.append(draw(sentences))
    return key, draw(st.sampled_from(["", " "])).join(parts)


def survivors(out: str, key: str) -> list[str]:
    """What of `key` is still in `out`: a whole short shape, or any run of MIN_FRAGMENT characters."""
    found = []
    for shape in shapes(key):
        if len(shape) <= MIN_FRAGMENT:
            found += [shape] if shape in out else []
        else:
            found += [shape[i : i + MIN_FRAGMENT] for i in range(len(shape) - MIN_FRAGMENT + 1)]
            found = [f for f in found if f in out]
    return found


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(echoes())
@example(("mgmt~7Gq2Lp9Xw4Zr8Tn3hh", 'Incorrect API key provided: "mgmt~7Gq2Lp9Xw4Zr8Tn3hh".'))
@example(("[redacted]x", "a [redacted]x b"))  # a key that overlaps the mask text itself
@example(
    ("p@ss/w0rd&x<y>", 'echo "p@ss\\/w0rd&x<y>" and p@ss%2Fw0rd%26x%3Cy%3E and p@ss/w0rd&amp;x&lt;y&gt;')
)
def test_an_echoed_admin_key_never_survives(echo: tuple[str, str]) -> None:
    key, text = echo
    for limit in (BIG, 200):
        out = scrub(text, limit=limit, secrets=[key])
        assert survivors(out, key) == [], (out, key)


def test_a_key_that_overlaps_the_mask_withholds_the_message() -> None:
    # Each masking of "]x[redacted" in "]x]x]x[redacted" makes the key again:
    # "]x]x[redacted]", then "]x[redacted]]".
    out = scrub("a ]x]x]x[redacted b", secrets=["]x[redacted"])
    assert out == "[message withheld: it held a secret]"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abc123XYZdef456", "Authorization: Bearer [redacted]"),
        ("Basic dXNlcjpwYXNzd29yZA==", "Basic [redacted]"),
        ("api_key=a1B2c3D4e5f6", "api_key=[redacted]"),
        ('{"token": "x9Fq-72Lm_Pa0"}', '{"token": "[redacted]"}'),
        ("secret: Zq9!x$Ww", "secret: [redacted]"),
        ("issued sk-or-v1-0e6f1c96aa and sk-proj-abcd1234", "issued [redacted] and [redacted]"),
        ("hash 0e6f1c9600000000aaaaaaaabbbbbbbbcccc", "hash [redacted]"),
        ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N", "jwt [redacted]"),
    ],
)
def test_generic_secrets_are_masked(text: str, expected: str) -> None:
    assert scrub(text) == expected
