"""scripts/bench.py --quick runs and writes every figure (no timing assertions: ever)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "scripts" / "bench.py"

PIN_CHECK_KEYS = {"zgit_ms", "legacy_ms", "git_cli_ms"}
PIN_DIR_KEYS = {"dir_scaling", "dir_1000_vs_git", "bigfile_vs_git", "autocrlf_vs_git",
                "dir_scaling_lstat_floor", "dir_1000_vs_lstat"}
LOAD_KEYS = {"checkout_ms", "legacy_ms", "plain_import_ms", "memory_ms", "repeat_us",
             "plain_pyc_ms", "memory_cold_ms", "memory_vs_pyc", "memory_vs_pyc_cold",
             "index_write_ms", "index_parse_ms", "checkout_overhead_ceiling", "file_ops_ms",
             "checkout_overhead_file_ops_ceiling", "lock_us", "kept_flock_us", "filelock_us",
             "checkout_overhead_in_a_row", "checkout_in_a_row_ms", "memory_in_a_row_ms"}


@pytest.mark.slow
def test_bench_quick_writes_every_key(tmp_path):
    pytest.importorskip("git", reason="the benchmark's legacy baseline needs GitPython (extra 'bench')")
    out = tmp_path / "bench.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--json", str(out), "--tmpdir", str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Targets" in result.stdout

    figures = json.loads(out.read_text())
    # repository sizes (numeric keys) beside the module-directory figures
    assert {k for k in figures["pin_check"] if k.isdigit()} == {"1000"}
    for key in PIN_DIR_KEYS:
        assert figures["pin_check"][key] > 0
    assert PIN_CHECK_KEYS <= set(figures["pin_check"]["1000"])
    for key in PIN_CHECK_KEYS:
        assert figures["pin_check"]["1000"][key] > 0
    assert LOAD_KEYS <= set(figures["load"])
    for key in LOAD_KEYS:
        assert figures["load"][key] > 0
    # a ratio, or None when the checkout's cost beyond memory is lost in the noise
    assert "checkout_overhead_small" in figures["load"]
    assert figures["hook"]["unrelated_import_ratio"] > 0
    audit = figures["audit"]
    if audit != "not available":
        assert {"files", "steps", "seconds", "ms_per_distinct_pin", "distinct_pins"} <= set(audit)
        assert audit["distinct_pins"] == 1000 and audit["ms_per_distinct_pin"] > 0
    memory = figures["memory"]
    if "note" not in memory:  # measured where /proc exists
        assert memory["kb_per_pin"] > 0 and memory["loads"] > 0
        assert memory["forget_released"] is True
    runs = figures["runs"]
    if isinstance(runs, dict):
        for key in ("step_overhead_ms", "cache_hit_ms", "artifact_read_ratio", "list_10k_ms"):
            assert runs[key] > 0
    dask = figures["dask"]
    assert dask["bundle_files"] == 10
    assert dask["bundle_build_ms"] > 0 and dask["bundle_verify_ms"] > 0
    if "step_roundtrip_ratio" in dask:  # measured with the dask extra installed
        assert dask["step_roundtrip_ratio"] > 0 and dask["trivial_task_ms"] > 0
    assert figures["targets"]
    for target in figures["targets"].values():
        assert target["met"] in (True, False, None)


@pytest.mark.slow
def test_bench_imported_quick_writes_every_key(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_imported.py"), "--quick"],
        cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(result.stdout)
    for key in ("noted_import_ratio", "unwatched_import_ratio", "skipped_import_ratio", "install_us"):
        assert figures[key] > 0
