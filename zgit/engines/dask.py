"""The Dask engine: steps execute on Dask distributed workers that have no repository.

``pip install 'zgit[dask]'``.  Code travels as verified bundles (:mod:`zgit.engines.bundle`):
for every git pin of the run the driver builds a bundle from git's objects and registers a
worker plugin (:class:`BundlePlugin`, one per pin) that verifies and installs it on every
worker, including workers that join or restart later (Dask runs a worker's plugins when
it registers, before it receives a task).  Before the first step, every worker is asked
which pins it lacks; a missing one is a :class:`SourceNotFoundError` naming it, within
``timeout`` seconds, never a hang.

A step's arguments and input are pickled on the driver and unpickled on the worker only
after its pins are checked, and its output comes back pickled the same way, so neither
the scheduler nor the driver's client ever unpickles pinned objects on its own: pinned
instances come back as the driver's own pinned classes (the same names,
``pkg.mod@<sha>.module``, resolved from the driver's repository).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import pickle
import uuid
from typing import Any, Dict, List, Optional, Sequence, Tuple

from zgit.engines.base import Engine, StepCall
from zgit.engines.bundle import build as build_bundle, install, installed, locate
from zgit.errors import ConfigError, SourceError, SourceNotFoundError
from zgit.source import Source

try:
    from distributed import Client, LocalCluster
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise ConfigError(
        "engine 'dask' needs Dask distributed, which is not installed: pip install 'zgit[dask]' "
        f"({exc})"
    ) from exc

log = logging.getLogger(__name__)

PLUGIN_PREFIX = "zgit-bundle-"


class BundlePlugin(WorkerPlugin):
    """Installs one code bundle on a worker (verified first: see
    :func:`zgit.engines.bundle.install`).  A worker that cannot install it leaves the
    cluster, logging the reason, rather than serve tasks without the pin."""

    idempotent = True  # registering the same pin again does nothing

    def __init__(self, key: str, data: bytes) -> None:
        self.key = key
        self.name = PLUGIN_PREFIX + key
        self.data = data

    async def setup(self, worker: Any) -> None:
        try:
            install(self.data)
        except Exception as exc:
            log.error("zgit: worker %s cannot install code bundle %s and leaves the cluster: %s",
                      getattr(worker, "address", "?"), self.key, exc)
            worker.loop.add_callback(worker.close, reason=f"zgit: cannot install bundle {self.key}: {exc}")
            raise


def missing_pins(keys: Sequence[str]) -> List[str]:
    """The pins among ``keys`` (``<package>@<sha>``) not installed in this process (runs
    on each worker)."""
    return [key for key in keys if not installed(key)]


def run_step(source: str, pinned_module: Optional[str], keys: Tuple[str, ...], payload: bytes) -> bytes:
    """Run one step on a worker: check its pins, unpickle its arguments and input, build
    the step (git pins from the installed bundles, other sources as ``load_source`` does)
    and return its output pickled."""
    import socket

    missing = missing_pins(keys)
    if missing:
        raise SourceNotFoundError(
            f"step source {source}: pin(s) {', '.join(missing)} are not installed on worker "
            f"{socket.gethostname()}: it did not get the run's code bundles (it may have failed "
            "to install one: see its log); restart it, or run again to ship them"
        )
    args, data = pickle.loads(payload)
    parsed = Source.parse(source)
    if pinned_module is not None:
        module = importlib.import_module(pinned_module)
        try:
            cls = getattr(module, parsed.attribute)
        except AttributeError:
            raise SourceNotFoundError(f"{source}: module {parsed.module!r} at commit {parsed.sha} has no "
                                      f"attribute {parsed.attribute!r}") from None
    else:
        from zgit.loader import load_source

        cls = load_source(parsed)
    return pickle.dumps(cls(**args).run(data), protocol=pickle.HIGHEST_PROTOCOL)


def _refuse_outside_imports(repository: Any, source: Source, module_dir: str) -> None:
    """A bundle carries one module directory: :class:`SourceError` naming the repository
    modules outside it that its code imports (the audit's ``outside-import``), before
    anything is submitted, rather than an ImportError on a worker mid-run."""
    from zgit.audit import _RepoChecker

    outside = _RepoChecker(repository).outside_files(source.sha, module_dir)
    if outside:
        names = "; ".join(f"{module} ({file}, imported at {', '.join(places)})"
                          for module, (file, places) in sorted(outside.items()))
        raise SourceError(
            f"step source {source}: its module directory {module_dir!r} imports repository modules "
            f"outside it, which its code bundle cannot carry to Dask workers: {names}. Move them into "
            "the module directory (or into an installed package, the same version on every worker), "
            "commit, and run again; or run with the local engine"
        )


class DaskEngine(Engine):
    """Executes each step as a task on a Dask distributed cluster.

    ``address``: a running scheduler (``tcp://host:8786``); without one, a local cluster of
    ``n_workers`` processes listening on 127.0.0.1 only is started with the engine and
    shut down with it.  ``timeout``: seconds to wait for workers and for the pin check.
    """

    name = "dask"

    def __init__(self, repo: Any, *, strategy: Optional[str] = None, address: Optional[str] = None,
                 n_workers: int = 2, timeout: float = 60.0, **options: Any) -> None:
        super().__init__(repo, strategy=strategy, **options)
        self.address = address
        self.n_workers = n_workers
        self.timeout = timeout
        self.client: Optional[Any] = None
        self.cluster: Optional[Any] = None
        self._pins: Dict[str, Tuple[str, str]] = {}  # str(source) -> (pinned module, bundle key)
        self._shipped: Dict[str, bytes] = {}          # bundle key -> bundle bytes

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> None:
        if self.client is not None:
            return
        if self.address:
            self.client = Client(self.address, timeout=self.timeout, set_as_default=False)
        else:
            self.cluster = LocalCluster(n_workers=self.n_workers, threads_per_worker=1, processes=True,
                                        host="127.0.0.1", dashboard_address="127.0.0.1:0")
            try:
                self.client = Client(self.cluster, timeout=self.timeout, set_as_default=False)
            except BaseException:
                self.cluster.close()
                self.cluster = None
                raise

    def close(self) -> None:
        client, cluster = self.client, self.cluster
        self.client = self.cluster = None
        try:
            if client is not None:
                client.close()
        finally:
            if cluster is not None:
                cluster.close()

    def _client(self) -> Any:
        if self.client is None:
            self.start()
        return self.client

    # -- code -------------------------------------------------------------------------------

    def prepare(self, sources: Sequence[Source]) -> None:
        """Build the bundles of the git pins among ``sources``, ship them to every worker
        (now and later), and check every worker has them.  :class:`SourceError` for an
        unpinned source, or one whose code imports repository modules outside its module
        directory (its code cannot travel); :class:`SourceNotFoundError` naming a
        pin a worker lacks; :class:`BundleError` when a worker rejects a bundle."""
        from zgit.loader import importer

        from zgit.repository import Repository

        repository = Repository.coerce(self.repo)
        unpinned = [str(s) for s in sources if s.kind == "unpinned"]
        if unpinned:
            raise SourceError(
                f"step source(s) {', '.join(unpinned)} are not pinned, so their code cannot be shipped "
                "to Dask workers; commit their module directories and save the pipeline again, or "
                "run with the local engine"
            )
        client = self._client()
        new: List[str] = []
        for source in sources:
            text = str(source)
            if source.kind != "git" or text in self._pins:
                continue
            location = locate(repository, source)
            _refuse_outside_imports(repository, source, location.module_dir)
            key = f"{location.package}@{source.sha}"
            self._pins[text] = (location.pinned_name(source.sha), key)
            if key in self._shipped:
                continue
            bundle = build_bundle(repository.git, source.sha, location.module_dir, location.package)
            self._shipped[key] = bundle.to_bytes()
            new.append(key)
            # Outputs come back naming the pin: the driver resolves it from its repository.
            if importer.tree_for(location.package, source.sha) is None:
                importer.register(importer.PinnedTree(repository.git, location.module_dir,
                                                      location.package, source.sha))
        for key in new:
            client.register_plugin(BundlePlugin(key, self._shipped[key]), name=PLUGIN_PREFIX + key)
        self.check(sorted(self._pins[str(s)][1] for s in sources if str(s) in self._pins))

    def check(self, keys: Sequence[str]) -> None:
        """Wait (up to ``timeout``) for a worker, then ask every worker which of the pins
        ``keys`` it lacks: :class:`SourceNotFoundError` naming them."""
        client = self._client()
        try:
            client.wait_for_workers(1, timeout=self.timeout)
        except (TimeoutError, asyncio.TimeoutError) as exc:  # distinct types before Python 3.11
            raise SourceNotFoundError(
                f"no Dask worker joined the cluster within {self.timeout:g} s, so pins "
                f"{', '.join(keys) or '(none)'} cannot be shipped: start workers "
                f"(dask worker {self.address or ''}) and run again"
            ) from exc
        if not keys:
            return
        answers = client.run(missing_pins, list(keys), on_error="return")
        lacking = {}
        for worker, answer in sorted(answers.items()):
            if isinstance(answer, BaseException):
                lacking[worker] = f"did not answer ({type(answer).__name__}: {answer})"
            elif answer:
                lacking[worker] = ", ".join(answer)
        if lacking:
            detail = "; ".join(f"{worker}: {what}" for worker, what in lacking.items())
            raise SourceNotFoundError(
                f"Dask worker(s) lack pins of this run ({detail}): a worker that cannot install a "
                "bundle says why in its log; make zgit importable there (the same version as "
                "here) and run again"
            )

    # -- steps ------------------------------------------------------------------------------

    def execute(self, call: StepCall, data: Any) -> Any:
        """Run the step as one task and return its output, unpickled here."""
        text = str(call.source)
        if call.source.kind == "git" and text not in self._pins:
            self.prepare([call.source])
        pinned_module, key = self._pins.get(text, (None, None))
        keys = (key,) if key else ()
        payload = pickle.dumps((call.args, data), protocol=pickle.HIGHEST_PROTOCOL)
        future = self._client().submit(run_step, text, pinned_module, keys, payload, pure=False,
                                       key=f"zgit-{call.step}-{uuid.uuid4().hex}")
        return pickle.loads(future.result())
