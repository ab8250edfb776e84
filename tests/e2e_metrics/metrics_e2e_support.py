"""Scrapes of a mount's metrics paths as Prometheus makes them (plain GET, the token as `Authorization:
Bearer`), parsed by prometheus_client's own text parser, and a scrape token made from the shipped policy.

A uniquely named module (not conftest), so test directories without __init__.py cannot shadow it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx
from engine_support import EngineMount
from prometheus_client.parser import text_string_to_metric_families

POLICY_FILE = Path(__file__).resolve().parents[2] / "vault-config" / "prometheus" / "llm-metrics.hcl"
# What the engine answers a scrape with: Prometheus' classic text format.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = frozenset[tuple[str, str]]


@dataclass(frozen=True)
class Scrape:
    status: int
    content_type: str
    text: str

    def samples(self) -> dict[tuple[str, Labels], float]:
        assert self.status == 200, (self.status, self.text)
        assert self.content_type == CONTENT_TYPE
        out: dict[tuple[str, Labels], float] = {}
        for family in text_string_to_metric_families(self.text):
            for s in family.samples:
                out[(s.name, frozenset(s.labels.items()))] = s.value
        return out


def scrape(m: EngineMount, token: str | None, sub: str = "metrics") -> Scrape:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    resp = httpx.get(f"{m.server.addr}/v1/{m.path}/{sub}", headers=headers, timeout=30)
    return Scrape(resp.status_code, resp.headers.get("content-type", ""), resp.text)


def labels(**pairs: str) -> Labels:
    return frozenset(pairs.items())


def series(samples: dict[tuple[str, Labels], float], name: str) -> dict[Labels, float]:
    return {lbl: v for (n, lbl), v in samples.items() if n == name}


def metrics_token(m: EngineMount) -> str:
    """A token with only vault-config/prometheus/llm-metrics.hcl, pointed at this mount."""
    policy = POLICY_FILE.read_text().replace('"llm/metrics"', f'"{m.path}/metrics"')
    assert f'"{m.path}/metrics"' in policy
    name = f"metrics-{m.path}"
    m.api.ok("PUT", f"sys/policies/acl/{name}", json={"policy": policy})
    body = m.api.ok("POST", "auth/token/create", json={"policies": [name], "ttl": "10m"})
    return str(body["auth"]["client_token"])


def plain_token(m: EngineMount) -> str:
    """A token with the default policy only."""
    body = m.api.ok("POST", "auth/token/create", json={"policies": ["default"], "ttl": "10m"})
    return str(body["auth"]["client_token"])
