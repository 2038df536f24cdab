"""The engine interface: execute one step, given its source, arguments and input."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Sequence

from zgit.source import Source


@dataclass(frozen=True)
class StepCall:
    """One step to execute: its name in the pipeline, its source and its arguments.

    ``source`` is what the run recorded: a git pin is executed as the pinned class (so
    every object it returns, and every pickle of it, names the pin), a distribution pin
    as the installed class, an unpinned source as the working version.
    """

    step: str
    source: Source
    args: Dict[str, Any] = field(default_factory=dict)


class Engine(abc.ABC):
    """Executes steps for the runner.  Use as a context manager: ``start()`` on entry,
    ``close()`` on exit, always (a cluster started for a run is shut down with it)."""

    name: str = ""

    def __init__(self, repo: Any, *, strategy: Optional[str] = None, **options: Any) -> None:
        self.repo = repo
        self.strategy = strategy
        self.options = options

    def __enter__(self) -> "Engine":
        self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def start(self) -> None:
        """Acquire what the engine needs (a cluster, a connection).  Default: nothing."""

    def close(self) -> None:
        """Release everything :meth:`start` acquired.  Default: nothing."""

    def prepare(self, sources: Sequence[Source]) -> None:
        """Make the code of ``sources`` available where steps execute, before the first
        :meth:`execute` (the dask engine ships git pins as verified bundles).  Default:
        nothing, for engines that execute in this process."""

    @abc.abstractmethod
    def execute(self, call: StepCall, data: Any) -> Any:
        """Build the step from ``call.source`` with ``call.args``, run it on ``data`` and
        return its output.  Blocks until done; an exception raised by the step's own code
        propagates as itself."""
