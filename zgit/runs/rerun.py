"""Re-run a recorded run from its recorded code and prove the outputs are the same.

Every step is built from the *recorded* source and args (not from today's YAML), fed the
recorded first input, and executed with the cache off.  Each output is compared with the
recorded one: ``identical`` (the same artifact bytes), ``equal`` (different pickles that
load equal with ``==``: sets, dicts built in another order, objects whose pickles carry
memory addresses...), or ``different`` (with the first divergence).  Nothing is written
to the store.
"""

from __future__ import annotations

import math
import reprlib
from dataclasses import dataclass, field
from typing import Any, List, Optional, Tuple

from zgit.engines import StepCall
from zgit.errors import ArtifactError, RerunError
from zgit.runs.runner import _engine, store_for
from zgit.runs.store import RunRecord, RunStore, digest_bytes, serialize
from zgit.source import Source

VERDICTS = ("identical", "equal", "different", "failed")


@dataclass(frozen=True)
class StepVerdict:
    """How one step's re-executed output compares with the recorded one."""

    step: str
    source: str
    verdict: str           # identical, equal, different, failed
    detail: str = ""       # the first divergence, or the error

    @property
    def reproduced(self) -> bool:
        return self.verdict in ("identical", "equal")

    def to_dict(self) -> dict:
        return {"step": self.step, "source": self.source, "verdict": self.verdict,
                "reproduced": self.reproduced, "detail": self.detail}


@dataclass
class RerunReport:
    """The verdict of every step of a re-run."""

    run_id: str
    pipeline: str
    steps: List[StepVerdict] = field(default_factory=list)

    @property
    def reproduced(self) -> bool:
        return bool(self.steps) and all(s.reproduced for s in self.steps)

    @property
    def summary(self) -> str:
        done = sum(s.reproduced for s in self.steps)
        return f"reproduced: {done}/{len(self.steps)}"

    def to_dict(self) -> dict:
        return {"run": self.run_id, "pipeline": self.pipeline, "reproduced": self.reproduced,
                "summary": self.summary, "steps": [s.to_dict() for s in self.steps]}


def rerun_problems(run: RunRecord, repository: Any, store: RunStore) -> List[Tuple[str, Optional[str], str]]:
    """Why ``run`` cannot be re-run: (code, step or None, reason) triples; empty when it can.

    Codes: ``run-not-completed``, ``run-missing-input``, ``run-unpinned``,
    ``run-missing-commit``, ``run-output-not-recorded`` (the audit reports all but the
    first)."""
    problems: List[Tuple[str, Optional[str], str]] = []
    if run.status != "completed":
        problems.append(("run-not-completed", None, f"the run is {run.status}; only completed runs are re-run"))
    if run.input_digest is None or not store.has(run.input_digest):
        problems.append(("run-missing-input", None,
                         "its first input is not in the run store (removed by zgit gc, or never written)"))
    for step in run.steps:
        try:
            source = Source.parse(step.source)
        except Exception as exc:  # a hand-edited store
            problems.append(("run-unpinned", step.name, f"bad source {step.source!r}: {exc}"))
            continue
        if step.output_digest is None and run.status == "completed":
            problems.append(("run-output-not-recorded", step.name,
                             "its output could not be pickled, so there is nothing to compare with"))
        if source.kind == "unpinned":
            problems.append(("run-unpinned", step.name,
                             f"{step.source} was not pinned, so the code that ran is unknown"))
        elif source.kind == "git" and not repository.git.has_commit(source.sha):
            problems.append(("run-missing-commit", step.name,
                             f"commit {source.sha} of {step.source} is not in the repository; fetch it"))
    return problems


