"""forget_loaded() gives the memory of every pin back (issue 14, "memory returns").

After it, nothing of zgit's keeps a pinned module alive: not ``sys.modules``, not the real
parent package (importlib binds ``b@<sha>`` on ``a``), not zgit's trees, not ``linecache``,
not the path finders ``pkgutil`` made.  Checked with the cycle collector and weak
references to pinned classes and modules, under both strategies.
"""

from __future__ import annotations

import gc
import importlib
import inspect
import linecache
import pkgutil
import sys
import traceback
import tracemalloc
import weakref

import pytest

from zgit import load_source
from zgit.loader import forget_loaded, importer

STRATEGIES = ["checkout", "memory"]
MODULE_DIR = "pkg/mod"
PACKAGE = "pkg.mod"

STEP = '''\
from dataclasses import dataclass

from .helper import double

VERSION = {v}


@dataclass
class Step:
    factor: int = VERSION

    def run(self, x):
        return double(x) * self.factor

    def fail(self):
        raise ValueError("pinned failure {v}")
'''


@pytest.fixture(params=STRATEGIES)
def strategy(request):
    return request.param


def _history(repo, count):
    repo.write(".gitignore", "__pycache__/\n")
    repo.write("pkg/__init__.py", "")
    repo.write(f"{MODULE_DIR}/__init__.py", "")
    repo.write(f"{MODULE_DIR}/helper.py", "def double(x):\n    return 2 * x\n")
    shas = []
    for v in range(count):
        repo.write(f"{MODULE_DIR}/step.py", STEP.format(v=v + 1))
        shas.append(repo.commit(f"v{v + 1}"))
    return shas


def _pinned_traces(root):
    """Everything zgit could still hold for pins of repository ``root``."""
    real = sys.modules.get("pkg")
    return {
        "sys.modules": [n for n in sys.modules if "@" in n],
        "parent attributes": [a for a in vars(real) if "@" in a] if real is not None else [],
        "trees": list(importer._trees),
        "linecache": [f for f in linecache.cache if f.startswith(f"{root}/") and "@" in f],
        "path finders": [p for p in sys.path_importer_cache if isinstance(p, str) and "@" in p],
    }


def test_forget_loaded_releases_every_pin(repo, strategy):
    shas = _history(repo, 2)
    root = str(repo.path.resolve())
    step = load_source(f"{PACKAGE}.step.Step@{shas[0]}", strategy=strategy)
    other = load_source(f"{PACKAGE}.step.Step@{shas[1]}", strategy=strategy)
    assert (step().run(1), other().run(1)) == (2, 4)
    # Feed every cache a pin can reach: a traceback, inspect, pkgutil, a deferred import.
    try:
        step().fail()
    except ValueError:
        assert "pinned failure 1" in traceback.format_exc()
    assert "pinned failure 1" in inspect.getsource(step)
    package = sys.modules[f"{PACKAGE}@{shas[0]}"]
    assert sorted(m.name for m in pkgutil.iter_modules(package.__path__)) == ["helper", "step"]
    traces = _pinned_traces(root)
    assert all(traces[k] for k in ("sys.modules", "parent attributes", "trees", "linecache", "path finders"))

    classes = [weakref.ref(step), weakref.ref(other)]
    modules = [weakref.ref(sys.modules[n]) for n in traces["sys.modules"]]
    del step, other, package
    forget_loaded()
    gc.collect()

    assert _pinned_traces(root) == {k: [] for k in traces}
    assert [r() for r in classes] == [None, None]
    assert [r() for r in modules] == [None] * len(modules)
    # and the next load imports afresh
    again = load_source(f"{PACKAGE}.step.Step@{shas[0]}", strategy=strategy)
    assert again().run(1) == 2


def test_an_object_still_referenced_keeps_working(repo, strategy):
    """forget_loaded drops zgit's references only: an instance the caller holds keeps its
    class and module globals."""
    shas = _history(repo, 1)
    instance = load_source(f"{PACKAGE}.step.Step@{shas[0]}", strategy=strategy)()
    forget_loaded()
    gc.collect()
    assert instance.run(3) == 6 and type(instance).__module__ == f"{PACKAGE}@{shas[0]}.step"


_MEASURE = """
import gc, json, sys, tracemalloc
from zgit import load_source
from zgit.loader import forget_loaded
package, strategy, shas = sys.argv[1], sys.argv[2], sys.argv[3:]

def load_all():
    for sha in shas:
        assert load_source(f"{package}.step.Step@{sha}", strategy=strategy)().run(1) > 0

load_all()
forget_loaded()
gc.collect()
tracemalloc.start()
base = tracemalloc.get_traced_memory()[0]
load_all()
loaded = tracemalloc.get_traced_memory()[0] - base
forget_loaded()
gc.collect()
kept = tracemalloc.get_traced_memory()[0] - base
print(json.dumps([kept, loaded]))
"""


def test_memory_comes_back_after_many_pins(repo, strategy):
    """Loading 20 pins and forgetting them gives the memory back: a second round of the
    same loads keeps at most a tenth of what it took (the first round filled zgit's
    bounded caches of git objects and grew the interpreter's tables).  Measured in a
    fresh interpreter: in the test process, caches that earlier tests filled to their
    bound are cleared and refilled, which looks like growth."""
    import json
    import subprocess

    shas = _history(repo, 20)
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, PACKAGE, strategy, *shas],
        cwd=repo.path, capture_output=True, text=True, check=False,
    )
    assert done.returncode == 0, done.stderr
    kept, loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert kept < loaded / 10, (kept, loaded)
