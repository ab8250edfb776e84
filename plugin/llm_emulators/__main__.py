"""``python -m llm_emulators PROVIDER [--port N] [--admin-key K] [--latency S]``.

PROVIDER is one of openai, openrouter, litellm, anthropic, xai, fireworks.

Starts one emulator on 127.0.0.1 and prints ONE line of JSON to stdout:
``{"provider", "url", "base_url", "admin_key_env", "admin_key_source", "admin_key_generated"}``, plus
``"admin_key"`` when (and only when) the key was generated.
The admin key comes from ``--admin-key``, else from the environment variable named by ``--admin-key-env``
(default ``LLM_EMULATOR_ADMIN_KEY``), else it is generated at random; only a generated key is printed.
Serves until SIGTERM or SIGINT, then exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import sys
import threading
from types import FrameType

from . import EMULATORS
from .core import Fault

DEFAULT_ADMIN_KEY_ENV = "LLM_EMULATOR_ADMIN_KEY"
_GENERATED_PREFIX = {
    "openai": "sk-admin-",
    "openrouter": "sk-or-v1-",
    "litellm": "sk-",
    "anthropic": "sk-ant-admin01-",
    "xai": "xai-mgmt-",
    "fireworks": "fw_",
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m llm_emulators", description=__doc__.split("\n\n")[0])
    p.add_argument("provider", choices=sorted(EMULATORS))
    p.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (default: any free port)")
    p.add_argument("--admin-key", help="admin key to accept (visible in ps; prefer --admin-key-env)")
    p.add_argument(
        "--admin-key-env",
        default=DEFAULT_ADMIN_KEY_ENV,
        help=f"environment variable holding the admin key (default {DEFAULT_ADMIN_KEY_ENV})",
    )
    p.add_argument("--latency", type=float, default=0.0, help="seconds of delay on every admin call")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    env_key = os.environ.get(args.admin_key_env) or None
    if args.admin_key:
        admin_key, source = args.admin_key, "flag"
    elif env_key:
        admin_key, source = env_key, "env"
    else:
        admin_key, source = _GENERATED_PREFIX[args.provider] + secrets.token_urlsafe(32), "generated"
    emulator = EMULATORS[args.provider](admin_key)
    if args.latency > 0:
        emulator.faults.add(Fault.latency(args.latency))

    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    server = emulator.serve(port=args.port)
    try:
        line: dict[str, object] = {
            "provider": args.provider,
            "url": server.url,
            "base_url": server.base_url,
            "admin_key_env": args.admin_key_env if source == "env" else None,
            "admin_key_source": source,
            "admin_key_generated": source == "generated",
        }
        if source == "generated":
            line["admin_key"] = admin_key
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
