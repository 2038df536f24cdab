#!/usr/bin/env python3
"""What zgit's start-up hook costs every interpreter of the environment it is installed in.

    .venv/bin/python scripts/bench_startup.py            # 200 fresh interpreters per figure
    .venv/bin/python scripts/bench_startup.py --runs 50 --json out.json

Installing zgit puts ``zgit-pinned-names.pth`` into site-packages; ``site`` executes its
line at every start, which imports ``_zgit_startup`` (see docs/identity.md).  Each run
starts a fresh interpreter without ``site`` (``-S``), processes the other ``.pth`` files
of the same site-packages as ``site`` would (so an editable install's finder is in
place), and then times ``site.addpackage`` of zgit's file alone -- exactly the work
``site`` does for it.  Two cases: ``_zgit_startup`` with its bytecode cache (pip compiles
it at install time, for regular and editable installs alike) and compiled from source
(``-B`` and no cache: ``pip install --no-compile`` under ``PYTHONDONTWRITEBYTECODE``).
For scale, the median wall time of a whole ``python -c pass`` in the same environment,
interleaved with the first case.  Wall and CPU time are both reported: on a busy machine
the wall time includes waiting for a core.

Figures are medians over fresh processes; the machine may be shared, so read them as an
order of magnitude, never as a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Tuple

PTH_NAME = "zgit-pinned-names.pth"

PROBE = r"""
import os, site, sys, time
sitedir = sys.argv[1]
del sys.path[0]  # '' for -c: site runs before the script's directory joins sys.path
sys.path.append(sitedir)
known = {{os.path.normcase(sitedir)}}
for name in sorted(os.listdir(sitedir)):
    if name.endswith(".pth") and name != {pth!r}:
        site.addpackage(sitedir, name, known)
start, cpu = time.perf_counter_ns(), time.process_time_ns()
site.addpackage(sitedir, {pth!r}, known)
took, took_cpu = time.perf_counter_ns() - start, time.process_time_ns() - cpu
assert "_zgit_startup" in sys.modules, "the hook did not load"
assert "zgit" not in sys.modules, "the hook imported zgit at start-up"
print(took, took_cpu)
""".format(pth=PTH_NAME)


def _site_packages() -> Path:
    path = Path(sysconfig.get_paths()["purelib"])
    if not (path / PTH_NAME).exists():
        sys.exit(f"{path / PTH_NAME} does not exist: install zgit (pip install -e .) into {sys.executable}'s environment")
    return path


def _startup_module() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("_zgit_startup")
    if spec is None or spec.origin is None:
        sys.exit("_zgit_startup is not importable: install zgit into this environment")
    return Path(spec.origin)


def _probe(sitedir: Path, compiled: bool) -> Tuple[float, float]:
    flags = ["-S"] if compiled else ["-S", "-B"]
    out = subprocess.run([sys.executable, *flags, "-c", PROBE, str(sitedir)], capture_output=True,
                         text=True, check=True, cwd=tempfile.gettempdir())
    wall, cpu = out.stdout.split()
    return int(wall) / 1000.0, int(cpu) / 1000.0  # microseconds


def _bare_start() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True, cwd=tempfile.gettempdir())
    return (time.perf_counter() - start) * 1000.0  # milliseconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="fresh interpreters per figure")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)

    sitedir = _site_packages()
    import importlib.util
    import py_compile

    module = _startup_module()
    cache = Path(importlib.util.cache_from_source(str(module)))
    saved = cache.read_bytes() if cache.exists() else None
    if saved is None:  # make the cache once, the way pip does at install time
        py_compile.compile(str(module), cfile=str(cache), doraise=True)
    compiled, source, bare = [], [], []
    try:
        for _ in range(args.runs):
            compiled.append(_probe(sitedir, compiled=True))
            bare.append(_bare_start())
        # from source: no bytecode cache at all
        cache.unlink()
        for _ in range(args.runs):
            source.append(_probe(sitedir, compiled=False))
    finally:
        if saved is not None:
            cache.parent.mkdir(exist_ok=True)
            cache.write_bytes(saved)
        elif cache.exists():
            cache.unlink()

    def summary(values):
        ordered = sorted(values)
        return {"median": statistics.median(ordered), "p90": ordered[int(0.9 * (len(ordered) - 1))]}

    figures = {
        "python": sys.version.split()[0],
        "site_packages": str(sitedir),
        "runs": args.runs,
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "hook_with_bytecode_us": summary([w for w, _ in compiled]),
        "hook_with_bytecode_cpu_us": summary([c for _, c in compiled]),
        "hook_from_source_us": summary([w for w, _ in source]),
        "hook_from_source_cpu_us": summary([c for _, c in source]),
        "python_c_pass_ms": summary(bare),
    }
    print(f"zgit start-up hook, {args.runs} fresh interpreters each ({sys.executable}; "
          f"load average {figures['load_average']}):")
    for key, what in (("hook_with_bytecode", "with its bytecode (as pip installs it)"),
                      ("hook_from_source", "compiled from source (no bytecode cache)")):
        wall, cpu = figures[f"{key}_us"], figures[f"{key}_cpu_us"]
        print(f"  {what}: median {wall['median']:.0f} us wall (p90 {wall['p90']:.0f}), "
              f"{cpu['median']:.0f} us CPU (p90 {cpu['p90']:.0f})")
    print(f"  for scale, a whole 'python -c pass': median {figures['python_c_pass_ms']['median']:.1f} ms wall")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
