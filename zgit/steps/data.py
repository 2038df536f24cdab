"""Tiny deterministic datasets for demos and tests (pure Python, seeded)."""

from __future__ import annotations

import random
from typing import Any, Dict, List

from zgit.pipeline import BaseStep

Row = Dict[str, float]


def _check(n: int, n_features: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, not {n!r}")
    if isinstance(n_features, bool) or not isinstance(n_features, int) or n_features < 1:
        raise ValueError(f"n_features must be a positive integer, not {n_features!r}")


def _features(rng: random.Random, n_features: int):
    # Each feature has its own scale and offset, so that standardizing matters.
    scales = [round(rng.uniform(0.5, 10.0), 3) for _ in range(n_features)]
    offsets = [round(rng.uniform(-20.0, 20.0), 3) for _ in range(n_features)]
    return scales, offsets


def make_regression(
    n: int = 100, n_features: int = 3, noise: float = 0.1, seed: int = 0, label: str = "y"
) -> List[Row]:
    """``n`` rows ``{'x0': .., 'x1': .., label: ..}`` with a linear target plus Gaussian noise.

    The same arguments always give the same rows (``random.Random(seed)``); the true
    coefficients are drawn from the seed too.
    """
    _check(n, n_features)
    rng = random.Random(seed)
    weights = [round(rng.uniform(-3.0, 3.0), 3) for _ in range(n_features)]
    intercept = round(rng.uniform(-5.0, 5.0), 3)
    scales, offsets = _features(rng, n_features)
    rows = []
    for _ in range(n):
        row = {f"x{i}": offsets[i] + scales[i] * rng.gauss(0.0, 1.0) for i in range(n_features)}
        target = intercept + sum(w * (row[f"x{i}"] - offsets[i]) / scales[i] for i, w in enumerate(weights))
        row[label] = target + noise * rng.gauss(0.0, 1.0)
        rows.append(row)
    return rows


def make_classification(n: int = 100, n_features: int = 2, seed: int = 0, label: str = "y") -> List[Row]:
    """``n`` rows with a 0/1 label given by a seeded linear boundary (separable, no noise)."""
    _check(n, n_features)
    rng = random.Random(seed)
    weights = [rng.uniform(-1.0, 1.0) or 1.0 for _ in range(n_features)]
    scales, offsets = _features(rng, n_features)
    rows = []
    for _ in range(n):
        z = [rng.gauss(0.0, 1.0) for _ in range(n_features)]
        row = {f"x{i}": offsets[i] + scales[i] * z[i] for i in range(n_features)}
        row[label] = 1.0 if sum(w * v for w, v in zip(weights, z)) > 0 else 0.0
        rows.append(row)
    return rows


class SyntheticData(BaseStep):
    """A data source step: ignores its input and returns ``{'rows', 'features', 'label'}``.

    ``kind`` is ``'regression'`` (arguments of :func:`make_regression`) or
    ``'classification'`` (:func:`make_classification`).
    """

    def __init__(self, kind: str = "regression", n: int = 200, n_features: int = 3,
                 noise: float = 0.1, seed: int = 0, label: str = "y") -> None:
        if kind not in ("regression", "classification"):
            raise ValueError(f"kind must be 'regression' or 'classification', not {kind!r}")
        _check(n, n_features)
        self.kind, self.n, self.n_features = kind, n, n_features
        self.noise, self.seed, self.label = noise, seed, label

    def run(self, data: Any = None) -> Dict[str, Any]:
        if self.kind == "regression":
            rows = make_regression(self.n, self.n_features, self.noise, self.seed, self.label)
        else:
            rows = make_classification(self.n, self.n_features, self.seed, self.label)
        return {
            "rows": rows,
            "features": [f"x{i}" for i in range(self.n_features)],
            "label": self.label,
        }
