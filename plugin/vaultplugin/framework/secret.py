"""Secret types: what a backend leases out, and the handlers Vault calls to renew and revoke them.

Vault remembers which backend issued a lease, not which kind of secret it is: `response` stamps
`internal_data["secret_type"]` so the backend can route the later renew/revoke to the right type.

On renew, Vault REPLACES the stored lease data and internal data with whatever the renew response
carries. A renew response must therefore echo `req.secret.internal_data` (and the original data,
which Vault sends back as `req.data`), or the next revoke will find nothing to act on.
`SecretType.renew_response` does exactly that.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from vaultplugin.framework.errors import VaultError
from vaultplugin.framework.fields import Field
from vaultplugin.framework.logical import Request, Response, Secret
from vaultplugin.framework.path import Handler

SECRET_TYPE_KEY = "secret_type"  # noqa: S105 - a key name, not a password


@dataclass(frozen=True, kw_only=True)
class SecretType:
    """A kind of leased secret. `revoke` is required; without `renew` leases are not renewable."""

    name: str
    revoke: Handler
    renew: Handler | None = None
    fields: Mapping[str, Field] = field(default_factory=dict)  # documents the response data
    default_ttl: float = 0.0  # 0 = the mount's default
    max_ttl: float = 0.0  # 0 = the mount's max

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a secret type needs a name")

    @property
    def renewable(self) -> bool:
        return self.renew is not None

    def response(
        self,
        data: Mapping[str, Any],
        internal_data: Mapping[str, Any],
        ttl: float | None = None,
        max_ttl: float | None = None,
        renewable: bool | None = None,
    ) -> Response:
        """A response that creates a lease of this type. `internal_data` must hold what revoke
        needs and never the secret itself (Vault stores it and sends it back on renew/revoke)."""
        if renewable and not self.renewable:
            raise ValueError(f"secret type {self.name!r} has no renew handler")
        internal = dict(internal_data)
        internal[SECRET_TYPE_KEY] = self.name
        secret = Secret(
            internal_data=internal,
            ttl=self.default_ttl if ttl is None else ttl,
            max_ttl=self.max_ttl if max_ttl is None else max_ttl,
            renewable=self.renewable if renewable is None else renewable,
            issue_time=datetime.now(UTC),
        )
        return Response(data=dict(data), secret=secret)

    def renew_response(
        self,
        req: Request,
        ttl: float | None = None,
        data: Mapping[str, Any] | None = None,
        now: datetime | None = None,
    ) -> Response:
        """The response a renew handler returns: the lease's internal data with a new TTL, and `data`.

        `data` defaults to nothing, never to the lease's data: Vault hands a renew response to whoever
        renewed, and every token may renew any lease whose id it knows (the built-in default policy), so
        echoing the lease's data would give out its secret. Vault replaces the lease's data with this
        response's, so a revoke handler must rely on the internal data only (or pass `data` on here).

        `ttl` defaults to the increment the client asked for, else `default_ttl`. If this type has a
        `max_ttl`, the TTL is cut so the lease ends no later than issue_time + max_ttl.
        """
        if req.secret is None:
            raise VaultError("renew request has no secret")
        lease = req.secret
        new_ttl = ttl if ttl is not None else (lease.increment or self.default_ttl)
        if self.max_ttl > 0 and lease.issue_time is not None:
            elapsed = ((now or datetime.now(UTC)) - lease.issue_time).total_seconds()
            new_ttl = max(0.0, min(new_ttl or self.max_ttl, self.max_ttl - elapsed))
        secret = Secret(
            internal_data=dict(lease.internal_data),
            ttl=new_ttl,
            max_ttl=lease.max_ttl or self.max_ttl,
            renewable=True,
            increment=lease.increment,
            issue_time=lease.issue_time,
        )
        return Response(data=dict(data or {}), secret=secret)
