"""Raw calls to a Vault / OpenBao server's HTTP API for tests and drills: (status, JSON body) whatever the
status, so a test can assert on refusals as well as on answers."""

from __future__ import annotations

from types import TracebackType
from typing import Any

import httpx

JSONObject = dict[str, Any]


class RawApi:
    def __init__(self, addr: str, token: str, *, timeout: float = 60.0) -> None:
        self._http = httpx.Client(base_url=f"{addr}/v1/", headers={"X-Vault-Token": token}, timeout=timeout)

    def call(self, method: str, path: str, **kwargs: Any) -> tuple[int, JSONObject]:
        resp = self._http.request(method, path, **kwargs)
        body: JSONObject = resp.json() if resp.content else {}
        return resp.status_code, body

    def status(self, method: str, path: str, **kwargs: Any) -> int:
        return self.call(method, path, **kwargs)[0]

    def ok(self, method: str, path: str, **kwargs: Any) -> JSONObject:
        """The body of a call that must succeed (200 or 204); an AssertionError naming the call otherwise."""
        status, body = self.call(method, path, **kwargs)
        assert status in (200, 204), (method, path, status, body)
        return body

    def lease_exists(self, lease_id: str) -> bool:
        return self.status("PUT", "sys/leases/lookup", json={"lease_id": lease_id}) == 200

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RawApi:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
