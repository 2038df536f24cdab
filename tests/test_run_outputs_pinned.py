"""Issue 15 item 1: a run executes the pinned class, so what it returns names the pin."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap

import pytest

import zgit
from zgit import Pipeline, UnpinnedSourceWarning

MODEL = '''\
from zgit import BaseStep


class Model:
    def __init__(self, factor):
        self.factor = factor

    def predict(self, x):
        return x * self.factor * {scale}


class Fit(BaseStep):
    def __init__(self, factor=2.0):
        self.factor = factor

    def run(self, data):
        return Model(self.factor)
'''


def _project(repo, scale=1):
    repo.write(".gitignore", "__pycache__/\n")
    repo.write("steps/__init__.py", "")
    repo.write("steps/model/__init__.py", "")
    repo.write("steps/model/model.py", MODEL.format(scale=scale))
    return repo.commit(f"model x{scale}")


def _load_in_fresh_process(repo, code):
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=repo.path,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


@pytest.mark.parametrize("strategy", ["checkout", "memory"])
def test_a_run_returns_instances_of_the_pinned_class(repo, strategy):
    joblib = pytest.importorskip("joblib")
    sha = _project(repo)
    sys.path.insert(0, str(repo.path))
    from steps.model.model import Fit

    pipeline = Pipeline("model")
    pipeline.add_step("fit", Fit())
    model = pipeline.run(strategy=strategy)["fit"]
    assert type(model).__module__ == f"steps.model@{sha}.model"
    cached = pipeline.run(strategy=strategy)["fit"]  # from the run store this time
    assert type(cached) is type(model) and cached.factor == 2.0
    assert zgit.resolve_source(type(model)) == zgit.Source("steps.model.model", "Model", sha)
    raw = pickle.dumps(model)
    assert f"steps.model@{sha}.model".encode() in raw
    joblib.dump(model, repo.path / "model.joblib")
    (repo.path / "model.pkl").write_bytes(raw)

    _project(repo, scale=10)  # the step package changes and is committed
    status, files = repo.status(), repo.snapshot()
    for file, loader in (("model.joblib", "joblib.load"), ("model.pkl", "pickle.load")):
        module, value = _load_in_fresh_process(repo, f"""
            import pickle, joblib, zgit
            with open({file!r}, 'rb') as f:
                model = {loader}(f) if {loader!r} == 'pickle.load' else joblib.load({file!r})
            print(type(model).__module__, model.predict(1.0))
        """)
        assert (module, float(value)) == (f"steps.model@{sha}.model", 2.0)
    assert (repo.status(), repo.snapshot()) == (status, files)


def test_a_step_that_cannot_be_pinned_says_its_outputs_are_not_reproducible(repo):
    _project(repo)
    repo.write("steps/model/extra.py", "X = 1\n")  # the module directory is dirty
    sys.path.insert(0, str(repo.path))
    from steps.model.model import Fit

    pipeline = Pipeline("model")
    pipeline.add_step("fit", Fit())
    with pytest.warns(UnpinnedSourceWarning, match="not reproducible"):
        model = pipeline.run(save=False)["fit"]
    assert type(model).__module__ == "steps.model.model" and model.predict(1.0) == 2.0


SKLEARN_STEP = '''\
import numpy as np
from sklearn.linear_model import LinearRegression

from zgit import BaseStep


class ScaledRegression(LinearRegression):
    def predict(self, X):
        return super().predict(X) * {scale}


class Train(BaseStep):
    def __init__(self, fit_intercept=True):
        self.fit_intercept = fit_intercept

    def run(self, data):
        X = np.arange(10.0).reshape(-1, 1)
        return ScaledRegression(fit_intercept=self.fit_intercept).fit(X, 2.0 * X[:, 0])
'''


@pytest.mark.slow
def test_a_scikit_learn_model_from_a_run_reloads_as_the_pinned_class(repo):
    pytest.importorskip("sklearn")
    joblib = pytest.importorskip("joblib")
    repo.write(".gitignore", "__pycache__/\n")
    repo.write("models/__init__.py", "")
    repo.write("models/regression/__init__.py", "")
    repo.write("models/regression/train.py", SKLEARN_STEP.format(scale=1))
    sha = repo.commit("regression")
    sys.path.insert(0, str(repo.path))
    from models.regression.train import Train

    pipeline = Pipeline("regression")
    pipeline.add_step("train", Train())
    model = pipeline.run()["train"]
    assert type(model).__module__ == f"models.regression@{sha}.train"
    assert pipeline.steps["train"].args == {"fit_intercept": True}
    joblib.dump(model, repo.path / "model.joblib")
    repo.write("models/regression/train.py", SKLEARN_STEP.format(scale=10))
    repo.commit("scale the predictions")
    module, value = _load_in_fresh_process(repo, """
        import joblib, zgit
        model = joblib.load('model.joblib')
        print(type(model).__module__, round(float(model.predict([[1.0]])[0]), 6))
    """)
    assert (module, float(value)) == (f"models.regression@{sha}.train", 2.0)
