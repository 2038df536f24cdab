"""What each module file was on disk when Python imported it: does HEAD name the code in memory?

Python compiles a module once, when it is imported (from its file, or from bytecode it
checked against that file's mtime and size); the code in memory stays as it was when
the file changes.  So a clean module directory at HEAD names the code that runs only if
its files are still the ones that were imported.  An edit (committed or not), another
process's checkout that was live during the import, or a checkout left behind by a
killed process all give the file another inode, mtime or size.

The import system's source loader stats each module's source file once per import (to
check its cached bytecode against the file's mtime and size, whether or not bytecode is
written); zgit's version of :meth:`SourceFileLoader.path_stats` also notes that stat's
stamp ``(inode, mtime_ns, size)``, so noting costs no system call of its own.  Other
readers of a module's file (linecache for a traceback, ``inspect``, the user's own
``open()``) see the file as it is now, not what was imported, and are not noted.  When
zgit is first imported, the files of the modules already in ``sys.modules`` are noted
too, including modules half-way through their own import (a step module's ``from zgit
import BaseStep`` imports zgit mid-import).  Only files inside a git work tree are noted
(only those can get a git pin), never the standard library's or site-packages': an
unrelated import costs one dictionary look-up.

A file whose stamp changed but whose bytes are still those imported (rewritten with the
same content) is told apart by a digest of its bytes, taken at the first query that saw
the file unchanged since its import.

Limits (docs/guarantees.md): a module imported before zgit was is noted when zgit is
imported, not when it was; a rewrite that keeps inode, mtime and size (within the file
system's timestamp granularity) is not seen; files a module reads while it imports (data,
not modules) are not noted; nor are modules not loaded from a source file by Python's
own loader.
"""

from __future__ import annotations

import _thread
import contextlib
import os
import sys
import types

from _frozen_importlib_external import SourceFileLoader  # the import system's own: always loaded

# Imported by `import zgit` before anything else: only modules every interpreter has
# loaded at start-up (typing and threading are not, and cost milliseconds).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Iterator, List, Optional, Set, Tuple

    Stamp = Tuple[int, int, int]

_SITE_DIRS = (os.sep + "site-packages" + os.sep, os.sep + "dist-packages" + os.sep)

_stamps: Dict[str, Stamp] = {}  # file path, as the import system named it -> stamp at import
_digests: Dict[str, bytes] = {}  # file path -> digest of the bytes that were imported, once known
_unindexed: List[str] = []  # paths noted since the last query (appended at each import)
_by_dir: Dict[str, Set[str]] = {}  # real directory -> noted paths of files in it
_real_dirs: Dict[str, str] = {}  # directory as named -> its real path
_watched: Dict[str, bool] = {}  # directory as named -> whether its module files are noted
_index_lock = _thread.allocate_lock()
_installed = False


def _stdlib_dirs() -> Tuple[str, ...]:
    dirs = set()
    for module in (os, contextlib):  # pure-Python standard library modules
        where = os.path.dirname(getattr(module, "__file__", "") or "")
        if where:
            dirs.add(where + os.sep)
            dirs.add(os.path.realpath(where) + os.sep)
    return tuple(sorted(dirs))


_SKIP = _stdlib_dirs()


def stamp(path: str) -> Optional[Stamp]:
    """``(inode, mtime_ns, size)`` of the file at ``path`` now (following symlinks: what an
    import reads), or None when there is none."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _note(path: str) -> None:
    found = stamp(path)
    if found is not None:
        if path not in _stamps:
            _unindexed.append(path)
        _stamps[path] = found
        _digests.pop(path, None)


def _digest(path: str) -> Optional[bytes]:
    import hashlib  # only when a pin is decided: zgit's own import stays cheap

    try:
        with open(path, "rb") as handle:
            return hashlib.sha1(handle.read()).digest()
    except OSError:
        return None


def _remember_content(path: str, noted: Stamp) -> None:
    """Note the bytes of a file whose stamp is still the one noted at its import (so they
    are the bytes that were imported), to tell a rewrite with the same bytes from an edit."""
    digest = _digest(path)
    if digest is not None and stamp(path) == noted:
        _digests[path] = digest


def _same_content(path: str, now: Optional[Stamp]) -> bool:
    """True when the file has another stamp but the bytes that were imported (rewritten
    with the same content, or replaced and put back); its new stamp is noted then."""
    known = _digests.get(path)
    if known is None or now is None or _digest(path) != known or stamp(path) != now:
        return False
    _stamps[path] = now
    return True


def _watched_dir(directory: str) -> bool:
    """Whether module files in ``directory`` are noted: inside a git work tree (only those
    can get a git pin), and not in the standard library or site-packages.  Decided once
    per directory (a few stats, up to the first ``.git``)."""
    found = _watched.get(directory)
    if found is None:
        if not os.path.isabs(directory):
            try:
                absolute = os.path.abspath(directory)
            except OSError:  # the current directory was deleted: never break an import
                return False
            found = _watched_dir(absolute)
        elif (directory + os.sep).startswith(_SKIP) or any(s in directory + os.sep for s in _SITE_DIRS):
            found = False
        elif os.path.lexists(os.path.join(directory, ".git")):
            found = True
        else:
            parent = os.path.dirname(directory)
            found = parent != directory and _watched_dir(parent)
        _watched[directory] = found
    return found


def _noting(original: Callable[..., Any]) -> Callable[..., Any]:
    watched, sep = _watched, os.sep

    def path_stats(self: Any, path: str, _stat: Callable[..., Any] = os.stat) -> Dict[str, Any]:
        # SourceLoader.path_stats as documented (mtime and size of the source file), from
        # the one stat the import makes anyway.  Runs at every import: kept lean (one
        # dictionary look-up for a file zgit does not watch).
        st = _stat(path)
        if type(path) is str:
            directory = path.rpartition(sep)[0]
            if watched.get(directory) or (directory not in watched and _watched_dir(directory)):
                if path not in _stamps:
                    _unindexed.append(path)
                _stamps[path] = (st.st_ino, st.st_mtime_ns, st.st_size)
                if _digests:
                    _digests.pop(path, None)
        return {"mtime": st.st_mtime, "size": st.st_size}

    path_stats.__wrapped__ = original  # type: ignore[attr-defined]
    path_stats._zgit_noting = True  # type: ignore[attr-defined]
    path_stats.__doc__ = original.__doc__
    return path_stats


def _module_file(module: object) -> Optional[str]:
    """``module.__file__`` without running a lazy module's loader (no ``__getattr__``)."""
    if not isinstance(module, types.ModuleType):
        return None
    if type(module).__getattribute__ is not types.ModuleType.__getattribute__:
        return None  # a lazy or proxy module: reading its attributes could import it
    file = module.__dict__.get("__file__")
    return file if type(file) is str else None


