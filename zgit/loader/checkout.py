"""The checkout strategy: a module directory is its content at the pin for one import.

In this order: thread lock, process lock (filelock), undo a journal left by a dead
process, refuse a dirty module directory, write the journal, move the user's changed
files (and their bytecode) aside and write the pin as ``git checkout`` would, import, move
the user's own files back in a ``finally`` (Ctrl-C, SIGTERM and SIGHUP included), refresh
their stat data in the index, drop the journal, release.

Why nothing can be lost: zgit only touches a module directory that is clean, and the
journal -- written (atomically, by rename) before the first byte of the work tree changes
-- names every changed path and where the user's own file waits meanwhile (under
``.git/zgit/aside/``, or beside the file on another file system).  Moving a file aside and
back is a rename, which keeps its bytes, mode, mtime and inode, and needs no disk space.
A process killed at any point leaves either an untouched tree or a journal that
:func:`recover` follows.  Pinned files are written by rename too: each path is wholly the
user's file, wholly the pinned one, or briefly absent, never half-written.  ``recover``
never overwrites a file that is neither: somebody edited it, and it says so.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import signal
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple, TypeVar

import filelock

from zgit.dirty import advice, describe, submodule_of
from zgit.errors import DirtyModuleError, LockTimeoutError, RecoverError, ZgitError
from zgit.gitrepo import MODE_EXEC, MODE_GITLINK, MODE_LINK, Entry, GitRepo, first_non_directory, is_bytecode_cache

JOURNAL_NAME = "journal.json"  # present: a checkout is under way, or died (recover undoes it)
SPARE_JOURNAL_NAME = "journal.spare"  # a finished journal's file, rewritten by the next checkout
_JOURNAL_PADDING = 64 * 1024  # a spare longer than the new journal by more is truncated
LOCK_NAME = "checkout.lock"
OWNER_NAME = "checkout.owner"
ASIDE_DIR = "aside"  # under .git/zgit/: the user's files wait here during a checkout
JOURNAL_VERSION = 2  # 2: the user's files wait aside; 1: restored from the object database
_TMP_MARK = ".zgit-tmp"
_ASIDE_MARK = ".zgit-aside"  # beside the file, when .git is on another file system

_thread_locks: Dict[str, threading.RLock] = {}
_thread_locks_guard = threading.Lock()
_file_locks: Dict[str, filelock.FileLock] = {}
_active = threading.local()


_KILL_AT = os.environ.get("ZGIT_TEST_KILL_AT")  # read once: each lookup costs ~1.5 us, 7 a load


def _fault(point: str) -> None:
    """Test-only fault injection: ``ZGIT_TEST_KILL_AT=<point>`` in the environment this
    process started with kills it there."""
    if _KILL_AT == point:
        os.kill(os.getpid(), signal.SIGKILL)


# -- locking ----------------------------------------------------------------------------


def _state_dir(git: GitRepo) -> Path:
    path = git.git_dir / "zgit"
    path.mkdir(exist_ok=True)
    return path


# filelock's own primitive on a descriptor zgit keeps open (filelock >= 3.30): taking the
# lock is then one flock() call, as cheap as a kept fcntl lock, where FileLock opens, checks
# and closes the lock file every time (~0.2-1 ms, most of a small load's cost).
_lock_descriptor = getattr(filelock, "lock_descriptor", None)
_unlock_descriptor = getattr(filelock, "unlock_descriptor", None)
_lock_paths: Dict[str, Tuple[Path, Path, str]] = {}  # git dir -> (state dir, lock file, as str)
_kept_fds: Dict[str, Tuple[int, int]] = {}  # git dir -> (pid that opened it, descriptor)
_owner_stamps: Dict[str, int] = {}  # git dir -> mtime of the lock file after this process wrote its pid
_fd_depth: Dict[str, int] = {}  # git dir -> re-entrant holds of the kept descriptor's lock


@contextlib.contextmanager
def locked(git: GitRepo, timeout: float) -> Iterator[Path]:
    """Hold this repository's thread lock and process lock; yields the state directory.

    Waits at most ``timeout`` seconds for each; raises :class:`LockTimeoutError` naming
    the lock file and the process that holds it.  Always releases, on any exception.
    Re-entrant within a thread.
    """
    key = str(git.git_dir)
    known = _lock_paths.get(key)
    if known is None:
        state = _state_dir(git)
        with _thread_locks_guard:
            _thread_locks.setdefault(key, threading.RLock())
        known = _lock_paths[key] = (state, state / LOCK_NAME, str(state / LOCK_NAME))
    state, lock_path, lock_name = known
    thread_lock = _thread_locks[key]
    if not thread_lock.acquire(timeout=timeout if timeout >= 0 else -1):
        raise LockTimeoutError(
            f"another thread of this process has held the checkout lock {lock_path} for more "
            f"than {timeout:g} s; raise loader.lock_timeout (ZGIT_LOCK_TIMEOUT) or use strategy 'memory'"
        )
    try:
        if _lock_descriptor is None:
            with _file_locked(state, key, timeout):
                yield state
        elif _fd_depth.get(key, 0):  # re-entered by this thread: the lock is held already
            _fd_depth[key] += 1
            try:
                yield state
            finally:
                _fd_depth[key] -= 1
        else:
            fd = _descriptor_lock(state, lock_name, key, timeout)
            _fd_depth[key] = 1
            try:
                yield state
            finally:
                _fd_depth[key] = 0
                _unlock_descriptor(fd)
    finally:
        thread_lock.release()


def _timed_out(lock_path: Path, state: Path, timeout: float) -> LockTimeoutError:
    return LockTimeoutError(
        f"could not get the checkout lock {lock_path} within {timeout:g} s: "
        f"{_read_owner(state)} holds it. If that process is stuck, stop it and run 'zgit recover'; "
        "or raise loader.lock_timeout (ZGIT_LOCK_TIMEOUT), or load with strategy 'memory'"
    )


def _descriptor_lock(state: Path, lock_path: str, key: str, timeout: float) -> int:
    """Take the process lock with filelock's ``lock_descriptor`` on the kept descriptor;
    returns it (locked).  The caller holds the thread lock."""
    deadline = None if timeout < 0 else time.monotonic() + timeout
    while True:
        fd = _kept_fd(lock_path, key)
        if _lock_descriptor(fd, blocking=False):
            held = os.fstat(fd)
            if held.st_nlink:
                break
            # The lock file was deleted (.git/zgit removed) since it was opened: a lock on
            # it excludes nobody.  Open the file that is there now.
            _unlock_descriptor(fd)
            _forget_fd(key)
            continue
        if deadline is not None and time.monotonic() >= deadline:
            raise _timed_out(state / LOCK_NAME, state, timeout) from None
        time.sleep(0.01)
    # The holder's pid, for another process's error message; unchanged since this process
    # wrote it (same mtime) means nobody else wrote since: no write needed.
    if _owner_stamps.get(key) != held.st_mtime_ns:
        with contextlib.suppress(OSError):  # only informs error messages (disk full)
            os.pwrite(fd, f"{os.getpid():>12}\n".encode(), 0)
            _owner_stamps[key] = os.fstat(fd).st_mtime_ns
    return fd


def _kept_fd(lock_path: str, key: str) -> int:
    """This process's open descriptor of the lock file (a forked child opens its own: a
    flock belongs to the open file, which the child would share with its parent)."""
    kept = _kept_fds.get(key)
    if kept is not None and kept[0] == os.getpid():
        return kept[1]
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited across exec
    except FileNotFoundError:  # .git/zgit was deleted since: make it again
        os.makedirs(os.path.dirname(lock_path), exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    _kept_fds[key] = (os.getpid(), fd)
    return fd


def _forget_fd(key: str) -> None:
    kept = _kept_fds.pop(key, None)
    if kept is not None and kept[0] == os.getpid():
        with contextlib.suppress(OSError):
            os.close(kept[1])


@contextlib.contextmanager
def _file_locked(state: Path, key: str, timeout: float) -> Iterator[None]:
    """The process lock through :class:`filelock.FileLock` (filelock before 3.30)."""
    with _thread_locks_guard:
        file_lock = _file_locks.get(key)
        if file_lock is None:
            file_lock = _file_locks[key] = filelock.FileLock(str(state / LOCK_NAME))
    try:
        file_lock.acquire(timeout=timeout, poll_interval=0.01)
    except filelock.Timeout:
        raise _timed_out(state / LOCK_NAME, state, timeout) from None
    try:
        if file_lock.lock_counter == 1:
            with contextlib.suppress(OSError):  # only informs error messages (disk full)
                _write_owner(state)
        yield
    finally:
        file_lock.release()


def _write_owner(state: Path) -> None:
    # Overwritten in place at a fixed width: truncating a file costs an ext4 flush on close.
    fd = os.open(state / OWNER_NAME, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, f"{os.getpid():>12}\n".encode(), 0)
    finally:
        os.close(fd)


def _read_owner(state: Path) -> str:
    """Who holds the lock: the pid the holder wrote into the lock file (or, with an older
    filelock, into the owner file)."""
    for name in ((LOCK_NAME, OWNER_NAME) if _lock_descriptor is not None else (OWNER_NAME,)):
        try:
            return f"process {int((state / name).read_text().strip())}"
        except (OSError, ValueError):
            continue
    return "another process (pid unknown)"


# -- the journal -------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One path of a module directory: its HEAD entry and its pinned entry (None: absent)."""

    path: str
    original: Optional[Entry]
    pinned: Optional[Entry]


