"""The committed *_pb2 modules must be exactly what scripts/gen-proto makes from proto/*.proto."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_generated_code_matches_the_proto_files(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable}
    subprocess.run([str(ROOT / "scripts" / "gen-proto"), str(tmp_path)], check=True, env=env)
    committed = ROOT / "plugin" / "vaultplugin" / "proto"
    generated = sorted(p.name for p in tmp_path.iterdir() if p.is_file())
    assert generated == sorted(p.name for p in committed.iterdir() if p.is_file())
    for name in generated:
        assert (tmp_path / name).read_bytes() == (committed / name).read_bytes(), (
            f"{name} is stale: run scripts/gen-proto"
        )
