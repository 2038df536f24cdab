"""Evaluators: metrics of the bundle's ``model`` on its row sets."""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Optional, Sequence

from zgit.pipeline import BaseStep
from zgit.steps.bundle import as_bundle, label_of, number, rows_of


def mean_squared_error(truth: Sequence[float], predicted: Sequence[float]) -> float:
    return math.fsum((t - p) ** 2 for t, p in zip(truth, predicted)) / len(truth)


def mean_absolute_error(truth: Sequence[float], predicted: Sequence[float]) -> float:
    return math.fsum(abs(t - p) for t, p in zip(truth, predicted)) / len(truth)


def root_mean_squared_error(truth: Sequence[float], predicted: Sequence[float]) -> float:
    return math.sqrt(mean_squared_error(truth, predicted))


def r2_score(truth: Sequence[float], predicted: Sequence[float]) -> float:
    mean = math.fsum(truth) / len(truth)
    total = math.fsum((t - mean) ** 2 for t in truth)
    residual = math.fsum((t - p) ** 2 for t, p in zip(truth, predicted))
    if total == 0:
        return 1.0 if residual == 0 else 0.0
    return 1.0 - residual / total


METRICS: Dict[str, Callable[[Sequence[float], Sequence[float]], float]] = {
    "mse": mean_squared_error,
    "rmse": root_mean_squared_error,
    "mae": mean_absolute_error,
    "r2": r2_score,
}
ALL_METRICS = tuple(METRICS) + ("accuracy",)


class Evaluator(BaseStep):
    """Compute ``metrics`` of ``bundle['model']`` on each set in ``splits``.

    ``metrics``: names from ``mse``, ``rmse``, ``mae``, ``r2`` and ``accuracy`` (a
    prediction counts as class 1 when it is >= ``threshold``; labels are 0/1).
    ``splits`` default to ``['eval']``.  Output: the bundle with
    ``metrics[split][metric]`` added (metrics already there are kept).
    """

    DEFAULT_METRICS: Sequence[str] = ("mse", "r2")

    def __init__(self, metrics: Optional[List[str]] = None, splits: Optional[List[str]] = None,
                 threshold: float = 0.5, label: Optional[str] = None) -> None:
        metrics = list(self.DEFAULT_METRICS) if metrics is None else list(metrics)
        unknown = [m for m in metrics if m not in ALL_METRICS]
        if unknown or not metrics:
            raise ValueError(f"unknown metrics {unknown}; choose from {', '.join(ALL_METRICS)}")
        self.metrics = metrics
        self.splits = ["eval"] if splits is None else list(splits)
        self.threshold = float(threshold)
        self.label = label

    def run(self, data: Any) -> Dict[str, Any]:
        name = type(self).__name__
        bundle = as_bundle(data, name)
        model = bundle.get("model")
        if model is None or not hasattr(model, "predict"):
            raise ValueError(f"{name} needs a trained 'model' in the bundle; add a trainer step before it")
        label = label_of(bundle, self.label)
        metrics = {k: dict(v) for k, v in (bundle.get("metrics") or {}).items()}
        for split in self.splits:
            rows = rows_of(bundle, split, name)
            if not rows:
                raise ValueError(f"{name}: the {split!r} set is empty; nothing to evaluate")
            truth = [number(row, label, name) for row in rows]
            predicted = [float(model.predict(row)) for row in rows]
            scores = metrics.setdefault(split, {})
            for metric in self.metrics:
                if metric == "accuracy":
                    hits = sum((p >= self.threshold) == (t >= 0.5) for t, p in zip(truth, predicted))
                    scores[metric] = hits / len(rows)
                else:
                    scores[metric] = METRICS[metric](truth, predicted)
        bundle["metrics"] = metrics
        return bundle


class MeanSquaredError(Evaluator):
    """:class:`Evaluator` of the mean squared error only."""

    DEFAULT_METRICS = ("mse",)


class Accuracy(Evaluator):
    """:class:`Evaluator` of classification accuracy only (predictions >= ``threshold`` are 1)."""

    DEFAULT_METRICS = ("accuracy",)
