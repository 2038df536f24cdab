"""The working version of a module directory while a checkout has its pin on disk.

docs/identity.md promises that an import the pinned module's own ``__import__`` does not
map -- ``importlib.import_module("a.b.helper")`` with an absolute name inside the module
directory, ``pkgutil``, plugin systems -- gets the *working* version, with either
strategy.  Under the checkout strategy the module directory holds the pin's files while
the pinned module imports, so the ordinary import system would read the pinned file and
keep it in ``sys.modules`` under the working name for the rest of the process (and so
would another thread importing that name at that moment).

While :func:`served_from_head` is active for a module directory, its working names
(``a.b`` and everything below) are served from HEAD's blobs -- what the disk holds when no
checkout is under way, since the checkout strategy only runs over a clean directory --
under their real file paths.  A name the pin has and HEAD does not is not found, as with
the memory strategy.  The modules imported so are ordinary source modules afterwards:
:class:`HeadSourceLoader` is a ``SourceFileLoader`` that reads HEAD's blob only while the
pin is on disk, and the file from then on (``importlib.reload``, ``inspect``).
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import os
import threading
import types
from typing import Dict, Iterator, Optional, Tuple

from zgit.gitrepo import Entries, GitRepo


class _Served:
    """One module directory whose working names are served from HEAD (see module doc)."""

    def __init__(self, git: GitRepo, module_dir: str, package: str) -> None:
        self.git = git
        self.module_dir = module_dir
        self.package = package
        self.shas: Dict[str, int] = {}  # the pins being checked out (a count each)
        self.active = True
        self._head: Optional[Entries] = None
        self._lock = threading.Lock()

    def head_entries(self) -> Entries:
        """HEAD's files of the module directory (read once, when first needed)."""
        if self._head is None:
            with self._lock:
                if self._head is None:
                    head = self.git.head_sha()
                    self._head = (self.git.entries(head, self.module_dir) or {}) if head else {}
        return self._head

    def find(self, rest: str, entries: Entries) -> Optional[Tuple[str, str]]:
        """``(kind, repo path)`` of working name ``<package>.<rest>`` in ``entries``:
        kind ``"package"``, ``"module"`` or ``"namespace"``; None when absent."""
        base = self.module_dir + ("/" + rest.replace(".", "/") if rest else "")
        if base + "/__init__.py" in entries:
            return "package", base + "/__init__.py"
        if rest and base + ".py" in entries:
            return "module", base + ".py"
        prefix = base + "/"
        if any(path.startswith(prefix) for path in entries):
            return "namespace", base
        return None

    def spec(self, fullname: str) -> Optional[importlib.machinery.ModuleSpec]:
        rest = fullname[len(self.package) + 1:] if fullname != self.package else ""
        found = self.find(rest, self.head_entries())
        if found is None:
            for sha in list(self.shas):
                if self.find(rest, self.git.entries(sha, self.module_dir) or {}) is not None:
                    # On disk only because the pin is: the working version has no such module.
                    raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
            return None  # not in the pin either: the disk is HEAD's there, ordinary finders decide
        kind, repo_path = found
        entry = self.head_entries().get(repo_path)
        if entry is not None and (entry.is_link or entry.is_gitlink):
            return None  # a symlink's blob is its target, not code: ordinary finders follow it
        full = os.path.join(str(self.git.root), *repo_path.split("/"))
        if kind == "namespace":
            spec = importlib.machinery.ModuleSpec(fullname, None, is_package=True)
            spec.submodule_search_locations = [full]
            return spec
        loader = HeadSourceLoader(fullname, full, self, repo_path)
        locations = [os.path.dirname(full)] if kind == "package" else None
        return importlib.util.spec_from_file_location(
            fullname, full, loader=loader, submodule_search_locations=locations
        )


class HeadSourceLoader(importlib.machinery.SourceFileLoader):
    """A source loader that reads HEAD's blob while a checkout has the pin on disk."""

    def __init__(self, fullname: str, path: str, served: _Served, repo_path: str) -> None:
        super().__init__(fullname, path)
        self._served = served
        self._repo_path = repo_path

    def _head_bytes(self) -> Optional[bytes]:
        if not self._served.active:
            return None
        entry = self._served.head_entries().get(self._repo_path)
        return self._served.git.blob(entry.oid) if entry is not None else None

    def get_code(self, fullname: str) -> types.CodeType:
        data = self._head_bytes()
        if data is None:
            return super().get_code(fullname)
        # Never from, nor into, __pycache__: the file on disk is not these bytes right now.
        return compile(data, self.path, "exec", dont_inherit=True)

    def get_source(self, fullname: str) -> Optional[str]:
        data = self._head_bytes()
        if data is None:
            return super().get_source(fullname)
        return importlib.util.decode_source(data)


_served: Tuple[_Served, ...] = ()  # replaced, never mutated: finders read it without a lock
_served_lock = threading.Lock()


def find_spec(fullname: str) -> Optional[importlib.machinery.ModuleSpec]:
    """The spec of a working name inside a module directory whose pin is on disk, else
    None (called by :class:`zgit.loader.importer.PinnedFinder` only while one is)."""
    for served in _served:
        package = served.package
        if fullname == package or fullname.startswith(package + "."):
            return served.spec(fullname)
    return None


def active() -> bool:
    return bool(_served)


@contextlib.contextmanager
def served_from_head(git: GitRepo, module_dir: str, package: str, sha: str) -> Iterator[None]:
    """Serve the working names of ``module_dir`` (package ``package``) from HEAD while the
    block runs; wrap a checkout of pin ``sha`` of it."""
    global _served
    with _served_lock:
        served = next((s for s in _served if s.git is git and s.module_dir == module_dir), None)
        if served is None:
            served = _Served(git, module_dir, package)
            _served = _served + (served,)
        served.shas[sha] = served.shas.get(sha, 0) + 1
    try:
        yield
    finally:
        with _served_lock:
            served.shas[sha] -= 1
            if not served.shas[sha]:
                del served.shas[sha]
            if not served.shas:
                served.active = False
                _served = tuple(s for s in _served if s is not served)
