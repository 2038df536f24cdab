"""The only module that talks to pygit2: commits, trees, blobs and the clean check.

Everything here works on repository-relative POSIX paths.  Trees of commits are
immutable, so what is read from them is cached by object id.
"""

from __future__ import annotations

import functools
import os
import stat
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import pygit2

from zgit.errors import NotARepositoryError, PinNotFoundError

MODE_BLOB = 0o100644
MODE_EXEC = 0o100755
MODE_LINK = 0o120000
MODE_TREE = 0o040000
MODE_GITLINK = 0o160000

# Python's own caches never make a module directory dirty, ignored or not.
_CACHE_DIR = "__pycache__"
_CACHE_SUFFIXES = (".pyc", ".pyo")


_READ_HEAD = object()  # dirty_paths(): resolve HEAD itself


@dataclass(frozen=True)
class Entry:
    """A file in a commit's tree: its blob id (hex) and git file mode."""

    oid: str
    mode: int

    @property
    def is_link(self) -> bool:
        return self.mode == MODE_LINK

    @property
    def is_gitlink(self) -> bool:
        return self.mode == MODE_GITLINK


Entries = Dict[str, Entry]


def is_bytecode_cache(relpath: str) -> bool:
    """True for paths Python writes by itself (``__pycache__/``, ``*.pyc``)."""
    return relpath.endswith(_CACHE_SUFFIXES) or _CACHE_DIR in relpath.split("/")


