"""vault-config/prometheus/: the alert rules, the scrape config, the scrape token's policy and the Grafana
dashboard fit the metrics the engine actually serves.

What an operator relies on: the rules load (valid YAML, valid PromQL: parsed by promql-parser, a port of
Prometheus' own parser), each names only series the engine exports (a renamed metric would leave an alert
that can never fire), and the scrape config points at the path the engine serves. (promtool is not available
here; the e2e metrics suite scrapes a real OpenBao with the shipped policy.)
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from engine_env import Env
from llmsecrets import path_metrics
from prometheus_client.parser import text_string_to_metric_families
from vaultplugin.framework import Operation, Request

CONFIG = Path(__file__).resolve().parents[3] / "vault-config" / "prometheus"
# Series Prometheus makes itself for every target.
PROMETHEUS_OWN = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
SEVERITIES = {"info", "warning", "critical"}
# The sample names each family type yields.
SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("", "_count", "_sum"),
    "info": ("_info",),
}


def rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load((CONFIG / "alerts.yml").read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def exported_series() -> set[str]:
    """Every series name the engine's scrape can hold, read from a scrape of a busy mount."""
    env = Env()
    role = env.setup_provider("openrouter", name="chat")
    env.revoke(env.creds(role))
    env.backend.sweeper.run(env.storage)
    resp = env.backend.handle_request(Request(operation=Operation.READ, path="metrics", storage=env.storage))
    assert resp is not None
    text = base64.b64decode(resp.data["http_raw_body"]).decode()
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(family.name + suffix for suffix in SUFFIXES[family.type])
    return names


def selectors(expr: str) -> list[str]:
    found: list[str] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            found.append(node.name)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def test_the_rules_are_well_formed() -> None:
    loaded = rules()
    assert len(loaded) >= 10
    names = [rule["alert"] for rule in loaded]
    assert len(set(names)) == len(names), "alert names must be unique"
    for rule in loaded:
        assert re.fullmatch(r"LLMSecrets[A-Z]\w+", rule["alert"]), rule["alert"]
        assert re.fullmatch(r"\d+[smhd]", rule["for"]), rule
        assert rule["labels"]["severity"] in SEVERITIES, rule
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule


@pytest.mark.parametrize("rule", rules(), ids=lambda rule: rule["alert"])
def test_each_rule_is_promql_on_series_the_engine_exports(rule: dict[str, Any]) -> None:
    used = selectors(rule["expr"])  # raises on a syntax error or an unknown function
    assert used, rule["expr"]
    unknown = sorted(set(used) - exported_series() - PROMETHEUS_OWN)
    assert unknown == [], f"{rule['alert']} names series the engine does not export: {unknown}"


def test_a_wrong_name_or_bad_promql_is_caught() -> None:
    """The two checks above can fail: a misspelt series and a broken expression are both noticed."""
    assert "llm_secrets_keys_issued_total" in exported_series()
    assert "llm_secrets_keys_issued" not in exported_series()  # the counter's sample has _total
    with pytest.raises(ValueError):
        selectors("sum(rate(llm_secrets_keys_issued_total[5m])")


def dashboard_queries() -> list[str]:
    dashboard = json.loads((CONFIG / "grafana-dashboard.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_the_dashboard_queries_series_the_engine_exports() -> None:
    queries = dashboard_queries()
    assert len(queries) >= 10
    exported = exported_series()
    for query in queries:
        # Grafana's variables, as it substitutes them before sending the query.
        promql = query.replace("$__rate_interval", "2m").replace("$job", ".*").replace("$instance", ".*")
        used = selectors(promql)
        assert used, query
        unknown = sorted(set(used) - exported - PROMETHEUS_OWN)
        assert unknown == [], f"the dashboard queries series the engine does not export: {unknown}"


def test_the_scrape_config_points_at_the_engines_path() -> None:
    config = yaml.safe_load((CONFIG / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    jobs = config["scrape_configs"]
    assert jobs[0]["metrics_path"] == "/v1/llm/metrics"
    paths = [target["labels"]["__metrics_path__"] for job in jobs[1:] for target in job["static_configs"]]
    assert paths and all(re.fullmatch(r"/v1/[\w-]+/metrics", p) for p in paths), paths
    for job in jobs:
        assert job["authorization"]["type"] == "Bearer"  # what Vault reads as a token
    assert path_metrics.PUBLIC_PATH == "metrics/public"  # the commented example's path


def test_the_policy_allows_reading_the_metrics_and_nothing_else() -> None:
    text = (CONFIG / "llm-metrics.hcl").read_text()
    blocks = re.findall(r'path\s+"([^"]+)"\s*\{\s*capabilities\s*=\s*\[([^\]]*)\]\s*\}', text)
    assert blocks == [("llm/metrics", '"read"')]
