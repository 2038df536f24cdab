"""The checkout strategy: a module directory is its content at the pin for one import.

In this order: thread lock, process lock (filelock), undo a journal left by a dead
process, refuse a dirty module directory, write the journal, make the module directory
exactly its content at the pin, import, restore it exactly to HEAD in a ``finally``
(``KeyboardInterrupt`` included), drop the journal, release.

Why nothing can be lost: zgit only touches a module directory that is clean, so every
byte it replaces is in HEAD's objects, and the journal names them.  The journal is
written (atomically, by rename) before the first byte of the work tree changes, so a
process killed at any point leaves either an untouched tree or a journal that
:func:`recover` follows.  Files are replaced by rename too: each is either wholly its
HEAD content or wholly its pinned content, never half-written.  ``recover`` never
overwrites a file that is neither: somebody edited it, and it says so.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import filelock

from zgit.dirty import advice, describe, submodule_of
from zgit.errors import DirtyModuleError, LockTimeoutError, RecoverError, ZgitError
from zgit.gitrepo import MODE_EXEC, MODE_GITLINK, MODE_LINK, Entry, GitRepo, is_bytecode_cache

JOURNAL_NAME = "journal.json"
LOCK_NAME = "checkout.lock"
OWNER_NAME = "checkout.owner"
_TMP_MARK = ".zgit-tmp"

_thread_locks: Dict[str, threading.RLock] = {}
_thread_locks_guard = threading.Lock()
_file_locks: Dict[str, filelock.FileLock] = {}
_active = threading.local()


def _fault(point: str) -> None:
    """Test-only fault injection: ``ZGIT_TEST_KILL_AT=<point>`` kills this process there."""
    if os.environ.get("ZGIT_TEST_KILL_AT") == point:
        os.kill(os.getpid(), signal.SIGKILL)


# -- locking ----------------------------------------------------------------------------


def _state_dir(git: GitRepo) -> Path:
    path = git.git_dir / "zgit"
    path.mkdir(exist_ok=True)
    return path


@contextlib.contextmanager
def locked(git: GitRepo, timeout: float) -> Iterator[Path]:
    """Hold this repository's thread lock and process lock; yields the state directory.

    Waits at most ``timeout`` seconds for each; raises :class:`LockTimeoutError` naming
    the lock file and the process that holds it.  Always releases, on any exception.
    Re-entrant within a thread.
    """
    state = _state_dir(git)
    key = str(git.git_dir)
    with _thread_locks_guard:
        thread_lock = _thread_locks.setdefault(key, threading.RLock())
        file_lock = _file_locks.get(key)
        if file_lock is None:
            file_lock = _file_locks[key] = filelock.FileLock(str(state / LOCK_NAME))
    lock_path = state / LOCK_NAME
    if not thread_lock.acquire(timeout=timeout if timeout >= 0 else -1):
        raise LockTimeoutError(
            f"another thread of this process has held the checkout lock {lock_path} for more "
            f"than {timeout:g} s; raise loader.lock_timeout (ZGIT_LOCK_TIMEOUT) or use strategy 'memory'"
        )
    try:
        try:
            file_lock.acquire(timeout=timeout, poll_interval=0.01)
        except filelock.Timeout:
            holder = _read_owner(state)
            raise LockTimeoutError(
                f"could not get the checkout lock {lock_path} within {timeout:g} s: "
                f"{holder} holds it. If that process is stuck, stop it and run 'zgit recover'; "
                "or raise loader.lock_timeout (ZGIT_LOCK_TIMEOUT), or load with strategy 'memory'"
            ) from None
        try:
            if file_lock.lock_counter == 1:
                with contextlib.suppress(OSError):  # only informs error messages (disk full)
                    _write_owner(state)
            yield state
        finally:
            file_lock.release()
    finally:
        thread_lock.release()


def _write_owner(state: Path) -> None:
    # Overwritten in place at a fixed width: truncating a file costs an ext4 flush on close.
    fd = os.open(state / OWNER_NAME, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, f"{os.getpid():>12}\n".encode(), 0)
    finally:
        os.close(fd)


def _read_owner(state: Path) -> str:
    try:
        pid = int((state / OWNER_NAME).read_text().strip())
    except (OSError, ValueError):
        return "another process (pid unknown)"
    return f"process {pid}"


# -- the journal -------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One path of a module directory: its HEAD entry and its pinned entry (None: absent)."""

    path: str
    original: Optional[Entry]
    pinned: Optional[Entry]


