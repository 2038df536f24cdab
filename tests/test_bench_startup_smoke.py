"""scripts/bench_startup.py runs and writes every figure (no timing assertions: ever)."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_bench_startup_writes_every_figure(tmp_path):
    if not (Path(sysconfig.get_paths()["purelib"]) / "zgit-pinned-names.pth").exists():
        pytest.skip("zgit is not installed into this interpreter's environment")
    out = tmp_path / "startup.json"
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_startup.py"), "--runs", "2",
                             "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(out.read_text())
    for key in ("hook_with_bytecode_us", "hook_with_bytecode_cpu_us", "hook_from_source_us",
                "hook_from_source_cpu_us", "python_c_pass_ms"):
        assert figures[key]["median"] > 0 and figures[key]["p90"] > 0