class GitRepo:
    """A non-bare git repository, opened through pygit2.

    Instances are shared per work tree (see :func:`open_repo`); a lock serializes the
    calls into libgit2 so that threads can share one.
    """

    def __init__(self, git_dir: str) -> None:
        self._repo = pygit2.Repository(git_dir)
        if self._repo.is_bare or self._repo.workdir is None:
            raise NotARepositoryError(
                f"{git_dir} is a bare repository; zgit needs a work tree (git clone without --bare)"
            )
        self.root = Path(os.path.realpath(self._repo.workdir))
        self.git_dir = Path(os.path.realpath(self._repo.path))
        self._lock = threading.RLock()
        self._tree_cache: Dict[str, Entries] = {}
        self._commit_trees: Dict[str, pygit2.Tree] = {}
        # Blobs are immutable: keep recently read ones (bounded), since loads of nearby
        # pins share most files and libgit2 does not cache blobs.
        self._blobs: Dict[str, bytes] = {}
        self._blob_bytes = 0

    # -- commits -------------------------------------------------------------------------

    def head_sha(self) -> Optional[str]:
        """The commit HEAD points at, or None before the first commit."""
        with self._lock:
            try:
                # One resolution of HEAD: an unborn HEAD raises GitError here, so asking
                # head_is_unborn first only resolved it twice (~half of this call's cost).
                return str(self._repo.head.target)
            except pygit2.GitError:
                return None

    def resolve_commit(self, rev: str) -> str:
        """Full 40-hex id of the commit ``rev`` names (a full or unambiguous short sha,
        a branch or tag); :class:`PinNotFoundError` when there is none."""
        with self._lock:
            try:
                obj = self._repo.revparse_single(rev)
                commit = obj.peel(pygit2.Commit)
            except (KeyError, ValueError, pygit2.GitError) as exc:
                raise PinNotFoundError(self.missing_commit(rev)) from exc
            return str(commit.id)

    def has_commit(self, sha: str) -> bool:
        if sha in self._commit_trees:
            return True
        with self._lock:
            try:
                obj = self._repo.get(sha)
            except (ValueError, pygit2.GitError):
                return False
            return isinstance(obj, pygit2.Commit)

    def missing_commit(self, rev: str) -> str:
        """Why ``rev`` names no commit here, and what to do: a tree, blob or tag id is not
        a commit; in a shallow clone older history comes with ``git fetch --unshallow``
        (``git fetch --all`` fetches nothing older); otherwise fetch it or re-pin."""
        with self._lock:
            try:
                obj = self._repo.revparse_single(rev)
            except (KeyError, ValueError, pygit2.GitError):
                obj = None
            shallow = bool(getattr(self._repo, "is_shallow", False))
        kinds = {pygit2.GIT_OBJECT_TREE: "tree", pygit2.GIT_OBJECT_BLOB: "blob (a file's content)",
                 pygit2.GIT_OBJECT_TAG: "tag object"}
        if obj is not None and not isinstance(obj, pygit2.Commit):
            kind = kinds.get(obj.type, "object")
            return (f"{rev} is a {kind} in the repository at {self.root}, not a commit: a pin names "
                    "a commit (see git log); correct the pin")
        if shallow:
            return (f"commit {rev} is not in the repository at {self.root}, a shallow clone: fetch "
                    "the older history with 'git fetch --unshallow' (in CI, check out with "
                    "fetch-depth: 0), or re-pin the pipeline")
        return (f"commit {rev} is not in the repository at {self.root}: fetch the history that "
                "has it (git fetch --all), or re-pin the pipeline")

    def _commit_tree(self, sha: str) -> pygit2.Tree:
        tree = self._commit_trees.get(sha)
        if tree is not None:
            return tree
        try:
            obj = self._repo.get(sha)
        except (ValueError, pygit2.GitError):
            obj = None
        if not isinstance(obj, pygit2.Commit):
            raise PinNotFoundError(self.missing_commit(sha))
        if len(self._commit_trees) > 4096:
            self._commit_trees.clear()
        tree = self._commit_trees[sha] = obj.tree
        return tree

    # -- trees ---------------------------------------------------------------------------

    def tree_id(self, sha: str, directory: str) -> Optional[str]:
        """The id of the tree at ``directory`` in commit ``sha``, or None when absent."""
        with self._lock:
            tree = self._commit_tree(sha)
            if directory in ("", "."):
                return str(tree.id)
            try:
                obj = tree[directory]
            except KeyError:
                return None
            return str(obj.id) if obj.type == pygit2.GIT_OBJECT_TREE else None

    def names(self, sha: str, directory: str) -> Optional[List[str]]:
        """The names of the files and directories directly in ``directory`` at commit
        ``sha`` (not recursive), or None when it is not a directory there."""
        with self._lock:
            tree = self._commit_tree(sha)
            if directory not in ("", "."):
                try:
                    tree = tree[directory]
                except KeyError:
                    return None
                if tree.type != pygit2.GIT_OBJECT_TREE:
                    return None
                tree = self._repo[tree.id]
            return [item.name for item in tree]

    def entry(self, sha: str, path: str) -> Optional[Entry]:
        """The blob entry at ``path`` in commit ``sha`` (None if absent or a directory)."""
        with self._lock:
            tree = self._commit_tree(sha)
            try:
                obj = tree[path]
            except KeyError:
                return None
            if obj.filemode == MODE_TREE:
                return None
            return Entry(str(obj.id), int(obj.filemode))

    def entries(self, sha: str, directory: str) -> Optional[Entries]:
        """Every file below ``directory`` at commit ``sha`` as ``{repo path: Entry}``.

        None when the directory does not exist there.  Submodules appear with
        ``MODE_GITLINK``.  Cached by tree id, so repeated calls are dictionary lookups.
        """
        tree_oid = self.tree_id(sha, directory)
        if tree_oid is None:
            return None
        prefix = "" if directory in ("", ".") else directory.rstrip("/") + "/"
        key = prefix + "\0" + tree_oid
        cached = self._tree_cache.get(key)
        if cached is not None:
            return cached
        with self._lock:
            out: Entries = {}
            self._walk(self._repo[pygit2.Oid(hex=tree_oid)], prefix, out)
        if len(self._tree_cache) > 4096:
            self._tree_cache.clear()
        self._tree_cache[key] = out
        return out

    def _walk(self, tree: pygit2.Tree, prefix: str, out: Entries) -> None:
        for item in tree:
            path = prefix + item.name
            if item.filemode == MODE_TREE:
                self._walk(self._repo[item.id], path + "/", out)
            else:
                out[path] = Entry(str(item.id), int(item.filemode))

    _BLOB_CACHE_BYTES = 32 * 1024 * 1024

    def blob(self, oid: str) -> bytes:
        """The bytes of blob ``oid``."""
        data = self._blobs.get(oid)
        if data is not None:
            return data
        with self._lock:
            data = self._repo.odb.read(pygit2.Oid(hex=oid))[1]
            if len(data) <= self._BLOB_CACHE_BYTES // 64:
                if self._blob_bytes + len(data) > self._BLOB_CACHE_BYTES:
                    self._blobs.clear()
                    self._blob_bytes = 0
                self._blobs[oid] = data
                self._blob_bytes += len(data)
        return data

    def blob_size(self, oid: str) -> Optional[int]:
        """The size in bytes of blob ``oid`` from its object header (the content is not
        inflated), or None when there is no such blob."""
        data = self._blobs.get(oid)
        if data is not None:
            return len(data)
        with self._lock:
            try:
                kind, size = self._repo.odb.read_header(pygit2.Oid(hex=oid))
            except (KeyError, ValueError, pygit2.GitError):
                return None
        return size if kind == pygit2.GIT_OBJECT_BLOB else None

    def raw_object(self, oid: str) -> Tuple[str, bytes]:
        """``(type, content)`` of object ``oid`` as git stores it (type ``"commit"``,
        ``"tree"``, ``"blob"`` or ``"tag"``; content without the ``<type> <size>\\0``
        header), so that a reader without git can check it hashes to ``oid``.
        :class:`PinNotFoundError` when there is no such object."""
        with self._lock:
            try:
                kind, data = self._repo.odb.read(pygit2.Oid(hex=oid))
            except (KeyError, ValueError, pygit2.GitError) as exc:
                raise PinNotFoundError(f"object {oid} is not in the repository at {self.root}") from exc
        names = {pygit2.GIT_OBJECT_COMMIT: "commit", pygit2.GIT_OBJECT_TREE: "tree",
                 pygit2.GIT_OBJECT_BLOB: "blob", pygit2.GIT_OBJECT_TAG: "tag"}
        return names.get(kind, str(kind)), bytes(data)

    def read(self, sha: str, path: str) -> Optional[bytes]:
        """The bytes of file ``path`` at commit ``sha``, or None when there is none."""
        found = self.entry(sha, path)
        if found is None or found.is_gitlink:
            return None
        return self.blob(found.oid)

    def changed_paths(self, old_sha: str, new_sha: str, directory: str) -> List[str]:
        """Files below ``directory`` that differ between two commits (added, removed, changed)."""
        old = self.entries(old_sha, directory) or {}
        new = self.entries(new_sha, directory) or {}
        return sorted(p for p in old.keys() | new.keys() if old.get(p) != new.get(p))

    # -- the work tree -------------------------------------------------------------------

    def is_ignored(self, relpath: str) -> bool:
        with self._lock:
            return bool(self._repo.path_is_ignored(relpath))

    def file_matches(self, relpath: str, entry: Optional[Entry]) -> bool:
        """True when the work-tree file at ``relpath`` is exactly ``entry`` (None: absent)."""
        full = os.path.join(self.root, relpath)
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            return entry is None
        except NotADirectoryError:
            return entry is None
        if entry is None:
            return False
        return _matches(full, st, entry)

    def dirty_paths(self, directory: str, head: "str | None | object" = _READ_HEAD) -> List[str]:
        """Files below ``directory`` whose work-tree state differs from HEAD.

        Untracked (and not ignored), modified, mode-changed and deleted files count; a
        rename shows as its two halves.  Bytecode caches never count.  Costs
        O(files in the directory): nothing outside it is read.  Before the first commit
        every file counts.  ``head``: HEAD's commit when the caller has just read it (None
        before the first commit), so that it is not resolved twice.
        """
        if head is _READ_HEAD:
            head = self.head_sha()
        expected: Entries = {}
        if head is not None:
            expected = self.entries(head, directory) or {}
        base = os.path.join(self.root, directory)
        dirty: List[str] = []
        seen = set()
        gitlinks = {p for p, e in expected.items() if e.is_gitlink}
        for relpath, full, st in _walk_files(base, directory, gitlinks, self._pruned_dir):
            seen.add(relpath)
            entry = expected.get(relpath)
            if entry is None:
                if not self.is_ignored(relpath):
                    dirty.append(relpath)
            elif entry.is_gitlink:
                continue
            elif not _matches(full, st, entry):
                dirty.append(relpath)
        dirty.extend(p for p in expected if p not in seen)
        return sorted(dirty)

    def _pruned_dir(self, relpath: str) -> bool:
        return self.is_ignored(relpath + "/")

    # -- read-only helpers for the command line (zgit/cli.py) ----------------------------

    def expand_commit(self, rev: str) -> str:
        """Like :meth:`resolve_commit`, but says so when a short sha is ambiguous."""
        with self._lock:
            try:
                self._repo.revparse_single(rev)
            except pygit2.AmbiguousError as exc:
                raise PinNotFoundError(
                    f"{rev!r} is ambiguous in the repository at {self.root}: more than one "
                    "object id starts with it; give more hex digits"
                ) from exc
            except (KeyError, ValueError, pygit2.GitError):
                pass
        return self.resolve_commit(rev)


    # -- writing (the demo's throwaway repositories) ---------------------------------------

    def commit_all(self, message: str, name: str, email: str) -> str:
        """Stage every file of the work tree (as ``git add -A``) and commit it on HEAD."""
        with self._lock:
            index = self._repo.index
            index.add_all()
            index.write()
            tree = index.write_tree()
            signature = pygit2.Signature(name, email)
            parents = [] if self._repo.head_is_unborn else [self._repo.head.target]
            return str(self._repo.create_commit("HEAD", signature, signature, message, tree, parents))

    def status(self) -> Dict[str, int]:
        """Every path whose state differs from HEAD or the index, with libgit2's flags
        (a whole-repository status: for reports, never on a hot path)."""
        with self._lock:
            return {path: int(flags) for path, flags in self._repo.status().items()}

