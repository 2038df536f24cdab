"""The in-process engine (the default)."""

from __future__ import annotations

from typing import Any

from zgit.engines.base import Engine, StepCall


class LocalEngine(Engine):
    """Executes each step in this process, loading pinned classes with :func:`zgit.load_source`."""

    name = "local"

    def execute(self, call: StepCall, data: Any) -> Any:
        from zgit.loader import load_source

        cls = load_source(call.source, repo=self.repo, strategy=self.strategy)
        return cls(**call.args).run(data)
