"""``zgit demo``: the ZenML git-pinning example, end to end, in a throwaway repository.

It builds a git repository in a temporary directory (through zgit.gitrepo; no git program
needed), writes a user trainer ``trainers/my_awesome_trainer/my_trainer_step.py``,
commits it, runs a :class:`~zgit.pipelines.TrainingPipeline` made of zgit's built-in
steps and that trainer, and prints the stored YAML (built-ins pinned ``@zgit_<version>``,
the trainer ``@<sha>``).  Then it changes the trainer, commits again, loads the stored
pipeline with ``Repository.get_pipeline_by_name`` and shows that the *old* trainer came
back, that it reproduces the first run's metrics, and that the working tree and
``git status`` are exactly as before the load.
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any, Dict, TextIO

PIPELINE_NAME = "My Awesome Pipeline"
TRAINER_PATH = "trainers/my_awesome_trainer/my_trainer_step.py"
TRAINER_MODULE = "trainers.my_awesome_trainer.my_trainer_step"

_TRAINER_V1 = '''\
"""My awesome trainer, version 1: plain least squares."""

from zgit.steps.trainer import LeastSquaresTrainer

VERSION = 1


class MyAwesomeTrainer(LeastSquaresTrainer):
    """Least squares, remembering which version of the trainer ran."""

    VERSION = VERSION

    def __init__(self, epochs=1, **kwargs):
        super().__init__(**kwargs)
        self.epochs = epochs

    def run(self, data):
        bundle = super().run(data)
        bundle["trainer_version"] = self.VERSION
        return bundle
'''

_TRAINER_V2 = '''\
"""My awesome trainer, version 2: heavily regularized (ridge) least squares."""

from zgit.steps.trainer import LeastSquaresTrainer

VERSION = 2
RIDGE = 500.0


class MyAwesomeTrainer(LeastSquaresTrainer):
    """Ridge least squares, remembering which version of the trainer ran."""

    VERSION = VERSION

    def __init__(self, epochs=1, **kwargs):
        super().__init__(**kwargs)
        self.epochs = epochs
        self.l2 = max(self.l2, RIDGE)

    def run(self, data):
        bundle = super().run(data)
        bundle["trainer_version"] = self.VERSION
        return bundle
'''

_AUTHOR = ("zgit demo", "demo@zgit.invalid")


def _write(root: Path, relpath: str, text: str) -> None:
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _commit(git: Any, message: str) -> str:
    return git.commit_all(message, *_AUTHOR)


def _snapshot(root: Path) -> Dict[str, bytes]:
    """Every file of the work tree but ``.git/`` and bytecode caches, with its bytes."""
    files: Dict[str, bytes] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in (".git", "__pycache__"))
        for name in filenames:
            if name.endswith(".pyc"):
                continue
            full = Path(dirpath) / name
            files[full.relative_to(root).as_posix()] = full.read_bytes()
    return files


def _status(git: Any) -> Dict[str, int]:
    return git.status()


def _metrics_text(bundle: Dict[str, Any]) -> str:
    parts = []
    for split, scores in (bundle.get("metrics") or {}).items():
        parts.append(split + " " + ", ".join(f"{k}={v:.6f}" for k, v in scores.items()))
    return "; ".join(parts) or "(no metrics)"


def _forget_demo_modules(saved: Dict[str, Any]) -> None:
    for name in [n for n in sys.modules if n == "trainers" or n.startswith(("trainers.", "trainers@"))]:
        del sys.modules[name]
    sys.modules.update(saved)


def run_demo(keep: bool = False, out: TextIO = sys.stdout) -> int:
    """Run the demo, printing to ``out``; return 0 when every check passed, else 1.

    ``keep``: leave the temporary repository in place (its path is printed).
    """
    from zgit.distributions import installed_version
    from zgit.gitrepo import init_repository
    from zgit.pipelines import TrainingPipeline
    from zgit.repository import Repository
    from zgit.steps.data import SyntheticData
    from zgit.steps.evaluator import Evaluator
    from zgit.steps.preprocessing import StandardScaler
    from zgit.steps.split import RandomSplit

    def say(text: str = "") -> None:
        print(text, file=out)

    root = Path(tempfile.mkdtemp(prefix="zgit-demo-")).resolve()
    saved_path = list(sys.path)
    saved_modules = {
        n: m for n, m in sys.modules.items() if n == "trainers" or n.startswith(("trainers.", "trainers@"))
    }
    _forget_demo_modules({})
    ok = True
    try:
        say("zgit demo: pipeline classes pinned by commit and by version")
        say(f"repository: {root}")
        say()

        # 1. A repository with a user trainer, committed.
        git = init_repository(root)
        Repository.init(root)
        _write(root, ".gitignore", "__pycache__/\n*.pyc\n")
        _write(root, "trainers/__init__.py", "")
        _write(root, "trainers/my_awesome_trainer/__init__.py", "")
        _write(root, TRAINER_PATH, _TRAINER_V1)
        first = _commit(git, f"Add MyAwesomeTrainer v1 ({root.name})")
        say(f"1. wrote {TRAINER_PATH} (VERSION = 1) and committed it: {first[:12]}")

        # 2. Build and run the pipeline: built-ins + the user's trainer.
        sys.path.insert(0, str(root))
        importlib.invalidate_caches()
        trainer_module = importlib.import_module(TRAINER_MODULE)
        pipeline = TrainingPipeline(name=PIPELINE_NAME)
        pipeline.add_datasource(SyntheticData(n=200, n_features=3, noise=0.5, seed=7))
        pipeline.add_split(RandomSplit(split={"train": 0.7, "eval": 0.3}, seed=42))
        pipeline.add_preprocesser(StandardScaler())
        pipeline.add_trainer(trainer_module.MyAwesomeTrainer(epochs=20))
        pipeline.add_evaluator(Evaluator(metrics=["mse", "r2"]))
        outputs = pipeline.run(repo=root)
        first_result = outputs["evaluation"]
        stored = root / "pipelines" / "my_awesome_pipeline.yaml"
        say(f"2. ran {PIPELINE_NAME!r}: {_metrics_text(first_result)}")
        say(f"   stored {stored.relative_to(root).as_posix()}:")
        say(textwrap.indent(stored.read_text(encoding="utf-8").rstrip("\n"), "   | "))

        # 3. The trainer moves on.
        _write(root, TRAINER_PATH, _TRAINER_V2)
        second = _commit(git, f"MyAwesomeTrainer v2: ridge ({root.name})")
        say(f"3. changed the trainer (VERSION = 2, ridge l2=500) and committed it: {second[:12]}")
        sys.modules.pop(TRAINER_MODULE, None)
        importlib.invalidate_caches()
        working = importlib.import_module(TRAINER_MODULE)
        working_result = working.MyAwesomeTrainer(epochs=20).run(outputs["preprocessing"])
        working_result = Evaluator(metrics=["mse", "r2"]).run(working_result)
        say(f"   the working-tree trainer now gives: {_metrics_text(working_result)}")

        # 4. Load the stored pipeline back.
        before_files, before_status = _snapshot(root), _status(git)
        loaded = Repository(root).get_pipeline_by_name(PIPELINE_NAME)
        after_files, after_status = _snapshot(root), _status(git)
        say(f"4. Repository({root.name!r}).get_pipeline_by_name({PIPELINE_NAME!r}):")
        for name, step in loaded.steps.items():
            cls = type(step)
            origin = getattr(cls, "__zgit_source__", None) or (
                f"{cls.__module__}.{cls.__qualname__} (from the installed zgit {installed_version('zgit')})"
            )
            say(f"   {name:<13} {cls.__name__:<20} {origin}")
        trainer = loaded.steps["training"]
        old_version = getattr(trainer, "VERSION", None)
        say(f"   training step VERSION = {old_version} (working tree: {working.VERSION})")
        rerun = loaded.run(save=False)["evaluation"]
        same = _metrics_text(rerun) == _metrics_text(first_result)
        say(f"   re-run of the stored pipeline: {_metrics_text(rerun)}")
        say(f"   same metrics as the first run: {'yes' if same else 'NO'}")

        # 5. The load left the working tree alone.
        unchanged = before_files == after_files
        status_same = before_status == after_status
        say(f"5. working tree after the load: {len(after_files)} files "
            f"{'byte-identical' if unchanged else 'CHANGED'}; git status "
            f"{'identical' if status_same else 'CHANGED'} ({'clean' if not after_status else after_status})")
        say(f"   {TRAINER_PATH} still says VERSION = 2: "
            f"{'yes' if b'VERSION = 2' in after_files.get(TRAINER_PATH, b'') else 'NO'}")

        checks = {
            "the old trainer came back": old_version == 1 and working.VERSION == 2,
            "it reproduces the first run": same and rerun.get("trainer_version") == 1,
            "the working tree is unchanged": unchanged and status_same,
            "built-ins pinned by zgit's version": all(
                "@zgit_" in line for line in stored.read_text(encoding="utf-8").splitlines()
                if "source: zgit.steps." in line
            ),
            "the trainer pinned by commit": f"@{first}" in stored.read_text(encoding="utf-8"),
        }
        ok = all(checks.values())
        say()
        for what, passed in checks.items():
            say(f"   [{'ok' if passed else 'FAILED'}] {what}")
        say("OK: the stored pipeline brought back the trainer that ran." if ok else "FAILED: see above.")
    finally:
        sys.path[:] = saved_path
        _forget_demo_modules(saved_modules)
        importlib.invalidate_caches()
        if keep:
            say(f"kept the demo repository: {root}  (try: cd {root} && zgit audit)")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0 if ok else 1
