"""Where a module lives in a repository: module files, module directories, pinned names.

A module ``a.b.c`` under source root ``src`` is the file ``src/a/b/c.py`` (module
directory ``src/a/b``) or the package ``src/a/b/c/__init__.py`` (module directory
``src/a/b/c``).  Pinned modules live in ``sys.modules`` under names that carry the pin
on the module directory's package: ``a.b@<sha>.c``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, List, Optional

from zgit.errors import SourceError

PIN_IN_NAME = re.compile(r"@([0-9a-f]{40})(?=\.|$)")


@dataclass(frozen=True)
class ModuleLocation:
    """A module's file and module directory, as repository-relative POSIX paths."""

    module: str          # dotted name relative to the source root, e.g. "a.b.c"
    file: str            # "src/a/b/c.py" or "src/a/b/c/__init__.py"
    module_dir: str      # "src/a/b" or "src/a/b/c"
    package: str         # dotted name of the module directory, e.g. "a.b"

    @property
    def is_package(self) -> bool:
        return self.file.endswith("/__init__.py")

    def pinned_package(self, sha: str) -> str:
        """The ``sys.modules`` name of the module directory's package at ``sha``."""
        return f"{self.package}@{sha}"

    def pinned_name(self, sha: str) -> str:
        """The ``sys.modules`` name of this module at ``sha`` (``a.b@<sha>.c``)."""
        rest = self.module[len(self.package):]
        return self.pinned_package(sha) + rest


def _join(root: str, rel: str) -> str:
    return f"{root}/{rel}" if root else rel


def candidates(module: str, source_root: str) -> List[ModuleLocation]:
    """The two places module ``module`` can be (plain module first, then package).

    Raises :class:`SourceError` for a module that would sit directly in the source root:
    it has no module directory of its own and is never pinned.
    """
    parts = module.split(".")
    rel = "/".join(parts)
    out: List[ModuleLocation] = []
    if len(parts) >= 2:
        out.append(ModuleLocation(module, _join(source_root, rel + ".py"),
                                  _join(source_root, "/".join(parts[:-1])), ".".join(parts[:-1])))
    out.append(ModuleLocation(module, _join(source_root, rel + "/__init__.py"),
                              _join(source_root, rel), module))
    return out


def location_of_file(relpath: str, source_root: str) -> Optional[ModuleLocation]:
    """The location of the module file at repository path ``relpath``.

    None when the file is not a ``.py`` file below the source root, or its path parts
    are not Python identifiers.  A module file directly in the source root gives a
    location whose ``module_dir`` is the source root itself (callers refuse to pin it).
    """
    prefix = source_root + "/" if source_root else ""
    if not relpath.startswith(prefix) or not relpath.endswith(".py"):
        return None
    parts = relpath[len(prefix):-3].split("/")
    if not all(p.isidentifier() for p in parts):
        return None
    if parts[-1] == "__init__":
        parts = parts[:-1]
        if not parts:
            return None
        return ModuleLocation(".".join(parts), relpath, _join(source_root, "/".join(parts)), ".".join(parts))
    return ModuleLocation(".".join(parts), relpath, _join(source_root, "/".join(parts[:-1])),
                          ".".join(parts[:-1]))


def split_pinned_name(name: str):
    """``("a.b", sha, ".c")`` for a pinned module name ``a.b@<sha>.c``, else None."""
    match = PIN_IN_NAME.search(name)
    if match is None:
        return None
    return name[: match.start()], match.group(1), name[match.end():]


def check_module_name(module: str) -> None:
    """Raise :class:`SourceError` unless ``module`` is a dotted path of identifiers."""
    if not module or not all(p.isidentifier() for p in module.split(".")):
        raise SourceError(f"{module!r} is not a dotted Python module path")


