"""Benchmark of ``zgit audit``: 1,000 stored YAML files x 5 steps over 20 distinct pins.

``bench_audit(tmpdir)`` builds a real repository (git CLI, fixed identity and dates),
writes the pipeline files, and times :func:`zgit.audit.audit_paths` in this process on
1,000 files and on 500 (to show the time grows linearly with the number of files).
Run alone: ``python scripts/bench_audit.py`` prints the JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

MODULE_DIRS = 5
PINS = 20
STEPS = 5


_STEP = '''\
import json
import os.path
from . import helpers
from .helpers import scale
from models.shared import common

VERSION = {version}


class Step{k}:
    def __init__(self, factor=1):
        self.factor = factor

    def run(self, data):
        from .features import featurize
        return scale(featurize(data), self.factor * VERSION)
'''


def _git(cwd: Path, *args: str) -> str:
    from fixtures.builder import git_env  # isolated from every git configuration, fixed identity

    env = git_env()
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True,
                          capture_output=True, text=True).stdout


def build_repo(root: Path) -> List[str]:
    """A repository with MODULE_DIRS module directories and PINS commits; returns the shas."""
    root.mkdir(parents=True, exist_ok=True)
    _git(root, "init", "-q", "-b", "main")
    (root / "models").mkdir()
    (root / "models" / "__init__.py").write_text("")
    (root / "models" / "shared").mkdir()
    (root / "models" / "shared" / "__init__.py").write_text("")
    (root / "models" / "shared" / "common.py").write_text("X = 1\n")
    for k in range(MODULE_DIRS):
        d = root / "models" / f"m{k}"
        d.mkdir()
        (d / "__init__.py").write_text("")
        (d / "helpers.py").write_text("def scale(x, f):\n    return x\n")
        (d / "features.py").write_text("def featurize(x):\n    return x\n")
        for extra in range(3):
            (d / f"extra{extra}.py").write_text(f"import numpy\nVALUE = {extra}\n")
    shas = []
    for version in range(PINS):
        k = version % MODULE_DIRS
        (root / "models" / f"m{k}" / "step.py").write_text(_STEP.format(version=version, k=k))
        if version < MODULE_DIRS:  # first commits create every module
            for j in range(MODULE_DIRS):
                step = root / "models" / f"m{j}" / "step.py"
                if not step.exists():
                    step.write_text(_STEP.format(version=version, k=j))
        _git(root, "add", "-A")
        _git(root, "commit", "-q", "-m", f"v{version}")
        shas.append(_git(root, "rev-parse", "HEAD").strip())
    return shas


def write_pipelines(directory: Path, shas: List[str], files: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for n in range(files):
        lines = ["version: '1'", f"name: pipeline {n}", "steps:"]
        for i in range(STEPS):
            k = (n + i) % MODULE_DIRS
            sha = shas[(n * 7 + i * 3) % PINS]
            lines += [f"  step{i}:", f"    source: models.m{k}.step.Step{k}@{sha}",
                      f"    args: {{factor: {i + 1}}}"]
        (directory / f"pipeline_{n:04d}.yaml").write_text("\n".join(lines) + "\n")


def _time_audit(directory: Path, repo_root: Path, repeat: int = 3) -> Dict[str, float]:
    from zgit.audit import audit_paths
    from zgit.repository import Repository

    repo = Repository(repo_root)
    times = []
    report = None
    for _ in range(repeat):
        started = time.perf_counter()
        report = audit_paths([directory], repo=repo)
        times.append(time.perf_counter() - started)
    assert report is not None
    summary = report.summary()
    return {"first": times[0], "best": min(times), "files": summary["files"],
            "steps": summary["steps"], "errors": summary["errors"]}


def bench_audit(tmpdir: "str | os.PathLike[str]") -> Dict[str, object]:
    """Time the audit of 1,000 YAML files x 5 steps over 20 pins (and of 500 files)."""
    base = Path(tmpdir) / "bench_audit"
    root = base / "repo"
    shas = build_repo(root)
    write_pipelines(root / "pipelines", shas, 1000)
    write_pipelines(root / "half", shas, 500)
    full = _time_audit(root / "pipelines", root)   # first run: fresh caches
    half = _time_audit(root / "half", root)
    if full["errors"] or half["errors"]:
        raise AssertionError(f"the benchmark pipelines should audit clean: {full} {half}")
    return {
        "audit.files": full["files"],
        "audit.steps": full["steps"],
        "audit.pins": PINS,
        "audit.seconds": round(full["first"], 4),
        "audit.seconds_best": round(full["best"], 4),
        "audit.half.files": half["files"],
        "audit.half.seconds": round(half["best"], 4),
        "audit.ratio_1000_to_500": round(full["best"] / half["best"], 2) if half["best"] else None,
    }


def bench_distinct_pins(tmpdir: "str | os.PathLike[str]", pins: int = 1000,
                        step: Optional[Callable[[int, int], str]] = None) -> Dict[str, object]:
    """The audit's cost per distinct pin: ``pins`` commits, each changing the step module
    of one of MODULE_DIRS module directories, and pipelines (5 steps each) that name
    every one of them once.  ``step(version, k)`` gives the step module's text (default:
    this benchmark's own step module); its class must be ``Step<k>``."""
    from fixtures.builder import build_repo as build_fixture
    from zgit.audit import audit_paths
    from zgit.repository import Repository

    step = step or (lambda version, k: _STEP.format(version=version, k=k))
    files: Dict[str, str] = {"models/__init__.py": "", "models/shared/__init__.py": "",
                             "models/shared/common.py": "X = 1\n"}
    for k in range(MODULE_DIRS):
        d = f"models/m{k}"
        files.update({f"{d}/__init__.py": "", f"{d}/helpers.py": "def scale(x, f):\n    return x\n",
                      f"{d}/features.py": "def featurize(x):\n    return x\n", f"{d}/step.py": step(0, k)})
        for extra in range(3):
            files[f"{d}/extra{extra}.py"] = f"import numpy\nVALUE = {extra}\n"
    commits = [{"files": files}] + [
        {"files": {f"models/m{v % MODULE_DIRS}/step.py": step(v, v % MODULE_DIRS)}} for v in range(1, pins)
    ]
    root = Path(tempfile.mkdtemp(prefix=f"bench_audit_distinct_{pins}_", dir=tmpdir)) / "repo"
    shas = build_fixture(root, {"commits": commits})["shas"]
    directory = root / "pipelines"
    directory.mkdir()
    for n in range(0, pins, STEPS):
        lines = ["version: '1'", f"name: pipeline {n}", "steps:"]
        for v in range(n, min(n + STEPS, pins)):
            k = v % MODULE_DIRS
            lines += [f"  step{v - n}:", f"    source: models.m{k}.step.Step{k}@{shas[v]}", "    args: {}"]
        (directory / f"pipeline_{n:05d}.yaml").write_text("\n".join(lines) + "\n")
    repo = Repository(root)
    started, cpu = time.perf_counter(), time.thread_time()
    report = audit_paths([directory], repo=repo)  # fresh caches: every pin is new to it
    seconds, cpu = time.perf_counter() - started, time.thread_time() - cpu
    summary = report.summary()
    shutil.rmtree(root.parent, ignore_errors=True)
    if summary["errors"] or summary["steps"] != pins:
        raise AssertionError(f"the distinct-pin pipelines should audit clean: {summary}")
    # CPU time of this thread (the audit is in-process, single-threaded work), which
    # leaves out the time the process spent preempted on a busy machine; wall clock too
    return {"pins": pins, "seconds": round(seconds, 4), "ms_per_distinct_pin": cpu * 1e3 / pins,
            "ms_per_distinct_pin_wall": seconds * 1e3 / pins}


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    with tempfile.TemporaryDirectory() as tmp:
        figures = bench_audit(tmp)
        figures.update({f"audit.distinct.{k}": v for k, v in bench_distinct_pins(tmp).items()})
        print(json.dumps(figures, indent=2))
