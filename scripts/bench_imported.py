#!/usr/bin/env python3
"""What noting imported files costs (zgit/imported.py), as ratios within one run.

    python scripts/bench_imported.py            # prints JSON
    python scripts/bench_imported.py --quick

Short processes, alternated, each loading ``zgit/imported.py`` on its own and calling
``install()`` (so that the rest of zgit, its finder included, is not in the figures) or
not loading it at all:

* ``noted_import``: importing 200 fresh modules with cached bytecode (the fastest import,
  so the most sensitive to a per-import cost) from a git work tree, whose files are
  noted; CPU time per import, with minus without, and the ratio.
* ``unwatched_import``: the same from a directory outside any git work tree, and
  ``skipped_import`` from a ``site-packages`` directory: not noted (one dictionary
  look-up per import).
* ``event``: one audited event (``sys.audit``), which zgit does not hook: should be 0.
* ``install_us``: what ``install()`` itself costs (wrapping the loader's ``path_stats``,
  noting the files of the modules already imported) in a process that has imported
  little else.

Every figure is a median over processes; the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = '''\
import gc, importlib, importlib.util, statistics, sys, time
variant, directory, plain, site, count = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
install_ns = None
if variant == "with":
    spec = importlib.util.spec_from_file_location("zgit_imported_bench", sys.argv[6])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    started = time.perf_counter_ns()
    module.install()
    install_ns = time.perf_counter_ns() - started
sys.path[:0] = [directory, plain, site]


def per_event(fn, n=200000):
    gc.disable()
    started = time.process_time_ns()
    for _ in range(n):
        fn()
    spent = time.process_time_ns() - started
    gc.enable()
    return spent / n


def imports(prefix):
    names = ["%s_%03d" % (prefix, i) for i in range(count)]
    gc.disable()
    started = time.process_time_ns()
    for name in names:
        importlib.import_module(name)
    spent = time.process_time_ns() - started
    gc.enable()
    for name in names:
        del sys.modules[name]
    return spent / count


audit = sys.audit
out = {
    "event_ns": min(per_event(lambda: audit("bench")) for _ in range(3)),
    "noted_import_ns": statistics.median([imports("user") for _ in range(5)]),
    "unwatched_import_ns": statistics.median([imports("plain") for _ in range(5)]),
    "skipped_import_ns": statistics.median([imports("lib") for _ in range(5)]),
    "install_ns": install_ns,
}
print(repr(out))
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    processes = 2 if args.quick else 12
    count = 200
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        user = base / "project"
        plain = base / "plain"
        site = base / "venv" / "lib" / "site-packages"
        for directory, prefix in ((user, "user"), (plain, "plain"), (site, "lib")):
            directory.mkdir(parents=True)
            for i in range(count):
                (directory / f"{prefix}_{i:03d}.py").write_text(
                    f'"""Module {i}."""\nimport os\nVALUE = {i}\n\ndef f(x):\n    return x + VALUE\n')
            subprocess.run([sys.executable, "-m", "compileall", "-q", str(directory)], check=True)
        subprocess.run(["git", "init", "-q", str(user)], check=True)  # a work tree: noted
        script = base / "child.py"
        script.write_text(CHILD)
        env = dict(os.environ)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        runs = {"with": [], "without": []}
        for p in range(processes):
            for variant in (("with", "without") if p % 2 else ("without", "with")):
                out = subprocess.run(
                    [sys.executable, str(script), variant, str(user), str(plain), str(site), str(count),
                     str(ROOT / "zgit" / "imported.py")],
                    env=env, capture_output=True, text=True, check=True, cwd=str(base)).stdout
                runs[variant].append(ast.literal_eval(out.strip()))

    def med(variant, key):
        return statistics.median(r[key] for r in runs[variant])

    figures = {
        "processes": processes,
        "event_ns_added": med("with", "event_ns") - med("without", "event_ns"),
        "noted_import_us_added": (med("with", "noted_import_ns") - med("without", "noted_import_ns")) / 1e3,
        "noted_import_ratio": med("with", "noted_import_ns") / med("without", "noted_import_ns"),
        "unwatched_import_us_added": (med("with", "unwatched_import_ns") - med("without", "unwatched_import_ns")) / 1e3,
        "unwatched_import_ratio": med("with", "unwatched_import_ns") / med("without", "unwatched_import_ns"),
        "skipped_import_us_added": (med("with", "skipped_import_ns") - med("without", "skipped_import_ns")) / 1e3,
        "skipped_import_ratio": med("with", "skipped_import_ns") / med("without", "skipped_import_ns"),
        "import_us_without": med("without", "noted_import_ns") / 1e3,
        "install_us": med("with", "install_ns") / 1e3,
    }
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
