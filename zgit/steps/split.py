"""Splitting rows into named sets (``train``, ``eval``, ...)."""

from __future__ import annotations

import math
import random
from typing import Any, Dict, Optional

from zgit.pipeline import BaseStep
from zgit.steps.bundle import as_bundle


class RandomSplit(BaseStep):
    """Split ``bundle['rows']`` at random into named sets, the same way for the same seed.

    ``split`` maps set names to fractions that sum to 1 (default
    ``{'train': 0.7, 'eval': 0.3}``).  Each set gets ``floor(n * fraction)`` rows and the
    rows left over go to the sets with the largest remainders (ties: in ``split``'s
    order), so the sizes are exact and every row lands in exactly one set.  Rows keep
    their original relative order within a set.

    Output: the bundle without ``rows``, with one key per set and ``splits`` (their names).
    """

    def __init__(self, split: Optional[Dict[str, float]] = None, seed: int = 42) -> None:
        split = {"train": 0.7, "eval": 0.3} if split is None else split
        if not isinstance(split, dict) or not split:
            raise ValueError("split must be a non-empty mapping of set names to fractions")
        for name, fraction in split.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"split names must be non-empty strings, not {name!r}")
            if name in ("rows", "splits", "features", "label", "model", "metrics", "preprocessing"):
                raise ValueError(f"{name!r} is a reserved bundle key; name the set differently")
            if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
                raise ValueError(f"split fraction of {name!r} must be a number in [0, 1], not {fraction!r}")
        total = sum(split.values())
        if not math.isclose(total, 1.0, rel_tol=0, abs_tol=1e-9):
            raise ValueError(f"split fractions must sum to 1, not {total!r} ({split})")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, not {seed!r}")
        self.split = dict(split)
        self.seed = seed

    def sizes(self, n: int) -> Dict[str, int]:
        """How many of ``n`` rows each set gets."""
        exact = {name: n * fraction for name, fraction in self.split.items()}
        sizes = {name: int(math.floor(value)) for name, value in exact.items()}
        left = n - sum(sizes.values())
        order = sorted(self.split, key=lambda name: (-(exact[name] - sizes[name]), list(self.split).index(name)))
        for name in order[:left]:
            sizes[name] += 1
        return sizes

    def run(self, data: Any) -> Dict[str, Any]:
        bundle = as_bundle(data, "RandomSplit")
        rows = bundle.pop("rows", None)
        if not isinstance(rows, list):
            raise ValueError(f"RandomSplit needs the bundle's 'rows' (a list of rows); it has {sorted(bundle)}")
        indices = list(range(len(rows)))
        random.Random(self.seed).shuffle(indices)
        start = 0
        for name, size in self.sizes(len(rows)).items():
            chosen = sorted(indices[start:start + size])
            bundle[name] = [rows[i] for i in chosen]
            start += size
        bundle["splits"] = list(self.split)
        return bundle
