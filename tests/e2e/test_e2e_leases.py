"""Leases through a real OpenBao: issue, renew, revoke (by id, by prefix, by expiry) and retried revokes.

What a user relies on: a lease's revoke reaches the plugin with the internal data it was issued with, however
the lease ends, even after renewals; and a passing fault in revoke does not strand the lease.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from devkit.waiting import wait_for
from e2e_support import Mount

pytestmark = pytest.mark.timeout(90)

INTERNAL_DATA_WITHOUT_REF = {"nested": {"list": [1, "two", None], "flag": True}, "secret_type": "token"}


def issue(mount: Mount, **params: Any) -> dict[str, Any]:
    """A lease-issuing read; returns Vault's whole response (lease_id, lease_duration, renewable, data)."""
    return mount.read("lease", **params)


def expected_internal(lease: dict[str, Any]) -> dict[str, Any]:
    return {"ref": lease["data"]["ref"], **INTERNAL_DATA_WITHOUT_REF}


def revocation_of(mount: Mount, lease: dict[str, Any]) -> dict[str, Any] | None:
    ref = lease["data"]["ref"]
    found = [r for r in mount.records()["revocations"] if r["internal_data"].get("ref") == ref]
    assert len(found) <= 1, f"revoked more than once: {found}"
    return found[0] if found else None


def assert_revoked_with_full_data(record: dict[str, Any] | None, lease: dict[str, Any]) -> None:
    assert record is not None, f"the plugin never recorded a revoke of {lease['lease_id']}"
    assert record["internal_data"] == expected_internal(lease)
    assert record["data"] == lease["data"]  # Vault sends back the response data too
    assert record["lease_id"] in ("", lease["lease_id"])


def lookup(mount: Mount, lease_id: str) -> tuple[int, dict[str, Any]]:
    return mount.api.call("PUT", "sys/leases/lookup", json={"lease_id": lease_id})


def test_read_returns_a_lease(mount: Mount) -> None:
    lease = issue(mount, ttl="45s")
    assert lease["lease_id"].startswith(f"{mount.path}/lease/")
    assert lease["lease_duration"] == 45
    assert lease["renewable"] is True
    assert lease["data"]["value"] == "value-" + lease["data"]["ref"]

    status, info = lookup(mount, lease["lease_id"])
    assert status == 200, info
    assert info["data"]["renewable"] is True
    assert 0 < info["data"]["ttl"] <= 45


def test_lease_ttl_comes_from_config_and_is_capped_by_max_ttl(mount: Mount) -> None:
    status, body = mount.write("config", ttl="90s", max_ttl="120s")
    assert status == 204, body
    assert issue(mount)["lease_duration"] == 90  # from the stored config (the read's one storage get)
    assert issue(mount, ttl="100s", max_ttl="60s")["lease_duration"] == 60  # Vault caps TTL at MaxTTL


def test_renew_keeps_data_for_revoke(mount: Mount) -> None:
    lease = issue(mount, ttl="30s")
    renewed = mount.client.sys.renew_lease(lease_id=lease["lease_id"], increment=300)
    assert renewed["lease_id"] == lease["lease_id"]
    assert renewed["lease_duration"] == 300
    assert renewed["renewable"] is True
    renewed_again = mount.client.sys.renew_lease(lease_id=lease["lease_id"], increment=200)
    assert renewed_again["lease_duration"] == 200

    records = mount.records()
    assert len(records["renewals"]) == 2
    for renewal in records["renewals"]:
        assert renewal["internal_data"] == expected_internal(
            lease
        )  # the second renew saw what the first echoed
        assert renewal["data"] == lease["data"]

    mount.client.sys.revoke_lease(lease_id=lease["lease_id"])
    assert_revoked_with_full_data(revocation_of(mount, lease), lease)


def test_revoke_by_lease_id(mount: Mount) -> None:
    lease = issue(mount, ttl="5m")
    other = issue(mount, ttl="5m")
    mount.client.sys.revoke_lease(lease_id=lease["lease_id"])  # `bao lease revoke <id>`: synchronous
    assert_revoked_with_full_data(revocation_of(mount, lease), lease)
    assert revocation_of(mount, other) is None  # only that lease

    status, body = lookup(mount, lease["lease_id"])
    assert status == 400 and "invalid lease" in json.dumps(body)
    assert lookup(mount, other["lease_id"])[0] == 200


def test_revoke_prefix(mount: Mount) -> None:
    leases = [issue(mount, ttl="5m") for _ in range(3)]
    mount.client.sys.revoke_prefix(prefix=f"{mount.path}/lease")  # `bao lease revoke -prefix`
    for lease in leases:
        assert_revoked_with_full_data(revocation_of(mount, lease), lease)
        assert lookup(mount, lease["lease_id"])[0] == 400


def test_ttl_expiry_revokes(mount: Mount) -> None:
    issued_at = time.time()
    lease = issue(mount, ttl="2s")
    assert lease["lease_duration"] == 2
    record = wait_for(
        lambda: revocation_of(mount, lease), timeout=20, what="the expiry revoke", interval=0.25
    )
    assert time.time() - issued_at >= 2  # not before the TTL ran out
    assert_revoked_with_full_data(record, lease)
    assert lookup(mount, lease["lease_id"])[0] == 400


@pytest.mark.timeout(120)
def test_revoke_with_passing_fault_is_retried(mount: Mount) -> None:
    """SLOW (~10-30 s): Vault's first revoke retry comes after 20 s +/- 50 %.

    The first revoke (at expiry) fails with a retryable upstream fault (502); Vault keeps the lease, does not
    mark it irrevocable, retries, and the second attempt reaches the plugin with the same internal data.
    """
    status, body = mount.write("faults", revoke_failures=1)
    assert status == 204, body
    lease = issue(mount, ttl="1s")

    failure = wait_for(
        lambda: mount.records()["failed_revocations"], timeout=20, what="the failing revoke", interval=0.25
    )[0]
    assert failure["internal_data"] == expected_internal(lease)

    # Between the attempts the lease is still known to Vault and not irrevocable.
    status, info = lookup(mount, lease["lease_id"])
    assert status == 200, info
    assert "revoke_error" not in info["data"], info
    status, irrevocable = mount.api.call("GET", "sys/leases", params={"type": "irrevocable"})
    assert lease["lease_id"] not in json.dumps(irrevocable)

    record = wait_for(
        lambda: revocation_of(mount, lease), timeout=60, what="the retried revoke", interval=0.5
    )
    assert_revoked_with_full_data(record, lease)
    assert len(mount.records()["failed_revocations"]) == 1
    assert lookup(mount, lease["lease_id"])[0] == 400  # gone: revoked, not irrevocable
