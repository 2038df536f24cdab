"""Helpers for the bundle convention of :mod:`zgit.steps` (see its docstring)."""

from __future__ import annotations

import math
from numbers import Real
from typing import Any, Dict, List, Optional, Sequence

Row = Dict[str, float]
Bundle = Dict[str, Any]

DEFAULT_SPLITS = ("train", "eval", "test")


def as_bundle(data: Any, step: str) -> Bundle:
    """A shallow copy of ``data`` as a bundle; a bare list of rows becomes ``{'rows': rows}``."""
    if isinstance(data, dict):
        return dict(data)
    if isinstance(data, (list, tuple)):
        return {"rows": list(data)}
    raise TypeError(
        f"{step} expects a bundle (a dict, see zgit.steps) or a list of rows, "
        f"not {type(data).__name__}; put a data step or a split before it"
    )


def split_names(bundle: Bundle) -> List[str]:
    """The names of the bundle's row sets (``bundle['splits']``, else the usual ones present)."""
    names = bundle.get("splits")
    if names is None:
        names = [n for n in DEFAULT_SPLITS if isinstance(bundle.get(n), list)]
    return list(names)


def rows_of(bundle: Bundle, name: str, step: str) -> List[Row]:
    rows = bundle.get(name)
    if not isinstance(rows, list):
        raise ValueError(
            f"{step} needs the {name!r} rows, but the bundle has {sorted(bundle)}; "
            "add a split step (e.g. zgit.steps.split.RandomSplit) before it"
        )
    return rows


def number(row: Any, column: str, step: str) -> float:
    if not isinstance(row, dict):
        raise TypeError(f"{step}: a row must be a dict of column -> number, not {type(row).__name__}")
    try:
        value = row[column]
    except KeyError:
        raise KeyError(f"{step}: row has no column {column!r} (it has {sorted(row)})") from None
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ValueError(f"{step}: column {column!r} holds {value!r}, not a finite number")
    return float(value)


def label_of(bundle: Bundle, label: Optional[str]) -> str:
    """The label column: the step's own setting, else the bundle's, else ``'y'``."""
    return label or bundle.get("label") or "y"


def features_of(bundle: Bundle, features: Optional[Sequence[str]], label: str, rows: List[Row]) -> List[str]:
    """The feature columns: the step's own setting, else the bundle's, else every column
    of the first row but the label (sorted)."""
    if features is not None:
        return list(features)
    if bundle.get("features") is not None:
        return list(bundle["features"])
    if not rows:
        return []
    return sorted(k for k in rows[0] if k != label)
