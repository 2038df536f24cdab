#!/usr/bin/env python3
"""zgit's performance claims, measured as ratios against baselines in the same run.

    python scripts/bench.py                 # full run: 1k, 20k and 100k-file repositories
    python scripts/bench.py --quick         # smoke mode (1k files, few repeats; < 30 s)
    python scripts/bench.py --json out.json # also write the figures
    python scripts/bench.py --profile       # also cProfile zgit's hot paths

What is measured (issues 2, 3, 5, 7 and 11):

* **pin check** -- ``open_repo(root).dirty_paths("pkg/mod")`` on generated repositories of
  1k, 20k and 100k files with a 10-file module directory, against (a) the original ZenML
  git wrapper's algorithm (GitPython: for every file of the module directory
  ``git check-ignore``, ``index.diff(None)``, ``index.diff('HEAD')`` and
  ``ls-files --others --exclude-standard`` over the whole repository) and (b)
  ``git status --porcelain -- pkg/mod`` in a subprocess.
* **load** of a pin 25 commits back (a ~150-line step module that imports a helper):
  zgit's checkout strategy, the legacy sequence (``git checkout <sha> -- <dir>``, import,
  ``git reset -q HEAD <dir>``, ``git checkout -- <dir>``), zgit's memory strategy, a plain
  import of the same module from disk with bytecode off, and a repeated ``load_source``
  of a loaded pin; also what compiling the pin's files costs and what unmarshalling their
  code objects costs instead.  zgit's bytecode cache (.git/zgit/bytecode) is warm for the
  zgit contenders; the memory strategy is also measured with the cache emptied before
  each load (cold) and turned off, against a plain import from up-to-date ``.pyc``
  (``load.memory_vs_pyc``, ``load.memory_vs_pyc_cold``: ratios of CPU time, both being
  in-process work; ``..._wall`` the same in wall-clock time).  Full mode adds checkout
  against legacy in a repository of 20k more files.
  ``checkout_overhead_small`` is (legacy - plain import) / (checkout - memory): the legacy
  sequence's cost around the import per unit of what the checkout strategy adds to the
  memory strategy's (the same import, nothing written); full mode gives the same in the
  20k-file repository (``checkout_overhead_20k``), on the same file system.  Beside
  them: writing the index file once (``index_write_ms``, lock file and rename, as git
  writes it) and the ratio a checkout that did nothing else would reach
  (``checkout_overhead_ceiling``); every file operation of the checkout replayed with
  none of zgit's logic (``file_ops_ms``: journal, files moved aside, pin written, files
  moved back, index file written) and its ratio (``checkout_overhead_file_ops_ceiling``);
  the same overhead ratio with checkout and memory loads made ten in a row, as a
  pipeline makes them, where nothing else runs between two loads
  (``checkout_overhead_in_a_row``);
  and one parse of the index (``index_parse_ms``: what
  the first zgit call after a git command that rewrote the index pays; zgit's load
  contenders take it before their timer starts, since the legacy contender's git
  commands rewrite the index between them, which loads in a row never see).
* **hook**: importing 200 fresh unrelated modules in processes with and without zgit's
  finders installed (``import zgit.loader``, as after the first pinned load; they must
  cost nothing measurable), in CPU time; also within one process with zgit's finders
  taken out and put back, and the direct cost of zgit's finder per import.
* **startup** (issue 11): whole processes started as users start them, ``python -c
  pass`` (the baseline), ``python -c "import zgit"``, ``zgit --help`` and ``zgit audit`` of
  a repository with one pipeline, median of 10 starts each.
* **audit**: ``scripts/bench_audit.py`` (1,000 YAML files x 5 steps over 20 pins), and
  the cost per distinct pin over 1,000 distinct pins (``audit.ms_per_distinct_pin``, CPU
  time; ``..._wall`` in wall-clock time; also with the load benchmark's ~150-line step
  module as the pinned module).
* **memory**: a fresh process loads 1,000 distinct pins of the load benchmark's module
  (memory strategy): resident memory per pin (``memory.kb_per_pin``); then
  ``forget_loaded()`` must free them (``memory.forget_released``: a weak reference to a
  pinned class dies, nothing pinned is left in ``sys.modules``, parent packages or
  ``linecache``), and the same 1,000 loads again grow it by ``kb_per_pin_again``.
* **runs** (issue 12): the run store's cost per step -- a pipeline of 11 git-pinned steps
  against one of 1 step, the difference per step, with the cache off (recording one
  executed step: pickle, digest, atomic artifact write, one SQLite transaction) and on
  (one cached step: key, lookup, digest-checked read); reading a 100 MB numpy array
  artifact against reading the same bytes from a plain file (10 MB in --quick); ``zgit
  runs`` (a fresh process) over a store of 10,000 runs.
* **dask** (issue 13): building the code bundle of a 10-file module directory at a pin
  from git's objects (a freshly opened repository each time: nothing cached), and
  verifying it with hashlib (``dask.bundle_build_ms``, ``dask.bundle_verify_ms``); with
  the ``dask`` extra, a pinned step executed by the dask engine on a local cluster
  against a trivial task (``operator.add``) on the same running cluster
  (``dask.step_roundtrip_ratio``).

Machines are shared and noisy: every figure is a median over repeats, the contenders of
one comparison run interleaved (round-robin, rotating order, repeats spread evenly) after
a warm-up, and targets are judged on ratios within the run, never on absolute times.
In-process work is also reported in CPU time, which leaves out the time the process
spent preempted by others.  Repositories are built by the shared fixture builder
(fixtures/builder.py) in temporary directories and removed afterwards; the pin-check
ones go to ``/dev/shm`` when it has room (creating 100k files on a busy disk takes
minutes; the measured operations read warm caches either way), override with --tmpdir.
The load benchmark's repositories (both sizes) stay on the ordinary temporary directory's
disk, since the checkout strategy and the legacy sequence write files.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import importlib
import io
import json
import os
import platform
import pstats
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Every git process of the benchmark (the CLI contender and GitPython's) sees the same
# neutral configuration: no user or system config (fsmonitor, hooks, ...).
GIT_ENV = {
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "zgit bench",
    "GIT_AUTHOR_EMAIL": "bench@zgit.invalid",
    "GIT_COMMITTER_NAME": "zgit bench",
    "GIT_COMMITTER_EMAIL": "bench@zgit.invalid",
    "GIT_AUTHOR_DATE": "2024-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2024-01-01T00:00:00Z",
}
os.environ.update(GIT_ENV)
os.environ.pop("ZGIT_LOADER_STRATEGY", None)
os.environ.pop("GIT_DIR", None)
os.environ.pop("GIT_WORK_TREE", None)

MODULE_DIR = "pkg/mod"


def log(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def git(cwd: Path, *args: str, input: Optional[bytes] = None) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, input=input, capture_output=True)
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {cwd}: {result.stderr.decode(errors='replace')}")
    return result.stdout.decode()


# -- measuring ----------------------------------------------------------------------------


_last_cpu = [0.0]


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of ``fn`` takes (wall clock), with the cycle collector held off
    during it.  The CPU time this thread spent in it is kept too (see :func:`interleave`):
    for work done in this process it is the same measure with less of the machine's noise
    (time spent preempted by other processes is not in it)."""
    gc.disable()
    try:
        cpu = time.thread_time()
        started = time.perf_counter()
        fn()
        wall = time.perf_counter() - started
        _last_cpu[0] = time.thread_time() - cpu
        return wall
    finally:
        gc.enable()


class Contender:
    """One side of a comparison: ``measure()`` returns seconds (setup stays untimed)."""

    def __init__(self, name: str, measure: Callable[[], float], repeats: int, warmup: int = 1) -> None:
        self.name = name
        self.measure = measure
        self.repeats = repeats
        self.warmup = warmup


def interleave(contenders: Sequence[Contender], cpu: Optional[Dict[str, List[float]]] = None) -> Dict[str, List[float]]:
    """Run the contenders round-robin in rotating order, each one's repeats spread evenly
    over the rounds, after their warm-ups; returns every contender's times (wall clock).
    ``cpu``, when given, receives this thread's CPU times of the same calls."""
    active = [c for c in contenders if c.repeats > 0]
    for c in active:
        for _ in range(c.warmup):
            c.measure()
    rounds = max((c.repeats for c in active), default=0)
    times: Dict[str, List[float]] = {c.name: [] for c in contenders}
    for r in range(rounds):
        shift = r % len(active)
        for c in active[shift:] + active[:shift]:
            if (r + 1) * c.repeats // rounds > r * c.repeats // rounds:
                times[c.name].append(c.measure())
                if cpu is not None:
                    cpu.setdefault(c.name, []).append(_last_cpu[0])
    return times


def median(values: Sequence[float]) -> Optional[float]:
    return statistics.median(values) if values else None


# -- building repositories ---------------------------------------------------------------


def build(root: Path, spec: dict) -> List[str]:
    """Build ``spec`` at ``root`` with the shared fixture builder (fixtures/builder.py:
    git fast-import, fixed identity and dates, so stable SHAs); returns the commit shas,
    oldest first.  The index is then refreshed a second later, so that no entry is
    "racily clean" (git would re-hash those files on every status or diff)."""
    from fixtures.builder import build_repo

    shas = build_repo(root, spec)["shas"]
    time.sleep(1.05 - time.time() % 1)
    git(root, "update-index", "-q", "--refresh")
    return shas


_MOD_FILE = '''\
"""Module {name} of the benchmark's module directory."""

import math

WEIGHTS = {weights}


def score_{name}(values):
    """A weighted sum, clipped."""
    total = 0.0
    for value, weight in zip(values, WEIGHTS):
        total += value * weight
    return max(-1.0, min(1.0, math.tanh(total)))
'''


_MODULE_NAMES = ["__init__", "step", "helper"] + [f"part{k}" for k in range(7)]


def big_repo_spec(n_files: int) -> dict:
    """``n_files`` files in all: the 10-file module directory ``pkg/mod``,
    ``pkg/__init__.py``, ``.gitignore``, and filler files under ``lib/`` (100 a directory)."""
    files: Dict[str, str] = {
        ".gitignore": "__pycache__/\n*.pyc\n*.log\n/build/\n",
        "pkg/__init__.py": '"""The benchmark package."""\n',
    }
    for k, name in enumerate(_MODULE_NAMES):
        weights = ", ".join(str((k * 7 + j) % 13 / 10) for j in range(40))
        files[f"{MODULE_DIR}/{name}.py"] = _MOD_FILE.format(name=name, weights=f"[{weights}]")
    return {
        "filler": {"count": max(n_files - len(files), 0), "dir": "lib", "per_dir": 100},
        "commits": [{"message": f"a repository of {n_files} files", "files": files}],
    }


# -- the legacy pin check (the original ZenML git wrapper) ------------------------------


class LegacyGitWrapper:
    """The clean check of ZenML's original ``GitWrapper`` (``check_module_clean`` and
    ``check_file_committed``), re-implemented faithfully over GitPython: for every entry
    of the module directory, ``git check-ignore`` it, then list the whole repository's
    unstaged changes, staged changes and untracked files and look for it there."""

    def __init__(self, repo_path: Path) -> None:
        import git as gitpython  # GitPython (extra "bench")

        self.repo_path = str(repo_path)
        self.git_repo = gitpython.Repo(self.repo_path)
        self._bad_name = importlib.import_module("gitdb.exc").BadName
        assert not self.git_repo.bare

    def check_file_committed(self, file_path: str) -> bool:
        uncommitted_files = [i.a_path for i in self.git_repo.index.diff(None)]
        try:
            staged_files = [i.a_path for i in self.git_repo.index.diff("HEAD")]
        except self._bad_name:
            staged_files = []
        untracked_files = self.git_repo.git.ls_files(others=True, exclude_standard=True).split("\n")
        for item in uncommitted_files + staged_files + untracked_files:
            if file_path == item:
                return False
        return True

    def check_module_clean(self, module_dir: str) -> bool:
        mod_abs_dir = os.path.join(self.repo_path, module_dir)
        for file_name in os.listdir(mod_abs_dir):
            path = os.path.join(module_dir, file_name)
            if len(self.git_repo.ignored(path)) > 0:
                continue
            # (the original warns here about sub-directories: a flat directory only)
            if not self.check_file_committed(path):
                return False
        return True


# -- pin check ---------------------------------------------------------------------------


