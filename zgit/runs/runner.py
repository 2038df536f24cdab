"""The runner: executes a resolved pipeline step by step through an engine, recording the
run in the store and reusing cached step outputs."""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from zgit import yamlio
from zgit._version import __version__
from zgit.engines import Engine, StepCall, get_engine
from zgit.errors import ArtifactError, UnpinnedSourceWarning
from zgit.gitrepo import is_bytecode_cache
from zgit.pipeline import PipelineConfig
from zgit.runs import keys
from zgit.runs.store import RunRecord, RunStore, StepRecord

log = logging.getLogger(__name__)

#: Called after each step: (step name, "ran" or "cached", seconds).
Progress = Callable[[str, str, float], None]

_stores: Dict[Tuple[str, int], RunStore] = {}
_stores_lock = threading.Lock()


def store_for(repository: Any) -> RunStore:
    """The run store of ``repository`` (``store.path`` / ``ZGIT_STORE``; one per process)."""
    config = repository.config
    path = Path(config.store_path)
    if not path.is_absolute():
        path = repository.root / path
    key = (os.path.abspath(path), os.getpid())  # a forked child opens its own connection
    with _stores_lock:
        found = _stores.get(key)
        if found is None:
            found = _stores[key] = RunStore(path, fsync=config.fsync)
    return found


def cache_disabled_by_env() -> bool:
    """``ZGIT_DISABLE_CACHE=1`` (or true/yes/on) turns the step cache off everywhere."""
    return os.environ.get("ZGIT_DISABLE_CACHE", "").strip().lower() in ("1", "true", "yes", "on")


@dataclass
class RunResult:
    """What a run produced: every step's output by step name, and its record."""

    outputs: Dict[str, Any] = field(default_factory=dict)
    run: Optional[RunRecord] = None
    executed: List[str] = field(default_factory=list)
    cached: List[str] = field(default_factory=list)


def run_config(config: PipelineConfig, data: Any = None, *, repo: Any,
               enable_cache: Optional[Dict[str, bool]] = None, engine: Any = None,
               strategy: Optional[str] = None, progress: Optional[Progress] = None,
               store: Optional[RunStore] = None, saved: Optional[Path] = None,
               address: Optional[str] = None) -> RunResult:
    """Execute the steps of ``config`` in order, each from its recorded source, through
    ``engine`` (a name or an :class:`Engine`; default: the repository's ``engine.name``,
    else ``local``), and record the run.  ``address``: the Dask scheduler for engine
    ``dask`` (default: ``engine.address``; none: a local cluster for this run).

    ``enable_cache`` maps step names to whether the cache may serve them (default: all
    may); ``ZGIT_DISABLE_CACHE=1`` overrides it.  ``saved``: the pipeline file this run
    just wrote (it does not make the work tree unclean: the record holds its text).  A
    step's exception is recorded (the run is ``failed``) and propagates as itself.
    """
    repository = repo
    store = store if store is not None else store_for(repository)
    unpinned = [step.name for step in config.steps if step.source.kind == "unpinned"]
    if unpinned:
        warnings.warn(
            f"pipeline {config.name!r}: step(s) {', '.join(unpinned)} could not be pinned, so "
            "they run as the working code and their outputs are not reproducible; commit their "
            "module directories and run again",
            UnpinnedSourceWarning, stacklevel=3,
        )
    no_cache = cache_disabled_by_env()
    switches = enable_cache or {}
    git = repository.git
    head = git.head_sha()
    own = Path(os.path.relpath(saved, repository.root)).as_posix() if saved is not None else None
    clean = head is not None and not any(not is_bytecode_cache(p) and p != own for p in git.status())
    input_digest = _put(store, data, f"the first input of pipeline {config.name!r}")
    run = store.begin_run(
        pipeline=config.name, yaml=yamlio.dumps(config.to_data()), head=head, clean=clean,
        zgit_version=__version__, python_version=platform.python_version(),
        platform=platform.platform(), input_digest=input_digest, reproducible=not unpinned,
    )
    result = RunResult(run=run)
    position = 0
    try:
        with _engine(engine, repository, strategy, address) as running:
            running.prepare([step.source for step in config.steps])
            for position, step in enumerate(config.steps):
                started = time.perf_counter()
                identity = keys.code_identity(step.source, repository, store)
                use_cache = not no_cache and switches.get(step.name, True)
                key = keys.cache_key(step.source, identity, step.args, input_digest)
                # Variants of a sweep running at once share leading steps: one computes a
                # key while the others wait, then find it in the cache.
                with _one_at_a_time(key if use_cache else None):
                    hit = _cached(store, key) if use_cache and key is not None else None
                    if hit is not None:
                        output, output_digest, from_run = hit
                        store.add_step(run.id, StepRecord(
                            position, step.name, str(step.source), identity, dict(step.args), input_digest,
                            output_digest, key, from_run, time.perf_counter() - started))
                        result.cached.append(step.name)
                        outcome = "cached"
                    else:
                        try:
                            output = running.execute(StepCall(step.name, step.source, dict(step.args)), data)
                        except BaseException as exc:
                            store.add_step(run.id, StepRecord(
                                position, step.name, str(step.source), identity, dict(step.args), input_digest,
                                None, key, None, time.perf_counter() - started, _describe(exc)))
                            raise
                        output_digest = _put(store, output, f"the output of step {step.name!r}")
                        store.add_step(run.id, StepRecord(
                            position, step.name, str(step.source), identity, dict(step.args), input_digest,
                            output_digest, key if use_cache else None, None, time.perf_counter() - started))
                        result.executed.append(step.name)
                        outcome = "ran"
                result.outputs[step.name] = output
                data, input_digest = output, output_digest
                if progress is not None:
                    progress(step.name, outcome, time.perf_counter() - started)
    except BaseException as exc:
        store.finish_run(run.id, "failed", _describe(exc))
        raise
    store.finish_run(run.id, "completed")
    result.run = store.get_run(run.id)
    return result


