"""zgit's built-in steps (zgit.steps) and TrainingPipeline: pure Python, deterministic."""

from __future__ import annotations

import copy
import math
import pickle

import pytest
import yaml

from zgit import BaseStep
from zgit.pipelines import TRAINING_STEPS, TrainingPipeline
from zgit.steps import (
    Accuracy,
    Evaluator,
    LeastSquaresTrainer,
    LinearModel,
    MeanSquaredError,
    RandomSplit,
    StandardScaler,
    SyntheticData,
    make_classification,
    make_regression,
)
from zgit.steps.trainer import solve


def regression_bundle(n=120, seed=3):
    return SyntheticData(n=n, n_features=3, noise=0.2, seed=seed).run(None)


# -- data ------------------------------------------------------------------------------------


def test_datasets_are_deterministic_and_seeded():
    assert make_regression(50, 3, 0.1, 1) == make_regression(50, 3, 0.1, 1)
    assert make_regression(50, 3, 0.1, 1) != make_regression(50, 3, 0.1, 2)
    rows = make_regression(10, 2, seed=0, label="target")
    assert len(rows) == 10 and set(rows[0]) == {"x0", "x1", "target"}
    labels = {row["y"] for row in make_classification(200, seed=5)}
    assert labels == {0.0, 1.0}
    with pytest.raises(ValueError):
        make_regression(0)
    with pytest.raises(ValueError):
        SyntheticData(kind="images")


def test_synthetic_data_step_output():
    out = SyntheticData(n=7, n_features=2, seed=4).run("ignored")
    assert out["features"] == ["x0", "x1"] and out["label"] == "y" and len(out["rows"]) == 7
    assert out["rows"] == make_regression(7, 2, 0.1, 4)


# -- split -----------------------------------------------------------------------------------


def test_random_split_is_a_seeded_exact_partition():
    rows = [{"i": float(i), "y": 0.0} for i in range(101)]
    out = RandomSplit(split={"train": 0.7, "eval": 0.3}, seed=1).run(rows)
    assert out["splits"] == ["train", "eval"] and "rows" not in out
    assert (len(out["train"]), len(out["eval"])) == (71, 30)
    got = sorted(r["i"] for r in out["train"] + out["eval"])
    assert got == [float(i) for i in range(101)]
    # each set keeps the original order
    assert [r["i"] for r in out["train"]] == sorted(r["i"] for r in out["train"])
    again = RandomSplit(split={"train": 0.7, "eval": 0.3}, seed=1).run(rows)
    assert again == out
    other = RandomSplit(split={"train": 0.7, "eval": 0.3}, seed=2).run(rows)
    assert other["train"] != out["train"]


def test_random_split_sizes_use_largest_remainders():
    split = RandomSplit(split={"train": 0.5, "eval": 0.25, "test": 0.25})
    assert split.sizes(10) == {"train": 5, "eval": 3, "test": 2}
    assert split.sizes(0) == {"train": 0, "eval": 0, "test": 0}
    assert sum(split.sizes(97).values()) == 97


def test_random_split_default_and_bad_arguments():
    step = RandomSplit()
    assert step.args == {"split": None, "seed": 42} and step.split == {"train": 0.7, "eval": 0.3} and step.seed == 42
    for bad in ({"train": 0.7}, {"train": 1.2, "eval": -0.2}, {}, {"rows": 1.0}, {"train": True}):
        with pytest.raises(ValueError):
            RandomSplit(split=bad)
    with pytest.raises(ValueError, match="'rows'"):
        RandomSplit().run({"nothing": 1})
    with pytest.raises(TypeError, match="bundle"):
        RandomSplit().run(42)


def test_steps_do_not_modify_their_input():
    bundle = regression_bundle()
    frozen = copy.deepcopy(bundle)
    split = RandomSplit().run(bundle)
    assert bundle == frozen
    split_frozen = copy.deepcopy(split)
    scaled = StandardScaler().run(split)
    assert split == split_frozen
    trained = LeastSquaresTrainer().run(scaled)
    Evaluator().run(trained)
    assert split == split_frozen


# -- preprocessing ---------------------------------------------------------------------------


def test_standard_scaler_fits_on_train_and_applies_everywhere():
    bundle = RandomSplit(seed=0).run(regression_bundle(n=200))
    out = StandardScaler().run(bundle)
    for column in ("x0", "x1", "x2"):
        values = [r[column] for r in out["train"]]
        mean = sum(values) / len(values)
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
        assert abs(mean) < 1e-9 and abs(std - 1) < 1e-9
        # eval is transformed with train's statistics, so it is close to, not exactly, standard
        means, stds = out["preprocessing"]["means"], out["preprocessing"]["stds"]
        raw = bundle["eval"][0][column]
        assert out["eval"][0][column] == pytest.approx((raw - means[column]) / stds[column])
    assert [r["y"] for r in out["train"]] == [r["y"] for r in bundle["train"]]  # label untouched