def git_status_dirty(root: Path, module_dir: str) -> List[str]:
    out = subprocess.run(
        ["git", "status", "--porcelain", "--", module_dir], cwd=root, capture_output=True, check=True
    ).stdout.decode()
    return [line[3:] for line in out.splitlines() if line]


def check_agreement(root: Path, legacy: Optional[LegacyGitWrapper], dirty_too: bool) -> None:
    """All contenders call the module directory clean (and, with ``dirty_too``, dirty
    after a file of it changes): they answer the same question."""
    from zgit.gitrepo import open_repo

    def answers():
        return (
            open_repo(root).dirty_paths(MODULE_DIR),
            git_status_dirty(root, MODULE_DIR),
            legacy.check_module_clean(MODULE_DIR) if legacy is not None else None,
        )

    z, cli, old = answers()
    if z or cli or old is False:
        raise AssertionError(f"the module directory should be clean: zgit {z}, git {cli}, legacy {old}")
    if not dirty_too:
        return
    target = root / MODULE_DIR / "part3.py"
    original = target.read_bytes()
    target.write_bytes(original + b"# edited\n")
    try:
        z, cli, old = answers()
        if z != [f"{MODULE_DIR}/part3.py"] or not cli or (legacy is not None and old is not False):
            raise AssertionError(f"an edited file should be dirty: zgit {z}, git {cli}, legacy {old}")
    finally:
        target.write_bytes(original)
        time.sleep(1.05 - time.time() % 1)
        git(root, "update-index", "-q", "--refresh")


def bench_pin_check(base: Path, sizes: Sequence[int], quick: bool, profile: Optional[dict]) -> dict:
    from zgit.gitrepo import open_repo

    results: dict = {}
    for n_files in sizes:
        root = base / f"big{n_files}"
        started = time.perf_counter()
        build(root, big_repo_spec(n_files))
        log(f"[pin check] built a repository of {n_files} files in {time.perf_counter() - started:.1f} s")
        try:
            legacy: Optional[LegacyGitWrapper] = LegacyGitWrapper(root)
        except ImportError:  # GitPython is the extra "bench"
            legacy = None
            log("[pin check] GitPython is not installed (pip install -e '.[bench]'): no legacy baseline")
        check_agreement(root, legacy, dirty_too=(n_files == sizes[0]))

        if quick:
            reps = {"zgit": 40, "cli": 10, "legacy": 2}
        else:
            reps = {"zgit": 300, "cli": 40, "legacy": 5 if n_files <= 1000 else 3 if n_files <= 20000 else 2}
        legacy_warmup = 1 if n_files <= 20000 else 0

        def zgit_check(root=root):
            return timed(lambda: open_repo(root).dirty_paths(MODULE_DIR))

        def cli_check(root=root):
            return timed(lambda: git_status_dirty(root, MODULE_DIR))

        def legacy_check(legacy=legacy):
            return timed(lambda: legacy.check_module_clean(MODULE_DIR))

        times = interleave([
            Contender("zgit", zgit_check, reps["zgit"], warmup=5),
            Contender("git_cli", cli_check, reps["cli"], warmup=2),
            Contender("legacy", legacy_check, reps["legacy"] if legacy is not None else 0, warmup=legacy_warmup),
        ])
        entry = {
            "zgit_ms": median(times["zgit"]) * 1e3,
            "legacy_ms": median(times["legacy"]) * 1e3 if times["legacy"] else None,
            "git_cli_ms": median(times["git_cli"]) * 1e3,
            "repeats": {k: len(v) for k, v in times.items()},
        }
        results[str(n_files)] = entry
        log(f"[pin check] {n_files}: zgit {entry['zgit_ms']:.3f} ms, git status {entry['git_cli_ms']:.2f} ms, "
            f"legacy {entry['legacy_ms'] if entry['legacy_ms'] is None else round(entry['legacy_ms'], 1)} ms")
        if profile is not None and n_files == (20000 if 20000 in sizes else sizes[-1]):
            profile[f"pin check, {n_files} files (open_repo(root).dirty_paths, x500)"] = run_profile(
                lambda: [open_repo(root).dirty_paths(MODULE_DIR) for _ in range(500)]
            )
        if legacy is not None:
            legacy.git_repo.close()
        shutil.rmtree(root, ignore_errors=True)
    return results


# -- pin check: module directory size, big files, core.autocrlf -------------------------

WIDE_DIR = "pkg/wide"
BIG_DIR = "pkg/big"


def dir_repo_spec(wide_files: int, big_bytes: int) -> dict:
    """The 10-file module directory ``pkg/mod``, a ``wide_files``-file one ``pkg/wide``
    and ``pkg/big`` holding one file of ``big_bytes`` bytes, in one commit."""
    files: Dict[str, object] = dict(big_repo_spec(len(_MODULE_NAMES) + 2)["commits"][0]["files"])
    for k in range(wide_files):
        files[f"{WIDE_DIR}/part{k:04d}.py"] = _MOD_FILE.format(name=f"w{k}", weights=f"[{k % 13 / 10}]")
    line = b"0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789\n"
    files[f"{BIG_DIR}/weights.txt"] = line * (big_bytes // len(line))
    return {"commits": [{"message": "module directories of three sizes", "files": files}]}


def bench_pin_dirs(base: Path, quick: bool) -> dict:
    """The pin check against the module directory's size (issue 14) and in a
    ``core.autocrlf=true`` work tree (issue 10), each against ``git status -- <dir>``.

    * ``dir_scaling``: zgit on a 1,000-file directory / on a 10-file one (target <= 10);
      ``dir_scaling_lstat_floor``: one ``os.lstat`` of each of the 1,000 files, nothing
      else, / the 10-file check (the least ``dir_scaling`` of any check that looks at
      every file, as git's stat cache does), and ``dir_1000_vs_lstat``: zgit over that;
    * ``dir_1000_vs_git``, ``bigfile_vs_git``: zgit / git status for the 1,000-file
      directory and for one holding a single 50 MB file (targets <= 1.0);
    * ``autocrlf_vs_git``: git status / zgit on the 10-file directory after
      ``core.autocrlf=true`` and a checkout that wrote CRLF files (target >= 5).
    """
    from zgit.gitrepo import open_repo

    wide = 1000
    big_mb = 5 if quick else 50
    root = base / "dirs"
    build(root, dir_repo_spec(wide, big_mb << 20))
    git(root, "status", "--porcelain")
    crlf = base / "crlf"
    build(crlf, big_repo_spec(1000))
    git(crlf, "config", "core.autocrlf", "true")
    for path in (crlf / MODULE_DIR).iterdir():
        path.unlink()
    git(crlf, "checkout", "--", MODULE_DIR)  # CRLF files, as git for Windows writes them
    if b"\r\n" not in (crlf / MODULE_DIR / "step.py").read_bytes():
        raise AssertionError("core.autocrlf=true did not write CRLF files")
    time.sleep(1.05 - time.time() % 1)
    git(crlf, "update-index", "-q", "--refresh")
    for where, directory in ((root, MODULE_DIR), (root, WIDE_DIR), (root, BIG_DIR), (crlf, MODULE_DIR)):
        z, cli = open_repo(where).dirty_paths(directory), git_status_dirty(where, directory)
        if z or cli:
            raise AssertionError(f"{directory} in {where.name} should be clean: zgit {z}, git {cli}")

    def zgit_on(where: Path, directory: str) -> Callable[[], float]:
        return lambda: timed(lambda: open_repo(where).dirty_paths(directory))

    def git_on(where: Path, directory: str) -> Callable[[], float]:
        return lambda: timed(lambda: git_status_dirty(where, directory))

    # The floor of any check that looks at every file (git's stat cache, as the issue
    # asks): one lstat a file, from Python, nothing else.
    wide_paths = [str(p) for p in sorted((root / WIDE_DIR).iterdir())]

    def lstat_only() -> float:
        return timed(lambda: [os.lstat(p) for p in wide_paths])

    reps_z, reps_cli = (30, 8) if quick else (200, 30)
    times = interleave([
        Contender("zgit_10", zgit_on(root, MODULE_DIR), reps_z, warmup=3),
        Contender("zgit_1000", zgit_on(root, WIDE_DIR), reps_z, warmup=3),
        Contender("lstat_1000", lstat_only, reps_z, warmup=3),
        Contender("zgit_big", zgit_on(root, BIG_DIR), reps_z, warmup=3),
        Contender("zgit_crlf", zgit_on(crlf, MODULE_DIR), reps_z, warmup=3),
        Contender("git_1000", git_on(root, WIDE_DIR), reps_cli, warmup=2),
        Contender("git_big", git_on(root, BIG_DIR), reps_cli, warmup=2),
        Contender("git_crlf", git_on(crlf, MODULE_DIR), reps_cli, warmup=2),
    ])
    ms = {name: median(values) * 1e3 for name, values in times.items()}
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(crlf, ignore_errors=True)
    return {
        "dir_scaling": ms["zgit_1000"] / ms["zgit_10"],
        # lstat of the 1,000 files alone / the whole 10-file check: the least dir_scaling
        # any check that stats every file can have here
        "dir_scaling_lstat_floor": ms["lstat_1000"] / ms["zgit_10"],
        "dir_1000_vs_lstat": ms["zgit_1000"] / ms["lstat_1000"],
        "dir_1000_vs_git": ms["zgit_1000"] / ms["git_1000"],
        "bigfile_vs_git": ms["zgit_big"] / ms["git_big"],
        "autocrlf_vs_git": ms["git_crlf"] / ms["zgit_crlf"],
        "dirs_ms": ms,
        "bigfile_mb": big_mb,
        "wide_files": wide,
    }


# -- loading a pin -----------------------------------------------------------------------

HISTORY = 30
PIN_BACK = 25
LOAD_DIR = "trainers/my_trainer"
LOAD_MODULE = "trainers.my_trainer.step"
TINY_DIR = "trainers/tiny"
TINY_MODULE = "trainers.tiny.step"

_STEP = '''\
"""A trainer step: fits a small logistic-regression model with mini-batch SGD.

Version {version} of the benchmark's step module (about 150 lines, one helper import).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from zgit import BaseStep

from .helper import batches, clip, sigmoid, standardize

VERSION = {version}


@dataclass
class TrainerConfig:
    """Hyper-parameters of the trainer."""

    epochs: int = {epochs}
    learning_rate: float = {lr}
    batch_size: int = 32
    l2: float = 1e-4
    seed: int = 42
    tolerance: float = 1e-6
    metrics: List[str] = field(default_factory=lambda: ["accuracy", "log_loss"])

    def validate(self) -> None:
        if self.epochs <= 0:
            raise ValueError("epochs must be positive")
        if not 0 < self.learning_rate < 1:
            raise ValueError("learning_rate must be in (0, 1)")
        if self.batch_size <= 0:
            raise ValueError("batch_size must be positive")


@dataclass
class Model:
    """Weights of a fitted logistic regression."""

    weights: List[float]
    bias: float = 0.0
    history: List[float] = field(default_factory=list)

    def predict_proba(self, row: Sequence[float]) -> float:
        z = self.bias + sum(w * x for w, x in zip(self.weights, row))
        return sigmoid(clip(z, -30.0, 30.0))

    def predict(self, row: Sequence[float]) -> int:
        return int(self.predict_proba(row) >= 0.5)


def log_loss(model: Model, rows: Sequence[Sequence[float]], labels: Sequence[int]) -> float:
    total = 0.0
    for row, label in zip(rows, labels):
        p = min(max(model.predict_proba(row), 1e-12), 1 - 1e-12)
        total -= label * math.log(p) + (1 - label) * math.log(1 - p)
    return total / max(len(rows), 1)


def accuracy(model: Model, rows: Sequence[Sequence[float]], labels: Sequence[int]) -> float:
    hits = sum(int(model.predict(row) == label) for row, label in zip(rows, labels))
    return hits / max(len(rows), 1)


METRICS = {{"accuracy": accuracy, "log_loss": log_loss}}


class Trainer(BaseStep):
    """Fits a :class:`Model` on ``(rows, labels)`` and reports its metrics."""

    version = VERSION

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.config = TrainerConfig(**kwargs)
        self.config.validate()
        self.model: Optional[Model] = None

    def _gradient(self, model: Model, rows, labels) -> Tuple[List[float], float]:
        grad_w = [0.0] * len(model.weights)
        grad_b = 0.0
        for row, label in zip(rows, labels):
            error = model.predict_proba(row) - label
            for j, x in enumerate(row):
                grad_w[j] += error * x
            grad_b += error
        n = max(len(rows), 1)
        l2 = self.config.l2
        return [g / n + l2 * w for g, w in zip(grad_w, model.weights)], grad_b / n

    def fit(self, rows: Sequence[Sequence[float]], labels: Sequence[int]) -> Model:
        config = self.config
        rng = random.Random(config.seed)
        rows = standardize(rows)
        model = Model(weights=[0.0] * (len(rows[0]) if rows else 0))
        previous = math.inf
        for epoch in range(config.epochs):
            order = list(range(len(rows)))
            rng.shuffle(order)
            for batch in batches(order, config.batch_size):
                batch_rows = [rows[i] for i in batch]
                batch_labels = [labels[i] for i in batch]
                grad_w, grad_b = self._gradient(model, batch_rows, batch_labels)
                model.weights = [w - config.learning_rate * g for w, g in zip(model.weights, grad_w)]
                model.bias -= config.learning_rate * grad_b
            loss = log_loss(model, rows, labels)
            model.history.append(loss)
            if abs(previous - loss) < config.tolerance:
                break
            previous = loss
        self.model = model
        return model

    def evaluate(self, rows, labels) -> Dict[str, float]:
        if self.model is None:
            raise RuntimeError("fit() first")
        rows = standardize(rows)
        return {{name: METRICS[name](self.model, rows, labels) for name in self.config.metrics}}

    def run(self, data):
        rows, labels = data
        self.fit(rows, labels)
        return {{"model": self.model, "metrics": self.evaluate(rows, labels), "version": VERSION}}


def make_dataset(n: int = 200, features: int = 4, seed: int = 0) -> Tuple[List[List[float]], List[int]]:
    """A separable toy dataset, for smoke tests of the step."""
    rng = random.Random(seed)
    rows = [[rng.gauss(0, 1) for _ in range(features)] for _ in range(n)]
    labels = [int(sum(row) > 0) for row in rows]
    return rows, labels


def describe(rows: Iterable[Sequence[float]]) -> Dict[str, float]:
    values = [x for row in rows for x in row]
    if not values:
        return {{"count": 0}}
    mean = sum(values) / len(values)
    var = sum((x - mean) ** 2 for x in values) / len(values)
    return {{"count": len(values), "mean": mean, "std": math.sqrt(var)}}
'''

_HELPER = '''\
"""Helpers of the trainer step (revision {revision})."""

import math
from typing import Iterator, List, Sequence

REVISION = {revision}


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def clip(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


def batches(items: Sequence[int], size: int) -> Iterator[List[int]]:
    for start in range(0, len(items), size):
        yield list(items[start:start + size])


def standardize(rows: Sequence[Sequence[float]]) -> List[List[float]]:
    if not rows:
        return []
    columns = list(zip(*rows))
    means = [sum(c) / len(c) for c in columns]
    stds = [math.sqrt(sum((x - m) ** 2 for x in c) / len(c)) or 1.0 for c, m in zip(columns, means)]
    return [[(x - m) / s for x, m, s in zip(row, means, stds)] for row in rows]
'''


def trainer_history_spec(commits: int = HISTORY) -> dict:
    """The step module ``trainers/my_trainer/step.py`` changes in every one of ``commits``
    commits (its module ``VERSION`` is the commit's number), its helper in every fourth."""
    history: List[dict] = []
    for version in range(commits):
        files: Dict[str, str] = {
            f"{LOAD_DIR}/step.py": _STEP.format(version=version, epochs=10 + version, lr=0.01 + version / 1000)
        }
        if version % 4 == 0:
            files[f"{LOAD_DIR}/helper.py"] = _HELPER.format(revision=version)
        # A module directory of three tiny files: its loads are (nearly) all loader overhead.
        files[f"{TINY_DIR}/step.py"] = f"from .helper import X\n\nVERSION = {version}\n\n\nclass Tiny:\n    version = VERSION\n"
        if version == 0:
            files[f"{TINY_DIR}/__init__.py"] = ""
            files[f"{TINY_DIR}/helper.py"] = "X = 1\n"
        if version == 0:
            files.update({
                ".gitignore": "__pycache__/\n*.pyc\n",
                "README.md": "# A project with a pinned trainer\n",
                "trainers/__init__.py": '"""Trainers."""\n',
                f"{LOAD_DIR}/__init__.py": '"""The trainer step module directory."""\n',
                "preprocessing/__init__.py": "",
                "preprocessing/scaler/__init__.py": "",
                "preprocessing/scaler/step.py": "class Scaler:\n    pass\n",
            })
        history.append({"message": f"trainer v{version}", "files": files})
    return {"commits": history}


def _drop_modules(prefix: str) -> None:
    for name in [n for n in sys.modules if n == prefix or n.startswith(prefix + ".")]:
        del sys.modules[name]


def _drop_bytecode(root: Path) -> None:
    for cache in root.rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)


