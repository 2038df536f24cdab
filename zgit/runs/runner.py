"""The runner: executes a resolved pipeline step by step through an engine."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from zgit.engines import Engine, StepCall, get_engine
from zgit.errors import UnpinnedSourceWarning
from zgit.pipeline import PipelineConfig


@dataclass
class RunResult:
    """What a run produced: every step's output by step name."""

    outputs: Dict[str, Any] = field(default_factory=dict)


def run_config(config: PipelineConfig, data: Any = None, *, repo: Any,
               enable_cache: Optional[Dict[str, bool]] = None, engine: Any = None,
               strategy: Optional[str] = None) -> RunResult:
    """Execute the steps of ``config`` in order, each from its recorded source."""
    unpinned = [step.name for step in config.steps if step.source.kind == "unpinned"]
    if unpinned:
        warnings.warn(
            f"pipeline {config.name!r}: step(s) {', '.join(unpinned)} could not be pinned, so "
            "they run as the working code and their outputs are not reproducible; commit their "
            "module directories and run again",
            UnpinnedSourceWarning, stacklevel=3,
        )
    result = RunResult()
    with _engine(engine, repo, strategy) as running:
        running.prepare([step.source for step in config.steps])
        for step in config.steps:
            data = running.execute(StepCall(step.name, step.source, dict(step.args)), data)
            result.outputs[step.name] = data
    return result


def _engine(engine: Any, repo: Any, strategy: Optional[str]) -> Engine:
    if isinstance(engine, Engine):
        return engine
    return get_engine(engine or "local", repo, strategy=strategy)
