"""Engines: where a pipeline's steps execute.

An engine runs one step at a time for the runner (:mod:`zgit.runs`): it is given the
step's source, its arguments and its input, and returns the step's output.  The runner
records, caches and orders; the engine only executes.  ``local`` (this process, the
default) and ``dask`` (``pip install 'zgit[dask]'``) are built in; another backend is
one more module with an :class:`~zgit.engines.base.Engine` subclass.
"""

from __future__ import annotations

from typing import Any, Dict

from zgit.engines.base import Engine, StepCall
from zgit.errors import ConfigError

ENGINES = ("local", "dask")


def get_engine(name: str, repo: Any, **options: Any) -> Engine:
    """A new, not yet started engine called ``name`` for repository ``repo``.

    :class:`ConfigError` for an unknown name; an engine whose optional dependencies
    are not installed says which extra to install when it is created.
    """
    if name == "local":
        from zgit.engines.local import LocalEngine

        return LocalEngine(repo, **options)
    if name == "dask":
        from zgit.engines.dask import DaskEngine  # type: ignore[import-not-found]

        return DaskEngine(repo, **options)
    raise ConfigError(f"engine {name!r} is not known; use one of {', '.join(ENGINES)}")


__all__ = ["ENGINES", "Engine", "StepCall", "get_engine"]
