"""The :class:`Repository`: a git work tree with zgit's config and stored pipelines."""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from zgit.config import CONFIG_DIR, CONFIG_FILE, DEFAULT_CONFIG_TEXT, Config
from zgit.errors import ConfigError, PipelineNotFoundAmongReadableError, PipelineNotFoundError
from zgit.gitrepo import GitRepo, open_repo
from zgit.pipeline import Pipeline, PipelineConfig

PIPELINES_DIR = "pipelines"
RepoLike = Union["Repository", str, "os.PathLike[str]", None]

_by_start: Dict[str, "Repository"] = {}
_by_root: Dict[Path, "Repository"] = {}
_cache_lock = threading.Lock()


class Repository:
    """A git work tree that zgit pins classes in.

    ``Repository(path)`` discovers the work tree upwards from ``path`` (default: the
    current directory), as git does; :class:`NotARepositoryError` outside one.
    """

    def __init__(self, path: "str | os.PathLike[str] | None" = None) -> None:
        self.git: GitRepo = open_repo(path)
        self.root: Path = self.git.root
        self.pipelines_dir: Path = self.root / PIPELINES_DIR
        self._config_key: Optional[Tuple[Any, ...]] = None
        self._config: Optional[Config] = None

    @classmethod
    def init(cls, path: "str | os.PathLike[str]" = ".") -> "Repository":
        """Create ``.zgit/config.yaml`` (unless present) and ``pipelines/`` in a git work tree."""
        repo = cls(path)
        config_path = repo.root / CONFIG_DIR / CONFIG_FILE
        config_path.parent.mkdir(exist_ok=True)
        if not config_path.exists():
            config_path.write_text(DEFAULT_CONFIG_TEXT, encoding="utf-8")
        repo.pipelines_dir.mkdir(exist_ok=True)
        return repo

    @classmethod
    def coerce(cls, repo: RepoLike) -> "Repository":
        """``repo`` as a Repository: an instance is returned as is, a path or None is
        discovered (and remembered, so repeated calls cost a dictionary lookup)."""
        if isinstance(repo, Repository):
            return repo
        start = os.path.abspath(os.fspath(repo)) if repo is not None else os.getcwd()
        found = _by_start.get(start)
        if found is not None:
            return found
        fresh = cls(start)
        with _cache_lock:
            found = _by_root.setdefault(fresh.root, fresh)
            _by_start[start] = found
        return found

    @property
    def config(self) -> Config:
        """The settings from ``.zgit/config.yaml`` and the environment (re-read on change)."""
        path = self.root / CONFIG_DIR / CONFIG_FILE
        try:
            st = path.stat()
            file_key: Tuple[Any, ...] = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            file_key = ()
        env = os.environ
        key = (
            file_key,
            env.get("ZGIT_LOADER_STRATEGY"),
            env.get("ZGIT_LOCK_TIMEOUT"),
            env.get("ZGIT_ON_VERSION_MISMATCH"),
            env.get("ZGIT_FSYNC"),
            env.get("ZGIT_STORE"),
        )
        if key != self._config_key or self._config is None:
            self._config = Config.load(self.root)
            self._config_key = key
        return self._config

    @property
    def source_root(self) -> Path:
        """The directory module paths are relative to (``source_root`` in the config)."""
        rel = self.config.source_root
        return self.root / rel if rel else self.root

    @property
    def state_dir(self) -> Path:
        """``.git/zgit``: where locks and journals live, never in the work tree."""
        return self.git.git_dir / "zgit"

    # -- stored pipelines ----------------------------------------------------------------

    def _pipeline_files(self) -> List[Path]:
        if not self.pipelines_dir.is_dir():
            return []
        return sorted(
            p for p in self.pipelines_dir.iterdir() if p.suffix in (".yaml", ".yml") and not p.name.startswith(".")
        )

    def _read_all(self) -> Tuple[List[PipelineConfig], List[Tuple[Path, ConfigError]]]:
        good: List[PipelineConfig] = []
        bad: List[Tuple[Path, ConfigError]] = []
        for path in self._pipeline_files():
            try:
                good.append(PipelineConfig.read(path))
            except ConfigError as exc:
                bad.append((path, exc))
        return good, bad

    def get_pipeline_names(self) -> List[str]:
        """Names of the pipelines stored in ``pipelines/`` (unreadable files are skipped with a warning)."""
        good, bad = self._read_all()
        for path, exc in bad:
            warnings.warn(f"skipping unreadable pipeline file: {exc}", UserWarning, stacklevel=2)
        return sorted({config.name for config in good})

    def get_pipeline_config(self, name: str) -> PipelineConfig:
        """The stored, validated YAML of pipeline ``name`` (see :meth:`get_pipeline_by_name`)."""
        good, bad = self._read_all()
        for config in good:
            if config.name == name:
                for path, exc in bad:
                    warnings.warn(f"skipping unreadable pipeline file: {exc}", UserWarning, stacklevel=3)
                return config
        names = sorted({c.name for c in good})
        shown = ", ".join(repr(n) for n in names) if names else "none"
        message = f"no pipeline named {name!r} in {self.pipelines_dir}; stored pipelines: {shown}"
        if bad:
            listing = "; ".join(str(exc) for _, exc in bad)
            raise PipelineNotFoundAmongReadableError(
                f"{message}. {len(bad)} file(s) could not be read, and it may be in one of them: {listing}",
                names, [str(path) for path, _ in bad],
            )
        raise PipelineNotFoundError(message, names)

    def get_pipeline_by_name(self, name: str, *, strategy: Optional[str] = None) -> Pipeline:
        """Build the stored pipeline ``name``: every step from its pinned class with its args.

        Raises :class:`PipelineNotFoundError` (listing the names that exist),
        :class:`ConfigError` for unreadable files, and whatever loading a source raises.
        """
        from zgit.loader import load_source

        config = self.get_pipeline_config(name)
        pipeline = Pipeline(config.name)
        pipeline.extra = dict(config.extra)
        pipeline.repo = self
        for step in config.steps:
            cls = load_source(step.source, repo=self, strategy=strategy)
            try:
                instance = cls(**step.args)
            except TypeError as exc:
                raise ConfigError(
                    f"{config.path}: key 'steps.{step.name}.args' does not fit {step.source}: {exc}"
                ) from exc
            pipeline.add_step(step.name, instance)
        return pipeline

    # -- runs ----------------------------------------------------------------------------

    @property
    def run_store(self) -> Any:
        """The run store (``store.path`` in the config, env ``ZGIT_STORE``; default
        ``.zgit/store``), created on first use."""
        from zgit.runs.runner import store_for

        return store_for(self)

    def runs(self, pipeline: Optional[str] = None, limit: Optional[int] = None) -> List[Any]:
        """Recorded runs, newest first (optionally of one pipeline), without their steps;
        :meth:`get_run` gives one with its steps."""
        return self.run_store.list_runs(pipeline, limit)

    def get_run(self, run_id: str) -> Any:
        """The recorded run ``run_id`` (a unique prefix will do) with its steps;
        :class:`RunNotFoundError` when there is none."""
        return self.run_store.get_run(run_id)

    def rerun(self, run_id: str, *, strategy: Optional[str] = None, engine: Any = None) -> Any:
        """Re-execute the recorded run from its recorded sources, args and first input,
        with the cache off, and compare every step's output with the recorded one
        (a :class:`zgit.runs.rerun.RerunReport`; ``.reproduced`` is True when all match)."""
        from zgit.runs.rerun import rerun

        return rerun(self, run_id, strategy=strategy, engine=engine)

    def __repr__(self) -> str:
        return f"Repository({str(self.root)!r})"
