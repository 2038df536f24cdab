"""What each module file was on disk when Python imported it: does HEAD name the code in memory?

Python compiles a module once, when it is imported (from its file, or from bytecode it
checked against that file's mtime and size); the code in memory stays as it was when
the file changes.  So a clean module directory at HEAD names the code that runs only if
its files are still the ones that were imported.  An edit (committed or not), another
process's checkout that was live during the import, or a checkout left behind by a
killed process all give the file another inode, mtime or size.

An audit hook (:func:`sys.addaudithook`) sees each file the import system opens and
notes its stamp ``(inode, mtime_ns, size)`` right then; for a ``.pyc`` it notes the
source file's stamp (the file Python validated the bytecode against).  When zgit is
first imported, the files of the modules already in ``sys.modules`` are noted too,
including modules half-way through their own import (a step module's ``from zgit import
BaseStep`` imports zgit mid-import).  The standard library and site-packages are skipped
by path: they are pinned by distribution, not by commit, and it keeps the hook cheap.

Limits: a module imported before zgit was is noted when zgit is imported, not when it
was; a rewrite that keeps inode, mtime and size (within the file system's timestamp
granularity) is not seen; files a module reads while it imports (data, not modules) are
not noted.
"""

from __future__ import annotations

import _frozen_importlib_external as _bootstrap_external  # the import system's own: always loaded
import contextlib
import os
import sys
import threading
import types
from typing import Dict, Iterator, List, Optional, Set, Tuple

Stamp = Tuple[int, int, int]

# The frame that opens a module's file (or its bytecode) when the import system loads it:
# FileLoader.get_data.  Other readers of .py files (linecache for a traceback, the user's
# own open()) see the file as it is now, not what was imported, and are not noted.
_IMPORT_SYSTEM = "<frozen importlib._bootstrap_external>"
_SUFFIXES = (".py", ".pyc")
_PYCACHE = os.sep + "__pycache__" + os.sep
_SITE_DIRS = (os.sep + "site-packages" + os.sep, os.sep + "dist-packages" + os.sep)

_stamps: Dict[str, Stamp] = {}  # file path, as the import system named it -> stamp at import
_digests: Dict[str, bytes] = {}  # file path -> digest of the bytes that were imported, once known
_unindexed: List[str] = []  # paths noted since the last query (appended by the hook)
_by_dir: Dict[str, Set[str]] = {}  # real directory -> noted paths of files in it
_real_dirs: Dict[str, str] = {}  # directory as named -> its real path
_index_lock = threading.Lock()
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


def _source_of(path: str) -> str:
    """The source file whose bytecode ``path`` is (``path`` itself for a ``.py`` or a
    bytecode file without a source, which is then the module's file)."""
    if path.endswith(".py"):
        return path
    head, cache, tail = path.rpartition(_PYCACHE)
    if cache and not sys.pycache_prefix:  # <dir>/__pycache__/<name>.<tag>[.opt-N].pyc
        return head + os.sep + tail.partition(".")[0] + ".py"
    try:
        return _bootstrap_external.source_from_cache(path)
    except (ValueError, NotImplementedError):
        return path


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
        _stamps[path] = found
        _digests.pop(path, None)
        _unindexed.append(path)


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


def _skipped(path: str) -> bool:
    return path.startswith(_SKIP) or _SITE_DIRS[0] in path or _SITE_DIRS[1] in path


def _audit(event: str, args: tuple) -> None:
    # Runs for every audited event in the process: the first test must be the cheapest.
    if event != "open":
        return
    path = args[0]
    if type(path) is not str or not path.endswith(_SUFFIXES) or _skipped(path):
        return
    try:
        if sys._getframe(1).f_code.co_filename != _IMPORT_SYSTEM:
            return
        _note(_source_of(path))
    except Exception:  # bookkeeping must never break an import
        pass


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
    try:
        sys.addaudithook(_audit)
    except Exception:  # another audit hook refused it: only the snapshot below is kept
        pass
    for module in list(sys.modules.values()):
        file = _module_file(module)
        if file is not None and file.endswith(_SUFFIXES) and not _skipped(file) and file not in _stamps:
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
        del _unindexed[:count]  # the hook only appends, so these are the ones taken
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
