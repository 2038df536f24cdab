"""Sweeps: one stored pipeline run with several values of step arguments, each variant
recorded as its own run (``zgit run NAME --set training.epochs=10,20,40``).

Every combination of the values given is one variant.  On an engine that executes
elsewhere (``dask``) the variants run at once, one thread each, sharing the engine; in
this process (``local``) one after another.  Leading steps the variants share have the
same cache key, and the runner computes a key once at a time (:func:`zgit.runs.runner.
run_config`), so a shared step executes once and the other variants take it from the
cache.
"""

from __future__ import annotations

import dataclasses
import itertools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from zgit import yamlio
from zgit.errors import ConfigError
from zgit.pipeline import PipelineConfig


@dataclass(frozen=True)
class Assignment:
    """``STEP.ARG=V1,V2,...``: the values to try for one argument of one step."""

    step: str
    arg: str
    values: Tuple[Any, ...]

    @property
    def name(self) -> str:
        return f"{self.step}.{self.arg}"


def parse_assignment(text: str) -> Assignment:
    """Parse ``STEP.ARG=V1,V2,...``; each value is read as a YAML scalar (``10`` is an
    int, ``0.5`` a float, ``adam`` a string).  :class:`ConfigError` when malformed."""
    target, sep, values = text.partition("=")
    step, dot, arg = target.strip().rpartition(".")
    if not sep or not dot or not step or not arg.isidentifier() or not values.strip():
        raise ConfigError(f"--set {text!r}: expected STEP.ARG=VALUE[,VALUE...], e.g. training.epochs=10,20,40")
    parsed = []
    for value in values.split(","):
        item = yamlio.loads(value.strip(), f"--set {text!r}") if value.strip() else ""
        if isinstance(item, (dict, list)):
            raise ConfigError(f"--set {text!r}: value {value!r} is not a scalar; separate values with commas")
        parsed.append(item)
    return Assignment(step, arg, tuple(parsed))


def variants(config: PipelineConfig, assignments: Sequence[Assignment]) -> List[Tuple[str, PipelineConfig]]:
    """``(label, config)`` for every combination of the assignments' values, in order;
    :class:`ConfigError` naming an unknown step or argument."""
    steps = {step.name: step for step in config.steps}
    for assignment in assignments:
        step = steps.get(assignment.step)
        if step is None:
            raise ConfigError(f"--set {assignment.name}: pipeline {config.name!r} has no step "
                              f"{assignment.step!r}; its steps: {', '.join(steps)}")
        if assignment.arg not in step.args:
            raise ConfigError(f"--set {assignment.name}: step {assignment.step!r} has no argument "
                              f"{assignment.arg!r}; its arguments: {', '.join(step.args) or '(none)'}")
    out = []
    for combination in itertools.product(*(a.values for a in assignments)):
        changes: Dict[str, Dict[str, Any]] = {}
        for assignment, value in zip(assignments, combination):
            changes.setdefault(assignment.step, {})[assignment.arg] = value
        label = " ".join(f"{a.name}={v}" for a, v in zip(assignments, combination))
        varied = [dataclasses.replace(step, args={**step.args, **changes.get(step.name, {})})
                  for step in config.steps]
        out.append((label, dataclasses.replace(config, steps=varied)))
    return out


def run_sweep(config: PipelineConfig, assignments: Sequence[Assignment], *, repo: Any,
              engine: Any = None, address: Optional[str] = None, strategy: Optional[str] = None,
              enable_cache: Optional[Dict[str, bool]] = None,
              progress: Any = None) -> List[Tuple[str, Any]]:
    """Run every variant of ``config`` (see :func:`variants`) through one engine;
    ``(label, RunResult or the exception it raised)`` per variant, in order.
    ``progress(label, step, outcome, seconds)`` after each step of each variant."""
    from zgit.runs.runner import _engine, run_config

    planned = variants(config, assignments)
    with _engine(engine, repo, strategy, address) as running:
        running.prepare([step.source for step in config.steps])

        def one(item: Tuple[str, PipelineConfig]) -> Tuple[str, Any]:
            label, varied = item
            report = None if progress is None else (
                lambda step, outcome, seconds: progress(label, step, outcome, seconds))
            try:
                return label, run_config(varied, None, repo=repo, enable_cache=enable_cache, engine=running,
                                         strategy=strategy, progress=report)
            except Exception as exc:  # recorded as a failed run; the other variants go on
                return label, exc

        if running.name == "local" or len(planned) == 1:
            return [one(item) for item in planned]
        with ThreadPoolExecutor(max_workers=len(planned), thread_name_prefix="zgit-sweep") as pool:
            return list(pool.map(one, planned))
