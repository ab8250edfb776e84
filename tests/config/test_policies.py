"""vault-config/policies/ loaded into a real server (from dev.hcl) and enforced, persona by persona.

Tokens are made the ordinary way (auth/token/create), so each also carries OpenBao's built-in "default"
policy, as every real login does.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from config_support import POLICY_DIR, Api, Provider, SingleNode, enable_engine, openrouter
from devkit.bao import bao_binary
from devkit.cluster import server_env
from devkit.render_config import ENGINE_NAME
from devkit.waiting import wait_for
from llmsecrets.version import VERSION

pytestmark = pytest.mark.timeout(180)

ROLE_FIELDS = {"connection": "main", "ttl": "10m", "max_ttl": "1h"}


@dataclass
class Personas:
    root: Api
    app: Api
    security: Api
    operator: Api
    app_token: str
    provider: Provider
    addr: str

    def issue(self, role: str, api: Api | None = None) -> tuple[str, str]:
        """(lease_id, key_id) of a new key for `role`, read with `api` (default root)."""
        body = (api or self.root).ok("GET", f"llm/creds/{role}")
        return body["lease_id"], body["data"]["key_id"]

    def lease_exists(self, lease_id: str) -> bool:
        return self.root.status("PUT", "sys/leases/lookup", json={"lease_id": lease_id}) == 200


def set_up_mount(root: Api, provider: Provider) -> None:
    enable_engine(root)
    provider.connect(root)
    for role in ("chatbot", "other"):
        root.ok("POST", f"llm/roles/{role}", json=ROLE_FIELDS)


@pytest.fixture(scope="module")
def personas(dev_server: SingleNode) -> Iterator[Personas]:
    addr = dev_server.node.addr
    root = Api(addr, dev_server.root_token)
    for name in ("llm-app", "llm-security", "llm-operator"):
        root.ok("PUT", f"sys/policies/acl/{name}", json={"policy": (POLICY_DIR / f"{name}.hcl").read_text()})
    tokens = {
        name: root.ok("POST", "auth/token/create", json={"policies": [name], "ttl": "1h"})["auth"][
            "client_token"
        ]
        for name in ("llm-app", "llm-security", "llm-operator")
    }
    with openrouter() as provider:
        set_up_mount(root, provider)
        apis = {name: Api(addr, token) for name, token in tokens.items()}
        yield Personas(
            root,
            apis["llm-app"],
            apis["llm-security"],
            apis["llm-operator"],
            tokens["llm-app"],
            provider,
            addr,
        )
        root.call("PUT", "sys/leases/revoke-prefix/llm")  # while the emulator still runs
        for api in (root, *apis.values()):
            api.close()


def test_app_reads_its_own_roles_creds_and_nothing_else(personas: Personas) -> None:
    app = personas.app
    _, key_id = personas.issue("chatbot", app)
    assert personas.provider.is_live(key_id)
    assert app.status("GET", "llm/creds/other") == 403
    assert app.status("GET", "llm/config/main") == 403
    assert app.status("LIST", "llm/config") == 403
    assert app.status("GET", "llm/roles/chatbot") == 403
    assert app.status("POST", "llm/roles/chatbot", json={"ttl": "1h"}) == 403
    assert app.status("LIST", "llm/roles") == 403
    assert app.status("POST", "llm/tidy") == 403
    assert app.status("LIST", "sys/leases/lookup/llm/creds/chatbot/") == 403


def test_app_renews_and_revokes_its_own_leases_only(personas: Personas) -> None:
    app = personas.app
    own, own_key = personas.issue("chatbot", app)
    others, others_key = personas.issue("other")

    renewed = app.ok("PUT", f"sys/leases/renew/{own}", json={"increment": 600})
    assert renewed["lease_id"] == own
    assert app.status("PUT", f"sys/leases/renew/{others}") == 403
    assert app.status("PUT", f"sys/leases/revoke/{others}") == 403
    # The body's lease_id would win over the URL's: the policy denies the parameter.
    assert app.status("PUT", f"sys/leases/revoke/{own}", json={"lease_id": others}) == 403
    assert app.status("PUT", f"sys/leases/renew/{own}", json={"lease_id": others}) == 403
    assert app.status("PUT", "sys/leases/revoke", json={"lease_id": others}) == 403
    assert personas.lease_exists(others) and personas.provider.is_live(others_key)

    # `bao lease revoke` sends the lease id in the URL, so the policy lets an app use it as is. It queues
    # the revocation unless -sync is given.
    env = server_env({"BAO_ADDR": personas.addr, "BAO_TOKEN": personas.app_token})
    cli = subprocess.run(
        [bao_binary(), "lease", "revoke", own], env=env, capture_output=True, text=True, timeout=60
    )
    assert cli.returncode == 0, cli.stderr
    wait_for(lambda: not personas.lease_exists(own), 15, "the revoked lease to go")
    assert not personas.provider.is_live(own_key)


def test_security_manages_roles_tidy_and_leases_but_not_connections(personas: Personas) -> None:
    security = personas.security
    assert security.status("GET", "llm/config/main") == 403
    assert security.status("LIST", "llm/config") == 403
    assert security.status("POST", "llm/config/main", json={"provider": "openrouter"}) == 403
    assert security.status("GET", "llm/creds/chatbot") == 403

    security.ok("POST", "llm/roles/reviewed", json={**ROLE_FIELDS, "ttl": "5m", "spend_limit": 2})
    assert security.ok("GET", "llm/roles/reviewed")["data"]["ttl"] == 300
    assert "reviewed" in security.ok("LIST", "llm/roles")["data"]["keys"]
    security.ok("DELETE", "llm/roles/reviewed")
    security.ok("POST", "llm/tidy")
    security.ok("POST", "llm/tidy/config", json=security.ok("GET", "llm/tidy/config")["data"])

    lease_id, key_id = personas.issue("chatbot")
    listed = security.ok("LIST", "sys/leases/lookup/llm/creds/chatbot/")["data"]["keys"]
    assert lease_id.rsplit("/", 1)[-1] in listed
    assert security.ok("PUT", "sys/leases/lookup", json={"lease_id": lease_id})["data"]["id"] == lease_id
    security.ok("PUT", f"sys/leases/revoke/{lease_id}")
    assert not personas.provider.is_live(key_id)

    keys = [personas.issue("other")[1] for _ in range(2)]
    security.ok("PUT", "sys/leases/revoke-prefix/llm/creds/other")
    assert not any(personas.provider.is_live(k) for k in keys)
    # revoke-force drops leases without asking the plugin, which would leave keys alive at the provider.
    assert security.status("PUT", "sys/leases/revoke-force/llm/creds/other") == 403

    # Incident response: every key of a role killed at the provider now; a connection's keys are not theirs.
    killed = personas.issue("chatbot")[1]
    assert security.ok("POST", "llm/roles/chatbot/revoke-keys")["data"]["deleted"] >= 1
    assert not personas.provider.is_live(killed)
    assert security.status("POST", "llm/config/main/revoke-keys") == 403


def test_operator_runs_connections_catalog_and_mount_but_cannot_read_keys(personas: Personas) -> None:
    operator = personas.operator
    assert operator.status("GET", "llm/creds/chatbot") == 403
    assert operator.status("POST", "llm/roles/chatbot", json={"ttl": "1h"}) == 403
    lease_id, _ = personas.issue("chatbot")
    assert operator.status("PUT", f"sys/leases/revoke/{lease_id}") == 403
    assert operator.status("LIST", "sys/leases/lookup/llm/creds/chatbot/") == 403

    personas.provider.connect(operator, name="second")
    config = operator.ok("GET", "llm/config/second")["data"]
    assert "admin_key" not in config
    assert sorted(operator.ok("LIST", "llm/config")["data"]["keys"]) == ["main", "second"]
    operator.ok("DELETE", "llm/config/second")

    operator.ok("POST", "sys/mounts/llm/tune", json={"default_lease_ttl": "30m"})
    assert operator.ok("GET", "sys/mounts/llm/tune")["data"]["default_lease_ttl"] == 1800
    entry = operator.ok("GET", f"sys/plugins/catalog/secret/{ENGINE_NAME}", params={"version": VERSION})
    assert entry["data"]["builtin"] is False
    assert ENGINE_NAME in operator.ok("LIST", "sys/plugins/catalog/secret")["data"]["keys"]
    operator.ok("PUT", "sys/plugins/reload/backend", json={"mounts": ["llm"]})
    assert operator.status("POST", "sys/mounts/elsewhere", json={"type": ENGINE_NAME}) == 403

    # Disabling the mount revokes its keys (through the plugin); enabling needs no register call.
    operator.ok("DELETE", "sys/mounts/llm")
    assert not personas.lease_exists(lease_id)
    operator.ok("POST", "sys/mounts/llm", json={"type": ENGINE_NAME})
    personas.provider.connect(personas.root)
    for role in ("chatbot", "other"):
        personas.root.ok("POST", f"llm/roles/{role}", json=ROLE_FIELDS)
