"""Pinned code in fresh worker processes (issue 15, items 3 and 4).

Process pools that start fresh interpreters -- joblib's loky (scikit-learn's ``n_jobs``),
``multiprocessing`` with spawn, ``concurrent.futures.ProcessPoolExecutor`` with spawn or
forkserver -- unpickle pinned functions and objects in processes that never imported
zgit.  zgit's start-up hook (``_zgit_startup``, installed by zgit-pinned-names.pth)
imports zgit there on the first pinned name.  Every test runs over both strategies; the
module directory ``steps/cv`` is committed at version 1 (the pin) and then version 2.
See docs/identity.md ("Other processes").
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap

import pytest

from zgit import load_source

pytest.importorskip("sklearn")
pytest.importorskip("joblib")

STRATEGIES = ["checkout", "memory"]
PACKAGE = "steps.cv"

PROBE = '''\
import os
import sys

VERSION = {v}


def probe(i):
    """Runs in a worker: which version it is, where, and whether zgit's start-up hook
    brought the pin back (the name it imported zgit for)."""
    hook = sys.modules.get("_zgit_startup")
    return {{"i": i, "version": VERSION, "pid": os.getpid(),
             "activated_by": getattr(hook, "activated_by", None)}}


class Scaler:
    def __init__(self, factor):
        self.factor = factor

    def scale(self, x):
        return x * self.factor * VERSION
'''

MODEL = '''\
import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.model_selection import cross_val_score

from zgit import BaseStep
from .probe import VERSION, probe


class Shifted(RegressorMixin, BaseEstimator):
    """A regressor whose predictions depend on the version of the code."""

    def __init__(self, shift=0.5):
        self.shift = shift

    def fit(self, X, y):
        self.coef_ = float(np.dot(X[:, 0], y) / np.dot(X[:, 0], X[:, 0]))
        return self

    def predict(self, X):
        return X[:, 0] * self.coef_ + self.shift * VERSION


class CrossValidate(BaseStep):
    def __init__(self, n_jobs=2):
        super().__init__(n_jobs=n_jobs)
        self.n_jobs = n_jobs

    def run(self, data=None):
        import joblib

        X = np.linspace(1.0, 20.0, 40).reshape(20, 2)
        y = X[:, 0] * 3.0
        with joblib.parallel_backend("loky"):
            return [float(s) for s in cross_val_score(Shifted(), X, y, cv=2, n_jobs=self.n_jobs)]


def in_workers(how, n=2):
    """Run ``probe`` over range(n) in a pool of fresh processes."""
    if how == "joblib-loky":
        from joblib import Parallel, delayed
        return Parallel(n_jobs=2, backend="loky")(delayed(probe)(i) for i in range(n))
    if how == "multiprocessing-spawn":
        with multiprocessing.get_context("spawn").Pool(2) as pool:
            # a worker that cannot unpickle its task dies and is replaced: no error, a hang
            return pool.map_async(probe, range(n)).get(timeout=300)
    method = how.rpartition("-")[2]
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context(method)) as pool:
        return list(pool.map(probe, range(n)))
'''


def write_version(repo, v: int) -> None:
    repo.write(".gitignore", "__pycache__/\n")  # the workers import the working `steps`
    repo.write("steps/__init__.py", "")
    repo.write(f"{PACKAGE.replace('.', '/')}/__init__.py", "")
    repo.write(f"{PACKAGE.replace('.', '/')}/probe.py", PROBE.format(v=v))
    repo.write(f"{PACKAGE.replace('.', '/')}/model.py", MODEL)


@pytest.fixture(params=STRATEGIES)
def strategy(request):
    return request.param


@pytest.fixture
def pin(repo):
    """Version 1 committed (the pin), then version 2 committed: the working tree moved on."""
    write_version(repo, 1)
    sha = repo.commit("v1")
    write_version(repo, 2)
    repo.commit("v2")
    return sha


@pytest.fixture(autouse=True)
def _no_reused_loky_workers():
    """loky keeps its workers for the next call; they would still be in the previous
    test's repository (their current directory) with its pins imported."""
    yield
    from joblib.externals.loky import get_reusable_executor

    get_reusable_executor().shutdown(wait=True)


def _load(name, sha, strategy, module="model"):
    return load_source(f"{PACKAGE}.{module}.{name}@{sha}", strategy=strategy)


def test_cross_val_score_with_loky_inside_a_pinned_step(repo, pin, strategy):
    CrossValidate = _load("CrossValidate", pin, strategy)
    parallel = CrossValidate(n_jobs=2).run()
    serial = CrossValidate(n_jobs=None).run()
    assert parallel == serial  # the workers ran the pinned estimator, as this process does
    working = _load("CrossValidate", repo.head(), strategy)
    assert working(n_jobs=None).run() != serial  # and version 2 scores differently
    assert repo.status() == ""