def _matches(full: str, st: os.stat_result, entry: Entry) -> bool:
    if stat.S_ISLNK(st.st_mode):
        if not entry.is_link:
            return False
        return str(pygit2.hash(os.fsencode(os.readlink(full)))) == entry.oid
    if not stat.S_ISREG(st.st_mode) or entry.is_link:
        return False
    executable = bool(st.st_mode & stat.S_IXUSR)
    if executable != (entry.mode == MODE_EXEC):
        return False
    return str(pygit2.hashfile(full)) == entry.oid


def _walk_files(base: str, directory: str, gitlinks, pruned) -> Iterator[Tuple[str, str, os.stat_result]]:
    """Yield (repo path, full path, lstat) of every non-cache file below ``base``."""
    prefix = "" if directory in ("", ".") else directory.rstrip("/") + "/"
    stack = [(base, prefix)]
    while stack:
        current, rel = stack.pop()
        try:
            scan = os.scandir(current)
        except (FileNotFoundError, NotADirectoryError):
            continue
        with scan:
            for item in scan:
                relpath = rel + item.name
                if item.is_dir(follow_symlinks=False):
                    if item.name == _CACHE_DIR or item.name == ".git" or relpath in gitlinks:
                        if relpath in gitlinks:
                            yield relpath, item.path, item.stat(follow_symlinks=False)
                        continue
                    if pruned(relpath):
                        continue
                    stack.append((item.path, relpath + "/"))
                elif not item.name.endswith(_CACHE_SUFFIXES):
                    yield relpath, item.path, item.stat(follow_symlinks=False)