def find_top_level(top: str) -> List[str]:
    """The directories (or the one module file) that top-level name ``top`` is found at on
    ``sys.path``, found without importing it: a regular package gives its directory, a
    namespace package each of its portions, a plain module its file.  Empty when not found.

    Only the finders on ``sys.meta_path`` are asked (for a top-level name that runs no
    module code); an editable install's own finder (setuptools' PEP 660 mapping) counts,
    zgit's own finders do not (they may be asking this very question).
    """
    import os
    import sys

    module = sys.modules.get(top)
    spec = getattr(module, "__spec__", None) if module is not None else None
    if spec is None:
        for finder in list(sys.meta_path):
            if (getattr(finder, "__module__", "") or "").startswith("zgit."):
                continue
            find_spec = getattr(finder, "find_spec", None)
            if find_spec is None:
                continue
            try:
                spec = find_spec(top, None)
            except (ImportError, ValueError):
                spec = None
            if spec is not None:
                break
    if spec is None:
        return []
    locations = list(spec.submodule_search_locations or [])
    if locations:
        return [os.path.realpath(p) for p in locations if "@" not in p]
    if spec.origin and spec.has_location:
        return [os.path.realpath(spec.origin)]
    return []


def import_root_of(file: str, module: str) -> Optional[str]:
    """The ``sys.path`` entry that module ``module`` was imported from, given its file
    (``/r/src`` for ``mypkg.steps.train`` at ``/r/src/mypkg/steps/train.py``), or None
    when the file's path does not end in the module's name."""
    import os

    parts = module.split(".")
    directory, name = os.path.split(file)
    if name == "__init__.py":
        package = parts
    elif name.endswith(".py") and name[:-3] == parts[-1]:
        package = parts[:-1]
    else:
        return None
    for part in reversed(package):
        directory, name = os.path.split(directory)
        if name != part:
            return None
    return directory


def uncommitted_modules(git: Any, sha: str, module_dir: str, ignored: Optional[List[str]] = None) -> List[str]:
    """Importable files (``.py``, extension modules) in the module directory on disk that
    commit ``sha`` does not have and git ignores: generated modules (setuptools_scm's
    ``_version.py``, ``*_pb2.py``, extensions built in place).  A pin cannot bring them
    back: the memory strategy does not find them, the checkout strategy finds whatever
    the work tree holds.  Repository-relative POSIX paths, sorted.

    ``ignored``: what the clean check of the same directory at ``sha`` passed over as
    ignored (:meth:`GitRepo.dirty_files`), so that only the ignored directories it did
    not enter are walked here; None walks the whole directory.
    """
    import importlib.machinery
    import os

    suffixes = tuple(importlib.machinery.SOURCE_SUFFIXES + importlib.machinery.EXTENSION_SUFFIXES)
    entries = git.entries(sha, module_dir) or {}
    root = str(git.root)
    inside = len(module_dir) + 1 if module_dir else 0

    def importable(rel: str) -> bool:
        # Only directories that can be packages hold importable modules (this skips
        # .git/, .venv/, .mypy_cache/ and directories such as big-data/).
        *dirs, name = rel[inside:].split("/")
        return (name.endswith(suffixes) and name.partition(".")[0].isidentifier()
                and all(d.isidentifier() and d != "__pycache__" for d in dirs))

    if ignored is None:
        starts = [module_dir]
        known: List[str] = []
    else:
        starts = [d.rstrip("/") for d in ignored if d.endswith("/")]
        known = [f for f in ignored if not f.endswith("/") and importable(f) and f not in entries]
    found: List[str] = list(known)
    for start in starts:
        if start != module_dir and not importable(start + "/x.py"):
            continue
        base = os.path.join(root, *start.split("/")) if start else root
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if d.isidentifier() and d != "__pycache__"]
            rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
            for name in filenames:
                if name.endswith(suffixes) and name.partition(".")[0].isidentifier():
                    rel = name if rel_dir == "." else f"{rel_dir}/{name}"
                    if rel not in entries and (ignored is not None or git.is_ignored(rel)):
                        found.append(rel)
    return sorted(found)
