"""vault-config/dev.hcl on a real server: the engine is installed by the config alone, issues and revokes a
key, and the audit log records the request without the key in it."""

from __future__ import annotations

import json

import pytest
from config_support import Api, BuiltPlugin, SingleNode, catalog_entry, enable_engine, openrouter
from devkit.render_config import ENGINE_NAME
from llmsecrets.version import VERSION

pytestmark = pytest.mark.timeout(180)


def test_dev_config_serves_the_engine_with_no_register_call_and_audits_it(
    dev_server: SingleNode, built_plugin: BuiltPlugin
) -> None:
    api = Api(dev_server.node.addr, dev_server.root_token)
    entry = catalog_entry(api, VERSION)
    assert (entry["command"], entry["sha256"]) == (ENGINE_NAME, built_plugin.sha256)

    enable_engine(api, "llm-dev")
    with openrouter() as provider:
        provider.connect(api, "llm-dev")
        api.ok("POST", "llm-dev/roles/chatbot", json={"connection": "main", "ttl": "5m", "max_ttl": "1h"})
        body = api.ok("GET", "llm-dev/creds/chatbot")
        api_key, key_id = body["data"]["api_key"], body["data"]["key_id"]
        assert provider.chat(api_key) == 200
        api.ok("PUT", f"sys/leases/revoke/{body['lease_id']}")
        assert not provider.is_live(key_id)
        assert provider.chat(api_key) != 200

    audit = (dev_server.node.workdir / "data" / "audit.log").read_text()
    assert api_key not in audit
    entries = [json.loads(line) for line in audit.splitlines()]
    creds = [
        e for e in entries if e["type"] == "response" and e["request"]["path"] == "llm-dev/creds/chatbot"
    ]
    assert len(creds) == 1
    assert creds[0]["response"]["data"]["api_key"].startswith("hmac-sha256:")
    api.close()