def test_standard_scaler_constant_column_and_explicit_features():
    rows = [{"a": 5.0, "b": float(i), "y": float(i)} for i in range(10)]
    out = StandardScaler(features=["a"]).run({"train": rows, "eval": rows[:2]})
    assert all(r["a"] == 0.0 for r in out["train"])  # centred, std taken as 1
    assert out["train"][3]["b"] == 3.0  # not listed: not scaled
    with pytest.raises(ValueError, match="label"):
        StandardScaler(features=["a", "y"]).run({"train": rows})
    with pytest.raises(ValueError, match="'train' rows"):
        StandardScaler().run({"rows": rows})
    with pytest.raises(ValueError, match="not a finite number"):
        StandardScaler(features=["a"]).run({"train": [{"a": "x", "y": 1.0}]})


# -- trainer ---------------------------------------------------------------------------------


def test_least_squares_recovers_an_exact_linear_relation():
    rows = [{"a": float(i), "b": float((i * 7) % 5), "y": 3.0 - 2.0 * i + 0.5 * ((i * 7) % 5)} for i in range(20)]
    model = LeastSquaresTrainer().run({"train": rows, "features": ["a", "b"]})["model"]
    assert model.intercept == pytest.approx(3.0, abs=1e-9)
    assert model.weights["a"] == pytest.approx(-2.0, abs=1e-9)
    assert model.weights["b"] == pytest.approx(0.5, abs=1e-9)
    assert model.predict({"a": 10.0, "b": 2.0}) == pytest.approx(3.0 - 20.0 + 1.0)


def test_least_squares_without_intercept_and_ridge_shrinks():
    rows = [{"x": float(i), "y": 2.0 * i} for i in range(1, 11)]
    plain = LeastSquaresTrainer(fit_intercept=False).run({"train": rows})["model"]
    assert plain.intercept == 0.0 and plain.weights == {"x": pytest.approx(2.0)}
    ridge = LeastSquaresTrainer(fit_intercept=False, l2=100.0).run({"train": rows})["model"]
    assert 0 < ridge.weights["x"] < 2.0


def test_least_squares_matches_a_hand_solved_system():
    assert solve([[2.0, 1.0], [1.0, 3.0]], [3.0, 5.0]) == pytest.approx([0.8, 1.4])
    assert solve([[0.0, 1.0], [1.0, 0.0]], [2.0, 3.0]) == pytest.approx([3.0, 2.0])  # needs pivoting


def test_least_squares_singular_system_says_what_to_do():
    rows = [{"a": float(i), "b": 2.0 * i, "y": float(i)} for i in range(10)]
    with pytest.raises(ValueError, match="l2 > 0"):
        LeastSquaresTrainer(features=["a", "b"]).run({"train": rows})
    model = LeastSquaresTrainer(features=["a", "b"], l2=1e-3).run({"train": rows})["model"]
    assert model.predict({"a": 4.0, "b": 8.0}) == pytest.approx(4.0, abs=1e-3)
    with pytest.raises(ValueError, match="empty"):
        LeastSquaresTrainer().run({"train": []})
    with pytest.raises(ValueError):
        LeastSquaresTrainer(l2=-1)


def test_linear_model_pickles_and_compares():
    model = LinearModel({"a": 1.5, "b": -2.0}, 0.25)
    back = pickle.loads(pickle.dumps(model))
    assert back == model and back.predict({"a": 2.0, "b": 1.0}) == pytest.approx(1.25)
    assert "1.5*a" in repr(model)


# -- evaluator -------------------------------------------------------------------------------


def test_evaluator_metrics_by_hand():
    model = LinearModel({"x": 1.0}, 0.0)
    rows = [{"x": 1.0, "y": 1.0}, {"x": 2.0, "y": 3.0}, {"x": 3.0, "y": 2.0}]
    out = Evaluator(metrics=["mse", "rmse", "mae", "r2"]).run({"eval": rows, "model": model})
    scores = out["metrics"]["eval"]
    assert scores["mse"] == pytest.approx(2 / 3)
    assert scores["rmse"] == pytest.approx(math.sqrt(2 / 3))
    assert scores["mae"] == pytest.approx(2 / 3)
    assert scores["r2"] == pytest.approx(1 - 2 / 2)
    assert MeanSquaredError().run({"eval": rows, "model": model})["metrics"] == {"eval": {"mse": pytest.approx(2 / 3)}}


