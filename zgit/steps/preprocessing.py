"""Preprocessing steps: learned on the training rows, applied to every set."""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional

from zgit.pipeline import BaseStep
from zgit.steps.bundle import as_bundle, features_of, label_of, number, rows_of, split_names


class StandardScaler(BaseStep):
    """Standardize feature columns: ``(x - mean) / std`` with mean and std of ``fit_on``.

    ``features``: the columns to scale (default: the bundle's ``features``, else every
    column but the label).  ``fit_on``: the set the statistics come from (``'train'``);
    they are then applied to every set in ``splits``.  A column that is constant on the
    fitting set is only centred (its std is taken as 1).  The label is never scaled.

    Output: the bundle with scaled rows (new dicts), ``features`` and
    ``preprocessing = {'scaler': 'standard', 'means': {...}, 'stds': {...}}``.
    """

    def __init__(self, features: Optional[List[str]] = None, label: Optional[str] = None,
                 fit_on: str = "train") -> None:
        if features is not None and (not isinstance(features, list) or not all(isinstance(f, str) for f in features)):
            raise ValueError(f"features must be a list of column names, not {features!r}")
        self.features = features
        self.label = label
        self.fit_on = fit_on

    def fit(self, rows: List[Dict[str, float]], features: List[str]) -> Dict[str, Dict[str, float]]:
        """Means and (population) standard deviations of ``features`` over ``rows``."""
        if not rows:
            raise ValueError(f"StandardScaler: the {self.fit_on!r} set is empty; nothing to fit on")
        means, stds = {}, {}
        for column in features:
            values = [number(row, column, "StandardScaler") for row in rows]
            mean = math.fsum(values) / len(values)
            var = math.fsum((v - mean) ** 2 for v in values) / len(values)
            std = math.sqrt(var)
            means[column] = mean
            stds[column] = std if std > 1e-12 * max(1.0, abs(mean)) else 1.0
        return {"means": means, "stds": stds}

    def run(self, data: Any) -> Dict[str, Any]:
        bundle = as_bundle(data, "StandardScaler")
        label = label_of(bundle, self.label)
        fit_rows = rows_of(bundle, self.fit_on, "StandardScaler")
        features = features_of(bundle, self.features, label, fit_rows)
        if label in features:
            raise ValueError(f"StandardScaler: the label {label!r} is listed as a feature")
        stats = self.fit(fit_rows, features)
        means, stds = stats["means"], stats["stds"]
        for name in split_names(bundle):
            scaled = []
            for row in rows_of(bundle, name, "StandardScaler"):
                new = dict(row)
                for column in features:
                    new[column] = (number(row, column, "StandardScaler") - means[column]) / stds[column]
                scaled.append(new)
            bundle[name] = scaled
        bundle["features"] = list(features)
        bundle["label"] = label
        bundle["preprocessing"] = {"scaler": "standard", "means": means, "stds": stds}
        return bundle
