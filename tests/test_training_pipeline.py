"""The ZenML example with zgit's names, end to end (issue 4).

A user trainer in ``trainers/my_awesome_trainer/`` is committed, a TrainingPipeline of
zgit's built-in steps plus that trainer is run and saved (its YAML mixes ``@zgit_<version>``
and ``@<sha>`` pins), the trainer is changed and committed, and
``Repository.get_pipeline_by_name`` brings back the *old* trainer together with the
current built-ins, leaving the working tree as it was.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path
import warnings

import pytest
import yaml

import zgit
from zgit import Repository, VersionMismatchError
from zgit.errors import VersionMismatchWarning
from zgit.pipelines import TrainingPipeline
from zgit.steps.data import SyntheticData
from zgit.steps.evaluator import Evaluator
from zgit.steps.preprocessing import StandardScaler
from zgit.steps.split import RandomSplit
from tests.conftest import WorkTree

NAME = "My Awesome Pipeline"
MODULE = "trainers.my_awesome_trainer.my_trainer_step"
TRAINER = '''\
from zgit.steps.trainer import LeastSquaresTrainer

from .settings import RIDGE

VERSION = {version}


class MyAwesomeTrainer(LeastSquaresTrainer):
    VERSION = {version}

    def __init__(self, epochs=1, **kwargs):
        super().__init__(**kwargs)
        self.epochs = epochs
        self.l2 = max(self.l2, RIDGE)

    def run(self, data):
        bundle = super().run(data)
        bundle["trainer_version"] = self.VERSION
        return bundle
'''


def write_trainer(repo: WorkTree, version: int, ridge: float) -> None:
    repo.write(".gitignore", "__pycache__/\n*.pyc\n")
    repo.write("trainers/__init__.py", "")
    repo.write("trainers/my_awesome_trainer/__init__.py", "")
    repo.write("trainers/my_awesome_trainer/my_trainer_step.py", TRAINER.format(version=version))
    repo.write("trainers/my_awesome_trainer/settings.py", f"RIDGE = {ridge!r}\n")


@pytest.fixture
def project(tmp_path):
    path = tmp_path / "project"
    path.mkdir()
    saved_path = list(sys.path)
    before = set(sys.modules)
    sys.path.insert(0, str(path))
    yield WorkTree(path)
    sys.path[:] = saved_path
    for name in set(sys.modules) - before:
        module = sys.modules.get(name)
        if "@" in name or name == "trainers" or name.startswith("trainers.") or str(path) in str(
            getattr(module, "__file__", "") or ""
        ):
            sys.modules.pop(name, None)
    from zgit.loader import forget_loaded

    forget_loaded()


def build(trainer_cls) -> TrainingPipeline:
    pipeline = TrainingPipeline(name=NAME)
    pipeline.add_datasource(SyntheticData(n=150, n_features=3, noise=0.5, seed=7))
    pipeline.add_split(RandomSplit(split={"train": 0.7, "eval": 0.3}, seed=42))
    pipeline.add_preprocesser(StandardScaler())
    pipeline.add_trainer(trainer_cls(epochs=20))
    pipeline.add_evaluator(Evaluator(metrics=["mse", "r2"]))
    return pipeline


def import_working():
    old = sys.modules.pop(MODULE, None)
    sys.modules.pop("trainers.my_awesome_trainer.settings", None)
    if old is not None:
        # The files were rewritten within the same second at the same size, which Python's
        # own timestamp check of bytecode cannot tell apart: drop the working bytecode, as
        # any such edit needs (with bytecode writing on, as users run).
        for pyc in Path(old.__file__).parent.glob("__pycache__/*.pyc"):
            pyc.unlink()
    import importlib

    importlib.invalidate_caches()
    return importlib.import_module(MODULE)


def run_and_save(project: WorkTree):
    write_trainer(project, 1, 0.0)
    sha1 = project.commit("trainer v1")
    v1 = import_working()
    outputs = build(v1.MyAwesomeTrainer).run(repo=project.path)
    return sha1, outputs


@pytest.mark.parametrize("strategy", ["checkout", "memory"])
def test_old_trainer_comes_back_with_the_current_builtins(project, strategy):
    sha1, outputs = run_and_save(project)
    stored = project.path / "pipelines" / "my_awesome_pipeline.yaml"
    data = yaml.safe_load(stored.read_text())
    version = zgit.__version__
    assert {name: step["source"] for name, step in data["steps"].items()} == {
        "data": f"zgit.steps.data.SyntheticData@zgit_{version}",
        "split": f"zgit.steps.split.RandomSplit@zgit_{version}",
        "preprocessing": f"zgit.steps.preprocessing.StandardScaler@zgit_{version}",
        "training": f"{MODULE}.MyAwesomeTrainer@{sha1}",
        "evaluation": f"zgit.steps.evaluator.Evaluator@zgit_{version}",
    }
    assert data["steps"]["training"]["args"] == {"epochs": 20}
    assert data["steps"]["split"]["args"] == {"split": {"train": 0.7, "eval": 0.3}, "seed": 42}
    first_metrics = outputs["evaluation"]["metrics"]

    # The trainer moves on (both the module and the helper it imports) and is committed.
    write_trainer(project, 2, 500.0)
    project.commit("trainer v2")
    working = import_working()
    assert working.VERSION == 2

    files_before, status_before = project.snapshot(), project.status()
    loaded = Repository(project.path).get_pipeline_by_name(NAME, strategy=strategy)
    assert project.snapshot() == files_before and project.status() == status_before

    assert list(loaded.steps) == ["data", "split", "preprocessing", "training", "evaluation"]
    trainer = loaded.steps["training"]
    assert type(trainer).VERSION == 1 and type(trainer) is not working.MyAwesomeTrainer
    assert vars(type(trainer))["__zgit_source__"] == f"{MODULE}.MyAwesomeTrainer@{sha1}"
    assert trainer.l2 == 0.0  # the pinned helper module, not the working one (500.0)
    assert trainer.args == {"epochs": 20}
    # Built-ins are the installed zgit's classes themselves, untouched.
    assert type(loaded.steps["split"]) is RandomSplit
    assert type(loaded.steps["preprocessing"]) is StandardScaler
    assert type(loaded.steps["evaluation"]) is Evaluator
    assert "__zgit_source__" not in vars(RandomSplit)
    assert loaded.steps["split"].args == {"split": {"train": 0.7, "eval": 0.3}, "seed": 42}

    # The stored pipeline reproduces the first run; the working trainer does not.
    rerun = loaded.run(save=False)
    assert rerun["evaluation"]["metrics"] == first_metrics
    assert rerun["evaluation"]["trainer_version"] == 1
    now = build(working.MyAwesomeTrainer).run(save=False)
    assert now["evaluation"]["metrics"] != first_metrics
    assert project.snapshot() == files_before and project.status() == status_before


def test_saving_again_pins_the_new_commit(project):
    run_and_save(project)
    write_trainer(project, 2, 500.0)
    sha2 = project.commit("trainer v2")
    working = import_working()
    path = build(working.MyAwesomeTrainer).save(project.path)
    data = yaml.safe_load(path.read_text())
    assert data["steps"]["training"]["source"] == f"{MODULE}.MyAwesomeTrainer@{sha2}"
    assert data["steps"]["split"]["source"].endswith(f"@zgit_{zgit.__version__}")


def test_stored_builtins_of_another_zgit_version(project, monkeypatch):
    """A pipeline saved with another zgit: a clear error, or a warning if configured."""
    run_and_save(project)
    stored = project.path / "pipelines" / "my_awesome_pipeline.yaml"
    stored.write_text(stored.read_text().replace(f"@zgit_{zgit.__version__}", "@zgit_0.0.1"))
    with pytest.raises(VersionMismatchError) as info:
        Repository(project.path).get_pipeline_by_name(NAME)
    message = str(info.value)
    assert "0.0.1" in message and zgit.__version__ in message
    assert "pip install 'zgit==0.0.1'" in message

    monkeypatch.setenv("ZGIT_ON_VERSION_MISMATCH", "warn")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = Repository(project.path).get_pipeline_by_name(NAME)
    assert any(issubclass(w.category, VersionMismatchWarning) for w in caught)
    assert type(loaded.steps["split"]) is RandomSplit


def test_demo_runs_and_proves_it(capsys):
    from zgit.demo import run_demo

    out = io.StringIO()
    assert run_demo(out=out) == 0
    text = out.getvalue()
    assert f"@zgit_{zgit.__version__}" in text
    assert "training step VERSION = 1 (working tree: 2)" in text
    assert "same metrics as the first run: yes" in text
    assert "byte-identical" in text and "FAILED" not in text
    assert capsys.readouterr().out == ""  # the demo writes only to `out`