def bench_load(base: Path, quick: bool, profile: Optional[dict], filler: int = 0) -> dict:
    """Load the pin 25 commits back in the trainer-history repository.

    With ``filler`` the repository also holds that many unrelated files, and only the
    checkout strategy and the legacy sequence are measured (the legacy sequence's git
    commands read and write the whole index; zgit's checkout touches the module directory).
    """
    import zgit
    from zgit.loader import forget_loaded, load_source

    root = base / (f"trainer{filler}" if filler else "trainer")
    spec = trainer_history_spec()
    if filler:
        spec["filler"] = {"count": filler, "dir": "lib", "per_dir": 100}
    shas = build(root, spec)
    pin = shas[-1 - PIN_BACK]
    pin_version = len(shas) - 1 - PIN_BACK
    source = f"{LOAD_MODULE}.Trainer@{pin}"
    repository = zgit.Repository(root)
    package = LOAD_MODULE.rsplit(".", 1)[0]
    sys.dont_write_bytecode = True
    sys.path.insert(0, str(root))
    _drop_bytecode(root / "trainers")
    importlib.import_module("trainers")  # the real parent package, as zgit's loads leave it

    def zgit_load(strategy: str, refresh_index: bool = True) -> Callable[[], float]:
        def measure() -> float:
            forget_loaded()
            # Untimed: take in the index the legacy contender's git commands rewrote
            # meanwhile, as the first zgit call after any git command does (a parse of the
            # index: ``index_parse_ms``); loads in a row, as a pipeline makes them, never
            # re-read it, since zgit's own refresh keeps its parse.
            repository.git.dirty_paths(LOAD_DIR)
            if not refresh_index:  # what the index refresh after a checkout costs (a figure only)
                repository.git.refresh_index_stat = lambda expected: []  # type: ignore[method-assign]
            try:
                seconds = timed(lambda: load_source(source, repo=repository, strategy=strategy))
            finally:
                repository.git.__dict__.pop("refresh_index_stat", None)
            assert load_source(source, repo=repository).version == pin_version
            return seconds
        return measure

    def legacy() -> float:
        _drop_modules(package)
        importlib.invalidate_caches()

        def sequence():
            git(root, "checkout", pin, "--", LOAD_DIR)
            try:
                return importlib.import_module(LOAD_MODULE).Trainer
            finally:
                git(root, "reset", "-q", "HEAD", LOAD_DIR)
                git(root, "checkout", "--", LOAD_DIR)

        seconds = timed(sequence)
        assert sys.modules[LOAD_MODULE].Trainer.version == pin_version
        return seconds

    def plain() -> float:
        _drop_modules(package)
        _drop_bytecode(root / LOAD_DIR)
        seconds = timed(lambda: importlib.import_module(LOAD_MODULE).Trainer)
        assert sys.modules[LOAD_MODULE].Trainer.version == len(shas) - 1
        return seconds

    tiny_source = f"{TINY_MODULE}.Tiny@{pin}"

    def tiny_memory() -> float:
        forget_loaded()
        seconds = timed(lambda: load_source(tiny_source, repo=repository, strategy="memory"))
        assert load_source(tiny_source, repo=repository).version == pin_version
        return seconds

    def tiny_plain() -> float:
        _drop_modules(TINY_MODULE.rsplit(".", 1)[0])
        _drop_bytecode(root / TINY_DIR)
        seconds = timed(lambda: importlib.import_module(TINY_MODULE).Tiny)
        assert sys.modules[TINY_MODULE].Tiny.version == len(shas) - 1
        return seconds

    # What any load that compiles pays: compiling the three files of the module
    # directory at the pin (step module, helper, package __init__), nothing else.
    sources = [
        (repository.git.read(pin, f"{LOAD_DIR}/{name}.py"), f"{LOAD_DIR}/{name}.py")
        for name in ("__init__", "step", "helper")
    ]

    def compile_only() -> float:
        return timed(lambda: [compile(data, path, "exec", dont_inherit=True) for data, path in sources])

    # What a hit of zgit's bytecode cache pays instead: unmarshalling the same code objects.
    import marshal

    marshalled = [marshal.dumps(compile(data, path, "exec", dont_inherit=True)) for data, path in sources]

    def unmarshal_only() -> float:
        return timed(lambda: [marshal.loads(blob) for blob in marshalled])

    # The same module imported the ordinary way from up-to-date bytecode (__pycache__
    # refreshed untimed before each import: the checkout contenders change mtimes).
    import compileall

    def plain_pyc() -> float:
        _drop_modules(package)
        compileall.compile_dir(str(root / LOAD_DIR), quiet=1)
        importlib.invalidate_caches()
        seconds = timed(lambda: importlib.import_module(LOAD_MODULE).Trainer)
        assert sys.modules[LOAD_MODULE].Trainer.version == len(shas) - 1
        assert sys.modules[LOAD_MODULE].__spec__.cached is not None
        return seconds

    # zgit's own bytecode cache (.git/zgit/bytecode) is warm for the contenders above
    # after their warm-up; "cold" empties it (untimed) before each load, which then
    # compiles and writes the entries; "no cache" turns it off (zgit before the cache).
    bytecode_dir = repository.git.git_dir / "zgit" / "bytecode"

    def memory_cold() -> float:
        forget_loaded()
        for shard in [p for p in bytecode_dir.iterdir() if p.is_dir()] if bytecode_dir.is_dir() else []:
            shutil.rmtree(shard, ignore_errors=True)
        seconds = timed(lambda: load_source(source, repo=repository, strategy="memory"))
        assert load_source(source, repo=repository).version == pin_version
        return seconds

    def memory_no_cache() -> float:
        forget_loaded()
        os.environ["ZGIT_BYTECODE_CACHE"] = "0"
        try:
            seconds = timed(lambda: load_source(source, repo=repository, strategy="memory"))
        finally:
            del os.environ["ZGIT_BYTECODE_CACHE"]
        assert load_source(source, repo=repository).version == pin_version
        return seconds

    # What writing this repository's index file costs, as git and zgit write it (a lock
    # file, then a rename over the old file), without even computing its checksum: the
    # least a load that leaves the index fresh (git diff-index agreeing with git status)
    # can spend beyond the import.
    index_copy = repository.git.git_dir / "zgit" / "bench-index"
    index_copy.parent.mkdir(exist_ok=True)
    shutil.copyfile(repository.git.git_dir / "index", index_copy)

    def write_index_copy(data: bytes) -> None:
        lock = str(index_copy) + ".lock"
        fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.rename(lock, index_copy)

    def index_write() -> float:
        data = (repository.git.git_dir / "index").read_bytes()
        return timed(lambda: write_index_copy(data))

    # The file operations a checkout of this pin makes, replayed with none of zgit's logic:
    # the journal (written into the spare file the last one was retired to, published by
    # rename, retired by rename), each changed file and its bytecode moved aside, the
    # pinned file written by rename, the pinned file deleted and the user's moved back, the
    # index file written once.  What any checkout that loses nothing and leaves the index
    # fresh spends beyond the import on this file system.
    head_entries = repository.git.entries(repository.git.head_sha(), LOAD_DIR) or {}
    pin_entries = repository.git.entries(pin, LOAD_DIR) or {}
    changed = [(str(root / path), repository.git.blob(pin_entries[path].oid))
               for path in sorted(head_entries) if path in pin_entries and head_entries[path] != pin_entries[path]]
    stems = tuple(os.path.basename(full)[:-3] + "." for full, _ in changed if full.endswith(".py"))
    state_dir = repository.git.git_dir / "zgit"
    journal_spare, journal = str(state_dir / "bench-journal.spare"), str(state_dir / "bench-journal")
    payload = b"x" * 1500  # the journal of this checkout is about 1.5 KB
    Path(journal_spare).write_bytes(payload)

    def file_ops() -> float:
        data = (repository.git.git_dir / "index").read_bytes()
        cache = root / LOAD_DIR / "__pycache__"
        pycs = [str(p) for p in cache.iterdir() if p.name.startswith(stems)] if cache.is_dir() else []
        aside = [str(state_dir / f"bench-aside-{k}") for k in range(len(changed) + len(pycs))]

        def ops() -> None:
            fd = os.open(journal_spare, os.O_RDWR)
            os.pwrite(fd, payload, 0)
            os.close(fd)
            os.rename(journal_spare, journal)
            for k, pyc in enumerate(pycs):
                os.rename(pyc, aside[len(changed) + k])
            for k, (full, pinned) in enumerate(changed):
                os.rename(full, aside[k])
                fd = os.open(full + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
                os.write(fd, pinned)
                os.close(fd)
                os.rename(full + ".tmp", full)
            for k, (full, _) in enumerate(changed):
                os.unlink(full)
                os.rename(aside[k], full)
            for k, pyc in enumerate(pycs):
                os.rename(aside[len(changed) + k], pyc)
            write_index_copy(data)
            os.rename(journal, journal_spare)
        return timed(ops)

    from zgit.gitindex import GitIndex

    index_bytes = (repository.git.git_dir / "index").read_bytes()

    def index_parse() -> float:
        return timed(lambda: GitIndex(index_bytes, 0))

    n = 8 if quick else 60
    cpu: Dict[str, List[float]] = {}
    if filler:
        contenders = [
            Contender("checkout", zgit_load("checkout"), 30, warmup=2),
            Contender("checkout_no_index_refresh", zgit_load("checkout", refresh_index=False), 30, warmup=2),
            Contender("memory", zgit_load("memory"), 30, warmup=2),
            Contender("legacy", legacy, 10, warmup=1),
            Contender("plain_import", plain, 30, warmup=2),
            Contender("index_write", index_write, 30, warmup=2),
            Contender("index_parse", index_parse, 30, warmup=2),
            Contender("file_ops", file_ops, 30, warmup=2),
        ]
    else:
        contenders = [
            Contender("checkout", zgit_load("checkout"), n, warmup=2),
            Contender("checkout_no_index_refresh", zgit_load("checkout", refresh_index=False), n, warmup=2),
            Contender("memory", zgit_load("memory"), n, warmup=2),
            Contender("legacy", legacy, max(n // 2, 4), warmup=2),
            Contender("plain_import", plain, n, warmup=2),
            Contender("plain_pyc", plain_pyc, n, warmup=2),
            Contender("memory_cold", memory_cold, n, warmup=2),
            Contender("memory_no_cache", memory_no_cache, n, warmup=2),
            Contender("compile", compile_only, n, warmup=2),
            Contender("unmarshal", unmarshal_only, n, warmup=2),
            Contender("tiny_memory", tiny_memory, 3 * n, warmup=5),
            Contender("tiny_plain", tiny_plain, 3 * n, warmup=5),
            Contender("index_write", index_write, n, warmup=2),
            Contender("index_parse", index_parse, n, warmup=2),
            Contender("file_ops", file_ops, n, warmup=2),
        ]
    times = interleave(contenders, cpu=cpu)
    status = git(root, "status", "--porcelain", "--untracked-files=all")
    if status:
        raise AssertionError(f"the work tree changed during the load benchmark:\n{status}")

    def cleanup() -> None:
        forget_loaded()
        _drop_modules("trainers")
        sys.path.remove(str(root))
        sys.dont_write_bytecode = False
        shutil.rmtree(root, ignore_errors=True)

    in_a_row: Dict[str, List[float]] = {}
    if not filler:
        # Loads in a row, as a pipeline makes them: nothing else touches the disk or the CPU's
        # caches in between (above, git commands, compileall and file replays run between
        # two checkout loads).  Each measure is the mean of a run of loads, the first included.
        row = 4 if quick else 10

        def loads_in_a_row(strategy: str) -> Callable[[], float]:
            def measure() -> float:
                total = 0.0
                for _ in range(row):
                    forget_loaded()
                    total += timed(lambda: load_source(source, repo=repository, strategy=strategy))
                return total / row
            return measure

        in_a_row = interleave([
            Contender("checkout", loads_in_a_row("checkout"), 5 if quick else 15, warmup=1),
            Contender("memory", loads_in_a_row("memory"), 5 if quick else 15, warmup=1),
        ])

    if filler:
        cleanup()
        return {
            "files": len(spec["commits"][0]["files"]) + filler,
            "tmpdir": str(base.parent),
            "checkout_ms": median(times["checkout"]) * 1e3,
            "legacy_ms": median(times["legacy"]) * 1e3,
            "memory_ms": median(times["memory"]) * 1e3,
            "plain_import_ms": median(times["plain_import"]) * 1e3,
            "checkout_overhead": checkout_overhead(times),
            "checkout_overhead_no_index_refresh": checkout_overhead(times, "checkout_no_index_refresh"),
            "index_write_ms": median(times["index_write"]) * 1e3,
            "index_parse_ms": median(times["index_parse"]) * 1e3,
            "checkout_overhead_ceiling": overhead_ceiling(times),
            "file_ops_ms": median(times["file_ops"]) * 1e3,
            "checkout_overhead_file_ops_ceiling": overhead_ceiling(times, "file_ops"),
            "repeats": {k: len(v) for k, v in times.items()},
        }

    # A repeated load of a loaded pin: the same object, from the load cache.
    forget_loaded()
    first = load_source(source, repo=repository)
    assert load_source(source, repo=repository) is first
    batch = 2000 if quick else 20000

    def repeat_with(repo_arg) -> Callable[[], float]:
        def measure() -> float:
            loop = range(batch)
            return timed(lambda: [load_source(source, repo=repo_arg) for _ in loop]) / batch
        return measure

    repeats = interleave([
        Contender("repository", repeat_with(repository), 5 if quick else 21),
        Contender("path", repeat_with(str(root)), 5 if quick else 21),
    ])

    # The checkout's locks (thread lock, then filelock's lock_descriptor on a descriptor
    # kept open), against a bare flock() on a kept descriptor and against filelock's
    # FileLock, which opens, locks and closes the file every time.
    import fcntl

    import filelock

    from zgit.loader import checkout as checkout_module

    lock_batch = 500 if quick else 5000
    kept_path = str(repository.git.git_dir / "zgit" / "bench-flock")
    kept_fd = os.open(kept_path, os.O_RDWR | os.O_CREAT, 0o644)
    file_lock = filelock.FileLock(str(repository.git.git_dir / "zgit" / "bench-filelock"))

    def zgit_locks() -> float:
        def run() -> None:
            for _ in range(lock_batch):
                with checkout_module.locked(repository.git, 10.0):
                    pass
        return timed(run) / lock_batch

    def kept_flock() -> float:
        def run() -> None:
            for _ in range(lock_batch):
                fcntl.flock(kept_fd, fcntl.LOCK_EX)
                fcntl.flock(kept_fd, fcntl.LOCK_UN)
        return timed(run) / lock_batch

    def file_lock_cycle() -> float:
        def run() -> None:
            for _ in range(lock_batch // 10):
                with file_lock:
                    pass
        return timed(run) / (lock_batch // 10)

    locks = interleave([
        Contender("zgit", zgit_locks, 5 if quick else 15),
        Contender("kept_flock", kept_flock, 5 if quick else 15),
        Contender("filelock", file_lock_cycle, 5 if quick else 15),
    ])
    os.close(kept_fd)

    if profile is not None:
        def loads(strategy: str, count: int):
            for _ in range(count):
                forget_loaded()
                load_source(source, repo=repository, strategy=strategy)

        profile["checkout load (x100)"] = run_profile(lambda: loads("checkout", 100))
        profile["memory load (x300)"] = run_profile(lambda: loads("memory", 300))
        load_source(source, repo=repository)
        profile["repeated load (x200000)"] = run_profile(
            lambda: [load_source(source, repo=repository) for _ in range(200000)]
        )

    cleanup()
    return {
        "checkout_ms": median(times["checkout"]) * 1e3,
        "legacy_ms": median(times["legacy"]) * 1e3,
        "plain_import_ms": median(times["plain_import"]) * 1e3,
        "memory_ms": median(times["memory"]) * 1e3,
        "plain_pyc_ms": median(times["plain_pyc"]) * 1e3,
        "memory_cold_ms": median(times["memory_cold"]) * 1e3,
        "memory_no_cache_ms": median(times["memory_no_cache"]) * 1e3,
        # memory strategy (zgit's bytecode cache warm / emptied before each load) over a
        # plain import of the same module from up-to-date __pycache__, in CPU time (both
        # are in-process work; on a busy machine the wall clock mostly measures preemption)
        "memory_vs_pyc": median(cpu["memory"]) / median(cpu["plain_pyc"]),
        "memory_vs_pyc_cold": median(cpu["memory_cold"]) / median(cpu["plain_pyc"]),
        "memory_vs_pyc_wall": median(times["memory"]) / median(times["plain_pyc"]),
        "memory_vs_pyc_cold_wall": median(times["memory_cold"]) / median(times["plain_pyc"]),
        "repeat_us": median(repeats["repository"]) * 1e6,
        # taking and releasing the checkout's locks, a bare flock() on a kept descriptor,
        # filelock's FileLock (what every load paid before lock_descriptor)
        "lock_us": median(locks["zgit"]) * 1e6,
        "kept_flock_us": median(locks["kept_flock"]) * 1e6,
        "filelock_us": median(locks["filelock"]) * 1e6,
        "repeat_path_us": median(repeats["path"]) * 1e6,
        "compile_ms": median(times["compile"]) * 1e3,
        "unmarshal_ms": median(times["unmarshal"]) * 1e3,
        # CPU time of the in-process contenders (the legacy one runs git in subprocesses)
        "cpu_ms": {name: median(cpu[name]) * 1e3 for name in (
            "checkout", "memory", "plain_import", "compile", "plain_pyc", "memory_cold", "memory_no_cache")},
        # the same module directory layout with three tiny files: loader overhead only
        "tiny": {
            "memory_us": median(times["tiny_memory"]) * 1e6,
            "plain_import_us": median(times["tiny_plain"]) * 1e6,
            "memory_cpu_us": median(cpu["tiny_memory"]) * 1e6,
            "plain_import_cpu_us": median(cpu["tiny_plain"]) * 1e6,
        },
        "pin_commits_back": PIN_BACK,
        # what the legacy sequence costs beyond the import, per unit of what the checkout
        # strategy costs beyond the memory strategy (the same import, nothing written)
        "checkout_overhead_small": checkout_overhead(times),
        # the same without refreshing the index's stat data after the restore (which keeps
        # `git diff-index HEAD` agreeing with `git status`: one index write per load)
        "checkout_overhead_small_no_index_refresh": checkout_overhead(times, "checkout_no_index_refresh"),
        "checkout_no_index_refresh_ms": median(times["checkout_no_index_refresh"]) * 1e3,
        # the same ratio with the checkout and memory loads made in runs of ten in a row,
        # as a pipeline makes them (legacy and plain import as above)
        "checkout_overhead_in_a_row": checkout_overhead(
            {"legacy": times["legacy"], "plain_import": times["plain_import"],
             "checkout": in_a_row["checkout"], "memory": in_a_row["memory"]}),
        "checkout_in_a_row_ms": median(in_a_row["checkout"]) * 1e3,
        "memory_in_a_row_ms": median(in_a_row["memory"]) * 1e3,
        # writing the index file once (lock file, rename; no checksum) and the ratio a
        # checkout that did nothing else but leave the index fresh would reach:
        # (legacy - plain) / that write
        "index_write_ms": median(times["index_write"]) * 1e3,
        # what the first zgit call after a git command that rewrote the index pays extra
        "index_parse_ms": median(times["index_parse"]) * 1e3,
        "checkout_overhead_ceiling": overhead_ceiling(times),
        # every file operation of this checkout, replayed without zgit's logic, and the
        # ratio a checkout that did only those would reach
        "file_ops_ms": median(times["file_ops"]) * 1e3,
        "checkout_overhead_file_ops_ceiling": overhead_ceiling(times, "file_ops"),
        "repeats": {k: len(v) for k, v in times.items()},
    }


def overhead_ceiling(times: Dict[str, List[float]], floor_key: str = "index_write") -> Optional[float]:
    """(legacy - plain import) / writing the index file once: the checkout_overhead of a
    checkout whose only cost beyond the memory strategy were writing the index that keeps
    ``git diff-index`` agreeing with ``git status`` (the legacy sequence writes it three
    times, with checksums)."""
    legacy, plain, write = median(times["legacy"]), median(times["plain_import"]), median(times[floor_key])
    if None in (legacy, plain, write) or not write:
        return None
    return (legacy - plain) / write  # type: ignore[operator]


def checkout_overhead(times: Dict[str, List[float]], checkout_key: str = "checkout") -> Optional[float]:
    """(legacy - plain import) / (checkout - memory), from the medians of one run: how many
    times more the legacy sequence spends around the import than zgit's checkout spends on
    the disk.  None when the checkout's cost beyond memory is lost in the noise (<= 0)."""
    legacy, plain = median(times["legacy"]), median(times["plain_import"])
    checkout, memory = median(times[checkout_key]), median(times["memory"])
    if None in (legacy, plain, checkout, memory) or checkout - memory <= 0:  # type: ignore[operator]
        return None
    return (legacy - plain) / (checkout - memory)  # type: ignore[operator]


# -- the import hook on unrelated imports -------------------------------------------------

_HOOK_SCRIPT = '''\
import gc, importlib, sys, time
variant, directory, count, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
meta_before, hooks_before = list(sys.meta_path), list(sys.path_hooks)
if variant == "with":
    # zgit's real finders, as in a process that has loaded a pin (``import zgit`` alone
    # installs a stand-in that only imports which would fail anyway ever reach)
    import zgit.loader
meta_after, hooks_after = list(sys.meta_path), list(sys.path_hooks)
sys.path.insert(0, directory)
names = ["unrelated_%03d" % i for i in range(count)]


def hook(on):
    # whatever importing zgit put on sys.meta_path and sys.path_hooks, in place or taken
    # out (the same process, the same state otherwise)
    sys.meta_path[:] = meta_after if on else [f for f in meta_after if f in meta_before]
    sys.path_hooks[:] = hooks_after if on else [h for h in hooks_after if h in hooks_before]


def one_round():
    # CPU time of this process (preemption by the machine's other processes is not in
    # it, the system calls of the imports are), and wall-clock time
    gc.disable()
    cpu = time.process_time()
    started = time.perf_counter()
    for name in names:
        importlib.import_module(name)
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu
    gc.enable()
    for name in names:
        del sys.modules[name]
    return cpu, elapsed


one_round()
one_round()
measured = [one_round() for _ in range(rounds)]
plain = [cpu for cpu, _ in measured]
wall = [elapsed for _, elapsed in measured]
toggled = {True: [], False: []}
if variant == "with":
    for r in range(2 * rounds):
        on = r % 4 in (0, 3)
        hook(on)
        toggled[on].append(one_round()[0])
    hook(True)
# The direct cost: the finders importing zgit put ahead of the one that finds ordinary
# modules (PathFinder), asked for one unrelated name.  (Finders after it are consulted
# only by imports that would fail anyway.)
import importlib.machinery
ahead = meta_after[:meta_after.index(importlib.machinery.PathFinder)]
added = [f for f in ahead if f not in meta_before]
calls = 20000
started = time.perf_counter()
for _ in range(calls):
    for finder in added:
        finder.find_spec("unrelated_000", None)
finder_ns = (time.perf_counter() - started) / calls * 1e9
print(repr({"plain": plain, "wall": wall, "on": toggled[True], "off": toggled[False], "finder_ns": finder_ns}))
'''


def bench_hook(base: Path, quick: bool) -> dict:
    """Imports of 200 fresh unrelated modules (cached bytecode: the fastest, so the most
    sensitive import path) in short processes with and without zgit's finders installed
    (``import zgit.loader``, as after the first pinned load), alternated
    (a second series without zgit gives the noise floor); and, inside the processes with
    zgit, rounds with zgit's finder and path hook taken out and put back (ABBA)."""
    import ast

    modules = base / "hook_modules"
    modules.mkdir(parents=True, exist_ok=True)
    count = 200
    for i in range(count):
        (modules / f"unrelated_{i:03d}.py").write_text(
            f'"""Unrelated module {i}."""\nimport os\nVALUE = {i}\n\ndef f(x):\n    return x + VALUE\n'
        )
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(modules)], check=True)
    script = base / "hook_bench.py"
    script.write_text(_HOOK_SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    rounds = 6 if quick else 10
    processes = 3 if quick else 15
    runs: Dict[str, List[float]] = {"without": [], "with": [], "without_again": [], "on": [], "off": [],
                                    "finder_ns": [], "ratio": [], "noise": []}
    order = ["without", "with", "without_again"]
    for p in range(processes):
        this: Dict[str, float] = {}
        for variant in order[p % 3:] + order[:p % 3]:
            flag = "with" if variant == "with" else "without"
            out = subprocess.run(
                [sys.executable, str(script), flag, str(modules), str(count), str(rounds)],
                env=env, capture_output=True, text=True, check=True, cwd=str(base),
            ).stdout
            figures = ast.literal_eval(out.strip())
            this[variant] = median(figures["plain"])
            this[variant + "_wall"] = median(figures["wall"])
            runs[variant].extend(figures["plain"])
            runs["on"].extend(figures["on"])
            runs["off"].extend(figures["off"])
            if flag == "with":
                runs["finder_ns"].append(figures["finder_ns"])
        # Ratios within one trio of processes run back to back: slow drifts of the
        # machine's load cancel out.
        runs["ratio"].append(this["with"] / this["without"])
        runs["noise"].append(this["without_again"] / this["without"])
        runs.setdefault("wall_ratio", []).append(this["with_wall"] / this["without_wall"])
    without = median(runs["without"])
    with_zgit = median(runs["with"])
    shutil.rmtree(modules, ignore_errors=True)
    return {
        "unrelated_import_ratio": median(runs["ratio"]),
        "noise_ratio": median(runs["noise"]),
        "wall_clock_ratio": median(runs["wall_ratio"]),
        "processes": processes,
        "in_process_ratio": median(runs["on"]) / median(runs["off"]),
        # zgit's finders asked once per import: their cost as a share of an import
        "finder_ns_per_import": median(runs["finder_ns"]),
        "finder_share": median(runs["finder_ns"]) * 1e-9 / (without / count),
        "without_ms": without * 1e3,
        "with_ms": with_zgit * 1e3,
        "modules": count,
    }


# -- memory of many pins ----------------------------------------------------------------

_MEMORY_SCRIPT = '''\
import gc, json, linecache, os, sys, weakref
root, module, shas = sys.argv[1], sys.argv[2], json.loads(open(sys.argv[3]).read())
sys.path.insert(0, root)
import zgit
from zgit.loader import forget_loaded, load_source

def rss():
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

repository = zgit.Repository(root)
def load_all():
    for sha in shas:
        load_source(f"{module}.Trainer@{sha}", repo=repository, strategy="memory")
# one-time costs (zgit's and the module's imports, the real parent package) first
load_source(f"{module}.Trainer@{shas[0]}", repo=repository, strategy="memory")
forget_loaded(); gc.collect()
before = rss()
load_all(); gc.collect()
loaded = rss()
pinned = weakref.ref(load_source(f"{module}.Trainer@{shas[-1]}", repo=repository))
module_count = sum("@" in n for n in sys.modules)
forget_loaded(); gc.collect()
parent = sys.modules[module.split(".")[0]]
left = {
    "class": pinned() is not None,
    "sys.modules": sum("@" in n for n in sys.modules),
    "parent attributes": sum("@" in a for a in vars(parent)),
    "linecache": sum(f.startswith(root) and "@" in f for f in linecache.cache),
}
forgotten = rss()
load_all(); gc.collect()
again = rss()
print(json.dumps({"loads": len(shas), "modules": module_count, "left": left,
                  "before": before, "loaded": loaded, "forgotten": forgotten, "again": again}))
'''


def bench_memory(base: Path, quick: bool) -> dict:
    """Resident memory of a process that loads 1,000 distinct pins (200 with --quick) of
    the load benchmark's module, and whether ``forget_loaded()`` gives them back."""
    if not os.path.exists("/proc/self/statm"):
        return {"note": "not measured: needs /proc (Linux)"}
    loads = 200 if quick else 1000
    root = base / "many_pins"
    shas = build(root, trainer_history_spec(loads))
    shas_file = base / "many_pins.json"
    shas_file.write_text(json.dumps(shas))
    script = base / "memory_probe.py"
    script.write_text(_MEMORY_SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, str(script), str(root), LOAD_MODULE, str(shas_file)],
                         env=env, capture_output=True, text=True, cwd=str(root))
    shutil.rmtree(root, ignore_errors=True)
    if out.returncode != 0:
        raise RuntimeError(f"the memory probe failed:\n{out.stderr}")
    figures = json.loads(out.stdout)
    kib = 1024 * figures["loads"]
    left = figures["left"]
    return {
        "loads": figures["loads"],
        "pinned_modules": figures["modules"],
        "kb_per_pin": (figures["loaded"] - figures["before"]) / kib,
        "forget_released": not left["class"] and not left["sys.modules"] and not left["parent attributes"]
        and not left["linecache"],
        "left_after_forget": left,
        # what forgetting gave back to the allocator is reused: the same loads again grow
        # the process by this much per pin
        "kb_per_pin_again": (figures["again"] - figures["forgotten"]) / kib,
        "rss_mb": {k: round(figures[k] / 2**20, 1) for k in ("before", "loaded", "forgotten", "again")},
    }


# -- start-up ------------------------------------------------------------------------------

_STARTUP_STEP = '''\
"""The one step of the start-up benchmark's pipeline."""


class Step:
    def __init__(self, factor=1):
        self.factor = factor
'''


def bench_startup(base: Path) -> dict:
    """Whole processes, as a user or a pre-commit hook starts them: ``python -c pass`` (the
    baseline), ``python -c "import zgit"``, ``zgit --help`` and ``zgit audit`` of a
    repository with one pipeline; interleaved, medians of 10 starts each (wall clock, and
    the started process's CPU time).  For reference, importing pygit2 alone and pygit2 with
    PyYAML: the floor of any audit, which reads git objects and YAML.

    The processes run as users run them, with bytecode caches written and used
    (PYTHONDONTWRITEBYTECODE unset; the warm-ups write zgit's caches)."""
    root = base / "startup"
    sha = build(root, {"commits": [{"message": "a step", "files": {
        "trainers/tiny/__init__.py": "",
        "trainers/tiny/step.py": _STARTUP_STEP,
    }}]})[-1]
    (root / "pipelines").mkdir()
    (root / "pipelines" / "one.yaml").write_text(
        f"version: '1'\nname: one\nsteps:\n  train:\n    source: trainers.tiny.step.Step@{sha}\n"
        "    args: {factor: 2}\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    script = Path(sys.executable).parent / "zgit"  # the console script users run
    zgit = [str(script)] if script.exists() else [sys.executable, "-m", "zgit"]
    commands = {
        "python": [sys.executable, "-c", "pass"],
        "import": [sys.executable, "-c", "import zgit"],
        "help": zgit + ["--help"],
        "audit": zgit + ["audit"],
        # references: what the audit cannot do without (it reads git objects and YAML)
        "pygit2": [sys.executable, "-c", "import pygit2"],
        "pygit2_yaml": [sys.executable, "-c", "import pygit2, yaml"],
    }

    cpu: Dict[str, List[float]] = {name: [] for name in commands}

    def children_cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    def start(name: str, command: List[str]) -> Callable[[], float]:
        def measure() -> float:
            before = children_cpu()
            wall = timed(lambda: subprocess.run(command, cwd=root, env=env, capture_output=True, check=True))
            cpu[name].append(children_cpu() - before)
            return wall
        return measure

    starts = 10
    times = interleave([Contender(name, start(name, command), starts, warmup=2) for name, command in commands.items()])
    ms = {name: median(values) * 1e3 for name, values in times.items()}
    # The started process's own CPU time (warm-ups left out): what it costs, without the
    # time it waited for a core on a busy machine.
    cpu_ms = {name: median(values[-starts:]) * 1e3 for name, values in cpu.items()}
    shutil.rmtree(root, ignore_errors=True)
    return {
        **{f"{name}_ms": value for name, value in ms.items()},
        **{f"{name}_ratio": ms[name] / ms["python"] for name in commands if name != "python"},
        "cpu_ms": cpu_ms,
        "cpu_ratios": {name: cpu_ms[name] / cpu_ms["python"] for name in commands if name != "python"},
        "starts": starts,
        "zgit_command": " ".join(Path(part).name for part in zgit),
    }


# -- the audit -------------------------------------------------------------------------


def _trainer_step(version: int, k: int) -> str:
    """The load benchmark's ~150-line step module as module directory ``k``'s step."""
    text = _STEP.format(version=version, epochs=10 + version, lr=0.01 + version / 1000)
    return text.replace("class Trainer(BaseStep)", f"class Step{k}(BaseStep)")


def bench_audit_figures(base: Path, quick: bool = False) -> object:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        try:
            from bench_audit import bench_audit, bench_distinct_pins  # type: ignore[import-not-found]
        except ImportError:
            return "not available"
        flat = bench_audit(base)
        distinct = bench_distinct_pins(base, 1000)
        flat["audit.ms_per_distinct_pin"] = distinct["ms_per_distinct_pin"]
        flat["audit.ms_per_distinct_pin_wall"] = distinct["ms_per_distinct_pin_wall"]
        flat["audit.distinct_pins"] = distinct["pins"]
        # the same with a ~150-line pinned module, whose one parse is most of the cost
        big = bench_distinct_pins(base, 200 if quick else 1000, step=_trainer_step)
        flat["audit.ms_per_distinct_pin_150_lines"] = big["ms_per_distinct_pin"]
        flat["audit.ms_per_distinct_pin_150_lines_wall"] = big["ms_per_distinct_pin_wall"]
        flat["audit.distinct_pins_150_lines"] = big["pins"]
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    nested: dict = {}
    for key, value in flat.items():
        parts = key.split(".")
        if parts[0] == "audit":
            parts = parts[1:]
        node = nested
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return nested


# -- runs ------------------------------------------------------------------------------


_RUN_STEP = '''\
from zgit import BaseStep


class Add(BaseStep):
    def __init__(self, n=1):
        self.n = n

    def run(self, data):
        return (data or 0) + self.n
'''


def bench_runs(base: Path, quick: bool) -> dict:
    """The run store's figures (keys ``runs.*`` of issue 12)."""
    from fixtures.builder import git_env

    root = base / "runs-project"
    (root / "steps" / "add").mkdir(parents=True)
    (root / "steps" / "__init__.py").write_text("")
    (root / "steps" / "add" / "__init__.py").write_text("")
    (root / "steps" / "add" / "step.py").write_text(_RUN_STEP)
    (root / ".gitignore").write_text("__pycache__/\n")
    env = git_env()
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "steps"]):
        subprocess.run(["git", *args], cwd=root, env=env, check=True, capture_output=True)
    sys.path.insert(0, str(root))
    try:
        return _bench_runs_in(root, quick)
    finally:
        sys.path.remove(str(root))
        _drop_modules("steps")


def _bench_runs_in(root: Path, quick: bool) -> dict:
    from zgit import Pipeline, Repository
    from zgit.runs.store import RunStore

    from steps.add.step import Add  # type: ignore[import-not-found]

    repository = Repository(root)
    wide = 11

    def pipeline(steps: int) -> Pipeline:
        built = Pipeline(f"bench {steps}")
        for i in range(steps):
            built.add_step(f"s{i}", Add(n=i))
        return built

    pipelines = {n: pipeline(n) for n in (1, wide)}

    def run(steps: int, cache: bool) -> Callable[[], float]:
        return lambda: timed(lambda: pipelines[steps].run(repo=repository, save=False, enable_cache=cache))

    repeats = 7 if quick else 30
    times = interleave([Contender(f"{n}-{c}", run(n, c), repeats, warmup=2)
                        for n in (1, wide) for c in (False, True)])
    per_step = {c: (median(times[f"{wide}-{c}"]) - median(times[f"1-{c}"])) / (wide - 1) * 1000
                for c in (False, True)}

    # one big artifact against the same bytes in a plain file
    import numpy

    size = (10 if quick else 100) << 20
    store = RunStore(root / "artifact-store")
    array = numpy.random.default_rng(0).random(size // 8)
    digest = store.put(array)
    plain = root / "plain.bin"
    plain.write_bytes(array.tobytes())

    def read_artifact() -> float:
        return timed(lambda: store.get(digest))

    def read_plain() -> float:
        def read() -> bytes:
            with open(plain, "rb") as f:
                return f.read()
        return timed(read)

    raw = plain.read_bytes()

    def digest_only() -> float:
        import hashlib

        return timed(lambda: hashlib.sha256(raw).digest())

    big = interleave([Contender("artifact", read_artifact, 5 if quick else 9),
                      Contender("plain", read_plain, 5 if quick else 9),
                      Contender("digest", digest_only, 5 if quick else 9)])
    back = store.get(digest)
    assert (back == array).all()

    # 10,000 runs, listed by a fresh `zgit runs`
    listing = RunStore(root / "list-store")
    for _ in range(10_000):
        run = listing.begin_run(pipeline="bench", yaml="version: '1'\n", head=None, clean=True,
                                zgit_version="0", python_version="3", platform="bench",
                                input_digest=None, reproducible=True)
        listing.finish_run(run.id, "completed")
    listing.close()
    cli_env = dict(os.environ, ZGIT_STORE=str(root / "list-store"), PYTHONPATH=str(ROOT))

    import resource

    cli_cpu: List[float] = []

    def list_cli() -> float:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "zgit", "runs"], cwd=root, env=cli_env,
                             capture_output=True, text=True)
        took = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cli_cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
        assert out.returncode == 0 and out.stdout.count("\n") == 10_001, out.stderr
        return took

    def python_startup() -> float:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import zgit.cli"], cwd=root, env=cli_env, check=True)
        return time.perf_counter() - started

    def list_in_process() -> float:
        reader = RunStore(root / "list-store")
        try:
            return timed(lambda: reader.list_runs())
        finally:
            reader.close()

    listed = interleave([Contender("cli", list_cli, 3 if quick else 7),
                         Contender("startup", python_startup, 3 if quick else 7),
                         Contender("in_process", list_in_process, 3 if quick else 7)])
    return {
        "step_overhead_ms": per_step[False],
        "cache_hit_ms": per_step[True],
        "run_1_step_ms": median(times["1-False"]) * 1000,
        "artifact_read_ratio": _ratio(median(big["artifact"]), median(big["plain"])),
        "artifact_mb": size >> 20,
        "artifact_read_ms": median(big["artifact"]) * 1000,
        "plain_read_ms": median(big["plain"]) * 1000,
        "digest_ms": median(big["digest"]) * 1000,
        "list_10k_ms": median(listed["cli"]) * 1000,
        "list_10k_cpu_ms": median(cli_cpu) * 1000,
        "list_10k_startup_ms": median(listed["startup"]) * 1000,
        "list_10k_in_process_ms": median(listed["in_process"]) * 1000,
    }


def bench_dask(base: Path, quick: bool) -> dict:
    """The code bundle figures (keys ``dask.*`` of issue 13)."""
    from fixtures.builder import git_env
    from zgit.engines.bundle import build as build_bundle, verify_bytes
    from zgit.gitrepo import GitRepo

    root = base / "dask-project"
    module = root / "pkg" / "mod"
    module.mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("")
    (module / "__init__.py").write_text("")
    for i in range(9):
        (module / f"m{i}.py").write_text(f'"""Module {i}."""\n' + "".join(
            f"def f{j}(x):\n    return x + {i * 100 + j}\n\n" for j in range(40)))
    with open(module / "m0.py", "a") as handle:
        handle.write(_DASK_STEP)
    env = git_env()
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "pkg"]):
        subprocess.run(["git", *args], cwd=root, env=env, check=True, capture_output=True)
    sha = git(root, "rev-parse", "HEAD").strip()
    git_dir = str(root / ".git")
    data = build_bundle(GitRepo(git_dir), sha, MODULE_DIR, "pkg.mod").to_bytes()

    def build_once() -> float:
        fresh = GitRepo(git_dir)  # opened untimed; its caches are empty
        return timed(lambda: build_bundle(fresh, sha, MODULE_DIR, "pkg.mod"))

    def verify_once() -> float:
        return timed(lambda: verify_bytes(data))

    repeats = 20 if quick else 200
    times = interleave([Contender("build", build_once, repeats), Contender("verify", verify_once, repeats)])
    figures = {
        "bundle_files": len(verify_bytes(data).files),
        "bundle_bytes": len(data),
        "bundle_build_ms": median(times["build"]) * 1000,
        "bundle_verify_ms": median(times["verify"]) * 1000,
    }
    try:
        import distributed  # noqa: F401  (the dask extra)
    except ImportError:
        figures["step_roundtrip"] = "not available (pip install 'zgit[dask]')"
        return figures
    figures.update(_bench_dask_roundtrip(root, sha, quick))
    return figures