@pytest.mark.parametrize("how", ["joblib-loky", "multiprocessing-spawn", "futures-spawn", "futures-forkserver"])
def test_pools_of_fresh_processes_get_the_pinned_code(repo, pin, strategy, how):
    in_workers = _load("in_workers", pin, strategy)
    results = in_workers(how)
    assert [r["i"] for r in results] == [0, 1]
    assert {r["version"] for r in results} == {1}
    assert os.getpid() not in {r["pid"] for r in results}
    # Nothing in the workers imported zgit: its start-up hook did, for the first pinned
    # name they met.  The repository is not on their sys.path, so that is the package
    # above the module directory, imported while the pinned name waits.
    assert {r["activated_by"] for r in results} == {"steps"}, results
    assert repo.status() == ""


# -- a fresh interpreter unpickling a pinned object, zgit never imported by the user ---------

UNPICKLE = """\
import json, pickle, sys
assert "zgit" not in sys.modules and "_zgit_startup" in sys.modules
with open(sys.argv[1], "rb") as handle:
    scaler = pickle.load(handle)
print(json.dumps({"module": type(scaler).__module__, "scaled": scaler.scale(2.0),
                  "activated_by": sys.modules["_zgit_startup"].activated_by}))
"""


def _unpickle(cwd, path, *flags, env=None):
    return subprocess.run([sys.executable, *flags, "-c", UNPICKLE, str(path)], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env=env)


def test_a_fresh_interpreter_unpickles_a_pinned_object_without_importing_zgit(repo, pin, strategy, tmp_path):
    Scaler = _load("Scaler", pin, strategy, module="probe")
    path = tmp_path / "scaler.pkl"
    path.write_bytes(pickle.dumps(Scaler(3.0)))
    pinned_module = f"{PACKAGE}@{pin}.probe"
    # From the repository root (on sys.path as the script's directory): the first name
    # no finder knows is the pinned package itself.
    out = _unpickle(repo.path, path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"module": pinned_module, "scaled": 6.0, "activated_by": f"{PACKAGE}@{pin}"}
    # From a sub-directory, isolated (-I: no script directory on sys.path): the package
    # above the module directory is brought from the repository's source root.
    (repo.path / "notebooks").mkdir()
    out = _unpickle(repo.path / "notebooks", path, "-I")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"module": pinned_module, "scaled": 6.0, "activated_by": "steps"}
    assert out.stderr == ""


def test_outside_the_repository_the_error_names_the_pin_and_what_to_do(repo, pin, strategy, tmp_path):
    Scaler = _load("Scaler", pin, strategy, module="probe")
    path = tmp_path / "scaler.pkl"
    path.write_bytes(pickle.dumps(Scaler(3.0)))
    outside = tmp_path / "outside"
    outside.mkdir()
    env = dict(os.environ, GIT_CEILING_DIRECTORIES=str(tmp_path), PYTHONPATH=str(repo.path))
    out = _unpickle(outside, path, env=env)
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("zgit.errors.SourceNotFoundError") and f"{PACKAGE}@{pin}" in last
    assert "run this from inside it" in last


BROKEN_ZGIT = """\
import pickle, sys
sys.modules["zgit"] = None  # zgit cannot be imported in this process
with open(sys.argv[1], "rb") as handle:
    pickle.load(handle)
"""


def test_when_zgit_cannot_be_imported_the_error_names_zgit_and_what_to_do(repo, pin, tmp_path):
    Scaler = _load("Scaler", pin, "memory", module="probe")
    path = tmp_path / "scaler.pkl"
    path.write_bytes(pickle.dumps(Scaler(3.0)))
    out = subprocess.run([sys.executable, "-c", BROKEN_ZGIT, str(path)], cwd=repo.path, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(f"ModuleNotFoundError: No module named '{PACKAGE}@{pin}': the name")
    assert "pinned by zgit" in last and "importing zgit failed here" in last
    assert "Install zgit in this environment (pip install zgit" in last
    # from a sub-directory, isolated: the package above the module directory is not found
    (repo.path / "notebooks").mkdir()
    out = subprocess.run([sys.executable, "-I", "-c", BROKEN_ZGIT, str(path)], cwd=repo.path / "notebooks",
                         capture_output=True, text=True, timeout=120)
    last = out.stderr.strip().splitlines()[-1]
    assert out.returncode != 0 and last.startswith(
        f"ModuleNotFoundError: No module named 'steps' (the package above '{PACKAGE}@{pin}"), out.stderr
    assert "pinned by zgit" in last and "Install zgit in this environment" in last


def test_the_start_up_hook_imports_nothing_and_sits_last():
    code = textwrap.dedent("""\
        import json, sys
        print(json.dumps({"zgit": sorted(m for m in sys.modules if m == "zgit" or m.startswith("zgit.")),
                          "last": repr(sys.meta_path[-1]),
                          "hooks": sum(getattr(f, "__module__", "") == "_zgit_startup" for f in sys.meta_path)}))
        """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stderr == "", out.stderr
    got = json.loads(out.stdout)
    assert got == {"zgit": [], "last": "<class '_zgit_startup.PinnedNameFinder'>", "hooks": 1}


def test_unrelated_failed_imports_pass_through_the_hook():
    code = textwrap.dedent("""\
        import sys
        for name in ("no_such_module_zg", "no_such_module_zg.sub", "not@a.pin", "x@" + "g" * 40):
            try:
                __import__(name)
            except ModuleNotFoundError as exc:
                assert "zgit" not in str(exc), exc
            else:
                raise AssertionError(name)
        assert "zgit" not in sys.modules
        """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