@functools.lru_cache(maxsize=256)
def _open_cached(git_dir: str) -> GitRepo:
    return GitRepo(git_dir)


def init_repository(path: "str | os.PathLike[str]", branch: str = "main") -> GitRepo:
    """Create a git repository with a work tree at ``path`` and open it."""
    created = pygit2.init_repository(os.fspath(path), initial_head=branch)
    return _open_cached(os.path.realpath(created.path))


def _discover(start: str) -> Optional[str]:
    """``pygit2.discover_repository(start)``, without its refcount bug.

    pygit2 (1.21, and its source to date) returns ``None`` for "no repository here"
    without taking a reference to it, so each miss takes one from ``None``; a process that
    looks for repositories outside any (resolving many objects from a job runner's
    directory, say) ends in "Fatal Python error: none_dealloc".  Each miss gives the
    reference back.  Should pygit2 fix this, the extra reference is harmless (``None`` is
    never freed; from Python 3.12 on it is immortal and counting does nothing).
    """
    found = pygit2.discover_repository(start)
    if found is None and _NONE_IS_COUNTED:
        import ctypes  # only on a miss: it costs start-up time

        ctypes.pythonapi.Py_IncRef(ctypes.py_object(None))
    return found


# CPython before 3.12 counts references to None (PyPy has no counts; 3.12 makes None immortal).
_NONE_IS_COUNTED = sys.implementation.name == "cpython" and sys.version_info < (3, 12)


def open_repo(path: "str | os.PathLike[str] | None" = None) -> GitRepo:
    """The repository whose work tree holds ``path`` (default: the current directory)."""
    start = os.path.abspath(os.fspath(path) if path is not None else os.getcwd())
    try:
        git_dir = _discover(start)
    except pygit2.GitError:
        git_dir = None
    if git_dir is None:
        raise NotARepositoryError(
            f"{start} is not inside a git repository: run zgit from your project, "
            "or create one with 'git init'"
        )
    return _open_cached(os.path.realpath(git_dir))
