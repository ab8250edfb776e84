"""A provider's own message reaches the user as the provider wrote it, through a real OpenBao (issue 8): the
engine masks secrets in provider messages, and only secrets. It used to mask any run of 40 URL-safe
characters, so OpenAI's "Invalid URL (POST /organization/projects/.../service_accounts)", the message that
says what is wrong with a base_url, reached the user as "Invalid URL (POST [redacted])".
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from engine_support import EngineMount, errors_of

pytestmark = pytest.mark.timeout(60)


def test_a_wrong_base_url_is_explained_by_the_providers_own_words(
    new_mount: Callable[[str], EngineMount],
) -> None:
    m = new_mount("openai")
    # The server's root instead of its /v1: every admin call lands on a route OpenAI does not have.
    m.configure("no-v1", base_url=m.emu_server.url, verify=False)
    m.add_role("app", connection="no-v1")

    status, body = m.read("creds/app")

    message = errors_of(body)
    assert status == 400, (status, body)
    assert "Invalid URL (POST /organization/projects/proj_default/service_accounts)" in message, message
    assert "check the role's project_id and the connection's base_url" in message
    assert "[redacted]" not in message
    assert m.admin_key not in message
    assert m.emulator.live_keys() == []
