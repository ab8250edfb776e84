from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from framework_sample import Sample
from vaultplugin.framework import (
    BadRequest,
    FieldData,
    LeaseInfo,
    Request,
    SecretType,
    UnsupportedPath,
    VaultError,
    to_wire,
)
from vaultplugin.framework.errors import ErrType

# Error types that make Vault give up on a lease at once.
IRREVOCABLE = {
    ErrType.UNSUPPORTED_OPERATION,
    ErrType.UNSUPPORTED_PATH,
    ErrType.INVALID_REQUEST,
    ErrType.UNRECOVERABLE,
}


def lease_request(op: str, internal: dict[str, Any], **kw: Any) -> Request:
    return Request(
        operation=op,
        path="creds/a",
        data={"token": "tok-a"},
        secret=LeaseInfo(internal_data=internal, **kw),
    )


def test_secret_response_stamps_type_and_issue_time(sample: Sample) -> None:
    resp = sample.backend.handle_request(sample.request("read", "creds/a"))
    assert resp is not None and resp.secret is not None
    assert resp.data == {"token": "tok-a"}
    assert resp.secret.internal_data == {"role": "a", "secret_type": "token"}
    assert resp.secret.ttl == 60 and resp.secret.max_ttl == 3600 and resp.secret.renewable
    assert resp.secret.issue_time is not None
    assert resp.secret.issue_time.tzinfo is not None
    assert abs((datetime.now(UTC) - resp.secret.issue_time).total_seconds()) < 5


def test_revoke_and_renew_dispatch_by_secret_type(sample: Sample) -> None:
    internal = {"secret_type": "token", "role": "a"}
    sample.backend.handle_request(lease_request("revoke", internal))
    assert sample.calls[-1] == ("revoke", internal)
    resp = sample.backend.handle_request(
        lease_request("renew", internal, increment=120, issue_time=datetime.now(UTC))
    )
    assert sample.calls[-1] == ("renew", internal)
    # The renew response echoes internal data (Vault replaces what it stored with it), not the lease's
    # data: it goes to whoever renewed, and any token may renew a lease whose id it knows.
    assert resp is not None and resp.secret is not None
    assert resp.secret.internal_data == internal
    assert resp.data == {}
    assert resp.secret.ttl == 120


@pytest.mark.parametrize("internal", [{}, {"secret_type": "other"}, {"secret_type": 5}])
def test_revoke_of_unknown_type_is_retryable(sample: Sample, internal: dict[str, Any]) -> None:
    with pytest.raises(VaultError) as err:
        sample.backend.handle_request(lease_request("revoke", internal))
    err_type, message, _ = to_wire(err.value)
    assert err_type not in IRREVOCABLE
    assert "secret" in message


def test_revoke_without_secret_is_retryable(sample: Sample) -> None:
    with pytest.raises(VaultError) as err:
        sample.backend.handle_request(Request(operation="revoke", path="creds/a"))
    assert to_wire(err.value)[0] not in IRREVOCABLE


def test_revoke_handler_raising_404_is_downgraded() -> None:
    def revoke(req: Request, d: FieldData) -> None:
        raise UnsupportedPath("gone")

    from vaultplugin.framework import Backend

    b = Backend(paths=[], secrets=[SecretType(name="t", revoke=revoke)])
    with pytest.raises(VaultError) as err:
        b.handle_request(lease_request("revoke", {"secret_type": "t"}))
    assert to_wire(err.value)[0] not in IRREVOCABLE
    assert err.value.message == "gone"


def test_renew_of_non_renewable_type_is_400() -> None:
    from vaultplugin.framework import Backend

    b = Backend(paths=[], secrets=[SecretType(name="t", revoke=lambda r, d: None)])
    with pytest.raises(BadRequest, match="not renewable"):
        b.handle_request(lease_request("renew", {"secret_type": "t"}))
    assert not b.secrets["t"].response({}, {}).secret.renewable  # type: ignore[union-attr]


def test_renew_response_is_capped_by_max_ttl() -> None:
    st = SecretType(
        name="t", revoke=lambda r, d: None, renew=lambda r, d: None, default_ttl=600, max_ttl=1000
    )
    issued = datetime(2025, 1, 1, tzinfo=UTC)
    req = lease_request("renew", {"secret_type": "t"}, issue_time=issued, increment=900)
    resp = st.renew_response(req, now=issued + timedelta(seconds=400))
    assert resp.secret is not None
    assert resp.secret.ttl == 600  # 1000 - 400 left, less than the 900 asked for
    assert resp.secret.issue_time == issued