def test_accuracy_and_metric_merging():
    model = LinearModel({"x": 1.0}, 0.0)
    rows = [{"x": 0.9, "y": 1.0}, {"x": 0.1, "y": 0.0}, {"x": 0.7, "y": 0.0}, {"x": 0.2, "y": 1.0}]
    out = Accuracy(splits=["train"]).run({"train": rows, "model": model, "metrics": {"train": {"mse": 1.0}}})
    assert out["metrics"]["train"] == {"mse": 1.0, "accuracy": 0.5}
    assert Accuracy(splits=["train"], threshold=0.05).run({"train": rows, "model": model})["metrics"]["train"]["accuracy"] == 0.5
    with pytest.raises(ValueError, match="trainer"):
        Evaluator().run({"eval": rows})
    with pytest.raises(ValueError, match="unknown metrics"):
        Evaluator(metrics=["auc"])


def test_classification_end_to_end():
    bundle = SyntheticData(kind="classification", n=300, n_features=2, seed=11).run(None)
    for step in (RandomSplit(seed=3), StandardScaler(), LeastSquaresTrainer(), Accuracy(splits=["train", "eval"])):
        bundle = step.run(bundle)
    assert bundle["metrics"]["eval"]["accuracy"] > 0.9


def test_regression_end_to_end_is_deterministic():
    def once():
        bundle = SyntheticData(n=150, n_features=3, noise=0.3, seed=9).run(None)
        for step in (RandomSplit(seed=5), StandardScaler(), LeastSquaresTrainer(), Evaluator()):
            bundle = step.run(bundle)
        return bundle

    first, second = once(), once()
    assert first["metrics"] == second["metrics"] and first["model"] == second["model"]
    assert first["metrics"]["eval"]["r2"] > 0.95


def test_built_in_steps_record_their_arguments_for_yaml():
    steps = [
        RandomSplit(split={"train": 0.8, "eval": 0.2}, seed=7),
        StandardScaler(features=["x0"]),
        LeastSquaresTrainer(l2=0.5),
        Evaluator(metrics=["mse"], splits=["eval"]),
        SyntheticData(n=10),
    ]
    for step in steps:
        assert isinstance(step, BaseStep)
        text = yaml.safe_dump(step.args)
        rebuilt = type(step)(**yaml.safe_load(text))
        assert rebuilt.args == step.args
    with pytest.raises(TypeError, match="keyword arguments only"):
        RandomSplit({"train": 1.0})


# -- TrainingPipeline ------------------------------------------------------------------------


class Marker(BaseStep):
    def run(self, data):
        out = dict(data)
        out.setdefault("seen", []).append(self.args.get("name"))
        return out


def test_training_pipeline_names_and_orders_its_steps():
    pipeline = TrainingPipeline(name="Order")
    pipeline.add_evaluator(Evaluator())
    pipeline.add_trainer(LeastSquaresTrainer())
    pipeline.add_preprocesser(StandardScaler())
    pipeline.add_split(RandomSplit())
    pipeline.add_datasource(SyntheticData(n=60))
    assert list(pipeline.steps) == list(TRAINING_STEPS)
    assert TRAINING_STEPS == ("data", "split", "preprocessing", "training", "evaluation")
    with pytest.raises(ValueError, match="already has a step"):
        pipeline.add_trainer(LeastSquaresTrainer())


def test_training_pipeline_custom_steps_follow_the_step_before_them():
    pipeline = TrainingPipeline(name="Custom")
    pipeline.add_split(RandomSplit())
    pipeline.add_step("after_split", Marker(name="after_split"))
    pipeline.add_evaluator(Evaluator())
    pipeline.add_preprocesser(StandardScaler())
    pipeline.add_trainer(LeastSquaresTrainer())
    assert list(pipeline.steps) == ["split", "after_split", "preprocessing", "training", "evaluation"]


def test_training_pipeline_runs_without_saving():
    pipeline = TrainingPipeline(name="Run")
    pipeline.add_split(RandomSplit(seed=1))
    pipeline.add_preprocessor(StandardScaler())  # the other spelling
    pipeline.add_trainer(LeastSquaresTrainer())
    pipeline.add_evaluator(MeanSquaredError())
    outputs = pipeline.run(make_regression(80, 2, 0.05, 2), save=False)
    assert list(outputs) == ["split", "preprocessing", "training", "evaluation"]
    assert outputs["evaluation"]["metrics"]["eval"]["mse"] < 0.01
    with pytest.raises(ValueError, match="no data step"):
        pipeline.run(save=False)
