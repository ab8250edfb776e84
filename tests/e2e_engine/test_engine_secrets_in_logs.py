"""No key in any log: a full workout of the engine (every provider, success and failure paths), then a scan.

What is scanned, and why it proves something:
- The server log, which carries the plugin's stderr (hclog JSON re-logged by Vault, at DEBUG here: the plugin
  runs with VAULT_PLUGIN_LOG_LEVEL=debug). The engine must never log a key: no issued key, no admin key, not
  even a rejected admin key. The admin keys are deliberately NOT shaped like `sk-...`: the plugin's log filter
  masks such strings as a backstop, and this scan must catch a leak by the code itself.
- Vault's audit log in its default (hashed) mode. Vault HMACs every string in request and response *data*,
  but not error messages, warnings or anything the plugin might put elsewhere in a response. So the keys
  being absent proves the engine returns them only as data fields (and never echoes them in an error), and
  the HMAC of an issued key being present proves the creds responses were audited at all.
- A second audit device with `log_raw=true` is the positive control: Vault writes the creds responses (and
  the config writes) there in clear, so the scan does find keys where they really are. It is not asserted
  clean: a raw audit log contains the response by design.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from signal import SIGHUP

import pytest
from devkit.bao import BaoServer
from devkit.waiting import wait_for
from engine_support import (
    PROVIDER_NAMES,
    BuiltEngine,
    EngineMount,
    Unmounter,
    VaultApi,
    engine_mount,
    start_server,
    stop_server,
)
from llm_emulators.core import Fault

pytestmark = pytest.mark.timeout(120)

AUDIT_STANZAS = """
audit "file" "hashed" {{
  options {{
    file_path = "{hashed}"
  }}
}}
audit "file" "raw" {{
  options {{
    file_path = "{raw}"
    log_raw = "true"
  }}
}}
"""


@dataclass
class AuditedServer:
    server: BaoServer
    api: VaultApi
    unmounter: Unmounter
    hashed_log: Path
    raw_log: Path


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory, engine_plugin: BuiltEngine) -> Iterator[AuditedServer]:
    """A server of this module's own (so its logs hold only this workout), with two file audit devices.

    OpenBao 2.7 refuses to enable audit devices through the API; they are declared in the config file and
    picked up on SIGHUP (sent to the server we started, by its PID).
    """
    workdir = tmp_path_factory.mktemp("audited-bao")
    # DEBUG: the scan covers everything the plugin can log.
    server = start_server(workdir, engine_plugin, env=["VAULT_PLUGIN_LOG_LEVEL=debug"])
    api = VaultApi(server)
    unmounter = Unmounter(api)
    try:
        hashed, raw = workdir / "audit-hashed.log", workdir / "audit-raw.log"
        with (workdir / "server.hcl").open("a") as config:
            config.write(AUDIT_STANZAS.format(hashed=hashed, raw=raw))
        assert server.proc is not None
        server.proc.send_signal(SIGHUP)
        wait_for(
            lambda: {"hashed/", "raw/"} <= set(api.ok("GET", "sys/audit")["data"]),
            timeout=20,
            what="the audit devices from the config file",
        )
        yield AuditedServer(server, api, unmounter, hashed, raw)
    finally:
        unmounter.join()
        api.close()
        survivors = stop_server(server, engine_plugin)
    assert not survivors, f"plugin processes {survivors} outlived the stopped server"


@dataclass
class Secrets:
    """Everything that must never be logged, by what it is."""

    values: dict[str, str] = field(default_factory=dict)

    def add(self, what: str, value: str) -> None:
        self.values[what] = value
        # A key logged in part (e.g. without its provider prefix) is a leak too: also look for its tail.
        if len(value) >= 24:
            self.values[f"{what} (last 20 chars)"] = value[-20:]

    def found_in(self, text: str) -> list[str]:
        return [what for what, value in self.values.items() if value in text]


def work_out(m: EngineMount, secrets: Secrets) -> tuple[str, list[str]]:
    """Drive every path that handles a key, success and failure; return (the secret of a key still live,
    the ids of the keys issued)."""
    name = m.spec.name
    secrets.add(f"{name} admin key", m.admin_key)
    m.configure()
    issued: list[str] = []

    # Config: rejected admin keys (refused by the provider; oversized), reads and lists.
    wrong = f"adm-wrong-{name}-{time.time_ns()}"
    secrets.add(f"{name} rejected admin key", wrong)
    assert m.write("config/bad", provider=name, admin_key=wrong, base_url=m.emu_server.base_url)[0] == 400
    long_key = "adm-long-" + "q" * 1100
    secrets.add(f"{name} oversized admin key", long_key)
    assert m.write("config/bad", provider=name, admin_key=long_key, base_url=m.emu_server.base_url)[0] == 400
    assert m.read("config/main")[0] == 200
    assert m.call("LIST", "config")[0] == 200

    # Issue, use, renew, revoke.
    m.add_role("app", ttl="1m", max_ttl="10m")
    lease = m.creds("app")
    issued.append(lease.api_key)
    assert m.infer(lease.api_key) == 200
    m.api.ok("PUT", "sys/leases/renew", json={"lease_id": lease.lease_id, "increment": 120})
    m.api.ok("PUT", "sys/leases/revoke", json={"lease_id": lease.lease_id})

    # A revoke that fails during an outage, then succeeds.
    lease = m.creds("app")
    issued.append(lease.api_key)
    m.emulator.set_faults(Fault.server_error(times=None, op="delete"))
    assert m.api.call("PUT", "sys/leases/revoke", json={"lease_id": lease.lease_id})[0] >= 400
    m.emulator.set_faults()
    m.api.ok("PUT", "sys/leases/revoke", json={"lease_id": lease.lease_id})

    # A create whose answer is lost (the stray key exists; its secret never reached the engine).
    m.emulator.set_faults(Fault.drop_after_create())
    assert m.read("creds/app")[0] == 502
    issued.extend(k.secret for k in m.emulator.live_keys())

    # The provider refuses the admin key; rate limiting.
    m.emulator.set_faults(Fault.revoke_admin_key(op="create"))
    assert m.read("creds/app")[0] == 502
    m.emulator.set_faults(Fault.rate_limit(times=None, retry_after=0, op="create"))
    assert m.read("creds/app")[0] == 502
    m.emulator.set_faults()

    # The sweep, with an orphan of this mount to delete. Keys stay live for the audit-hash check.
    live = m.creds("app")
    issued.append(live.api_key)
    prefix = live.data["key_name"][: len("vault-12345678-")]
    project = "proj_default" if name == "openai" else None
    orphan = m.emulator.seed_key(f"{prefix}orphan-x", created_at=time.time() - 7200, project_id=project)
    issued.append(orphan.secret)
    assert m.tidy()["orphans_deleted_count"] == 1

    for i, key in enumerate(issued):
        secrets.add(f"{name} issued key #{i}", key)
    return live.api_key, [lease.key_id, live.key_id]


def test_no_key_in_the_server_log_or_the_hashed_audit_log(audited: AuditedServer) -> None:
    secrets = Secrets()
    live_keys: list[str] = []
    key_ids: list[str] = []
    with ExitStack() as mounts:  # at exit: each mount's leases are revoked (more revokes in the logs)
        for provider in PROVIDER_NAMES:
            m = mounts.enter_context(
                engine_mount(audited.server, audited.api, audited.unmounter, provider, "logscan")
            )
            live_key, ids = work_out(m, secrets)
            live_keys.append(live_key)
            key_ids += ids
        # Vault's HMAC (as the hashed device writes it) of one issued key per provider.
        hashes = [
            audited.api.ok("PUT", "sys/audit-hash/hashed", json={"input": key})["data"]["hash"]
            for key in live_keys
        ]
    audited.unmounter.join()  # the unmounts too: rollback, revoke, cleanup

    server_log = audited.server.log_path.read_text(errors="replace")
    hashed = audited.hashed_log.read_text(errors="replace")
    raw = audited.raw_log.read_text(errors="replace")

    # The logs hold what they should, so the scans below are not vacuous.
    assert "issued key: connection=main" in server_log  # the plugin's stderr, re-logged by Vault
    assert "[DEBUG] secrets.llm" in server_log and "@module=llmsecrets" in server_log
    for key_id in key_ids:
        assert key_id in server_log  # ids are fine to log, and they are logged
    for digest in hashes:
        assert digest.startswith("hmac-sha256:") and digest in hashed  # the creds responses were audited
    # Positive control: the scan finds keys where they really are (raw request and response data).
    for key in live_keys:
        assert key in raw
    in_raw = set(secrets.found_in(raw))
    for provider in PROVIDER_NAMES:
        assert {f"{provider} admin key", f"{provider} rejected admin key"} <= in_raw

    assert secrets.found_in(server_log) == [], "secrets in the server/plugin log"
    assert secrets.found_in(hashed) == [], "secrets in the hashed audit log"
