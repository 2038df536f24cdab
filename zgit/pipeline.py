"""Steps, pipelines, and the pipeline YAML format (``pipelines/<slug>.yaml``)."""

from __future__ import annotations

import copy
import inspect
import re
import reprlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from zgit import yamlio
from zgit.errors import ConfigError, SourceError
from zgit.source import Source

FORMAT_VERSION = "1"
_KNOWN_KEYS = ("version", "name", "steps")


class BaseStep:
    """Base class of every step.

    Steps take keyword arguments only.  ``.args`` records the arguments bound to the
    constructor *with its defaults* (whatever the subclass's ``__init__`` does with them),
    so that the YAML and run records show every hyperparameter, and a stored pipeline
    rebuilds the same step with ``cls(**args)``.  Only parameters the constructor accepts
    by name are recorded (those of ``**kwargs`` as given); a default that is not plain
    data (``None``, bool, number, string, or lists and string-keyed mappings of them) is
    left out, so the stored form stays loadable.
    """

    args: Dict[str, Any]

    def __new__(cls, *positional: Any, **kwargs: Any) -> "BaseStep":
        if positional:
            raise TypeError(
                f"{cls.__name__} takes keyword arguments only, so that they can be stored "
                f"in the pipeline YAML (got {len(positional)} positional)"
            )
        self = super().__new__(cls)
        self.args = _bound_args(cls, kwargs)
        return self

    def __init__(self, **kwargs: Any) -> None:
        pass

    def run(self, data: Any) -> Any:
        """Do the step's work on the previous step's output and return this step's output."""
        return data

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.args.items())
        return f"{type(self).__name__}({args})"


_defaults_cache: Dict[Any, Optional[Dict[str, Any]]] = {}


def _constructor_defaults(cls: type) -> Optional[Dict[str, Any]]:
    """The plain-data defaults of ``cls.__init__``'s named parameters (None: no signature)."""
    init = cls.__init__
    try:
        return _defaults_cache[init]
    except (KeyError, TypeError):
        pass
    try:
        signature = inspect.signature(init)
    except (TypeError, ValueError):
        found: Optional[Dict[str, Any]] = None
    else:
        found = {}
        for parameter in list(signature.parameters.values())[1:]:  # skip self
            if parameter.kind not in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
                continue
            if parameter.default is not parameter.empty and _is_plain(parameter.default):
                found[parameter.name] = parameter.default
    try:
        _defaults_cache[init] = found
    except TypeError:  # an unhashable __init__ (a callable object): not cached
        pass
    return found


def _bound_args(cls: type, given: Dict[str, Any]) -> Dict[str, Any]:
    # Defaults first, in the constructor's order, then what was given: cls(**args) of
    # the result is the same call as cls(**given).  Defaults are copied, so a step that
    # mutates its own list default does not change the record of another.
    defaults = _constructor_defaults(cls)
    if not defaults:
        return dict(given)
    merged = {name: given[name] if name in given else copy.deepcopy(value) for name, value in defaults.items()}
    merged.update((name, value) for name, value in given.items() if name not in merged)
    return merged