def _entry_json(entry: Optional[Entry]):
    return None if entry is None else [entry.oid, entry.mode]


def _entry_from(data) -> Optional[Entry]:
    return None if data is None else Entry(str(data[0]), int(data[1]))


def write_journal(state: Path, payload: dict, fsync: bool) -> Path:
    """Write the journal by rename, so it is whole or absent; with ``fsync`` also durable
    across power loss (the tree is clean before a checkout, so even then nothing is lost)."""
    path = state / JOURNAL_NAME
    tmp = state / (JOURNAL_NAME + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        # A full disk or a file-size limit can make a write short without an error: loop,
        # so that the next write raises instead of a truncated journal being renamed in.
        view = memoryview(json.dumps(payload).encode())
        while view:
            view = view[os.write(fd, view):]
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if fsync:
        dir_fd = os.open(state, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path


def _write_journal_or_explain(state: Path, payload: dict, fsync: bool) -> Path:
    """:func:`write_journal`, with a :class:`ZgitError` when it cannot be written (the
    work tree has not been touched yet then)."""
    try:
        return write_journal(state, payload, fsync)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(state / (JOURNAL_NAME + ".tmp"))
        raise ZgitError(
            f"cannot write the checkout journal in {state}: {exc.strerror or exc}. Nothing in "
            "the work tree was changed; free disk space or fix the permissions of .git/zgit, "
            "or load with strategy='memory', which writes nothing"
        ) from exc


def _read_journal(path: Path) -> dict:
    try:
        payload = json.loads(path.read_text())
        changes = [
            Change(c["path"], _entry_from(c["original"]), _entry_from(c["pinned"]))
            for c in payload["changes"]
        ]
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise RecoverError(
            f"the journal {path} cannot be read ({exc}); compare the module directory with "
            "'git status' and restore it with 'git checkout -- <dir>', then delete the journal"
        ) from exc
    payload["changes"] = changes
    return payload


# -- writing the work tree ---------------------------------------------------------------


def _check_inside(root: Path, relpath: str) -> str:
    """The full path of ``relpath``, refusing one whose parents leave the module directory
    through a symlink or ``..`` (a pinned tree can hold such things; they are never followed)."""
    parts = relpath.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise ZgitError(f"refusing to write {relpath!r}: not a plain path inside the repository")
    current = str(root)
    for part in parts[:-1]:
        current = os.path.join(current, part)
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            break
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
            raise ZgitError(
                f"refusing to write {relpath!r}: {os.path.relpath(current, root)} is a symlink or "
                "a file, and zgit never writes through one"
            )
    return os.path.join(str(root), *parts)


def _write_entry(git: GitRepo, full: str, entry: Entry, created_dirs: List[str]) -> None:
    parent = os.path.dirname(full)
    if not os.path.isdir(parent):
        missing = []
        probe = parent
        while not os.path.exists(probe):
            missing.append(probe)
            probe = os.path.dirname(probe)
        os.makedirs(parent)
        created_dirs.extend(reversed(missing))
    tmp = f"{full}{_TMP_MARK}"
    data = git.blob(entry.oid)
    if entry.mode == MODE_LINK:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        os.symlink(os.fsdecode(data), tmp)
    else:
        mode = 0o755 if entry.mode == MODE_EXEC else 0o644
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fchmod(fd, mode & ~_umask())
        finally:
            os.close(fd)
    # Unlink, then rename into the empty name: renaming over an existing file makes ext4
    # flush the new data to disk first (auto_da_alloc), which costs ~0.3 ms a file.  A crash
    # in between leaves the path absent, which recover restores (absence holds no user bytes).
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


def _drop_bytecode(full: str) -> None:
    """Remove ``__pycache__`` files of ``full`` so no interpreter runs bytecode of the other version."""
    if not full.endswith(".py"):
        return
    cache = os.path.join(os.path.dirname(full), "__pycache__")
    stem = os.path.basename(full)[:-3] + "."
    try:
        if not stat.S_ISDIR(os.lstat(cache).st_mode):
            return  # a symlink (a pinned tree can hold one, pointing anywhere): never followed
        names = os.listdir(cache)
    except OSError:
        return
    for name in names:
        if name.startswith(stem) and name.endswith(".pyc"):
            _remove(os.path.join(cache, name))


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


def apply(
    git: GitRepo, changes: List[Change], to_pinned: bool, module_dir: str, known_clean: bool = False
) -> List[Change]:
    """Make every changed path its pinned (or original) entry; returns the changes made.

    A path already in its target state is left alone, so applying twice is harmless and
    an interrupted apply can be finished or undone from the journal.  ``known_clean``
    says every path is in its other state already (just checked), which saves a read.
    """
    done: List[Change] = []
    created: List[str] = []
    ordered = _ordered(changes, to_pinned)
    for index, change in enumerate(ordered):
        if not to_pinned and index == len(ordered) // 2:
            _fault("mid-restore")
        target = change.pinned if to_pinned else change.original
        full = _check_inside(git.root, change.path)
        if not known_clean and git.file_matches(change.path, target):
            continue
        if target is None:
            _remove(full)
            _prune_empty(git.root, change.path, module_dir)
        elif target.mode == MODE_GITLINK:
            raise ZgitError(
                f"{change.path} is a git submodule inside module directory {module_dir!r}; "
                "zgit cannot check submodules out: make it a regular directory or move it out"
            )
        else:
            _write_entry(git, full, target, created)
        _drop_bytecode(full)
        done.append(change)
    return done


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


def undo(git: GitRepo, journal: dict) -> List[str]:
    """Bring every journaled path back to its original entry; returns the paths restored.

    Refuses (:class:`RecoverError`, naming the files) when a path is neither its pinned
    nor its original content: it was edited after the checkout, and is not overwritten.
    """
    changes: List[Change] = journal["changes"]
    module_dir: str = journal.get("module_dir", "")
    root = str(git.root)
    to_restore: List[Change] = []
    edited: List[str] = []
    parents: Dict[str, bool] = {}
    for change in changes:
        full = os.path.join(root, *change.path.split("/"))
        # Behind a symlink (a pinned one, maybe pointing out of the repository) the path
        # does not exist, as git sees it: never look, or delete, through one.
        behind = _behind_link(root, change.path, parents)
        if not behind:
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                os.unlink(full + _TMP_MARK)
        if (change.original is None) if behind else git.file_matches(change.path, change.original):
            continue
        # An absent path holds nobody's bytes, so restoring it loses nothing (a crash
        # between unlink and rename in _write_entry leaves it so).
        if not behind and os.path.lexists(full) and not git.file_matches(change.path, change.pinned):
            edited.append(change.path)
        to_restore.append(change)
    if edited:
        raise RecoverError(
            "these files were changed after zgit checked out a pin and are not overwritten: "
            + ", ".join(edited)
            + ". Keep or discard your edits (git checkout -- <file> restores HEAD), then run "
            "'zgit recover' again",
            edited,
        )
    apply(git, to_restore, to_pinned=False, module_dir=module_dir, known_clean=True)
    perms = journal.get("perms") or {}
    for change in to_restore:
        mode = perms.get(change.path)
        full = os.path.join(root, *change.path.split("/"))
        if mode is not None and stat.S_ISREG(os.lstat(full).st_mode):
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
    return [c.path for c in to_restore]


def recover_locked(git: GitRepo, state: Path) -> List[str]:
    """Undo the journal in ``state`` (the caller holds the lock); returns restored paths."""
    path = state / JOURNAL_NAME
    if not path.exists():
        return []
    journal = _read_journal(path)
    restored = undo(git, journal)
    os.unlink(path)
    return restored


# -- the checkout ------------------------------------------------------------------------


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT (main thread only) until the block ends, so that Ctrl-C cannot split a
    write or a restore in two; the interrupt is raised right after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: List[Tuple[int, object]] = []
    try:
        previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append((signum, frame)))
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received and callable(previous):
            previous(*received[0])  # type: ignore[operator]
        elif received:
            raise KeyboardInterrupt


@contextlib.contextmanager
def checked_out(
    git: GitRepo, module_dir: str, sha: str, *, timeout: float, fsync: bool = False
) -> Iterator[None]:
    """Make ``module_dir`` exactly its content at ``sha`` for the duration of the block.

    Raises :class:`DirtyModuleError` (``.paths``) when the directory differs from HEAD,
    :class:`LockTimeoutError` when another process holds the lock too long, and
    :class:`ZgitError` when the directory cannot be written (the tree is then restored).
    The directory is restored exactly to HEAD when the block ends, whatever ends it.
    """
    if getattr(_active, "depth", 0):
        # A pinned module loading another pin while it imports: the outer checkout owns
        # the journal, and the import is served from the object database either way.
        yield
        return
    with locked(git, timeout) as state:
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
        changes = [
            Change(path, original.get(path), pinned.get(path))
            for path in sorted(original.keys() | pinned.keys())
            if original.get(path) != pinned.get(path)
        ]
        if not changes:
            yield
            return
        _refuse_what_git_does_not_hold(git, module_dir, changes)
        payload = {
            "version": 1,
            "pid": os.getpid(),
            "created": time.time(),
            "module_dir": module_dir,
            "sha": sha,
            "head": head,
            "changes": [
                {"path": c.path, "original": _entry_json(c.original), "pinned": _entry_json(c.pinned)}
                for c in changes
            ],
            "created_dirs": [],
            "perms": _own_permissions(git, changes),
        }
        journal_path = _write_journal_or_explain(state, payload, fsync)
        _fault("journal-written")
        _active.depth = 1
        try:
            with _interrupts_deferred():
                _apply_noting_dirs(git, changes, module_dir, state, payload, fsync)
            _fault("after-materialize")
            yield
            _fault("after-import")
        finally:
            _active.depth = 0
            with _interrupts_deferred():
                try:
                    undo(git, dict(payload, changes=changes))
                except OSError as exc:
                    raise ZgitError(
                        f"could not put module directory {module_dir!r} back to HEAD: "
                        f"{exc.strerror or exc}. Fix the cause (disk space, permissions) and run "
                        "'zgit recover'; the journal in .git/zgit/ knows what to restore"
                    ) from exc
                os.unlink(journal_path)


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


def _own_permissions(git: GitRepo, changes: List[Change]) -> Dict[str, int]:
    """Permission bits of HEAD's files that differ from what a checkout writes (a file the
    user made private, say), so that the restore gives them back."""
    out: Dict[str, int] = {}
    for change in changes:
        if change.original is None or change.original.mode not in (MODE_EXEC, 0o100644):
            continue
        try:
            st = os.lstat(os.path.join(str(git.root), *change.path.split("/")))
        except OSError:
            continue
        default = (0o755 if change.original.mode == MODE_EXEC else 0o644) & ~_umask()
        if stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) != default:
            out[change.path] = stat.S_IMODE(st.st_mode)
    return out


def _apply_noting_dirs(git, changes, module_dir, state, payload, fsync) -> List[str]:
    """Materialize the pin; directories it must create are journaled before they exist."""
    root = str(git.root)
    needed: List[str] = []
    for change in changes:
        if change.pinned is None:
            continue
        parts = change.path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            rel = "/".join(parts[:i])
            if rel not in needed and not os.path.lexists(os.path.join(root, *parts[:i])):
                needed.append(rel)
    if needed:
        payload["created_dirs"] = needed
        _write_journal_or_explain(state, payload, fsync)
    half = len(changes) // 2
    change = None
    try:
        # Removals first (deepest first), as apply() orders them: a directory at HEAD that
        # is a file or symlink at the pin must be gone before the file takes its place.
        for index, change in enumerate(_ordered(changes, to_pinned=True)):
            if index == half:
                _fault("mid-materialize")
            apply(git, [change], to_pinned=True, module_dir=module_dir, known_clean=True)
    except OSError as exc:
        where = change.path if change is not None else module_dir
        raise ZgitError(
            f"cannot write {where}: {exc.strerror or exc}. "
            "The module directory has been put back as it was; free disk space or fix the "
            "permissions, or load with strategy='memory', which writes nothing"
        ) from exc
    return needed
