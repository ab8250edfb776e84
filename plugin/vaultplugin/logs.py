"""Logging in hclog's JSON shape on stderr, which Vault re-logs under the mount's name.

Stdout belongs to the go-plugin handshake; every log line goes to stderr. A filter masks key-shaped
strings as a backstop: code must still never log a secret.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
import sys
from typing import Any, TextIO

_LEVELS = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warn",
    logging.ERROR: "error",
    logging.CRITICAL: "error",
}

# Provider keys (sk-..., sk-or-v1-..., sk-ant-...), bearer tokens and Vault tokens.
_SECRET_PATTERN = re.compile(
    r"(sk-[A-Za-z0-9_\-]{8,}|(?i:bearer)\s+[A-Za-z0-9_\-\.=]{8,}|\b[hs]vs\.[A-Za-z0-9_\-]{8,})"
)

_STANDARD_ATTRS = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def redact(text: str) -> str:
    """Mask anything shaped like an API key or token."""
    return _SECRET_PATTERN.sub("[REDACTED]", text)


class HclogJsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        entry: dict[str, Any] = {
            "@level": _LEVELS.get(record.levelno, "info"),
            "@message": redact(record.getMessage()),
            "@module": record.name,
            "@timestamp": ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = redact(str(value)) if not isinstance(value, int | float | bool) else value
        if record.exc_info:
            entry["error"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, separators=(",", ":"))


def configure(stream: TextIO | None = None) -> None:
    """Send all logging to stderr as hclog JSON. Level from VAULT_PLUGIN_LOG_LEVEL (default info)."""
    level = os.environ.get("VAULT_PLUGIN_LOG_LEVEL", "info").upper()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(HclogJsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, "WARNING" if level == "WARN" else level, logging.INFO))
    # The hclog line carries none of the caller's file and line, thread or process: not looking them up per
    # record (the logging HOWTO's "optimization" settings) spares ~1 % of the plugin's CPU per creds read.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    # Libraries' request logs (httpx logs URLs at info) add noise, not facts.
    for noisy in ("httpx", "httpcore", "hpack"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
