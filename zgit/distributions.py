"""Distribution pins: ``module.Class@<dist>_<version>`` for code from installed packages.

A class whose module comes from an installed distribution (zgit's own ``zgit.steps``, a
library such as scikit-learn, or an old ZenML's ``zenml.steps``) is pinned by that
distribution's name and installed version instead of a commit.  Loading such a pin imports
the installed package normally after checking that its version is the pinned one.

Which distribution ships a module is found with importlib-metadata's
``packages_distributions()`` (top-level import name -> distribution names) and then the
distributions' own file lists (``RECORD``), never by guessing from the import name:

- several distributions may share a top-level name (namespace packages such as
  ``google.*``): the one whose files hold the module's file wins;
- the same distribution may be installed in several directories of ``sys.path`` (two
  versions side by side): again the one whose files hold the module's file wins;
- editable installs (PEP 660, ``pip install -e``) list no package files: their
  ``direct_url.json`` (``dir_info.editable`` and a ``file://`` url) says which directory
  they serve; failing that, a distribution that is the only one to claim the top-level
  name, and whose file list has no file under that name, is taken.

The pin spells the distribution as its normalized name with ``-`` written ``_``
(``scikit-learn`` -> ``scikit_learn``) and the version as installed (lower-cased, with
``_`` written ``.`` so that the pin still splits at its last underscore).

Lookups are cached and the caches are dropped whenever ``sys.path`` changes;
:func:`clear_caches` drops them explicitly (after installing into a directory that is
already on ``sys.path``).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import sys
import threading
import warnings
from typing import Any, Dict, FrozenSet, List, Optional, Tuple
from urllib.parse import unquote, urlparse

import importlib_metadata

from zgit.errors import SourceError, SourceNotFoundError, VersionMismatchError, VersionMismatchWarning
from zgit.source import Source, normalize_dist_name

__all__ = [
    "clear_caches",
    "distribution_pin",
    "installed_version",
    "load_distribution_source",
    "pin_version",
]

_VERSION_RE = re.compile(r"[0-9][A-Za-z0-9.+!\-]*")

_lock = threading.RLock()
_cache_key: Optional[Tuple[str, ...]] = None
# top-level import name -> distribution names (packages_distributions(), this sys.path)
_top_level: Optional[Dict[str, List[str]]] = None
# normalized distribution name -> every installed copy on sys.path, in sys.path order
_dists: Dict[str, List[Any]] = {}
# (dist path, base directory) -> the dist's files as POSIX paths relative to its base
_files: Dict[Tuple[str, str], Optional[FrozenSet[str]]] = {}
# dist path -> editable project directory (realpath) or None
_editable: Dict[str, Optional[str]] = {}
# (module name, file) -> answer
_pins: Dict[Tuple[str, Optional[str]], Optional[Tuple[str, str]]] = {}


def clear_caches() -> None:
    """Forget every cached lookup (they are also dropped whenever ``sys.path`` changes)."""
    global _cache_key, _top_level
    with _lock:
        _cache_key = None
        _top_level = None
        _dists.clear()
        _files.clear()
        _editable.clear()
        _pins.clear()
        importlib.invalidate_caches()


def _check_cache() -> None:
    global _cache_key
    key = tuple(sys.path)
    if key != _cache_key:
        clear_caches()
        _cache_key = key


def pin_version(version: Optional[str]) -> Optional[str]:
    """The spelling of an installed version inside a pin, or None if it cannot be written.

    Versions are compared in this spelling: stripped, lower-case, without a leading ``v``,
    ``_`` as ``.`` (PEP 440 treats these spellings as equal; the pin splits at its last
    underscore, so a version must not contain one).
    """
    if not isinstance(version, str):
        return None
    text = version.strip().lower().replace("_", ".")
    if text.startswith("v") and text[1:2].isdigit():
        text = text[1:]
    return text if _VERSION_RE.fullmatch(text) else None


# -- looking distributions up ----------------------------------------------------------------


def _dist_name(dist: Any) -> Optional[str]:
    try:
        name = dist.metadata["Name"]
    except Exception:  # a broken METADATA file is no reason to fail resolution
        return None
    return name if isinstance(name, str) and name.strip() else None


def _dist_key(dist: Any) -> str:
    path = getattr(dist, "_path", None)
    if path is not None:
        return os.path.realpath(str(path))
    return f"{type(dist).__name__}:{id(dist)}"


def _top_level_names() -> Dict[str, List[str]]:
    global _top_level
    if _top_level is None:
        try:
            _top_level = {k: list(v) for k, v in importlib_metadata.packages_distributions().items()}
        except Exception:  # pragma: no cover - a broken metadata directory on sys.path
            _top_level = {}
    return _top_level


def _installed(name: str) -> List[Any]:
    """Every installed copy of distribution ``name`` on ``sys.path``, first one first."""
    normalized = normalize_dist_name(name)
    found = _dists.get(normalized)
    if found is None:
        found, seen = [], set()
        try:
            candidates = list(importlib_metadata.distributions(name=name))
        except Exception:  # pragma: no cover
            candidates = []
        for dist in candidates:
            dist_name = _dist_name(dist)
            key = _dist_key(dist)
            if dist_name is None or key in seen or normalize_dist_name(dist_name) != normalized:
                continue
            seen.add(key)
            found.append(dist)
        _dists[normalized] = found
    return found


def _base(dist: Any) -> Optional[str]:
    try:
        return os.path.realpath(str(dist.locate_file("")))
    except Exception:
        return None


def _file_set(dist: Any) -> Optional[FrozenSet[str]]:
    """The dist's files (RECORD) as normalized POSIX paths relative to its base, or None."""
    base = _base(dist)
    key = (_dist_key(dist), base or "")
    if key not in _files:
        try:
            files = dist.files
        except Exception:
            files = None
        if files is None:
            _files[key] = None
        else:
            _files[key] = frozenset(
                os.path.normpath(str(f)).replace(os.sep, "/") for f in files
            )
    return _files[key]


