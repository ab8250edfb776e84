"""A small client for the Vault / OpenBao HTTP API, on the standard library alone.

Operator tools (scripts/install) use it so they run with any Python 3.11+, without this project's
dependencies. Every call returns the status and the parsed JSON body, whatever the status, so callers turn
each refusal into their own message. The token is sent in a header and kept out of every repr and message.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

JSONObject = dict[str, Any]


class Unreachable(Exception):
    """No HTTP answer at all: connection refused, DNS failure, TLS failure, timeout. str() is the reason."""


@dataclass(frozen=True)
class Reply:
    status: int
    body: JSONObject

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def data(self) -> JSONObject:
        data = self.body.get("data")
        return data if isinstance(data, dict) else {}

    def errors(self) -> str:
        """The server's error messages on one line ("" when it gave none)."""
        errors = self.body.get("errors") or []
        return "; ".join(" ".join(str(e).split()) for e in errors)


@dataclass(frozen=True)
class VaultApi:
    addr: str
    token: str = field(repr=False)
    ca_cert: str | None = None
    namespace: str | None = None
    timeout: float = 60.0

    def call(
        self,
        method: str,
        path: str,
        *,
        body: JSONObject | None = None,
        params: dict[str, str] | None = None,
    ) -> Reply:
        """`method` on /v1/`path`; raises Unreachable only when the server gave no HTTP answer."""
        url = f"{self.addr.rstrip('/')}/v1/{path.lstrip('/')}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        headers = {"X-Vault-Token": self.token, "X-Vault-Request": "true"}
        if self.namespace:
            headers["X-Vault-Namespace"] = self.namespace
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310
        context = ssl.create_default_context(cafile=self.ca_cert) if url.startswith("https:") else None
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=context) as resp:  # noqa: S310
                return Reply(resp.status, _parse(resp.read()))
        except urllib.error.HTTPError as err:
            with err:
                return Reply(err.code, _parse(err.read()))
        except (urllib.error.URLError, OSError) as err:
            raise Unreachable(str(getattr(err, "reason", err))) from None


def _parse(raw: bytes) -> JSONObject:
    if not raw.strip():
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        return {"errors": [raw[:200].decode(errors="replace")]}
    return parsed if isinstance(parsed, dict) else {"data": parsed}
