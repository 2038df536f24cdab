"""``.zgit/config.yaml``: where module paths start and how pins are loaded.

Every key is optional; environment variables win over the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

from zgit.errors import ConfigError

CONFIG_DIR = ".zgit"
CONFIG_FILE = "config.yaml"
STRATEGIES = ("checkout", "memory")
MISMATCH_POLICIES = ("error", "warn")
DEFAULT_STORE_PATH = ".zgit/store"

# Every key the file may hold, in one place: a top-level key maps to None (a value) or to
# the keys of its own mapping.  A key not listed here is a ConfigError (a typo such as
# ``stratgy`` must not be silently ignored); a new setting is one more entry here.
KNOWN_KEYS: Dict[str, Optional[Tuple[str, ...]]] = {
    "source_root": None,
    "loader": ("strategy", "lock_timeout", "on_version_mismatch", "fsync"),
    "store": ("path",),
    "engine": ("name", "address"),
}

#: The engines a run can use (``engine.name``; see :mod:`zgit.engines`).
ENGINE_NAMES = ("local", "dask")

DEFAULT_CONFIG_TEXT = """\
# zgit configuration; every key is optional and environment variables win.
source_root: .               # module paths are relative to this directory
loader:
  strategy: checkout         # or memory              (env ZGIT_LOADER_STRATEGY)
  lock_timeout: 60           # seconds to wait for another process's checkout (env ZGIT_LOCK_TIMEOUT)
  on_version_mismatch: error # or warn                (env ZGIT_ON_VERSION_MISMATCH)
  fsync: false               # fsync the checkout journal, for power loss (env ZGIT_FSYNC)
store:
  path: .zgit/store          # the run store: records and artifacts (env ZGIT_STORE)
# engine:
#   name: local              # or dask: steps on Dask workers (pip install 'zgit[dask]')
#   address: tcp://host:8786 # a running Dask scheduler; none: a local cluster per run
"""


@dataclass(frozen=True)
class Config:
    """The settings of one repository."""

    source_root: str = ""
    strategy: str = "checkout"
    lock_timeout: float = 60.0
    on_version_mismatch: str = "error"
    fsync: bool = False
    store_path: str = DEFAULT_STORE_PATH
    engine: str = "local"
    engine_address: Optional[str] = None

    @classmethod
    def load_defaults(cls) -> "Config":
        """The settings from the environment alone (outside any repository)."""
        return cls.load(Path(os.devnull))

    @classmethod
    def load(cls, root: Path, environ: Optional[Mapping[str, str]] = None) -> "Config":
        """Read ``<root>/.zgit/config.yaml`` (if any) and apply environment overrides.

        Raises :class:`ConfigError` naming the file and the key for bad values.
        """
        env = os.environ if environ is None else environ
        path = Path(root) / CONFIG_DIR / CONFIG_FILE
        data: Dict[str, Any] = {}
        if path.is_file():
            data = _read_mapping(path)
        loader = data.get("loader", {}) or {}
        if not isinstance(loader, dict):
            raise ConfigError(f"{path}: key 'loader' must be a mapping")
        check_known_keys(path, data)
        source_root = data.get("source_root", ".")
        strategy, strategy_at = _setting(env, "ZGIT_LOADER_STRATEGY", path, loader, "strategy", "checkout")
        timeout, timeout_at = _setting(env, "ZGIT_LOCK_TIMEOUT", path, loader, "lock_timeout", 60)
        mismatch, mismatch_at = _setting(
            env, "ZGIT_ON_VERSION_MISMATCH", path, loader, "on_version_mismatch", "error"
        )
        fsync, fsync_at = _setting(env, "ZGIT_FSYNC", path, loader, "fsync", False)
        store = data.get("store", {}) or {}
        if not isinstance(store, dict):
            raise ConfigError(f"{path}: key 'store' must be a mapping (e.g. store: {{path: .zgit/store}})")
        store_path = env.get("ZGIT_STORE") or store.get("path", DEFAULT_STORE_PATH)
        if not isinstance(store_path, str) or not store_path.strip():
            where = "environment variable ZGIT_STORE" if env.get("ZGIT_STORE") else f"{path}: key 'store.path'"
            raise ConfigError(f"{where} must be a directory path")
        engine = data.get("engine", {}) or {}
        if not isinstance(engine, dict):
            raise ConfigError(f"{path}: key 'engine' must be a mapping (e.g. engine: {{name: dask}})")
        engine_address = engine.get("address")
        if engine_address is not None and (not isinstance(engine_address, str) or not engine_address.strip()):
            raise ConfigError(f"{path}: key 'engine.address' must be a scheduler address such as "
                              "tcp://host:8786")
        return cls(
            engine=_check_choice(f"{path}: key 'engine.name'", engine.get("name", "local"), ENGINE_NAMES),
            engine_address=engine_address,
            source_root=_check_source_root(path, source_root),
            strategy=check_strategy(strategy, strategy_at),
            lock_timeout=_check_timeout(timeout_at, timeout),
            on_version_mismatch=_check_choice(mismatch_at, mismatch, MISMATCH_POLICIES),
            fsync=_check_bool(fsync_at, fsync),
            store_path=store_path,
        )


def _setting(env: Mapping[str, str], variable: str, path: Path, loader: Dict[str, Any], key: str,
             default: Any) -> Tuple[Any, str]:
    """A loader setting and where it came from, for the error that rejects it: the
    environment variable wins over the file's key, and an error must blame the one set."""
    value = env.get(variable)
    if value:
        return value, f"environment variable {variable}"
    return loader.get(key, default), f"{path}: key 'loader.{key}'"