def _editable_dir(dist: Any) -> Optional[str]:
    """The project directory of an editable install (``direct_url.json``), else None."""
    key = _dist_key(dist)
    if key not in _editable:
        directory = None
        try:
            text = dist.read_text("direct_url.json")
        except Exception:
            text = None
        if text:
            try:
                data = json.loads(text)
            except ValueError:
                data = None
            if isinstance(data, dict):
                info = data.get("dir_info")
                url = data.get("url")
                if isinstance(info, dict) and info.get("editable") and isinstance(url, str):
                    parsed = urlparse(url)
                    if parsed.scheme == "file":
                        directory = os.path.realpath(unquote(parsed.path))
        _editable[key] = directory
    return _editable[key]


def _within(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def _ships_file(dist: Any, files: FrozenSet[str], paths: List[str]) -> bool:
    base = _base(dist)
    if base is None:
        return False
    for path in paths:
        if _within(path, base):
            if os.path.relpath(path, base).replace(os.sep, "/") in files:
                return True
    return False


def _has_files_under(files: FrozenSet[str], top: str) -> bool:
    prefix = top + "/"
    return any(
        f.startswith(prefix) or f.split("/", 1)[0].split(".", 1)[0] == top for f in files
    )


def _pick(module_name: str, file: Optional[str]) -> Optional[Any]:
    top = module_name.split(".", 1)[0]
    names = _top_level_names().get(top, [])
    unique: Dict[str, str] = {}
    for name in names:
        unique.setdefault(normalize_dist_name(name), name)
    copies: List[Any] = []
    for name in unique.values():
        copies.extend(_installed(name))
    if not copies:
        return None
    if file is None:
        # No file to match (e.g. a compiled-in module): only an unambiguous claim counts.
        return copies[0] if len(copies) == 1 else None

    paths = [os.path.abspath(file)]
    real = os.path.realpath(file)
    if real not in paths:
        paths.append(real)

    # 1. A distribution whose RECORD holds the module's file (regular installs, namespace
    #    packages shared by several distributions, side-by-side versions).
    no_files = []
    for dist in copies:
        files = _file_set(dist)
        if files is not None and _ships_file(dist, files, paths):
            return dist
        if files is None or not _has_files_under(files, top):
            no_files.append(dist)

    # 2. Editable installs: the deepest project directory that holds the file.
    editable = [(d, _editable_dir(d)) for d in no_files]
    holders = [(d, directory) for d, directory in editable if directory and _within(real, directory)]
    if holders:
        return max(holders, key=lambda item: len(item[1]))[0]

    # 3. The only distribution that claims the top-level name without listing its files
    #    (older editable installs, eggs without installed-files.txt).  A distribution
    #    that lists files under the name but not this file does not ship it: the module
    #    comes from somewhere else (a shadowing copy), and is not that distribution's.
    claimants = {normalize_dist_name(_dist_name(d) or ""): d for d in no_files if not _editable_dir(d)}
    if len(claimants) == 1 and len(unique) == 1:
        return next(iter(claimants.values()))
    return None


def distribution_pin(module_name: str, file: Optional[str]) -> Optional[Tuple[str, str]]:
    """``(pin name, installed version)`` of the distribution that ships ``module_name``.

    ``file`` is the module's file (``module.__file__``).  The pin name is the normalized
    distribution name with ``-`` as ``_`` (``scikit_learn``); the version is spelled as by
    :func:`pin_version`.  None for the standard library, for modules no installed
    distribution ships, and for distributions whose version cannot be written in a pin.
    """
    if not isinstance(module_name, str) or not module_name:
        return None
    with _lock:
        _check_cache()
        key = (module_name, file)
        if key in _pins:
            return _pins[key]
        answer = None
        dist = _pick(module_name, file)
        if dist is not None:
            name = _dist_name(dist)
            version = pin_version(getattr(dist, "version", None))
            pin_name = normalize_dist_name(name) if name else ""
            if pin_name and version is not None:
                try:
                    Source("x", "X", f"{pin_name}_{version}")
                except SourceError:  # not writable as a pin: leave it unpinned
                    pass
                else:
                    answer = (pin_name, version)
        _pins[key] = answer
        return answer


def _first_installed(pin_name: str) -> Optional[Any]:
    with _lock:
        _check_cache()
        copies = _installed(pin_name)
        return copies[0] if copies else None


def installed_version(pin_name: str) -> Optional[str]:
    """The installed version of distribution ``pin_name`` (any spelling), or None.

    When several copies are on ``sys.path`` this is the first one's, the one Python
    imports.  Spelled as by :func:`pin_version`, so it compares with a pin's version.
    """
    dist = _first_installed(pin_name)
    return None if dist is None else pin_version(getattr(dist, "version", None))


# -- loading ---------------------------------------------------------------------------------


def _pip_command(source: Source, installed_name: Optional[str]) -> str:
    name = installed_name or (source.distribution or "").replace("_", "-")
    return f"pip install '{name}=={source.version}'"


def _mismatch(source: Source, installed: Optional[str], installed_name: Optional[str], have: str = "") -> str:
    shown = installed_name or (source.distribution or "").replace("_", "-")
    if not have:
        have = f"{shown} {installed} is installed" if installed else f"{shown} is not installed"
    return (
        f"{source} is pinned to {shown} {source.version}, but {have}. "
        f"Install the pinned version: {_pip_command(source, installed_name)} "
        "(or set loader.on_version_mismatch: warn, env ZGIT_ON_VERSION_MISMATCH=warn, to load "
        "what is installed anyway)"
    )


def _complain(message: str, policy: str) -> None:
    if policy == "warn":
        warnings.warn(message, VersionMismatchWarning, stacklevel=3)
    else:
        raise VersionMismatchError(message)


def _import(source: Source, not_installed: Optional[str]) -> Any:
    try:
        return importlib.import_module(source.module)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (source.module == missing or source.module.startswith(missing + ".")):
            if not_installed is not None:
                raise VersionMismatchError(not_installed) from None
            raise SourceNotFoundError(
                f"{source}: distribution {source.distribution} {source.version} is installed but "
                f"has no module {source.module!r} ({exc}); check the source, or the version pinned"
            ) from None
        raise


def load_distribution_source(source: Source, on_version_mismatch: str = "error") -> Any:
    """Import the object a distribution pin names, after checking the installed version.

    The installed version equal to the pin: the module is imported normally and the
    attribute returned untouched.  Otherwise :class:`VersionMismatchError` naming the
    pinned version, the installed one (or that none is) and the ``pip install`` command
    that fixes it; with ``on_version_mismatch='warn'`` a :class:`VersionMismatchWarning`
    instead, and the installed code is loaded if it can be imported.  A missing module
    or attribute: :class:`SourceNotFoundError`.  Errors raised by the module's own code
    propagate as themselves.
    """
    if not isinstance(source, Source) or source.kind != "dist":
        raise ValueError(f"load_distribution_source takes a distribution-pinned Source, not {source!r}")
    if on_version_mismatch not in ("error", "warn"):
        raise ValueError(f"on_version_mismatch must be 'error' or 'warn', not {on_version_mismatch!r}")
    dist = _first_installed(source.distribution)  # type: ignore[arg-type]
    installed_name = _dist_name(dist) if dist is not None else None
    installed = pin_version(getattr(dist, "version", None)) if dist is not None else None
    not_installed = None
    if dist is None:
        message = _mismatch(source, None, None)
        _complain(message, on_version_mismatch)
        not_installed = message
    elif installed != pin_version(source.version):
        _complain(_mismatch(source, installed or getattr(dist, "version", "?"), installed_name), on_version_mismatch)

    module = _import(source, not_installed)

    # The module that Python actually imported may not be the distribution's copy checked
    # above: an older copy already in sys.modules, or a second copy earlier on sys.path.
    if dist is not None and installed == pin_version(source.version):
        actual = distribution_pin(module.__name__, getattr(module, "__file__", None))
        wanted = (normalize_dist_name(source.distribution or ""), pin_version(source.version))
        if actual is not None and actual != wanted:
            where = getattr(module, "__file__", "?")
            if actual[0] == wanted[0]:
                have = (
                    f"module {source.module} was imported from {actual[0]} {actual[1]} ({where}: "
                    "imported before that version was installed, or another copy is earlier on sys.path)"
                )
            else:
                have = (
                    f"module {source.module} was imported from another distribution, "
                    f"{actual[0]} {actual[1]} ({where})"
                )
            _complain(_mismatch(source, installed, installed_name, have), on_version_mismatch)
    try:
        return getattr(module, source.attribute)
    except AttributeError:
        raise SourceNotFoundError(
            f"{source}: module {source.module!r} of {installed_name or source.distribution} "
            f"{installed or '(not installed)'} has no attribute {source.attribute!r}; check the "
            "name, or the version pinned"
        ) from None
