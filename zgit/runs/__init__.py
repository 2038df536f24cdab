"""Runs: every run recorded, steps cached by the code they pin, any run re-run and verified.

One concept per module: :mod:`~zgit.runs.store` (the run store: SQLite and
content-addressed artifacts), :mod:`~zgit.runs.keys` (code identity and cache keys),
:mod:`~zgit.runs.runner` (executes a pipeline through an engine, recording and
caching), :mod:`~zgit.runs.rerun` (re-executes a recorded run and compares).
"""

from zgit.runs.rerun import RerunReport, StepVerdict
from zgit.runs.runner import RunResult, run_config, store_for
from zgit.runs.store import RunRecord, RunStore, StepRecord

__all__ = ["RerunReport", "RunRecord", "RunResult", "RunStore", "StepRecord", "StepVerdict", "run_config",
           "store_for"]