_DASK_STEP = '''
from zgit import BaseStep


class Add(BaseStep):
    def __init__(self, n=1):
        self.n = n

    def run(self, data):
        return data + self.n
'''


def _bench_dask_roundtrip(root: Path, sha: str, quick: bool) -> dict:
    """A pinned step executed by the dask engine against a trivial task (``operator.add``)
    submitted and gathered on the same running local cluster (2 worker processes)."""
    import operator

    from zgit import Repository
    from zgit.engines import StepCall
    from zgit.engines.dask import DaskEngine
    from zgit.source import Source

    source = Source.parse(f"pkg.mod.m0.Add@{sha}")
    started = time.perf_counter()
    with DaskEngine(Repository(root), n_workers=2) as engine:
        engine.prepare([source])
        client = engine.client
        ready_s = time.perf_counter() - started

        def step() -> float:
            return timed(lambda: engine.execute(StepCall("add", source, {"n": 1}), 1))

        def trivial() -> float:
            return timed(lambda: client.submit(operator.add, 1, 1, pure=False).result())

        repeats = 30 if quick else 300
        times = interleave([Contender("step", step, repeats, warmup=3),
                            Contender("trivial", trivial, repeats, warmup=3)])
    _drop_modules("pkg")
    return {
        "step_roundtrip_ms": median(times["step"]) * 1000,
        "trivial_task_ms": median(times["trivial"]) * 1000,
        "step_roundtrip_ratio": _ratio(median(times["step"]), median(times["trivial"])),
        "cluster_ready_s": ready_s,
    }