def check_known_keys(path: "Path | str", data: Mapping[Any, Any]) -> None:
    """Raise :class:`ConfigError` for a key :data:`KNOWN_KEYS` does not list, naming it
    and the nearest known key (``loader.stratgy`` -> ``loader.strategy``)."""
    known = [
        f"{top}.{sub}" if sub else top
        for top, subs in KNOWN_KEYS.items()
        for sub in (subs or ("",))
    ]
    for key, value in data.items():
        subs = KNOWN_KEYS.get(key) if isinstance(key, str) else None
        if key not in KNOWN_KEYS:
            _unknown_key(path, str(key), known)
        elif subs is not None and isinstance(value, dict):
            for sub in value:
                if sub not in subs:
                    _unknown_key(path, f"{key}.{sub}", known)


def _unknown_key(path: "Path | str", key: str, known: "list[str]") -> None:
    import difflib  # only on this error path: start-up time

    nearest = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"did you mean {nearest[0]!r}? " if nearest else ""
    raise ConfigError(
        f"{path}: unknown key {key!r}; {hint}the known keys are {', '.join(known)}"
    )


def _read_mapping(path: Path) -> Dict[str, Any]:
    # zgit's safe reader: no aliases (a "billion laughs" value would be expanded by the
    # error message that quotes it), bounded depth and size.
    from zgit import yamlio

    data = yamlio.read(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys to values")
    return data


def check_strategy(value: Any, where: str = "strategy") -> str:
    """Return ``value`` if it names a loader strategy, else raise :class:`ConfigError`."""
    if value not in STRATEGIES:
        raise ConfigError(f"{where}: {value!r} is not a loader strategy; use one of {', '.join(STRATEGIES)}")
    return str(value)


def _check_choice(where: str, value: Any, choices) -> str:
    if value not in choices:
        raise ConfigError(f"{where} is {value!r}; use one of {', '.join(choices)}")
    return str(value)


def _check_bool(where: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{where} is {value!r}; use true or false")


def _check_timeout(where: str, value: Any) -> float:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not seconds >= 0 or isinstance(value, bool):
        raise ConfigError(f"{where} is {value!r}; give a number of seconds >= 0")
    return seconds


def _check_source_root(path: Path, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{path}: key 'source_root' must be a directory path relative to the repository")
    norm = os.path.normpath(value).replace(os.sep, "/")
    if os.path.isabs(value) or norm == ".." or norm.startswith("../"):
        raise ConfigError(
            f"{path}: key 'source_root' is {value!r}; it must be a directory inside the repository"
        )
    return "" if norm == "." else norm
