"""Trainers: ordinary least squares by the normal equations, in pure Python."""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence

from zgit.pipeline import BaseStep
from zgit.steps.bundle import as_bundle, features_of, label_of, number, rows_of


class LinearModel:
    """``predict(row) = intercept + sum(weights[f] * row[f])``; picklable, plain data."""

    def __init__(self, weights: Dict[str, float], intercept: float = 0.0, label: str = "y") -> None:
        self.weights = dict(weights)
        self.intercept = float(intercept)
        self.label = label

    @property
    def features(self) -> List[str]:
        return list(self.weights)

    def predict(self, row: Dict[str, float]) -> float:
        return self.intercept + math.fsum(w * number(row, f, "LinearModel") for f, w in self.weights.items())

    def predict_many(self, rows: Sequence[Dict[str, float]]) -> List[float]:
        return [self.predict(row) for row in rows]

    def to_dict(self) -> Dict[str, Any]:
        return {"weights": dict(self.weights), "intercept": self.intercept, "label": self.label}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LinearModel) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        terms = " + ".join(f"{w:.6g}*{f}" for f, w in self.weights.items())
        return f"LinearModel({self.label} = {self.intercept:.6g}{' + ' + terms if terms else ''})"


def solve(matrix: List[List[float]], rhs: List[float]) -> List[float]:
    """Solve ``matrix @ x = rhs`` by Gaussian elimination with partial pivoting.

    Raises ``ValueError`` when the matrix is singular (to working precision).
    """
    n = len(matrix)
    a = [list(map(float, row)) + [float(b)] for row, b in zip(matrix, rhs)]
    scale = max((abs(v) for row in matrix for v in row), default=0.0) or 1.0
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(a[r][col]))
        if abs(a[pivot][col]) <= 1e-12 * scale:
            raise ValueError(
                "the normal equations are singular: features are collinear or constant, or "
                "there are fewer rows than features; drop a feature or set l2 > 0"
            )
        a[col], a[pivot] = a[pivot], a[col]
        for r in range(col + 1, n):
            factor = a[r][col] / a[col][col]
            if factor:
                for c in range(col, n + 1):
                    a[r][c] -= factor * a[col][c]
    x = [0.0] * n
    for r in range(n - 1, -1, -1):
        x[r] = (a[r][n] - math.fsum(a[r][c] * x[c] for c in range(r + 1, n))) / a[r][r]
    return x


class LeastSquaresTrainer(BaseStep):
    """Fit a :class:`LinearModel` to the ``fit_on`` rows by (ridge) least squares.

    Solves the normal equations ``(X'X + l2*I) w = X'y`` (the intercept is not
    penalized).  ``features`` default to the bundle's ``features``, ``label`` to the
    bundle's ``label`` (else ``'y'``).  Output: the bundle with ``model``.
    Subclass it and override :meth:`fit` or :meth:`run` for your own trainer.
    """

    def __init__(self, features: Optional[List[str]] = None, label: Optional[str] = None,
                 l2: float = 0.0, fit_intercept: bool = True, fit_on: str = "train") -> None:
        if isinstance(l2, bool) or not isinstance(l2, (int, float)) or not l2 >= 0:
            raise ValueError(f"l2 must be a number >= 0, not {l2!r}")
        self.features = features
        self.label = label
        self.l2 = float(l2)
        self.fit_intercept = bool(fit_intercept)
        self.fit_on = fit_on

    def fit(self, rows: List[Dict[str, float]], features: List[str], label: str) -> LinearModel:
        """The least-squares model of ``label`` on ``features`` over ``rows``."""
        if not rows:
            raise ValueError(f"{type(self).__name__}: the {self.fit_on!r} set is empty; nothing to train on")
        name = type(self).__name__
        design = [[number(row, f, name) for f in features] + ([1.0] if self.fit_intercept else []) for row in rows]
        target = [number(row, label, name) for row in rows]
        k = len(features) + (1 if self.fit_intercept else 0)
        if k == 0:
            return LinearModel({}, 0.0, label)
        xtx = [[math.fsum(x[i] * x[j] for x in design) for j in range(k)] for i in range(k)]
        xty = [math.fsum(x[i] * y for x, y in zip(design, target)) for i in range(k)]
        for i in range(len(features)):
            xtx[i][i] += self.l2
        coef = solve(xtx, xty)
        intercept = coef[-1] if self.fit_intercept else 0.0
        return LinearModel(dict(zip(features, coef[: len(features)])), intercept, label)

    def run(self, data: Any) -> Dict[str, Any]:
        bundle = as_bundle(data, type(self).__name__)
        label = label_of(bundle, self.label)
        rows = rows_of(bundle, self.fit_on, type(self).__name__)
        features = features_of(bundle, self.features, label, rows)
        bundle["model"] = self.fit(rows, features, label)
        bundle["label"] = label
        bundle["features"] = list(features)
        return bundle