def rerun(repository: Any, run_id: str, *, strategy: Optional[str] = None, engine: Any = None) -> RerunReport:
    """Re-execute recorded run ``run_id`` and compare; see the module docstring.

    :class:`RerunError` when the run cannot be re-run (say why);
    :class:`RunNotFoundError` when there is no such run.
    """
    store = store_for(repository)
    run = store.get_run(run_id)
    problems = rerun_problems(run, repository, store)
    if problems:
        listed = "; ".join(f"step {s}: {why}" if s else why for _, s, why in problems)
        raise RerunError(f"run {run.id} ({run.pipeline}) cannot be re-run: {listed}")
    try:
        data = store.get(run.input_digest)  # type: ignore[arg-type]
    except ArtifactError as exc:
        raise RerunError(f"run {run.id} cannot be re-run: its first input: {exc}") from exc
    report = RerunReport(run.id, run.pipeline)
    with _engine(engine, repository, strategy) as running:
        sources = [Source.parse(s.source) for s in run.steps]
        running.prepare(sources)
        for step, source in zip(run.steps, sources):
            try:
                output = running.execute(StepCall(step.name, source, dict(step.args)), data)
            except Exception as exc:
                report.steps.append(StepVerdict(step.name, step.source, "failed", f"{type(exc).__name__}: {exc}"))
                break
            report.steps.append(_compare(store, step.name, step.source, step.output_digest, output))
            data = output
    return report


def _compare(store: RunStore, name: str, source: str, recorded_digest: Optional[str], output: Any) -> StepVerdict:
    try:
        digest = digest_bytes(serialize(output))
    except Exception as exc:
        return StepVerdict(name, source, "different", f"the new output cannot be pickled: {exc}")
    if digest == recorded_digest:
        return StepVerdict(name, source, "identical")
    try:
        recorded = store.get(recorded_digest) if recorded_digest else None
    except ArtifactError as exc:
        return StepVerdict(name, source, "different", f"the recorded output cannot be read: {exc}")
    divergence = first_divergence(recorded, output)
    if divergence is None:
        return StepVerdict(name, source, "equal", "different pickles, equal values")
    return StepVerdict(name, source, "different", divergence)


def first_divergence(old: Any, new: Any, path: str = "output", depth: int = 0) -> Optional[str]:
    """Where ``new`` first differs from ``old`` (a path and both values), or None if equal."""
    shown = reprlib.Repr()
    shown.maxstring = shown.maxother = 80
    if depth > 50:
        return None if _equal(old, new) else f"{path}: {shown.repr(old)} != {shown.repr(new)}"
    if type(old) is not type(new):
        return f"{path}: a {type(old).__name__} was recorded, now a {type(new).__name__}"
    if isinstance(old, dict):
        for key in old:
            if key not in new:
                return f"{path}[{key!r}]: recorded, now missing"
            found = first_divergence(old[key], new[key], f"{path}[{key!r}]", depth + 1)
            if found:
                return found
        for key in new:
            if key not in old:
                return f"{path}[{key!r}]: new, not recorded"
        return None
    if isinstance(old, (list, tuple)):
        for i, (a, b) in enumerate(zip(old, new)):
            found = first_divergence(a, b, f"{path}[{i}]", depth + 1)
            if found:
                return found
        if len(old) != len(new):
            return f"{path}: {len(old)} items recorded, now {len(new)}"
        return None
    if _equal(old, new):
        return None
    attrs_old, attrs_new = getattr(old, "__dict__", None), getattr(new, "__dict__", None)
    if isinstance(attrs_old, dict) and isinstance(attrs_new, dict) and type(old).__eq__ is object.__eq__:
        # No __eq__ of its own (identity): objects of the same class compare by state.
        return first_divergence(attrs_old, attrs_new, f"{path}.__dict__", depth + 1)
    return f"{path}: {shown.repr(old)} recorded, now {shown.repr(new)}"


def _equal(a: Any, b: Any) -> bool:
    try:
        result = a == b
        if isinstance(result, bool):
            return result or (isinstance(a, float) and math.isnan(a) and isinstance(b, float) and math.isnan(b))
        return bool(getattr(result, "all", lambda: False)())  # numpy arrays
    except Exception:
        return False