def install() -> None:
    """Start noting imports (once per process), and note the modules already imported."""
    global _installed
    if _installed:
        return
    _installed = True
    current = SourceFileLoader.path_stats
    if getattr(current, "_zgit_noting", False):  # zgit imported again after being dropped
        current = current.__wrapped__
    SourceFileLoader.path_stats = _noting(current)  # type: ignore[method-assign]
    # Runs inside `import zgit`, over every module imported so far: kept lean.
    plain, getattribute, watched, sep = types.ModuleType, types.ModuleType.__getattribute__, _watched, os.sep
    for module in list(sys.modules.values()):
        kind = type(module)
        if kind is not plain and (not isinstance(module, plain) or kind.__getattribute__ is not getattribute):
            continue  # not a module, or a lazy one: reading its attributes could import it
        file = module.__dict__.get("__file__")
        if type(file) is not str or not file.endswith((".py", ".pyc")):
            continue
        directory = file.rpartition(sep)[0]
        if watched.get(directory) is False or file in _stamps:
            continue
        if _watched_dir(directory):
            _note(file)


def _real_dir(directory: str) -> str:
    found = _real_dirs.get(directory)
    if found is None:
        found = _real_dirs[directory] = os.path.realpath(directory)
    return found


def _index() -> None:
    with _index_lock:
        count = len(_unindexed)
        if not count:
            return
        batch = _unindexed[:count]
        del _unindexed[:count]  # path_stats only appends, so these are the ones taken
        for path in batch:
            _by_dir.setdefault(_real_dir(os.path.dirname(path) or "."), set()).add(path)


def _noted_under(directory: str) -> Iterator[str]:
    _index()
    prefix = directory.rstrip(os.sep) + os.sep
    for real_dir, paths in list(_by_dir.items()):
        if real_dir == directory or real_dir.startswith(prefix):
            yield from list(paths)


def changed_since_import(directory: str) -> List[str]:
    """Real paths of the files of modules in ``sys.modules``, under ``directory`` (a real
    path), that are not on disk what they were when imported (edited, replaced, removed)."""
    changed = []
    for path in _noted_under(directory):
        noted, now = _stamps.get(path), stamp(path)
        if now == noted:
            if path not in _digests:
                _remember_content(path, now)  # type: ignore[arg-type]
        elif not _same_content(path, now):
            changed.append(path)
    if not changed:
        return []
    # A module dropped from sys.modules (and not imported again) has no code in memory
    # that a class could come from now; its file may change freely.
    loaded = {_module_file(module) for module in list(sys.modules.values())}
    return sorted(os.path.join(_real_dir(os.path.dirname(p) or "."), os.path.basename(p))
                  for p in changed if p in loaded)


@contextlib.contextmanager
def restored_by_this_process(directory: str) -> Iterator[None]:
    """Around this process's own checkout of ``directory`` (a real path), which replaces
    its files and then restores HEAD's: a file that was still what had been imported
    before the checkout is so again afterwards (the checkout ran only on a clean
    directory, and restored exactly that content), so its new stamp is noted."""
    before = {path: _stamps.get(path) for path in _noted_under(directory)}
    before = {path: noted for path, noted in before.items() if noted is not None and stamp(path) == noted}
    try:
        yield
    finally:
        for path, noted in before.items():
            if _stamps.get(path) is noted:  # not imported again meanwhile
                now = stamp(path)
                if now is not None:
                    _stamps[path] = now
