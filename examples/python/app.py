"""An app that gets its LLM API key from Vault / OpenBao and keeps it fresh.

It reads `llm/creds/<role>` (a new key under a lease) with hvac, calls the provider with the official OpenAI
SDK, renews the lease at about two thirds of its duration, and fetches a new key (and makes a new client)
shortly before the lease reaches the role's max_ttl. On exit it revokes its lease, so the engine deletes
the key at the provider at once instead of when the lease runs out.

    VAULT_ADDR=https://openbao:8200 VAULT_TOKEN=... python app.py --role chatbot --run-for 600

Settings: VAULT_ADDR or BAO_ADDR, VAULT_TOKEN or BAO_TOKEN (the app's token: see
vault-config/policies/llm-app.hcl), OPENAI_BASE_URL (default: the SDK's, https://api.openai.com/v1; the
demo's emulator for a local run). Needs `pip install hvac openai`. It prints one JSON line per event (key
ids and lease ids, never a key or a token).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import hvac
import openai

RENEW_AT = 2 / 3  # renew when this share of the lease's duration has passed, as Vault Agent does
MIN_MARGIN = 1.0  # seconds: never plan to switch keys later than this before the lease's hard end


def log(event: str, **fields: Any) -> None:
    print(json.dumps({"t": round(time.time(), 3), "event": event, **fields}), flush=True)


@dataclass
class Lease:
    """One key and the lease it lives under. Times are time.monotonic() values."""

    lease_id: str
    key_id: str
    api_key: str = field(repr=False)
    ttl: float  # the duration Vault granted when the key was issued: what each renewal asks for again
    granted_at: float  # when Vault last granted time (issue or renewal)
    expires: float  # when the lease ends unless renewed
    hard_end: float | None = None  # when it ends for good (the role's max_ttl), once Vault has told us

    def next_due(self) -> float:
        """When to act next: renew at 2/3 of the current grant; once the hard end is known, renewing
        gains nothing, so switch keys a third of a TTL (at least MIN_MARGIN) before it."""
        if self.hard_end is not None:
            return self.hard_end - max(MIN_MARGIN, self.ttl / 3)
        return self.granted_at + RENEW_AT * (self.expires - self.granted_at)


class KeyKeeper:
    """Holds the app's current key: renews its lease on time and switches to a new key before max_ttl.

    Renew and revoke name the lease in the URL (sys/leases/renew/<lease_id>), which the per-role app
    policy allows for its own leases only.
    """

    def __init__(self, vault: hvac.Client, mount: str, role: str, base_url: str | None) -> None:
        self._vault = vault
        self._creds_path = f"{mount}/creds/{role}"
        self._base_url = base_url
        self.lease = self._issue()
        self.client = self._new_client()

    def _issue(self) -> Lease:
        secret = self._vault.read(self._creds_path)
        now = time.monotonic()
        ttl = float(secret["lease_duration"])
        data = secret["data"]
        lease = Lease(secret["lease_id"], data["key_id"], data["api_key"], ttl, now, now + ttl)
        log("issued", key_id=lease.key_id, lease_id=lease.lease_id, ttl=ttl)
        return lease

    def _new_client(self) -> openai.OpenAI:
        # One client per key: the SDK keeps the key for the client's life.
        return openai.OpenAI(api_key=self.lease.api_key, base_url=self._base_url, max_retries=1)

    def next_due(self) -> float:
        """The next time `refresh` has work to do."""
        return self.lease.next_due()

    def refresh(self) -> None:
        """Renew or switch keys if it is time; call it before each use of the client, and when idle."""
        if time.monotonic() < self.lease.next_due():
            return
        if self.lease.hard_end is not None:
            self.switch()
        else:
            self._renew()

    def _renew(self) -> None:
        lease = self.lease
        try:
            reply = self._vault.adapter.put(
                f"/v1/sys/leases/renew/{lease.lease_id}", json={"increment": int(lease.ttl)}
            )
        except hvac.exceptions.VaultError as exc:  # expired or revoked meanwhile: start over with a new key
            log("renew_failed", key_id=lease.key_id, error=str(exc).splitlines()[0])
            self.switch()
            return
        granted = float(reply["lease_duration"])
        lease.granted_at = time.monotonic()
        lease.expires = lease.granted_at + granted
        if granted < lease.ttl:
            # Vault cut the renewal short: the lease cannot outlive the role's max_ttl.
            lease.hard_end = lease.expires
        log("renewed", key_id=lease.key_id, granted=granted, capped=granted < lease.ttl)

    def switch(self) -> None:
        """Get a new key and client first, then revoke the old lease (its key is deleted at once)."""
        old = self.lease
        self.lease = self._issue()
        self.client = self._new_client()
        log("switched", old_key_id=old.key_id, new_key_id=self.lease.key_id)
        self._revoke(old)

    def _revoke(self, lease: Lease) -> None:
        try:
            self._vault.adapter.put(f"/v1/sys/leases/revoke/{lease.lease_id}")
            log("revoked", key_id=lease.key_id, lease_id=lease.lease_id)
        except hvac.exceptions.VaultError as exc:  # it still ends at its TTL, and the key with it
            log("revoke_failed", key_id=lease.key_id, error=str(exc).splitlines()[0])

    def close(self) -> None:
        self._revoke(self.lease)


def ask(keeper: KeyKeeper, model: str, prompt: str) -> str:
    """One chat completion; a key that stopped working (revoked elsewhere) is replaced once."""
    for attempt in (1, 2):
        keeper.refresh()
        try:
            reply = keeper.client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": prompt}]
            )
        except openai.AuthenticationError:
            log("key_refused", key_id=keeper.lease.key_id, attempt=attempt)
            if attempt == 2:
                raise
            keeper.switch()
            continue
        answer = reply.choices[0].message.content or ""
        log("completion", key_id=keeper.lease.key_id, chars=len(answer))
        return answer
    raise AssertionError("unreachable")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--role", default=os.environ.get("LLM_ROLE", "chatbot"), help="the engine's role")
    parser.add_argument(
        "--mount", default=os.environ.get("LLM_MOUNT", "llm"), help="where the engine is mounted"
    )
    parser.add_argument("--model", default="gpt-4o-mini")
    parser.add_argument("--prompt", default="Say hello in five words.")
    parser.add_argument(
        "--run-for", type=float, default=0, help="keep asking for this many seconds (0: once)"
    )
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between questions")
    return parser.parse_args(argv)


def stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)  # unwinds through `finally`, which revokes the lease


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    addr = os.environ.get("VAULT_ADDR") or os.environ.get("BAO_ADDR")
    token = os.environ.get("VAULT_TOKEN") or os.environ.get("BAO_TOKEN")
    if not addr or not token:
        print("app.py: set VAULT_ADDR (or BAO_ADDR) and VAULT_TOKEN (or BAO_TOKEN)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    vault = hvac.Client(url=addr, token=token)
    keeper = KeyKeeper(vault, args.mount, args.role, os.environ.get("OPENAI_BASE_URL") or None)
    try:
        end = time.monotonic() + args.run_for
        while True:
            ask(keeper, args.model, args.prompt)
            next_question = time.monotonic() + args.interval
            if next_question > end:
                break
            # Idle until the next question, waking up for renewals and key switches on the way.
            while (now := time.monotonic()) < next_question:
                time.sleep(max(0.0, min(next_question, keeper.next_due()) - now))
                keeper.refresh()
    finally:
        keeper.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