def _is_plain(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` is data the YAML stores and reads back as itself."""
    if value is None or type(value) in (bool, int, float, str):
        return True
    if depth > 20:
        return False
    if type(value) is list:
        return all(_is_plain(v, depth + 1) for v in value)
    if type(value) is dict:
        return all(isinstance(k, str) and _is_plain(v, depth + 1) for k, v in value.items())
    return False


def slugify(name: str) -> str:
    """The file stem for a pipeline name: lower-case, runs of other than [a-z0-9] as ``_``."""
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower())
    if not slug.strip("_"):
        raise ConfigError(f"pipeline name {name!r} has no letters or digits to make a file name of")
    return slug


@dataclass
class StepConfig:
    """One step as stored: its name, source and constructor arguments."""

    name: str
    source: Source
    args: Dict[str, Any]


@dataclass
class PipelineConfig:
    """A stored pipeline, validated; ``extra`` keeps unknown top-level keys."""

    name: str
    steps: List[StepConfig]
    extra: Dict[str, Any] = field(default_factory=dict)
    path: Optional[Path] = None

    @classmethod
    def from_data(cls, data: Any, where: str) -> "PipelineConfig":
        """Validate parsed YAML; :class:`ConfigError` names ``where`` and the key."""
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: the top level must be a mapping with 'version', 'name' and 'steps'")
        for key in data:
            if not isinstance(key, str):
                raise ConfigError(f"{where}: top-level key {key!r} is not a string")
        for key in _KNOWN_KEYS:
            if key not in data:
                raise ConfigError(f"{where}: key {key!r} is missing")
        version = data["version"]
        # Only a string or an int is compared as text: str() of a deep or huge container
        # (from_data gets any data) would recurse too far or build a giant message.
        if type(version) not in (str, int) or str(version) != FORMAT_VERSION:
            shown = reprlib.repr(version)
            raise ConfigError(f"{where}: key 'version' is {shown}; this zgit reads version '1'")
        name = data["name"]
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{where}: key 'name' must be a non-empty string")
        steps_data = data["steps"]
        if not isinstance(steps_data, dict):
            raise ConfigError(f"{where}: key 'steps' must be a mapping of step names to steps")
        steps = []
        for step_name, step in steps_data.items():
            key = f"steps.{step_name}"
            if not isinstance(step_name, str) or not step_name:
                raise ConfigError(f"{where}: key {key!r}: step names must be non-empty strings")
            if not isinstance(step, dict):
                raise ConfigError(f"{where}: key {key!r} must be a mapping with 'source' and 'args'")
            text = step.get("source")
            if not isinstance(text, str):
                raise ConfigError(f"{where}: key '{key}.source' must be a source string")
            try:
                source = Source.parse(text)
            except SourceError as exc:
                raise ConfigError(f"{where}: key '{key}.source': {exc}") from exc
            args = step.get("args", {})
            if args is None:
                args = {}
            if not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
                raise ConfigError(f"{where}: key '{key}.args' must be a mapping of argument names to values")
            steps.append(StepConfig(step_name, source, dict(args)))
        extra = {k: v for k, v in data.items() if k not in _KNOWN_KEYS}
        return cls(name=name, steps=steps, extra=extra)

    @classmethod
    def read(cls, path: "str | Path") -> "PipelineConfig":
        """Read and validate a pipeline YAML file."""
        config = cls.from_data(yamlio.read(path), str(path))
        config.path = Path(path)
        return config

    def to_data(self) -> Dict[str, Any]:
        data: Dict[str, Any] = {"version": FORMAT_VERSION, "name": self.name, "steps": {}}
        for step in self.steps:
            data["steps"][step.name] = {"source": str(step.source), "args": dict(step.args)}
        data.update(self.extra)
        return data


STORABLE_TYPES = "str, int, float, bool, None, and lists and mappings of them (also dates, bytes, sets)"


def check_args_storable(step_name: str, args: Dict[str, Any]) -> None:
    """Raise :class:`ConfigError` naming the step, the argument and the allowed types when
    an argument cannot be written to the pipeline YAML (a ``pathlib.Path``, a numpy
    scalar, an enum, any custom object): the stored pipeline must rebuild the same step."""
    for arg, value in args.items():
        try:
            yamlio.dumps(value)
        except yamlio.RepresenterError as exc:
            bad = exc.args[1] if len(exc.args) > 1 else value
            inner = "" if bad is value else f" (inside it: {type(bad).__module__}.{type(bad).__qualname__})"
            raise ConfigError(
                f"step {step_name!r}: argument {arg!r} is a {type(value).__module__}."
                f"{type(value).__qualname__}{inner}, which the pipeline YAML cannot hold; step "
                f"arguments may be {STORABLE_TYPES}: convert it (e.g. str(path), float(x), "
                "member.value)"
            ) from None


class Pipeline:
    """An ordered set of named steps that can be saved as YAML and built back by name."""

    def __init__(self, name: str, enable_cache: bool = True) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ConfigError("a pipeline needs a non-empty name")
        slugify(name)
        self.name = name
        self.enable_cache = bool(enable_cache)
        self.steps: Dict[str, BaseStep] = {}
        self.step_cache: Dict[str, Optional[bool]] = {}
        self.extra: Dict[str, Any] = {}
        # The repository a stored pipeline was built from: its pins are run from there.
        self.repo: Any = None

    def add_step(self, name: str, step: BaseStep, enable_cache: Optional[bool] = None) -> None:
        """Add ``step`` under ``name``; names are unique within a pipeline.

        ``enable_cache``: False for a step whose output depends on more than its code,
        args and input (it reads files, a database, the clock); None follows the pipeline.
        """
        if not isinstance(name, str) or not name:
            raise ValueError("a step name must be a non-empty string")
        if name in self.steps:
            raise ValueError(f"pipeline {self.name!r} already has a step named {name!r}")
        if not hasattr(step, "args"):
            raise TypeError(f"step {name!r} must be a zgit BaseStep instance, not {type(step).__name__}")
        self.steps[name] = step
        self.step_cache[name] = None if enable_cache is None else bool(enable_cache)

    def to_config(self, repo: Any = None) -> Dict[str, Any]:
        """The YAML-ready mapping of this pipeline, resolving every step's source."""
        from zgit.resolver import resolve_source

        for name, step in self.steps.items():
            check_args_storable(name, step.args)
        steps = [
            StepConfig(name, resolve_source(type(step), repo=repo), dict(step.args))
            for name, step in self.steps.items()
        ]
        return PipelineConfig(self.name, steps, dict(self.extra)).to_data()

    def save(self, repo: Any = None, *, config: "Optional[PipelineConfig]" = None) -> Path:
        """Write ``pipelines/<slug>.yaml`` and return its absolute path.

        A file at that path that belongs to another pipeline (or cannot be read) is
        never overwritten: :class:`ConfigError` says so.  ``config``: the already
        resolved form (``run`` resolves once for saving and running).
        """
        from zgit.repository import Repository

        repository = Repository.coerce(repo)
        data = config.to_data() if config is not None else self.to_config(repository)
        path = repository.pipelines_dir / f"{slugify(self.name)}.yaml"
        if path.exists():
            try:
                existing = PipelineConfig.read(path).name
            except ConfigError as exc:
                raise ConfigError(
                    f"{path} exists and is not a readable pipeline file, so it is not overwritten: {exc}"
                ) from exc
            if existing != self.name:
                raise ConfigError(
                    f"{path} holds pipeline {existing!r}; pipeline {self.name!r} would overwrite it. "
                    "Rename one of them."
                )
        repository.pipelines_dir.mkdir(parents=True, exist_ok=True)
        yamlio.write_atomic(path, yamlio.dumps(data))
        return path.resolve()

    def run(self, data: Any = None, *, repo: Any = None, save: bool = True,
            enable_cache: Optional[bool] = None, engine: Any = None,
            strategy: Optional[str] = None) -> Dict[str, Any]:
        """Resolve (and save) the pipeline, then execute every step from its pinned source.

        A step pinned to a commit executes as the pinned class, loaded under its pinned
        name, so every object it returns (and every pickle of it) names the pin; a step
        that cannot be pinned executes as the working class, with a warning that its
        outputs are not reproducible.  Each step's ``run`` gets the previous step's
        output (``data`` for the first); returns every step's output by step name.
        """
        from zgit.repository import Repository

        repository = Repository.coerce(repo if repo is not None else self.repo)
        config = PipelineConfig.from_data(self.to_config(repository), f"pipeline {self.name!r}")
        saved = self.save(repository, config=config) if save else None
        from zgit.runs.runner import run_config

        return run_config(
            config, data, repo=repository, enable_cache=self._cache_switches(enable_cache),
            engine=engine, strategy=strategy, saved=saved,
        ).outputs

    def _cache_switches(self, enable_cache: Optional[bool]) -> Dict[str, bool]:
        """Per step: whether the cache may be used (run switch > step switch > pipeline)."""
        out = {}
        for name in self.steps:
            step = self.step_cache.get(name)
            if enable_cache is not None:
                out[name] = bool(enable_cache)
            elif step is not None:
                out[name] = step
            else:
                out[name] = self.enable_cache
        return out

    def __repr__(self) -> str:
        return f"Pipeline({self.name!r}, steps={list(self.steps)})"
