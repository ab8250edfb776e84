from __future__ import annotations

import io
import json
import logging

from vaultplugin import logs


def test_log_lines_are_hclog_json_with_key_shaped_strings_masked() -> None:
    stream = io.StringIO()
    logs.configure(stream)
    try:
        logging.getLogger("llm.test").warning(
            "provider said %s",
            "bad key sk-proj-abcdefghijklmnop1234 and Bearer abcdefghijkl",
            extra={"role": "r1"},
        )
    finally:
        logging.getLogger().handlers.clear()
    entry = json.loads(stream.getvalue().strip())
    assert entry["@level"] == "warn"
    assert entry["@module"] == "llm.test"
    assert entry["role"] == "r1"
    assert entry["@timestamp"].endswith("Z")
    assert "sk-proj" not in entry["@message"] and "abcdefghijkl" not in entry["@message"]
    assert entry["@message"].count("[REDACTED]") == 2