# -- profiles --------------------------------------------------------------------------


def run_profile(fn: Callable[[], object], top: int = 14) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    fn()
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    lines = out.getvalue().splitlines()
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    head = next((line.strip() for line in lines if "function calls" in line), "")
    return "\n".join([head] + lines[start:])


# -- report ----------------------------------------------------------------------------


def _ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return a / b if a is not None and b else None


def targets(results: dict) -> Dict[str, dict]:
    out: Dict[str, dict] = {}

    def add(name: str, value: Optional[float], op: str, bound: float, note: str = "") -> None:
        if value is None:
            out[name] = {"value": None, "target": f"{op} {bound:g}", "met": None, "note": note or "not measured"}
            return
        met = value >= bound if op == ">=" else value <= bound
        out[name] = {"value": value, "target": f"{op} {bound:g}", "met": met}
        if note:
            out[name]["note"] = note

    pin = results.get("pin_check", {})
    p20 = pin.get("20000", {})
    add("pin_check 20k: legacy / zgit", _ratio(p20.get("legacy_ms"), p20.get("zgit_ms")), ">=", 300)
    add("pin_check 20k: git status / zgit", _ratio(p20.get("git_cli_ms"), p20.get("zgit_ms")), ">=", 5)
    add("pin_check zgit: 100k / 1k", _ratio(pin.get("100000", {}).get("zgit_ms"), pin.get("1000", {}).get("zgit_ms")),
        "<=", 1.5)
    add("pin_check.dir_scaling: 1,000 / 10 files", pin.get("dir_scaling"), "<=", 10,
        f"1,000 lstat calls alone: {pin['dir_scaling_lstat_floor']:.1f}x the 10-file check"
        if pin.get("dir_scaling_lstat_floor") else "")
    add("pin_check.dir_1000_vs_git: zgit / git", pin.get("dir_1000_vs_git"), "<=", 1.0)
    add("pin_check.bigfile_vs_git: zgit / git", pin.get("bigfile_vs_git"), "<=", 1.0,
        f"one {pin.get('bigfile_mb')} MB file" if pin.get("bigfile_mb") else "")
    add("pin_check.autocrlf_vs_git: git / zgit", pin.get("autocrlf_vs_git"), ">=", 5)
    load = results.get("load", {})
    ceiling = _ratio(load.get("legacy_ms"), load.get("memory_ms"))
    add("load: legacy / checkout", _ratio(load.get("legacy_ms"), load.get("checkout_ms")), ">=", 20,
        f"legacy / memory strategy, no disk writes at all: {ceiling:.1f}x" if ceiling else "")
    big_load = load.get("in_big_repo")
    if big_load:
        add(f"load in {big_load['files']} files: legacy / checkout",
            _ratio(big_load["legacy_ms"], big_load["checkout_ms"]), ">=", 20, "supplementary")
    add("load.checkout_overhead_small: (legacy - plain) / (checkout - memory)",
        load.get("checkout_overhead_small"), ">=", 10,
        f"writing the index file alone: {load['checkout_overhead_ceiling']:.1f}; its file operations "
        f"alone: {load['checkout_overhead_file_ops_ceiling']:.1f}"
        if load.get("checkout_overhead_file_ops_ceiling") else "")
    if big_load:
        add(f"load.checkout_overhead_20k: the same in {big_load['files']} files",
            load.get("checkout_overhead_20k"), ">=", 50,
            f"writing the index file alone: {big_load['checkout_overhead_ceiling']:.1f}; its file "
            f"operations alone: {big_load['checkout_overhead_file_ops_ceiling']:.1f}"
            if big_load.get("checkout_overhead_file_ops_ceiling") else "")
    cpu = load.get("cpu_ms", {})
    cpu_ratio = _ratio(cpu.get("memory"), cpu.get("plain_import"))
    tiny = load.get("tiny", {})
    tiny_ratio = _ratio(tiny.get("memory_cpu_us"), tiny.get("plain_import_cpu_us"))
    add("load: memory / plain import", _ratio(load.get("memory_ms"), load.get("plain_import_ms")), "<=", 1.0,
        f"in CPU time {cpu_ratio:.3f}; tiny files (loader overhead only) {tiny_ratio:.3f}"
        if cpu_ratio and tiny_ratio else "")
    add("load: repeat (us)", load.get("repeat_us"), "<=", 10)
    hook = results.get("hook", {})
    ratio = hook.get("unrelated_import_ratio")
    if ratio is not None:
        # "Nothing measurable": no further from 1 than 3 % or twice the difference
        # between two identical series without zgit, whichever is larger.
        noise = abs(hook["noise_ratio"] - 1)
        bound = 1 + max(0.03, 2 * noise)
        add("hook: unrelated imports with / without zgit", ratio, "<=", round(bound, 3),
            f"noise: without / without {hook['noise_ratio']:.3f}; zgit's finder "
            f"{hook['finder_share'] * 100:.2f} % of an import")
    cold = load.get("memory_vs_pyc_cold")
    add("load: memory (bytecode cache warm) / .pyc, CPU", load.get("memory_vs_pyc"), "<=", 1.2,
        f"wall clock {load['memory_vs_pyc_wall']:.2f}; cache emptied before each load {cold:.2f} "
        f"(wall {load['memory_vs_pyc_cold_wall']:.2f}); cache off "
        f"{_ratio(cpu.get('memory_no_cache'), cpu.get('plain_pyc')):.2f}" if cold else "")
    audit = results.get("audit")
    if isinstance(audit, dict):
        add("audit: 1,000 files x 5 steps (s)", audit.get("seconds"), "<=", 1.0)
        wall = audit.get("ms_per_distinct_pin_wall")
        add(f"audit: ms per distinct pin, CPU ({audit.get('distinct_pins')} pins)", audit.get("ms_per_distinct_pin"),
            "<=", 1.0, f"the audit benchmark's step module; wall clock {wall:.2f} ms" if wall else "")
        wall = audit.get("ms_per_distinct_pin_150_lines_wall")
        add(f"  same, ~150-line module ({audit.get('distinct_pins_150_lines')} pins)",
            audit.get("ms_per_distinct_pin_150_lines"), "<=", 1.0,
            f"wall clock {wall:.2f} ms; one ast.parse of the module is most of it" if wall else "")
    memory = results.get("memory")
    if isinstance(memory, dict) and "kb_per_pin" in memory:
        add(f"memory: KB per pin over {memory['loads']} loads", memory["kb_per_pin"], "<=", 100,
            f"after forget_loaded, the same loads again: {memory['kb_per_pin_again']:.1f} KB per pin")
        released = bool(memory["forget_released"])
        out["memory: forget_loaded releases every pin"] = {
            "value": released, "target": "true", "met": released}
    runs = results.get("runs")
    if isinstance(runs, dict):
        add("runs: step overhead (ms)", runs.get("step_overhead_ms"), "<=", 3)
        add("runs: cache hit (ms)", runs.get("cache_hit_ms"), "<=", 2)
        add(f"runs: {runs.get('artifact_mb')} MB artifact / plain read", runs.get("artifact_read_ratio"), "<=", 1.3,
            f"SHA-256 of the bytes alone: {runs['digest_ms']:.1f} ms, plain read {runs['plain_read_ms']:.1f} ms")
        add("runs: zgit runs over 10k runs (ms)", runs.get("list_10k_ms"), "<=", 300,
            f"CPU time {runs['list_10k_cpu_ms']:.0f} ms; python -c 'import zgit.cli' alone: "
            f"{runs['list_10k_startup_ms']:.0f} ms; in process: {runs['list_10k_in_process_ms']:.0f} ms")
    startup = results.get("startup", {})
    startup_cpu = startup.get("cpu_ratios", {})
    for key, label, bound in (("help", "zgit --help", 2.0), ("import", "import zgit", 2.0),
                              ("audit", "zgit audit (1 pipeline)", 4.0)):
        add(f"startup: {label} / python -c pass", startup.get(f"{key}_ratio"), "<=", bound,
            f"in CPU time {startup_cpu[key]:.2f}" if key in startup_cpu else "")
    dask = results.get("dask")
    if isinstance(dask, dict):
        add(f"dask: bundle build, {dask['bundle_files']} files (ms)", dask.get("bundle_build_ms"), "<=", 5)
        add("dask: bundle verify (ms)", dask.get("bundle_verify_ms"), "<=", 3)
        if "step_roundtrip_ratio" in dask:
            add("dask: pinned step / trivial task round trip", dask["step_roundtrip_ratio"], "<=", 2.0,
                f"{dask['step_roundtrip_ms']:.2f} ms against {dask['trivial_task_ms']:.2f} ms")
    return out


