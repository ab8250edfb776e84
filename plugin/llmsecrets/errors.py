"""The one place provider failures become Vault errors (and so HTTP statuses).

    failure                          creds / renew / tidy        revoke                 config verify
    ProviderAuthError (401/403)      502: fix the admin key      502 (retried)          400
    ProviderRateLimited (429)        502: retry later            502 (retried)          400
    ProviderUnavailable (5xx, t/o)   502                         502 (retried)          400
    ProviderBusy (bulkhead full)     502: not sent, retry later  502 (retried)          400
    ProviderCallCancelled            502 (nobody is waiting)     502 (retried)          400
    CreateOutcomeUnknown             502: will be cleaned up     --                     --
    ProviderRejected (4xx)           400: provider's reason      502 (retried)          400
    ProviderNotFound (404)           400: check project/base_url 502 (retried)          400
    anything else from a provider    502                         502 (retried)          400

A revoke NEVER answers with bad request, unsupported path/operation, invalid request or unrecoverable:
Vault would mark the lease irrevocable at once. Every message names the connection and the provider;
provider messages are already scrubbed of secrets by the provider layer.
"""

from __future__ import annotations

from vaultplugin.framework.errors import BadRequest, UpstreamError, VaultError

from llmsecrets.providers.errors import (
    CreateOutcomeUnknown,
    ProviderAuthError,
    ProviderBusy,
    ProviderError,
    ProviderNotFound,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
)


def _where(connection: str, exc: ProviderError) -> str:
    return f"connection {connection!r} ({exc.provider})"


def for_request(exc: ProviderError, *, connection: str, action: str) -> VaultError:
    """The error a caller sees when `action` (e.g. "creating a key") failed at the provider."""
    where = _where(connection, exc)
    if isinstance(exc, CreateOutcomeUnknown):
        return UpstreamError(
            f"{action} on {where} failed: no usable answer came back and the key may have been created "
            f"({exc}); no key was issued, and the engine will find and delete it if it exists. Try again."
        )
    if isinstance(exc, ProviderAuthError):
        return UpstreamError(
            f"{action} on {where} failed: the provider refused the admin key ({exc}); "
            f"write a working admin_key to config/{connection}"
        )
    if isinstance(exc, ProviderRateLimited):
        after = f"; retry after {exc.retry_after:.0f}s" if exc.retry_after is not None else ""
        return UpstreamError(f"{action} on {where} failed: rate limited by the provider{after} ({exc})")
    if isinstance(exc, ProviderBusy):
        return UpstreamError(
            f"{action} on {where} failed: the connection is saturated (its provider answers slowly, or it "
            f"has as many calls in flight as it may); nothing was sent, try again later ({exc})"
        )
    if isinstance(exc, ProviderUnavailable):
        return UpstreamError(f"{action} on {where} failed: the provider is unavailable ({exc})")
    if isinstance(exc, ProviderRejected):
        return BadRequest(f"{action} on {where} failed: the provider refused the request: {exc}")
    if isinstance(exc, ProviderNotFound):
        return BadRequest(
            f"{action} on {where} failed: the provider answered not found ({exc}); "
            "check the role's project_id and the connection's base_url"
        )
    return UpstreamError(f"{action} on {where} failed: {exc}")


def for_revoke(exc: ProviderError, *, connection: str) -> VaultError:
    """Always retryable (502): Vault backs off and revokes again."""
    where = _where(connection, exc)
    if isinstance(exc, ProviderAuthError):
        return UpstreamError(
            f"revoking the key on {where} failed: the provider refused the admin key ({exc}); "
            f"Vault will retry: write a working admin_key to config/{connection}"
        )
    if isinstance(exc, ProviderRateLimited):
        return UpstreamError(f"revoking the key on {where} failed: rate limited ({exc}); Vault will retry")
    return UpstreamError(f"revoking the key on {where} failed: {exc}; Vault will retry")


def for_verify(exc: ProviderError, *, connection: str) -> BadRequest:
    """A failed admin-key check on config write: 400 with the provider's reason; nothing is stored."""
    where = _where(connection, exc)
    if isinstance(exc, ProviderAuthError):
        reason = "the provider refused the admin key"
    elif isinstance(exc, ProviderRateLimited | ProviderUnavailable):
        reason = "the provider could not be reached or is failing"
    else:
        reason = "the provider refused the check"
    return BadRequest(
        f"verifying {where} failed: {reason}: {exc}. Nothing was stored; fix admin_key/base_url, "
        "or write with verify=false to skip the check"
    )