@dataclass(frozen=True)
class Aside:
    """Where the user's own file at ``path`` waits while the pin is checked out: ``name``
    under ``.git/zgit/`` (``in_state``), or, on another file system than ``.git``, a
    repository path beside the file."""

    path: str
    name: str
    in_state: bool

    def full(self, git: GitRepo) -> str:
        if self.in_state:
            return os.path.join(str(git.git_dir), "zgit", *self.name.split("/"))
        return os.path.join(str(git.root), *self.name.split("/"))


@dataclass(frozen=True)
class Bytecode:
    """A ``__pycache__`` directory (repository path) and the module ``stem`` whose cache
    files zgit moved aside (``names``): anything else there for that stem afterwards was
    written during the checkout, for pinned source, and is deleted."""

    directory: str
    stem: str
    names: Tuple[str, ...]


def _entry_json(entry: Optional[Entry]):
    return None if entry is None else [entry.oid, entry.mode]


def _entry_from(data) -> Optional[Entry]:
    return None if data is None else Entry(str(data[0]), int(data[1]))


def write_journal(state: Path, payload: dict, fsync: bool) -> Path:
    """Write the journal and publish it by rename, so it is whole or absent; with ``fsync``
    also durable across power loss (the tree is clean before a checkout, so even then
    nothing is lost).

    The bytes go into the file the last journal was retired to (:func:`drop_journal`),
    which already exists: creating a file is the dearest step of a small checkout on ext4
    (~0.1 ms), rewriting one in place and renaming it are not.  A shorter journal than the
    file's old one is padded with spaces, which JSON ignores, rather than truncated.
    """
    path = state / JOURNAL_NAME
    spare = state / SPARE_JOURNAL_NAME
    data = json.dumps(payload).encode()
    fd = _open_spare(spare)
    try:
        padding = os.fstat(fd).st_size - len(data)
        if 0 < padding <= _JOURNAL_PADDING:
            data += b" " * padding
        elif padding > 0:
            os.ftruncate(fd, len(data))
        # A full disk or a file-size limit can make a write short without an error: loop,
        # so that the next write raises instead of a truncated journal being renamed in.
        view, offset = memoryview(data), 0
        while view:
            written = os.pwrite(fd, view, offset)
            view, offset = view[written:], offset + written
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(spare, path)
    if fsync:
        dir_fd = os.open(state, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path


def _open_spare(spare: Path) -> int:
    """A descriptor of the spare journal file, made when there is none.  Anything else
    under that name (a symlink, a directory: never zgit's) is replaced, not followed."""
    flags = os.O_RDWR | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(spare, flags)
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return fd
        os.close(fd)
    except FileNotFoundError:
        return os.open(spare, flags | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
            raise
    if os.path.isdir(spare) and not os.path.islink(spare):
        os.rmdir(spare)  # empty or not, it is not zgit's to empty: rmdir fails on content
    else:
        os.unlink(spare)
    return os.open(spare, flags | os.O_CREAT | os.O_EXCL, 0o644)


def drop_journal(state: Path) -> None:
    """End the checkout the journal in ``state`` describes: its file is renamed to the spare
    name, for the next :func:`write_journal` to reuse (a rename, where deleting and creating
    again would cost a file creation per load)."""
    os.replace(state / JOURNAL_NAME, state / SPARE_JOURNAL_NAME)


def _write_journal_or_explain(state: Path, payload: dict, fsync: bool) -> Path:
    """:func:`write_journal`, with a :class:`ZgitError` when it cannot be written (the
    work tree has not been touched yet then)."""
    try:
        return write_journal(state, payload, fsync)
    except OSError as exc:
        raise ZgitError(
            f"cannot write the checkout journal in {state}: {exc.strerror or exc}. Nothing in "
            "the work tree was changed; free disk space or fix the permissions of .git/zgit, "
            "or load with strategy='memory', which writes nothing"
        ) from exc


def _read_journal(path: Path) -> dict:
    """The journal as :func:`undo` takes it.  Version 1 journals (zgit before move-aside
    restores) have no ``asides``: their files are restored from the object database."""
    try:
        payload = json.loads(path.read_text())
        payload["changes"] = [
            Change(c["path"], _entry_from(c["original"]), _entry_from(c["pinned"]))
            for c in payload["changes"]
        ]
        payload["asides"] = _asides_from(payload.get("asides") or [])
        payload["bytecode"] = [
            Bytecode(str(d), str(stem), tuple(str(n) for n in names))
            for d, stem, names in payload.get("bytecode") or []
        ]
        payload["stats"] = {str(k): tuple(int(x) for x in v) for k, v in (payload.get("stats") or {}).items()}
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        raise RecoverError(
            f"the journal {path} cannot be read ({exc}); compare the module directory with "
            "'git status' and restore it with 'git checkout -- <dir>' (your own files may wait "
            f"in {path.parent / ASIDE_DIR}), then delete the journal"
        ) from exc
    return payload


def _asides_json(asides: Dict[str, Aside]) -> List[list]:
    return [[a.path, a.name, a.in_state] for a in asides.values()]


def _asides_from(data) -> Dict[str, Aside]:
    out: Dict[str, Aside] = {}
    for path, name, in_state in data:
        if not isinstance(name, str) or any(p in ("", ".", "..") for p in name.split("/")):
            raise ValueError(f"not a plain path: {name!r}")
        out[str(path)] = Aside(str(path), name, bool(in_state))
    return out


# -- writing the work tree ---------------------------------------------------------------


def _check_inside(root: Path, relpath: str, trusted: int = 0) -> str:
    """The full path of ``relpath``, refusing one whose parents leave the module directory
    through a symlink or ``..`` (a pinned tree can hold such things; they are never followed).
    ``trusted``: how many leading directories are known to be real ones (the module
    directory's, which the clean check has just walked and zgit never replaces)."""
    parts = relpath.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise ZgitError(f"refusing to write {relpath!r}: not a plain path inside the repository")
    link = first_non_directory(str(root), parts[:-1], trusted)
    if link is not None:
        raise ZgitError(
            f"refusing to write {relpath!r}: {link} is a symlink or a file, and zgit never "
            "writes through one"
        )
    return os.path.join(str(root), *parts)


def _make_parents(full: str) -> None:
    parent = os.path.dirname(full)
    if not os.path.isdir(parent):
        os.makedirs(parent)


_Made = TypeVar("_Made")


def _create(full: str, tmp: str, create: Callable[[str], _Made]) -> _Made:
    """``create(tmp)`` (``tmp`` beside ``full``), making ``full``'s missing parent
    directories when it fails for want of them, and replacing a ``tmp`` left by a process
    killed while writing it.  The directory is only looked at when the create fails."""
    try:
        return create(tmp)
    except FileNotFoundError:
        _make_parents(full)
    except FileExistsError:
        os.unlink(tmp)
    return create(tmp)


def _put_back(waiting: str, full: str) -> None:
    """Rename the user's file that waits at ``waiting`` to ``full``, where the pinned file
    (the caller proved it is) is deleted first, or the pin's (empty) directory where HEAD
    has a file; a parent directory the pin did not have is made again.

    Deleted first, not renamed over: renaming over an existing file makes ext4 write out
    the moved file's data at once (auto_da_alloc), and the user's file often has data not
    yet on disk (git or an editor has just written it): ~0.1 ms a file for nothing."""
    try:
        os.unlink(full)
    except FileNotFoundError:
        _make_parents(full)
    except (IsADirectoryError, PermissionError):  # unlink(2) of a directory: EISDIR, or EPERM
        if not os.path.isdir(full) or os.path.islink(full):
            raise
        os.rmdir(full)
    os.rename(waiting, full)


def _write_entry(git: GitRepo, full: str, relpath: str, entry: Entry,
                 as_blob: bool = False, vacant: bool = False) -> None:
    """Write ``entry`` at ``full`` as ``git checkout`` would (filters applied), by rename.
    ``as_blob``: no filter applies (:meth:`GitRepo.writes_blobs_as_they_are`).
    ``vacant``: the caller emptied the name (the user's file waits aside)."""
    tmp = f"{full}{_TMP_MARK}"
    if entry.mode == MODE_LINK:
        target = os.fsdecode(git.blob(entry.oid))
        _create(full, tmp, lambda path: os.symlink(target, path))
    else:
        data = git.blob(entry.oid) if as_blob else git.worktree_bytes(entry.oid, relpath)
        # What git creates: 0666 or 0777 less the umask (or as a default ACL says).
        mode = 0o777 if entry.mode == MODE_EXEC else 0o666
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        fd = _create(full, tmp, lambda path: os.open(path, flags, mode))
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
        finally:
            os.close(fd)
    if not vacant:
        # Renaming over an existing file makes ext4 flush the new data to disk first
        # (auto_da_alloc): unlink it first.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(full)
    os.rename(tmp, full)


_UMASK: Optional[int] = None


def _umask() -> int:
    global _UMASK
    if _UMASK is None:
        current = os.umask(0)
        os.umask(current)
        _UMASK = current
    return _UMASK


def _remove(full: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(full)


def _cache_names(root: str, directory: str, stem: str,
                 listings: Optional[Dict[str, Optional[List[str]]]] = None) -> Optional[List[str]]:
    """Names of ``stem``'s bytecode files in the ``__pycache__`` at ``directory`` (sorted),
    None when that is a symlink or a file: a pinned tree can hold one pointing anywhere,
    and it is never followed.  ``listings``: the directories listed so far, by the same
    caller (one listing serves every module of a directory)."""
    if listings is not None and directory in listings:
        names = listings[directory]
    else:
        cache = os.path.join(root, *directory.split("/"))
        try:
            names = os.listdir(cache) if stat.S_ISDIR(os.lstat(cache).st_mode) else None
        except FileNotFoundError:
            names = []
        except OSError:
            names = None
        if listings is not None:
            listings[directory] = names
    if names is None:
        return None
    prefix = stem + "."
    # <stem>.<tag>.pyc or <stem>.<tag>.opt-N.pyc: a dotted stem of another file never matches
    return sorted(
        n for n in names
        if n.startswith(prefix) and n.endswith(".pyc") and n[len(prefix):].count(".") in (1, 2)
    )


def _prune_empty(root: Path, relpath: str, stop: str) -> None:
    """Remove directories left empty above ``relpath`` (up to, not including, ``stop``)."""
    current = os.path.dirname(os.path.join(str(root), relpath))
    limit = os.path.join(str(root), stop) if stop else str(root)
    while current.startswith(limit + os.sep):
        try:
            os.rmdir(current)
        except OSError:
            return
        current = os.path.dirname(current)


def _ordered(changes: List[Change], to_pinned: bool) -> List[Change]:
    """Removals first (deepest first), so a file can take the place of a removed directory."""
    return sorted(
        changes,
        key=lambda c: (0, -c.path.count("/")) if (c.pinned if to_pinned else c.original) is None else (1, 0),
    )


def _behind_link(root: str, relpath: str, cache: Dict[str, bool]) -> bool:
    """True when a parent of ``relpath`` is a symlink or a file (so the path is not there)."""
    parent = relpath.rpartition("/")[0]
    if not parent:
        return False
    found = cache.get(parent)
    if found is None:
        try:
            st = os.lstat(os.path.join(root, *parent.split("/")))
            found = not stat.S_ISDIR(st.st_mode) or _behind_link(root, parent, cache)
        except (FileNotFoundError, NotADirectoryError):
            found = _behind_link(root, parent, cache)
        cache[parent] = found
    return found


def _levels(module_dir: str) -> List[str]:
    """The module directory and its parents, outermost first (repository paths)."""
    parts = [p for p in module_dir.split("/") if p]
    return ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]


Stat = Tuple[int, int, int, int]  # (inode, size, mtime_ns, st_mode): proves a file by its stat


def _stat_of(full: str) -> Optional[Stat]:
    try:
        st = os.lstat(full)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_mode)


def _is_written(git: GitRepo, full: str, relpath: str, entry: Optional[Entry],
                written: Optional[Dict[str, Stat]], found: Optional[Stat]) -> bool:
    """True when ``full`` (whose stat the caller took: ``found``) is exactly what a
    checkout of ``entry`` writes there: proved by the stat recorded when zgit wrote it,
    else by comparing bytes and mode."""
    if entry is None:
        return found is None
    if written is not None and relpath in written and found == written[relpath]:
        return True
    try:
        st = os.lstat(full)
        if entry.mode == MODE_LINK:
            return stat.S_ISLNK(st.st_mode) and os.fsencode(os.readlink(full)) == git.blob(entry.oid)
        if not stat.S_ISREG(st.st_mode) or bool(st.st_mode & stat.S_IXUSR) != (entry.mode == MODE_EXEC):
            return False
        expected = git.worktree_bytes(entry.oid, relpath)
        if st.st_size != len(expected):
            return False
        with open(full, "rb") as handle:
            return handle.read() == expected
    except (OSError, ZgitError):
        return False


def undo(git: GitRepo, journal: dict, *, written: Optional[Dict[str, Stat]] = None,
         keep_edits: bool = False) -> List[str]:
    """Bring every journaled path back to its original; returns the paths restored.

    The user's own files come back from where they waited (same bytes, mode, mtime and
    inode); a file that did not wait aside (a version 1 journal) is written from the object
    database.  Bytecode written during the checkout for pinned source is deleted, and the
    user's own bytecode moved back.  ``written``: the stat of every file the checkout
    wrote, which proves a file is zgit's without reading it.

    A path that is neither its pinned nor its original content was edited after the
    checkout: it is left alone when it equals HEAD's version (the edit was kept and
    committed) or with ``keep_edits``; otherwise :class:`RecoverError` names the files and
    nothing is changed.
    """
    changes: List[Change] = journal["changes"]
    asides: Dict[str, Aside] = journal.get("asides") or {}
    stats: Dict[str, Tuple[int, ...]] = journal.get("stats") or {}
    module_dir: str = journal.get("module_dir", "")
    root = str(git.root)
    put_back: List[Change] = []  # the user's file waits aside
    rewrite: List[Change] = []  # no file waits: the original comes from the object database
    kept: List[str] = []  # edited files that stay as they are; their originals are dropped
    edited: List[str] = []
    parents: Dict[str, bool] = {}
    head: "Optional[str] | bool" = False
    for change in changes:
        full = os.path.join(root, *change.path.split("/"))
        # Behind a symlink (a pinned one, maybe pointing out of the repository) the path
        # does not exist, as git sees it: never look, or delete, through one.
        behind = _behind_link(root, change.path, parents)
        # A half-written pinned file: after a kill (no `written`), or where writing failed.
        if not behind and change.pinned is not None and (written is None or change.path not in written):
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                os.unlink(full + _TMP_MARK)
        aside = asides.get(change.path)
        waiting = aside is not None and os.path.lexists(aside.full(git))
        if behind:
            if waiting or change.original is not None:
                (put_back if waiting else rewrite).append(change)
            continue
        found = _stat_of(full)
        if not waiting:
            recorded = stats.get(change.path)
            if recorded is not None and found is not None and found[:3] == tuple(recorded)[:3]:
                continue  # the user's own file, never moved or already back: proved by stat
            if change.original is None and found is not None and stat.S_ISDIR(found[3]):
                continue  # HEAD's directory (files of HEAD's are put back into it): no file here
            if git.file_matches(change.path, change.original):
                continue
        # An absent path holds nobody's bytes, so restoring it loses nothing (a crash
        # between moving the original aside and writing the pin leaves it so).
        if found is None or _is_written(git, full, change.path, change.pinned, written, found):
            (put_back if waiting else rewrite).append(change)
            continue
        if head is False:
            head = git.head_sha()
        at_head = git.entry(head, change.path) if isinstance(head, str) else None
        if keep_edits or git.file_matches(change.path, at_head):
            kept.append(change.path)
        else:
            edited.append(change.path)
    if edited:
        raise RecoverError(
            "these files were changed after zgit checked out a pin and are not overwritten: "
            + ", ".join(edited)
            + ". Keep or discard your edits (git checkout -- <file> restores HEAD; a file you "
            "commit counts as kept), then run 'zgit recover' again, or 'zgit recover "
            "--keep-edits' to keep them as they are and restore the rest",
            edited,
        )
    restoring = put_back + rewrite
    waiting_paths = {c.path for c in put_back}
    # The module directory and its parents, looked at once here: zgit's own restoring
    # below never replaces them, so only the levels below need a look per file.
    levels = _levels(module_dir)
    trusted = 0 if levels and _behind_link(root, levels[-1] + "/x", parents) else len(levels)
    order = _ordered(restoring, to_pinned=False)
    for index, change in enumerate(order):
        if index == len(order) // 2:
            _fault("mid-restore")
        full = os.path.join(root, *change.path.split("/"))
        if change.path in waiting_paths:
            _check_inside(git.root, change.path, trusted)
            _put_back(asides[change.path].full(git), full)
        elif change.original is None:
            if not _behind_link(root, change.path, {}):
                _remove(full)
            _prune_empty(git.root, change.path, module_dir)
        elif change.original.mode == MODE_GITLINK:
            continue
        else:
            _write_entry(git, _check_inside(git.root, change.path, trusted), change.path, change.original)
    for path in kept:
        aside = asides.get(path)
        if aside is not None:
            _remove(aside.full(git))  # HEAD's content, in git's objects: the user kept another
    _restore_bytecode(git, journal.get("bytecode") or [], asides)
    perms = journal.get("perms") or {}
    for change in rewrite:
        mode = perms.get(change.path)
        full = os.path.join(root, *change.path.split("/"))
        if mode is not None and os.path.lexists(full) and stat.S_ISREG(os.lstat(full).st_mode):
            os.chmod(full, mode)
    for directory in sorted(journal.get("created_dirs", []), key=len, reverse=True):
        full = os.path.join(root, *directory.split("/"))
        with contextlib.suppress(OSError):
            cache = os.path.join(full, "__pycache__")
            if not _behind_link(root, f"{directory}/__pycache__/x", {}):  # no symlink on the way
                for name in os.listdir(cache):
                    if name.endswith(".pyc"):
                        os.unlink(os.path.join(cache, name))
                os.rmdir(cache)
        with contextlib.suppress(OSError):
            os.rmdir(full)
    _fault("after-restore")
    git.refresh_index_stat(
        {c.path: c.original.oid for c in restoring if c.original is not None and not c.original.is_gitlink}
    )
    return [c.path for c in restoring]


def _restore_bytecode(git: GitRepo, records: List[Bytecode], asides: Dict[str, Aside]) -> None:
    """Delete bytecode written during the checkout; move the user's own back."""
    root = str(git.root)
    listings: Dict[str, Optional[List[str]]] = {}  # each stem's files only change its own names
    for record in records:
        current = _cache_names(root, record.directory, record.stem, listings)
        if current is None:
            continue  # a symlink: never followed
        cache = os.path.join(root, *record.directory.split("/"))
        own = set(record.names)
        for name in current:
            path = f"{record.directory}/{name}"
            aside = asides.get(path)
            if name not in own or (aside is not None and os.path.lexists(aside.full(git))):
                _remove(os.path.join(cache, name))
        for name in record.names:
            aside = asides.get(f"{record.directory}/{name}")
            if aside is not None and os.path.lexists(aside.full(git)):
                os.makedirs(cache, exist_ok=True)
                os.rename(aside.full(git), os.path.join(cache, name))


def recover_locked(git: GitRepo, state: Path, *, keep_edits: bool = False) -> List[str]:
    """Undo the journal in ``state`` (the caller holds the lock); returns restored paths.

    ``keep_edits``: files edited since the checkout stay as they are (see :func:`undo`)."""
    path = state / JOURNAL_NAME
    if not path.exists():
        return []
    journal = _read_journal(path)
    restored = undo(git, journal, keep_edits=keep_edits)
    drop_journal(state)
    return restored


# -- signals -----------------------------------------------------------------------------


class _Terminated(BaseException):
    """SIGTERM or SIGHUP (default action) arrived during a checkout: unwinds like Ctrl-C,
    so that the tree is restored, and then the process ends by that signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


_GUARDED = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class _SignalGuard:
    """Signals that would end the process during a checkout (Ctrl-C, SIGTERM from
    ``timeout``/``docker stop``/CI, SIGHUP from a closed terminal).

    Outside critical sections, a signal with its default action raises
    :class:`_Terminated` (a handler of the process's own runs as it would; Ctrl-C raises
    ``KeyboardInterrupt``), so ``finally`` restores the tree.  Inside
    (:meth:`critical`: writing the pin, restoring), it waits until the section ends, so a
    write or a restore is never split in two.  On exit, a signal with its default action
    is delivered again with that action: the process ends as the signal would have ended
    it.  A signal the process ignores stays ignored.  Main thread only (elsewhere, Python
    cannot set handlers); inert in other threads.
    """

    def __init__(self) -> None:
        self.previous: Dict[int, object] = {}
        self.pending: List[Tuple[int, object]] = []
        self.depth = 0
        self.terminate: Optional[int] = None

    def __enter__(self) -> "_SignalGuard":
        if threading.current_thread() is not threading.main_thread():
            return self
        for signum in _GUARDED:
            try:
                previous = signal.getsignal(signum)
                if previous in (signal.SIG_IGN, None):
                    continue  # ignored by the process (or set outside Python): left alone
                signal.signal(signum, self._handle)
            except (ValueError, OSError):
                continue
            self.previous[signum] = previous
        return self

    def _handle(self, signum: int, frame) -> None:
        if self.depth:
            self.pending.append((signum, frame))
            return
        self._deliver(signum, frame)

    def _deliver(self, signum: int, frame) -> None:
        previous = self.previous.get(signum)
        if callable(previous):
            previous(signum, frame)  # the process's own handler; Ctrl-C: KeyboardInterrupt
        else:
            self.terminate = signum
            raise _Terminated(signum)

    @contextlib.contextmanager
    def critical(self) -> Iterator[None]:
        """Signals wait until the block ends, then are handled as outside it."""
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1
            if not self.depth and self.pending:
                signum, frame = self.pending.pop(0)
                self.pending.clear()
                self._deliver(signum, frame)

    def __exit__(self, exc_type, exc, tb) -> None:
        for signum, previous in self.previous.items():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(signum, previous)  # type: ignore[arg-type]
        signum = exc.signum if isinstance(exc, _Terminated) else self.terminate
        if signum is None:
            return
        # The tree is restored: end the process as the signal would have.
        logging.getLogger(__name__).debug("re-raising signal %d after restoring the tree", signum)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        raise SystemExit(128 + signum)  # only if the signal is blocked


# -- the checkout ------------------------------------------------------------------------


@contextlib.contextmanager
def checked_out(
    git: GitRepo, module_dir: str, sha: str, *, timeout: float, fsync: bool = False
) -> Iterator[None]:
    """Make ``module_dir`` exactly its content at ``sha`` for the duration of the block.

    Raises :class:`DirtyModuleError` (``.paths``) when the directory differs from HEAD,
    :class:`LockTimeoutError` when another process holds the lock too long, and
    :class:`ZgitError` when the directory cannot be written (the tree is then restored).
    The directory is restored exactly to HEAD when the block ends, whatever ends it
    (Ctrl-C, SIGTERM and SIGHUP included: those then end the process as they would have).
    """
    if getattr(_active, "depth", 0):
        # A pinned module loading another pin while it imports: the outer checkout owns
        # the journal, and the import is served from the object database either way.
        yield
        return
    with locked(git, timeout) as state, git.one_look_at_settings():
        recover_locked(git, state)
        head = git.head_sha()
        dirty_files = git.dirty_files(module_dir, head)
        if dirty_files:
            dirty = [f.path for f in dirty_files]
            submodule = submodule_of(dirty_files)
            if submodule:
                message = (
                    f"module directory {module_dir!r} is inside the git submodule {submodule}/, whose "
                    "files this repository's commits do not hold; load it from the submodule's own "
                    "repository (repo=<its path>)"
                )
            else:
                more = advice(dirty_files)
                message = (
                    f"module directory {module_dir!r} has changes that are not committed: "
                    f"{describe(dirty_files, limit=len(dirty_files))}. Commit or stash them, or load "
                    "with strategy='memory', which does not touch the work tree" + (f" ({more})" if more else "")
                )
            raise DirtyModuleError(message, dirty)
        original = (git.entries(head, module_dir) or {}) if head else {}
        pinned = git.entries(sha, module_dir) or {}
        # Bytecode is Python's, tracked or not: never written, never deleted (only moved
        # aside while the source it was compiled from is not on disk).
        changes = [
            Change(path, original.get(path), pinned.get(path))
            for path in sorted(original.keys() | pinned.keys())
            if original.get(path) != pinned.get(path) and not is_bytecode_cache(path)
        ]
        if not changes:
            yield
            return
        _refuse_what_git_does_not_hold(git, module_dir, changes)
        trusted = len(_levels(module_dir))
        asides, bytecode, stats, perms = _plan_asides(git, state, changes, module_dir)
        payload = {
            "version": JOURNAL_VERSION,
            "pid": os.getpid(),
            "created": time.time(),
            "module_dir": module_dir,
            "sha": sha,
            "head": head,
            "changes": [
                {"path": c.path, "original": _entry_json(c.original), "pinned": _entry_json(c.pinned)}
                for c in changes
            ],
            "asides": _asides_json(asides),
            "bytecode": [[b.directory, b.stem, list(b.names)] for b in bytecode],
            "stats": stats,
            "created_dirs": _dirs_to_create(git, changes, trusted),
            "perms": perms,
        }
        # Signals matter from here on (before, the default action of SIGTERM leaves
        # nothing behind): they end the process only once the tree is restored.
        with _SignalGuard() as guard:
            with guard.critical():
                _write_journal_or_explain(state, payload, fsync)
            _fault("journal-written")
            written: Dict[str, Stat] = {}
            journal = dict(payload, changes=changes, asides=asides, bytecode=bytecode)
            _active.depth = 1
            try:
                with guard.critical():
                    _materialize(git, changes, module_dir, state, journal, payload, fsync, written, trusted)
                _fault("after-materialize")
                yield
                _fault("after-import")
            finally:
                _active.depth = 0
                with guard.critical():
                    try:
                        undo(git, journal, written=written)
                    except OSError as exc:
                        raise ZgitError(
                            f"could not put module directory {module_dir!r} back to HEAD: "
                            f"{exc.strerror or exc}. Fix the cause (disk space, permissions) and run "
                            "'zgit recover'; the journal in .git/zgit/ knows what to restore"
                        ) from exc
                    drop_journal(state)


def _plan_asides(git: GitRepo, state: Path, changes: List[Change], module_dir: str):
    """Where each of the user's files waits during the checkout, before the journal names
    it: ``.git/zgit/aside/`` when that is on the same file system (a rename keeps bytes,
    mode, mtime and inode), else beside the file.  Also the bytecode of every changed
    module, the stat of every original (which proves it later without reading it), and
    the permission bits of originals that differ from what a checkout writes (a file the
    user made private, say: a restore from the object database, when the file itself is
    lost, gives them back)."""
    root = str(git.root)
    aside_dir = state / ASIDE_DIR
    try:
        state_dev = os.lstat(aside_dir).st_dev
    except FileNotFoundError:
        aside_dir.mkdir(exist_ok=True)
        state_dev = os.lstat(aside_dir).st_dev
    token = f"{os.getpid()}-{time.time_ns()}"
    asides: Dict[str, Aside] = {}
    stats: Dict[str, List[int]] = {}
    perms: Dict[str, int] = {}
    taken: set = set()
    umask = _umask()

    def plan(path: str, full: str, st: os.stat_result) -> None:
        if st.st_dev == state_dev:
            asides[path] = Aside(path, f"{ASIDE_DIR}/{token}-{len(asides)}", True)
        else:
            asides[path] = Aside(path, _beside_name(root, path, taken), False)
        stats[path] = [st.st_ino, st.st_size, st.st_mtime_ns]

    bytecode: List[Bytecode] = []
    stems = set()
    listings: Dict[str, Optional[List[str]]] = {}
    # a _behind_link cache that knows the module directory and its parents are real
    # directories: the clean check has just walked them, and zgit never replaces them
    parents = dict.fromkeys(_levels(module_dir), False)
    for change in changes:
        if change.original is not None and not change.original.is_gitlink:
            full = os.path.join(root, *change.path.split("/"))
            try:
                st = os.lstat(full)
            except OSError:
                continue  # not there (a parent is a symlink at HEAD): nothing of the user's
            if not stat.S_ISDIR(st.st_mode):
                plan(change.path, full, st)
            if stat.S_ISREG(st.st_mode) and change.original.mode in (MODE_EXEC, 0o100644):
                default = (0o777 if change.original.mode == MODE_EXEC else 0o666) & ~umask
                if stat.S_IMODE(st.st_mode) != default:
                    perms[change.path] = stat.S_IMODE(st.st_mode)
        directory, _, name = change.path.rpartition("/")
        if name.endswith(".py") and (directory, name[:-3]) not in stems:
            stems.add((directory, name[:-3]))
            cache_dir = f"{directory}/__pycache__" if directory else "__pycache__"
            if _behind_link(root, cache_dir + "/x", parents):
                continue
            names = _cache_names(root, cache_dir, name[:-3], listings)
            if names is None:
                continue
            bytecode.append(Bytecode(cache_dir, name[:-3], tuple(names)))
            for cached in names:
                path = f"{cache_dir}/{cached}"
                full = os.path.join(root, *path.split("/"))
                with contextlib.suppress(OSError):
                    plan(path, full, os.lstat(full))
    return asides, bytecode, stats, perms


def _beside_name(root: str, path: str, taken: set) -> str:
    base = path + _ASIDE_MARK
    name, n = base, 0
    while name in taken or os.path.lexists(os.path.join(root, *name.split("/"))):
        n += 1
        name = f"{base}{n}"
    taken.add(name)
    return name


def _move_aside(git: GitRepo, path: str, journal: dict, payload: dict, state: Path, fsync: bool) -> None:
    """Move the user's file at ``path`` to where the journal says it waits."""
    asides: Dict[str, Aside] = journal["asides"]
    aside = asides[path]
    full = os.path.join(str(git.root), *path.split("/"))
    try:
        os.rename(full, aside.full(git))
    except OSError as exc:
        if exc.errno != errno.EXDEV or not aside.in_state:
            raise
        # Another file system after all (a bind mount shares st_dev): wait beside the file,
        # which the journal says before anything moves.
        asides[path] = Aside(path, _beside_name(str(git.root), path, set()), False)
        payload["asides"] = _asides_json(asides)
        _write_journal_or_explain(state, payload, fsync)
        os.rename(full, asides[path].full(git))


def _refuse_what_git_does_not_hold(git: GitRepo, module_dir: str, changes: List[Change]) -> None:
    """Refuse, before anything is written, a checkout that could lose what git does not
    hold: a submodule (zgit cannot check one out), or a file git ignores (or a directory)
    where the pin has a file or needs a directory; it is the user's, and neither writing
    the pin over it nor restoring HEAD (which has nothing there) may destroy it."""
    gitlinks = [
        c.path for c in changes if any(e is not None and e.is_gitlink for e in (c.original, c.pinned))
    ]
    if gitlinks:
        raise ZgitError(
            f"{', '.join(gitlinks)}: a git submodule inside module directory {module_dir!r} differs "
            "between the pin and HEAD, and zgit cannot check submodules out; make it a regular "
            "directory or move it out of the module directory"
        )
    root = str(git.root)
    at_head = {c.path for c in changes if c.original is not None}
    in_the_way: List[str] = []
    for change in changes:
        if change.original is not None or change.pinned is None or is_bytecode_cache(change.path):
            continue
        parts = change.path.split("/")
        for i in range(len(module_dir.split("/")) if module_dir else 0, len(parts)):
            rel = "/".join(parts[: i + 1])
            full = os.path.join(root, *parts[: i + 1])
            if not os.path.lexists(full):
                break
            # A real directory is never overwritten (unlink and rename fail on it, with a
            # clear error); a file or symlink would be.
            if rel not in at_head and (os.path.islink(full) or not os.path.isdir(full)):
                if rel not in in_the_way:
                    in_the_way.append(rel)
                break
    if in_the_way:
        raise DirtyModuleError(
            f"files that git ignores are where the pin of {module_dir!r} has files: "
            f"{', '.join(in_the_way)}; the checkout would overwrite them. Move them away, or "
            "load with strategy='memory', which does not touch the work tree",
            in_the_way,
        )


def _dirs_to_create(git: GitRepo, changes: List[Change], trusted: int) -> List[str]:
    """Directories the pin needs that do not exist: journaled before they exist.  The
    first ``trusted`` levels (the module directory's) exist: the clean check walked them."""
    root = str(git.root)
    needed: List[str] = []
    looked = set()
    for change in changes:
        if change.pinned is None:
            continue
        parts = change.path.split("/")[:-1]
        for i in range(trusted + 1, len(parts) + 1):
            rel = "/".join(parts[:i])
            if rel in looked:
                continue
            looked.add(rel)
            if not os.path.lexists(os.path.join(root, *parts[:i])):
                needed.append(rel)
    return needed


def _materialize(git: GitRepo, changes: List[Change], module_dir: str, state: Path, journal: dict,
                 payload: dict, fsync: bool, written: Dict[str, Stat], trusted: int = 0) -> None:
    """Move the user's files (and their bytecode) aside and write the pin in their place."""
    asides: Dict[str, Aside] = journal["asides"]
    root = str(git.root)
    change = None
    as_blob = git.writes_blobs_as_they_are(module_dir, [c.path for c in changes])
    try:
        for record in journal["bytecode"]:
            for name in record.names:
                _move_aside(git, f"{record.directory}/{name}", journal, payload, state, fsync)
            if record.names:
                with contextlib.suppress(OSError):  # empty now: the pin's directory is exact
                    os.rmdir(os.path.join(root, *record.directory.split("/")))
        _fault("bytecode-aside")
        ordered = _ordered(changes, to_pinned=True)
        half = len(ordered) // 2
        # Removals first (deepest first): a directory at HEAD that is a file or symlink at
        # the pin must be gone before the file takes its place.
        for index, change in enumerate(ordered):
            if index == half:
                _fault("mid-materialize")
            full = _check_inside(git.root, change.path, trusted)
            if change.original is not None and change.original.is_gitlink:
                raise ZgitError(
                    f"{change.path} is a git submodule inside module directory {module_dir!r}; "
                    "zgit cannot check submodules out: make it a regular directory or move it out"
                )
            if change.path in asides:
                _move_aside(git, change.path, journal, payload, state, fsync)
            if change.pinned is None:
                _prune_empty(git.root, change.path, module_dir)
            else:
                _write_entry(git, full, change.path, change.pinned, as_blob,
                             vacant=change.path in asides or change.original is None)
                found = _stat_of(full)
                if found is not None:
                    written[change.path] = found
    except OSError as exc:
        where = change.path if change is not None else module_dir
        raise ZgitError(
            f"cannot write {where}: {exc.strerror or exc}. "
            "The module directory has been put back as it was; free disk space or fix the "
            "permissions, or load with strategy='memory', which writes nothing"
        ) from exc