def render(results: dict) -> str:
    def ms(value: Optional[float], unit: str = "ms") -> str:
        if value is None:
            return "-"
        return f"{value:.3f} {unit}" if value < 10 else f"{value:.1f} {unit}"

    def x(value: Optional[float]) -> str:
        return "-" if value is None else f"{value:,.1f}x" if value >= 10 else f"{value:.2f}x"

    lines = [f"zgit benchmark ({'quick' if results['meta']['quick'] else 'full'}): "
             f"Python {results['meta']['python']}, {results['meta']['git']}, {results['meta']['cpus']} CPUs, "
             f"load average {results['meta']['load_average']}", ""]
    lines.append("Pin check (module directory pkg/mod, 10 files; medians)")
    lines.append(f"  {'files':>7}  {'zgit':>10}  {'git status':>11}  {'legacy':>11}  {'legacy/zgit':>12}  {'git/zgit':>9}")
    for n, entry in results["pin_check"].items():
        if not n.isdigit():
            continue
        lines.append(
            f"  {int(n):>7}  {ms(entry['zgit_ms']):>10}  {ms(entry['git_cli_ms']):>11}  {ms(entry['legacy_ms']):>11}  "
            f"{x(_ratio(entry['legacy_ms'], entry['zgit_ms'])):>12}  {x(_ratio(entry['git_cli_ms'], entry['zgit_ms'])):>9}"
        )
    dirs = results["pin_check"].get("dirs_ms")
    if dirs:
        pin = results["pin_check"]
        lines += ["", "Pin check by module directory (medians; git status -- <dir>)",
                  f"  {'pkg/mod, 10 files':<44} zgit {ms(dirs['zgit_10']):>10}",
                  f"  {'pkg/wide, ' + str(pin['wide_files']) + ' files':<44} zgit {ms(dirs['zgit_1000']):>10}  "
                  f"git {ms(dirs['git_1000']):>10}",
                  f"  {'pkg/big, one ' + str(pin['bigfile_mb']) + ' MB file':<44} zgit {ms(dirs['zgit_big']):>10}  "
                  f"git {ms(dirs['git_big']):>10}",
                  f"  {'pkg/mod with core.autocrlf=true, CRLF files':<44} zgit {ms(dirs['zgit_crlf']):>10}  "
                  f"git {ms(dirs['git_crlf']):>10}"]
    load = results.get("load")
    if load:
        lines += ["", f"Loading a pin {load['pin_commits_back']} commits back (~150-line step module + helper; medians)"]
        cpu = load.get("cpu_ms", {})
        rows = [
            ("zgit checkout strategy", load["checkout_ms"], "ms", cpu.get("checkout")),
            ("legacy git checkout/import/reset/checkout", load["legacy_ms"], "ms", None),
            ("zgit memory strategy", load["memory_ms"], "ms", cpu.get("memory")),
            ("  same, zgit's bytecode cache emptied (cold)", load.get("memory_cold_ms"), "ms", cpu.get("memory_cold")),
            ("  same, zgit's bytecode cache off", load.get("memory_no_cache_ms"), "ms", cpu.get("memory_no_cache")),
            ("plain import from disk, bytecode off", load["plain_import_ms"], "ms", cpu.get("plain_import")),
            ("plain import from up-to-date .pyc", load.get("plain_pyc_ms"), "ms", cpu.get("plain_pyc")),
            ("compile() of the pin's 3 files (in all above)", load.get("compile_ms"), "ms", cpu.get("compile")),
            ("marshal.loads() of their code objects", load.get("unmarshal_ms"), "ms", None),
            ("repeated load_source (repo=Repository)", load["repeat_us"], "us", None),
            ("repeated load_source (repo=path)", load.get("repeat_path_us"), "us", None),
        ]
        lines.append(f"  {'':<48} {'wall':>10} {'cpu':>10}")
        for label, value, unit, cpu_value in rows:
            lines.append(f"  {label:<48} {ms(value, unit):>10} {ms(cpu_value, unit) if cpu_value else '':>10}")
        tiny = load.get("tiny")
        if tiny:
            lines.append(f"  {'three tiny files, zgit memory strategy':<48} {ms(tiny['memory_us'], 'us'):>10} "
                         f"{ms(tiny['memory_cpu_us'], 'us'):>10}")
            lines.append(f"  {'three tiny files, plain import':<48} {ms(tiny['plain_import_us'], 'us'):>10} "
                         f"{ms(tiny['plain_import_cpu_us'], 'us'):>10}")
        big_load = load.get("in_big_repo")
        if big_load:
            lines.append(f"  in a repository of {big_load['files']} files (in {big_load['tmpdir']}): "
                         f"checkout {ms(big_load['checkout_ms'])}, "
                         f"legacy {ms(big_load['legacy_ms'])} "
                         f"({x(_ratio(big_load['legacy_ms'], big_load['checkout_ms']))}), "
                         f"memory {ms(big_load['memory_ms'])}, plain import {ms(big_load['plain_import_ms'])}")
        if load.get("lock_us") is not None:
            lines.append(f"  checkout locks, take and release: {load['lock_us']:.1f} us (a bare flock() on a "
                         f"kept descriptor {load['kept_flock_us']:.1f} us; filelock's FileLock "
                         f"{load['filelock_us']:.0f} us)")
        lines.append(f"  checkout overhead, (legacy - plain) / (checkout - memory): "
                     f"{x(load.get('checkout_overhead_small'))} here"
                     + (f", {x(load.get('checkout_overhead_20k'))} in the 20k-file repository" if big_load else ""))
        lines.append(f"    a load that only wrote the index file ({ms(load.get('index_write_ms'))}"
                     + (f", {ms(big_load.get('index_write_ms'))} at 20k" if big_load else "") + "): "
                     f"{x(load.get('checkout_overhead_ceiling'))} here"
                     + (f", {x(big_load.get('checkout_overhead_ceiling'))} in the 20k-file repository"
                        if big_load else ""))
        lines.append(f"    a load that only made its file operations ({ms(load.get('file_ops_ms'))}"
                     + (f", {ms(big_load.get('file_ops_ms'))} at 20k" if big_load else "") + "): "
                     f"{x(load.get('checkout_overhead_file_ops_ceiling'))} here"
                     + (f", {x(big_load.get('checkout_overhead_file_ops_ceiling'))} in the 20k-file repository"
                        if big_load else ""))
        lines.append(f"    checkout and memory loads made ten in a row, as a pipeline makes them "
                     f"({ms(load.get('checkout_in_a_row_ms'))} / {ms(load.get('memory_in_a_row_ms'))}): "
                     f"{x(load.get('checkout_overhead_in_a_row'))} here")
        lines.append(f"    without the index refresh after the restore: "
                     f"{x(load.get('checkout_overhead_small_no_index_refresh'))} here"
                     + (f", {x(load.get('checkout_overhead_20k_no_index_refresh'))} in the 20k-file repository"
                        if big_load else ""))
    hook = results.get("hook")
    if hook:
        lines += ["", f"Import hook: {hook['modules']} unrelated imports (cached bytecode; CPU time; medians "
                      f"over {hook['processes']} trios of processes)",
                  f"  {'without zgit':<44} {ms(hook['without_ms']):>12}",
                  f"  {'with zgit imported':<44} {ms(hook['with_ms']):>12}",
                  f"  {'ratio (noise floor: without / without)':<44} "
                  f"{hook['unrelated_import_ratio']:>7.3f} ({hook['noise_ratio']:.3f})",
                  f"  {'the same ratio in wall-clock time':<44} {hook['wall_clock_ratio']:>7.3f}",
                  f"  {'same process, hook in / hook taken out':<44} {hook['in_process_ratio']:>7.3f}",
                  f"  {'zgit finders per unrelated import':<44} {hook['finder_ns_per_import']:>7.0f} ns "
                  f"({hook['finder_share'] * 100:.2f} % of an import)"]
    startup = results.get("startup")
    if startup:
        lines += ["", f"Start-up: whole processes, medians of {startup['starts']} starts each "
                      f"(zgit run as '{startup['zgit_command']}')"]
        lines.append(f"  {'':<44} {'wall':>10} {'ratio':>8} {'cpu':>10} {'ratio':>8}")
        for label, key in (("python -c pass", "python"), ('python -c "import zgit"', "import"),
                           ("zgit --help", "help"), ("zgit audit, a repository with one pipeline", "audit"),
                           ('(reference) python -c "import pygit2"', "pygit2"),
                           ('(reference) python -c "import pygit2, yaml"', "pygit2_yaml")):
            ratio = "" if key == "python" else f"{startup[key + '_ratio']:.2f}x"
            cpu_ratio = "" if key == "python" else f"{startup['cpu_ratios'][key]:.2f}x"
            lines.append(f"  {label:<44} {ms(startup[key + '_ms']):>10} {ratio:>8} "
                         f"{ms(startup['cpu_ms'][key]):>10} {cpu_ratio:>8}")
    audit = results.get("audit")
    if "audit" in results:
        lines += ["", "Audit (scripts/bench_audit.py)"]
    if isinstance(audit, dict):
        lines.append(f"  {audit.get('files')} files, {audit.get('steps')} steps: {audit.get('seconds'):.3f} s"
                     + (f"; 500 files {audit['half']['seconds']:.3f} s (ratio {audit.get('ratio_1000_to_500')})"
                        if isinstance(audit.get("half"), dict) else ""))
        if audit.get("ms_per_distinct_pin") is not None:
            lines.append(f"  {audit.get('distinct_pins')} distinct pins: {audit['ms_per_distinct_pin']:.3f} ms CPU "
                         f"({audit.get('ms_per_distinct_pin_wall', 0):.3f} ms wall) per pin; "
                         f"with a ~150-line module ({audit.get('distinct_pins_150_lines')} pins): "
                         f"{audit.get('ms_per_distinct_pin_150_lines', 0):.3f} ms CPU "
                         f"({audit.get('ms_per_distinct_pin_150_lines_wall', 0):.3f} ms wall)")
    elif "audit" in results:
        lines.append(f"  {audit}")
    memory = results.get("memory")
    if isinstance(memory, dict) and "kb_per_pin" in memory:
        lines += ["", f"Memory: one process loads {memory['loads']} distinct pins (memory strategy)",
                  f"  {memory['kb_per_pin']:.1f} KB per pin ({memory['pinned_modules']} pinned modules); "
                  f"RSS MB {memory['rss_mb']}",
                  f"  forget_loaded released them: {memory['forget_released']} (left: {memory['left_after_forget']}); "
                  f"loading them again: {memory['kb_per_pin_again']:.1f} KB per pin"]
    runs = results.get("runs")
    if isinstance(runs, dict):
        lines += ["", "Runs (run store; medians)",
                  f"  {'recording one executed step (tiny output)':<48} {ms(runs['step_overhead_ms']):>10}",
                  f"  {'one cached step (tiny output)':<48} {ms(runs['cache_hit_ms']):>10}",
                  f"  {'a whole run of one step':<48} {ms(runs['run_1_step_ms']):>10}",
                  f"  {str(runs['artifact_mb']) + ' MB numpy artifact read (digest checked)':<48} "
                  f"{ms(runs['artifact_read_ms']):>10}",
                  f"  {'the same bytes from a plain file':<48} {ms(runs['plain_read_ms']):>10}",
                  f"  {'SHA-256 of those bytes (in the artifact read)':<48} {ms(runs['digest_ms']):>10}",
                  f"  {'zgit runs over 10,000 runs (fresh process)':<48} {ms(runs['list_10k_ms']):>10}",
                  f"  {'  its CPU time':<48} {ms(runs['list_10k_cpu_ms']):>10}",
                  f"  {'  of which starting Python and zgit':<48} {ms(runs['list_10k_startup_ms']):>10}",
                  f"  {'  list_runs() in process':<48} {ms(runs['list_10k_in_process_ms']):>10}"]
    dask = results.get("dask")
    if isinstance(dask, dict):
        lines += ["", f"Code bundles ({dask['bundle_files']}-file module directory, {dask['bundle_bytes']} bytes; medians)",
                  f"  {'build from git objects (fresh repository)':<48} {ms(dask['bundle_build_ms']):>10}",
                  f"  {'verify with hashlib':<48} {ms(dask['bundle_verify_ms']):>10}"]
        if "step_roundtrip_ms" in dask:
            lines += [f"  {'pinned step on a local cluster (dask engine)':<48} {ms(dask['step_roundtrip_ms']):>10}",
                      f"  {'trivial task on the same cluster':<48} {ms(dask['trivial_task_ms']):>10}",
                      f"  {'starting the cluster and shipping the pin (s)':<48} {dask['cluster_ready_s']:>10.2f}"]
    lines += ["", "Targets"]
    for name, t in results["targets"].items():
        verdict = "n/a" if t["met"] is None else "MET" if t["met"] else "NOT MET"
        value = "-" if t["value"] is None else str(t["value"]).lower() if isinstance(t["value"], bool) \
            else f"{t['value']:,.2f}"
        note = f"  ({t['note']})" if t.get("note") else ""
        lines.append(f"  {name:<46} {value:>10}  target {t['target']:<8} {verdict}{note}")
    return "\n".join(lines)