_computing: Dict[str, List[Any]] = {}  # cache key -> [lock, users]
_computing_lock = threading.Lock()


@contextlib.contextmanager
def _one_at_a_time(key: Optional[str]) -> Iterator[None]:
    """Hold the lock of cache key ``key`` in this process (None: no lock)."""
    if key is None:
        yield
        return
    with _computing_lock:
        entry = _computing.setdefault(key, [threading.Lock(), 0])
        entry[1] += 1
    try:
        with entry[0]:
            yield
    finally:
        with _computing_lock:
            entry[1] -= 1
            if not entry[1]:
                _computing.pop(key, None)


def _put(store: RunStore, obj: Any, what: str) -> Optional[str]:
    """Store ``obj`` as an artifact; None (with a warning) when it cannot be pickled: the
    run goes on, but what depends on it is neither cached nor re-runnable."""
    try:
        return store.put(obj)
    except Exception as exc:  # pickling runs arbitrary __reduce__ code: any error
        if isinstance(exc, OSError):
            raise
        warnings.warn(
            f"{what} cannot be pickled ({type(exc).__name__}: {exc}), so it is not recorded: "
            "the steps that depend on it are not cached, and the run cannot be re-run",
            RuntimeWarning, stacklevel=4,
        )
        return None


def _cached(store: RunStore, key: str) -> Optional[Tuple[Any, str, str]]:
    """(output, digest, run id) from the cache, or None on a miss.  A missing or corrupt
    artifact is a miss that is reported, and the entry is dropped."""
    found = store.lookup(key)
    if found is None:
        return None
    digest, run_id = found
    try:
        return store.get(digest), digest, run_id
    except ArtifactError as exc:
        warnings.warn(f"step cache: {exc}; the step runs again", RuntimeWarning, stacklevel=4)
        store.forget(key)
        return None


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class _Borrowed:
    """An engine the caller started: used, not closed."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __enter__(self) -> Engine:
        return self.engine

    def __exit__(self, *exc_info: Any) -> None:
        pass


def _engine(engine: Any, repo: Any, strategy: Optional[str], address: Optional[str] = None) -> Any:
    """An engine to enter: the caller's own (borrowed), or a new one named ``engine``
    (default: the repository's ``engine.name``) with its configured address."""
    if isinstance(engine, Engine):
        return _Borrowed(engine)
    config = repo.config
    name = engine or config.engine
    options: Dict[str, Any] = {}
    if name == "dask":
        address = address or config.engine_address
        if address:
            options["address"] = address
    return get_engine(name, repo, strategy=strategy, **options)