def _pick_big_tmp(explicit: Optional[str], sizes: Sequence[int]) -> Optional[str]:
    if explicit:
        return explicit
    shm = "/dev/shm"
    try:
        st = os.statvfs(shm)
        room = st.f_bavail * st.f_frsize
        if os.access(shm, os.W_OK) and room > max(sizes) * 12_000 + (256 << 20):
            return shm
    except OSError:
        pass
    return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke mode: 1k files, few repeats (< 30 s)")
    parser.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    parser.add_argument("--profile", action="store_true", help="cProfile zgit's hot paths and print the top entries")
    parser.add_argument("--sizes", help="comma-separated repository sizes for the pin check (default 1000,20000,100000)")
    parser.add_argument("--tmpdir", help="where the generated pin-check repositories go (default /dev/shm when it has room)")
    parser.add_argument("--skip", default="", help="comma-separated sections to skip: pin_check,load,hook,startup,audit,memory,runs,dask")
    args = parser.parse_args(argv)

    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else ([1000] if args.quick else [1000, 20000, 100000])
    skip = {s for s in args.skip.split(",") if s}
    profile: Optional[dict] = {} if args.profile else None
    started = time.perf_counter()
    results: dict = {
        "meta": {
            "quick": args.quick,
            "python": platform.python_version(),
            "git": git(ROOT, "--version").strip(),
            "cpus": os.cpu_count(),
            "load_average": round(os.getloadavg()[0], 2),
            "sizes": sizes,
        },
        "pin_check": {},
    }
    big_tmp = _pick_big_tmp(args.tmpdir, sizes)
    results["meta"]["pin_check_tmpdir"] = big_tmp or tempfile.gettempdir()
    with tempfile.TemporaryDirectory(prefix="zgit-bench-", dir=big_tmp) as big, \
            tempfile.TemporaryDirectory(prefix="zgit-bench-", dir=args.tmpdir) as small:
        if "pin_check" not in skip:
            results["pin_check"] = bench_pin_check(Path(big), sizes, args.quick, profile)
            dirs = bench_pin_dirs(Path(big), args.quick)
            results["pin_check"].update(dirs)
            log(f"[pin check] 1,000 / 10 files {dirs['dir_scaling']:.2f}, vs git: 1,000 files "
                f"{dirs['dir_1000_vs_git']:.3f}, {dirs['bigfile_mb']} MB file {dirs['bigfile_vs_git']:.3f}; "
                f"autocrlf: git / zgit {dirs['autocrlf_vs_git']:.1f}")
        if "load" not in skip:
            results["load"] = bench_load(Path(small), args.quick, profile)
            log(f"[load] checkout {results['load']['checkout_ms']:.2f} ms, legacy {results['load']['legacy_ms']:.2f} ms")
            if not args.quick:
                # On the same file system as the small repository: the overhead ratios of
                # the two compare only when the disk is the same.
                big_load = bench_load(Path(small), False, None, filler=20000)
                results["load"]["in_big_repo"] = big_load
                results["load"]["checkout_overhead_20k"] = big_load["checkout_overhead"]
                results["load"]["checkout_overhead_20k_no_index_refresh"] = big_load["checkout_overhead_no_index_refresh"]
                log(f"[load] in {big_load['files']} files: checkout {big_load['checkout_ms']:.2f} ms, "
                    f"legacy {big_load['legacy_ms']:.2f} ms")
        if "hook" not in skip:
            results["hook"] = bench_hook(Path(small), args.quick)
            log(f"[hook] ratio {results['hook']['unrelated_import_ratio']:.3f}")
        if "startup" not in skip:
            results["startup"] = bench_startup(Path(small))
            log(f"[startup] help {results['startup']['help_ratio']:.2f}x, import "
                f"{results['startup']['import_ratio']:.2f}x, audit {results['startup']['audit_ratio']:.2f}x")
        if "audit" not in skip:
            results["audit"] = bench_audit_figures(Path(big), args.quick)
        if "memory" not in skip:
            results["memory"] = bench_memory(Path(small), args.quick)
            if "kb_per_pin" in results["memory"]:
                log(f"[memory] {results['memory']['kb_per_pin']:.1f} KB per pin over "
                    f"{results['memory']['loads']} loads")
        if "runs" not in skip:
            try:
                import numpy  # noqa: F401  (the bench extra)
            except ImportError:
                results["runs"] = "not available (pip install numpy, extra 'bench')"
            else:
                results["runs"] = bench_runs(Path(small), args.quick)
                log(f"[runs] step {results['runs']['step_overhead_ms']:.2f} ms, "
                    f"hit {results['runs']['cache_hit_ms']:.2f} ms")
        if "dask" not in skip:
            results["dask"] = bench_dask(Path(small), args.quick)
            log(f"[dask] bundle build {results['dask']['bundle_build_ms']:.2f} ms, "
                f"verify {results['dask']['bundle_verify_ms']:.2f} ms")
    results["targets"] = targets(results)
    results["meta"]["seconds"] = round(time.perf_counter() - started, 1)
    print(render(results))
    print(f"\n({results['meta']['seconds']} s)")
    if profile:
        for title, text in profile.items():
            print(f"\n== profile: {title}\n{text}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
