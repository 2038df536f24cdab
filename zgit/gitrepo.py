"""The only module that talks to pygit2: commits, trees, blobs and the clean check.

Everything here works on repository-relative POSIX paths.  Trees of commits are
immutable, so what is read from them is cached by object id.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import shlex
import stat
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Tuple, Union

import pygit2

from zgit.convert import Crlf, crlf_action, crlf_to_git, ident_to_git, indexed_text_has_crlf, to_utf8
from zgit.dirty import DirtyFile
from zgit.errors import NotARepositoryError, PinNotFoundError, ZgitError
from zgit.gitindex import (
    EMPTY_BLOB_SHA1,
    GitIndex,
    IndexChecksumError,
    IndexEntry,
    IndexFormatError,
    StatPolicy,
    is_racy,
    read_index,
    stat_key,
    stat_matches,
)

_log = logging.getLogger(__name__)

MODE_BLOB = 0o100644
MODE_EXEC = 0o100755
MODE_LINK = 0o120000
MODE_TREE = 0o040000
MODE_GITLINK = 0o160000

# Python's own caches never make a module directory dirty, ignored or not.
_CACHE_DIR = "__pycache__"
_CACHE_SUFFIXES = (".pyc", ".pyo")


_READ_HEAD = object()  # dirty_paths(): resolve HEAD itself
_MISSING = object()


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
        self._entry_cache: Dict[Tuple[str, str], Optional[Entry]] = {}  # (full commit id, path)
        self._commit_trees: Dict[str, pygit2.Tree] = {}
        # Blobs are immutable: keep recently read ones (bounded), since loads of nearby
        # pins share most files and libgit2 does not cache blobs.
        self._blobs: Dict[str, bytes] = {}
        self._blob_bytes = 0
        # The clean check's caches, each keyed by the stat of the files it came from.
        self._index: Tuple[object, Optional[GitIndex]] = (None, None)
        self._settings_cache: Tuple[object, Optional["_CleanSettings"]] = (None, None)
        self._config_files: Optional[List[str]] = None
        self._common: Optional[str] = None
        self._tracked_cache: Dict[int, Tuple[Entries, List[str]]] = {}
        self._settled = threading.local()  # value: settings fixed for one_look_at_settings()
        # (directory, HEAD) -> (signatures, the index they came from), a few directories
        self._trusted_cache: Dict[Tuple[str, str], Tuple[Dict[str, Dict[str, tuple]], GitIndex]] = {}

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
        """The blob entry at ``path`` in commit ``sha`` (None if absent or a directory).
        Remembered for a full commit id, whose tree never changes (an abbreviated one may
        become ambiguous)."""
        key = (sha, path)
        found = self._entry_cache.get(key, _MISSING)
        if found is not _MISSING:
            return found  # type: ignore[return-value]
        with self._lock:
            tree = self._commit_tree(sha)
            try:
                obj = tree[path]
            except KeyError:
                found = None
            else:
                found = None if obj.filemode == MODE_TREE else Entry(str(obj.id), int(obj.filemode))
        if len(sha) in (40, 64) and not sha.strip("0123456789abcdef"):
            if len(self._entry_cache) >= 4096:
                self._entry_cache.clear()
            self._entry_cache[key] = found
        return found

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
                read_header = getattr(self._repo.odb, "read_header", None)
                if read_header is None:
                    # pygit2 before 1.19 (the newest for Python 3.10 is 1.18) has no
                    # header read: the object's own size (libgit2 reads it whole).
                    obj = self._repo.get(oid)
                    if not isinstance(obj, pygit2.Blob):
                        return None
                    return int(obj.size)
                kind, size = read_header(pygit2.Oid(hex=oid))
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
        """Files below ``directory`` whose work-tree state differs from HEAD, sorted.

        The paths of :meth:`dirty_files` (see there for what counts and why).  ``head``:
        HEAD's commit when the caller has just read it (None before the first commit), so
        that it is not resolved twice.
        """
        return [item.path for item in self.dirty_files(directory, head)]

    def dirty_files(self, directory: str, head: "str | None | object" = _READ_HEAD,
                    ignored: Optional[List[str]] = None) -> List[DirtyFile]:
        """Files below ``directory`` that differ from HEAD as git compares them, with why.

        Untracked (and not ignored), modified, mode-changed and deleted files count; a
        rename shows as its two halves.  Files are compared as git does: after its clean
        filters, ``working-tree-encoding``, line-ending conversion (``core.autocrlf``,
        ``text``, ``eol``) and ``ident``, with ``core.fileMode`` and ``core.symlinks``
        honoured; like git, a size other than the one the index recorded for HEAD's blob
        is a change.  Bytecode caches
        never count, tracked or not.  Stricter than git: a file marked
        ``--assume-unchanged`` or ``--skip-worktree`` counts when it differs (reasons
        ``assume-unchanged``, ``skip-worktree``).  A directory inside a submodule gives
        one item, the submodule's path, with reason ``submodule``.

        Costs O(files in the directory), one lstat each in the common case: a file whose
        stat data match its index entry (as git compares them, and not racily clean)
        and whose indexed id is HEAD's is clean without being read (git's stat cache).
        Before the first commit every file counts.

        ``ignored``: a list that gets what the walk passed over because git ignores it,
        at no extra cost: untracked ignored files, and ignored directories it did not
        enter (with a trailing ``/``), for callers that look for generated modules.
        """
        if head is _READ_HEAD:
            head = self.head_sha()
        expected: Entries = {}
        index = self._current_index()
        if head is not None:
            found = self.entries(head, directory)
            if found is None:
                submodule = self._submodule_above(head, directory, index)
                if submodule is not None:
                    return [DirtyFile(submodule, "submodule")]
            expected = found or {}
        link = self._link_on_the_way(directory)
        if link is not None:
            # git never follows a symlink to a directory (has_symlink_leading_path): every
            # tracked file below it is deleted, and the link itself an untracked file.
            dirty = [DirtyFile(path, "deleted") for path in self._tracked_files(expected)]
            if link == directory.strip("/") and not self.is_ignored(link):
                dirty.append(DirtyFile(link, "new"))
            return sorted(dirty, key=lambda item: item.path)
        indexed: Dict[str, IndexEntry] = index.entries_under(directory) if index is not None else {}
        trusted = self._trusted_signatures(directory, head, expected, index)
        base = os.path.join(self.root, directory)
        dirty: List[DirtyFile] = []
        misses: List[Tuple[str, str, os.stat_result, Entry, Optional[IndexEntry]]] = []
        seen = set()
        gitlinks = {p for p, e in expected.items() if e.mode == MODE_GITLINK}
        tracked_dirs: List[Optional[set]] = [None]

        def pruned(relpath: str) -> bool:
            # An ignored directory is skipped, unless it holds tracked files (git add -f).
            if not self.is_ignored(relpath + "/"):
                return False
            if tracked_dirs[0] is None:
                tracked_dirs[0] = {p.rsplit("/", i)[0] for p in expected for i in range(1, p.count("/") + 1)}
            if relpath in tracked_dirs[0]:
                return False
            if ignored is not None and relpath + "/" not in ignored:  # walked twice when files are gone
                ignored.append(relpath + "/")
            return True

        hits = 0  # files the stat cache proves clean (not put in `seen`: the hot loop)
        no_signatures: Dict[str, tuple] = {}
        for rel, where, items in _walk_files(base, directory, gitlinks, pruned):
            signatures = trusted.get(rel, no_signatures)
            for item in items:
                name = item.name
                signature = signatures.get(name)
                st = None
                if signature is not None:
                    st = item.stat(follow_symlinks=False)
                    if signature == (
                        st.st_mode & 0o170100, st.st_size, st.st_mtime_ns, st.st_ctime_ns,
                        st.st_ino & 0xFFFFFFFF, st.st_uid, st.st_gid,
                    ):
                        hits += 1
                        continue  # git's stat cache: unchanged since git hashed it
                relpath = rel + name
                seen.add(relpath)
                entry = expected.get(relpath)
                if entry is None:
                    if not self.is_ignored(relpath):
                        dirty.append(DirtyFile(relpath, "new"))
                    elif ignored is not None:
                        ignored.append(relpath)
                    continue
                if entry.mode == MODE_GITLINK:
                    continue
                if st is None:
                    st = item.stat(follow_symlinks=False)
                misses.append((relpath, os.path.join(where, name), st, entry, indexed.get(relpath)))
        if misses:
            settings = self._clean_settings()
            convert = settings.autocrlf or self._attributes_may_apply(directory, seen, expected, index, settings)
            for relpath, full, st, entry, cached in misses:
                reason = self._compare(relpath, full, st, entry, cached, settings, convert, index)
                if reason is not None:
                    dirty.append(DirtyFile(relpath, reason))
        wanted = self._tracked_files(expected)
        if hits + sum(1 for p in seen if p in expected) < len(wanted):
            # Something tracked is gone: list what is there (names only, no stat) to say what.
            present = {rel + item.name for rel, _, items in _walk_files(base, directory, gitlinks, pruned) for item in items}
            for path in wanted:
                if path in present:
                    continue
                cached = indexed.get(path)
                reason = "deleted"
                if cached is not None and cached.skip_worktree:
                    reason = "skip-worktree"
                elif cached is not None and cached.assume_unchanged:
                    reason = "assume-unchanged"
                dirty.append(DirtyFile(path, reason))
        dirty.sort(key=lambda item: item.path)
        return dirty

    # -- the clean check's parts ---------------------------------------------------------

    def _link_on_the_way(self, directory: str) -> Optional[str]:
        """The first of ``directory`` and its parents (repository paths) that is a symlink
        or a file, if any: git sees nothing below it."""
        return first_non_directory(str(self.root), [p for p in directory.split("/") if p and p != "."])

    def _tracked_files(self, expected: Entries) -> List[str]:
        """HEAD's paths below a directory that must be on disk (bytecode caches need not),
        remembered for the last tree (``entries`` returns the same dict for it)."""
        cached = self._tracked_cache.get(id(expected))
        if cached is not None and cached[0] is expected:
            return cached[1]
        wanted = [p for p in expected if not is_bytecode_cache(p)]
        if len(self._tracked_cache) >= 64:
            self._tracked_cache.clear()
        self._tracked_cache[id(expected)] = (expected, wanted)  # holding `expected` keeps its id
        return wanted

    def _trusted_signatures(
        self, directory: str, head: Optional[str], expected: Entries, index: Optional[GitIndex]
    ) -> Dict[str, Dict[str, tuple]]:
        """``{directory prefix: {file name: stat signature}}`` of the regular files whose
        index entry is HEAD's, is
        not racily clean, and carries no assume-unchanged/skip-worktree mark: a file whose
        lstat gives that signature (type and owner exec bit, size, mtime, ctime, inode's
        low 32 bits as the index keeps them, uid, gid: all that git compares, to the
        nanosecond) is clean without a read.
        Cached per directory, HEAD and index, so the common check is one lstat and a tuple compare
        per file; anything else takes the exact path (:meth:`_compare`)."""
        if index is None or head is None:
            return {}
        key = (directory, head)
        cached = self._trusted_cache.get(key)
        if cached is not None and cached[1] is index:
            return cached[0]
        out: Dict[str, Dict[str, tuple]] = {}
        for path, item in index.entries_under(directory).items():
            entry = expected.get(path)
            if (
                entry is None
                or item.oid != entry.oid
                or item.mode != entry.mode
                or entry.mode not in (MODE_BLOB, MODE_EXEC)
                or item.flags & 0x8000
                or item.xflags
                or is_racy(item, index.timestamp_ns)
                or (item.size == 0 and item.oid != EMPTY_BLOB_SHA1)
            ):
                continue
            parent, _, name = path.rpartition("/")
            out.setdefault(parent + "/" if parent else "", {})[name] = (
                item.mode & 0o170100, item.size, item.mtime_s * 1_000_000_000 + item.mtime_ns,
                item.ctime_s * 1_000_000_000 + item.ctime_ns, item.ino, item.uid, item.gid,
            )
        if len(self._trusted_cache) >= 64:
            self._trusted_cache.clear()
        self._trusted_cache[key] = (out, index)
        return out

    def _current_index(self) -> Optional[GitIndex]:
        """The parsed index, re-read only when the file changed; None when it is absent
        or not parseable (then every file is compared by content)."""
        path = os.path.join(self.git_dir, "index")
        try:
            key: object = stat_key(os.stat(path))
        except FileNotFoundError:
            key = None
        cached_key, cached = self._index
        if key == cached_key and cached_key is not None:
            return cached
        if key is None:
            self._index = (None, None)
            return None
        try:
            parsed, st = read_index(path)
        except (OSError, IndexFormatError) as exc:
            _log.debug("not using the stat cache of %s: %s", path, exc)
            parsed, st = None, None
            self._index = (key, None)
            return None
        self._index = (stat_key(st) if st is not None else None, parsed)
        return parsed

    def _submodule_above(self, head: str, directory: str, index: Optional[GitIndex]) -> Optional[str]:
        """The gitlink (submodule) at or above ``directory`` in HEAD or the index, if any."""
        parts = [p for p in directory.split("/") if p]
        for i in range(1, len(parts) + 1):
            path = "/".join(parts[:i])
            found = self.entry(head, path)
            if found is not None and found.is_gitlink:
                return path
            indexed = index.get(path) if index is not None else None
            if indexed is not None and indexed.mode == MODE_GITLINK:
                return path
        return None

    def _config_paths(self) -> List[str]:
        """The configuration files libgit2 reads (their stats key the settings cache)."""
        if self._config_files is None:
            paths = [os.path.join(self.git_dir, "config"), os.path.join(self.git_dir, "config.worktree")]
            common = self._common_dir()
            if common != str(self.git_dir):
                paths.append(os.path.join(common, "config"))
            for level, name in ((4, ".gitconfig"), (3, "config"), (2, "gitconfig")):  # global, XDG, system
                try:
                    dirs = str(pygit2.settings.search_path[level])
                except (ValueError, KeyError, IndexError, pygit2.GitError):
                    continue
                paths.extend(os.path.join(d, name) for d in dirs.split(os.pathsep) if d)
            self._config_files = paths
        return self._config_files

    def _common_dir(self) -> str:
        """The repository's common directory (a linked worktree's is the main one's)."""
        if self._common is None:
            try:
                with open(os.path.join(self.git_dir, "commondir"), encoding="utf-8") as fh:
                    self._common = os.path.realpath(os.path.join(self.git_dir, fh.read().strip()))
            except OSError:
                self._common = str(self.git_dir)
        return self._common

    def _attribute_files(self, attributes_file: Optional[str]) -> List[str]:
        """The gitattributes files outside the work tree: info/attributes, the global
        one (core.attributesFile, or git/attributes under XDG_CONFIG_HOME or ~/.config)
        and the system one."""
        paths = [os.path.join(self._common_dir(), "info", "attributes")]
        if attributes_file:
            paths.append(os.path.expanduser(attributes_file))
        else:
            xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
            paths.append(os.path.join(xdg, "git", "attributes"))
        try:
            system = str(pygit2.settings.search_path[2])
            paths.extend(os.path.join(d, "gitattributes") for d in system.split(os.pathsep) if d)
        except (ValueError, KeyError, IndexError, pygit2.GitError):
            pass
        return paths

    @contextlib.contextmanager
    def one_look_at_settings(self) -> Iterator[None]:
        """Within the block (in this thread), git's configuration and the gitattributes
        files outside the work tree are looked at once, not at each use: a checkout load
        needs them for its clean check, its writes and its index refresh, a few
        milliseconds apart (each look stats about eight files)."""
        outer = getattr(self._settled, "value", _MISSING)
        self._settled.value = None
        try:
            yield
        finally:
            self._settled.value = outer

    def _clean_settings(self) -> "_CleanSettings":
        """git configuration the clean check needs, re-read when a config file changed."""
        settled = getattr(self._settled, "value", _MISSING)
        if settled is not _MISSING:
            if settled is None:
                settled = self._settled.value = self._read_clean_settings()
            return settled  # type: ignore[return-value]
        return self._read_clean_settings()

    def _read_clean_settings(self) -> "_CleanSettings":
        cached_key, cached = self._settings_cache
        watched = self._config_paths() + (cached.attribute_files if cached is not None else [])
        key = []
        for path in watched:
            try:
                key.append(stat_key(os.stat(path)))
            except OSError:
                key.append(None)
        if cached is not None and cached_key == key:
            return cached
        with self._lock:
            snapshot = self._repo.config_snapshot
            autocrlf_text = _config_str(snapshot, "core.autocrlf")
            autocrlf: Union[bool, str] = (
                "input" if autocrlf_text is not None and autocrlf_text.lower() == "input"
                else _config_bool(snapshot, "core.autocrlf", False)
            )
            attributes_file = _config_str(snapshot, "core.attributesfile")
            attribute_files = self._attribute_files(attributes_file)
            settings = _CleanSettings(
                policy=StatPolicy(
                    trust_ctime=_config_bool(snapshot, "core.trustctime", True),
                    check_stat_minimal=(_config_str(snapshot, "core.checkstat") or "").lower() == "minimal",
                    file_mode=_config_bool(snapshot, "core.filemode", True),
                    symlinks=_config_bool(snapshot, "core.symlinks", True),
                ),
                autocrlf=autocrlf,
                attribute_files=attribute_files,
                outside_attributes=any(os.path.exists(p) for p in attribute_files),
                snapshot=snapshot,
            )
        # The key was taken before the snapshot (a change after it shows next time); when
        # the watched attribute files changed (core.attributesFile did), take a new one.
        same_files = cached is not None and cached.attribute_files == attribute_files
        self._settings_cache = (key if same_files else None, settings)
        return settings

    def _attributes_may_apply(
        self, directory: str, seen, expected: Entries, index: Optional[GitIndex], settings: "_CleanSettings",
        below: "Iterable[str]" = (),
    ) -> bool:
        """Whether any gitattributes file could give a path below ``directory``
        attributes: a ``.gitattributes`` above it or in it (or in the directories
        ``below`` it, which the caller's walk did not see), among ``seen`` or
        ``expected``, ``info/attributes``, the global or the system file.  When none can,
        files are hashed as they are."""
        parts = [p for p in directory.split("/") if p]
        candidates = {"/".join(parts[:i] + [".gitattributes"]) for i in range(len(parts) + 1)}
        candidates.update(f"{d}/.gitattributes" for d in below if d)
        for rel in candidates:
            if os.path.lexists(os.path.join(self.root, rel)):
                return True
        if any(p == ".gitattributes" or p.endswith("/.gitattributes") for p in seen):
            return True
        if any(p.endswith("/.gitattributes") for p in expected):
            return True
        if index is not None and any(index.get(rel) for rel in candidates):
            return True
        return settings.outside_attributes

    def _compare(
        self,
        relpath: str,
        full: str,
        st: os.stat_result,
        entry: Entry,
        cached: Optional[IndexEntry],
        settings: "_CleanSettings",
        convert: bool,
        index: Optional[GitIndex],
    ) -> Optional[str]:
        """Why the work-tree file differs from HEAD's ``entry`` as git compares them, or
        None when it does not."""
        reason = self._compare_exact(relpath, full, st, entry, cached, settings, convert, index)
        if reason is not None and cached is not None:
            if cached.skip_worktree:
                return "skip-worktree"
            if cached.assume_unchanged:
                return "assume-unchanged"
        return reason

    def _compare_exact(self, relpath, full, st, entry: Entry, cached, settings, convert, index) -> Optional[str]:
        policy: StatPolicy = settings.policy
        # The index entry is HEAD's and git trusts it (no assume-unchanged/skip-worktree).
        usable = (
            cached is not None
            and cached.oid == entry.oid
            and cached.mode == entry.mode
            and not cached.flags & 0x8000
            and not cached.xflags
        )
        if entry.is_link:
            if stat.S_ISLNK(st.st_mode):
                data = os.fsencode(os.readlink(full))
            elif stat.S_ISREG(st.st_mode) and not policy.symlinks:
                with open(full, "rb") as fh:  # core.symlinks=false: a file holding the target
                    data = fh.read()
            else:
                return "type"
            return None if str(pygit2.hash(data)) == entry.oid else "modified"
        if not stat.S_ISREG(st.st_mode):
            return "type"
        mode_changed = policy.file_mode and bool(st.st_mode & stat.S_IXUSR) != (entry.mode == MODE_EXEC)
        if usable and cached.size != 0 and cached.size != st.st_size & 0xFFFFFFFF:
            # git (read-cache.c, ie_modified): a size other than the one the index recorded
            # is a change, without reading the file, even where a conversion would make
            # the contents equal (say CRLF written over an LF checkout); `git add` of the
            # file refreshes the recorded size, and the file is then clean for both.
            return "modified"
        if not (
            usable
            and index is not None
            and not is_racy(cached, index.timestamp_ns)
            and stat_matches(cached, st, policy)
        ):
            same = self._content_equal(relpath, full, entry, cached, settings, convert)
            if same is None:
                return "filter-error"
            if not same:
                return "modified"
        return "mode" if mode_changed else None

    def _content_equal(self, relpath, full, entry: Entry, cached, settings, convert) -> Optional[bool]:
        """Whether the file, converted as ``git add`` would, is HEAD's blob (None: its
        required clean filter failed)."""
        if not convert:
            return str(pygit2.hashfile(full)) == entry.oid
        attrs = self._conversion_attributes(relpath)
        action = crlf_action(attrs["text"], attrs["crlf"], attrs["eol"], settings.autocrlf)
        driver = attrs["filter"] if isinstance(attrs["filter"], str) else None
        ident = attrs["ident"] is True
        encoding = attrs["working-tree-encoding"] if isinstance(attrs["working-tree-encoding"], str) else None
        if action is Crlf.BINARY and not ident and driver is None and encoding is None:
            return str(pygit2.hashfile(full)) == entry.oid
        with open(full, "rb") as fh:
            data = fh.read()
        if driver is not None:
            filtered = self._clean_filter(relpath, data, driver, settings)
            if filtered is None:
                return None
            data = filtered
        if encoding is not None:
            reencoded = to_utf8(data, encoding)
            if reencoded is not None:  # else git compares it unconverted (and refuses to add it)
                data = reencoded
        indexed_oid = cached.oid if cached is not None else entry.oid
        data = crlf_to_git(data, action, lambda: indexed_text_has_crlf(self.blob(indexed_oid)))
        if ident:
            data = ident_to_git(data)
        return str(pygit2.hash(data)) == entry.oid

    _ATTRIBUTES = ("text", "crlf", "eol", "ident", "filter", "working-tree-encoding")

    def _conversion_attributes(self, relpath: str) -> Dict[str, object]:
        with self._lock:
            return {name: self._repo.get_attr(relpath, name) for name in self._ATTRIBUTES}

    def _clean_filter(self, relpath: str, data: bytes, driver: str, settings: "_CleanSettings") -> Optional[bytes]:
        """``data`` through the driver's ``filter.<driver>.clean`` command, run as git runs
        it (by the shell, in the work tree, ``%f`` the quoted path).  A driver without a
        clean command passes data through; a failing command too, unless the driver is
        ``required`` (then None: git would refuse the file)."""
        snapshot = settings.snapshot
        command = _config_str(snapshot, f"filter.{driver}.clean")
        required = _config_bool(snapshot, f"filter.{driver}.required", False)
        if command is None:
            if _config_str(snapshot, f"filter.{driver}.process") is not None:
                _log.warning(
                    "filter %r of %s has only a long-running 'process' command, which zgit does "
                    "not run; the file counts as changed", driver, relpath,
                )
                return None
            return None if required else data
        command = _expand_filter_command(command, relpath)
        try:
            done = subprocess.run(
                command, shell=True, cwd=str(self.root), input=data,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )
        except OSError as exc:
            _log.warning("clean filter %r failed on %s: %s", driver, relpath, exc)
            return None if required else data
        if done.returncode != 0:
            _log.warning("clean filter %r failed on %s (exit %d)", driver, relpath, done.returncode)
            return None if required else data
        return done.stdout

    # -- what a checkout writes, and the index after it (zgit/loader/checkout.py) --------

    def worktree_bytes(self, oid: str, relpath: str) -> bytes:
        """The bytes ``git checkout`` writes for blob ``oid`` at ``relpath``.

        libgit2's built-in filters (``core.autocrlf``, ``eol``/``text``, ``ident``) are
        applied as for a checkout, then the smudge command of the path's ``filter``
        attribute (``filter.<name>.smudge``), run as git runs it.  Without any filter this
        is the blob itself.  Raises :class:`ZgitError` when a ``required`` filter fails.
        """
        data = self.blob(oid)
        with self._lock:
            load_filters = getattr(self._repo, "load_filter_list", None)
            try:
                # Attributes first: libgit2 reads them from the index too, and refuses a
                # damaged one here, in this thread (BlobIO, below, filters in a thread of
                # its own, and pygit2 before 1.19 then waits for it forever).
                driver = self._filter_driver(relpath)
                if load_filters is None:
                    # pygit2 before 1.19 (the newest for Python 3.10 is 1.18) cannot say which
                    # filters apply: BlobIO applies whichever do (none: the blob's own bytes).
                    filtered = True
                else:
                    filters = load_filters(relpath, pygit2.enums.FilterMode.TO_WORKTREE)
                    filtered = filters is not None and len(filters) > 0
                if filtered:
                    # BlobIO, not FilterList.apply_to_buffer: the latter stops at the first NUL.
                    with pygit2.BlobIO(self._repo[pygit2.Oid(hex=oid)], as_path=relpath) as stream:
                        data = stream.read()
            except pygit2.GitError as exc:  # attributes are read from the index too
                raise ZgitError(
                    f"cannot tell how git writes {relpath} ({exc}); 'git fsck' says whether the "
                    "repository or its index is damaged ('rm .git/index; git reset' rebuilds the "
                    "index), or load with strategy='memory'"
                ) from exc
        if driver is None:
            return data
        name, command, required = driver
        return _run_filter(name, command, required, data, relpath, str(self.root))

    def writes_blobs_as_they_are(self, directory: str, paths: "Iterable[str]") -> bool:
        """True when ``git checkout`` writes the blobs of ``paths`` (below ``directory``)
        byte for byte, so that :meth:`worktree_bytes` is the blob itself: no
        ``core.autocrlf`` and no gitattributes file that could give them attributes (in
        the work tree, among ``paths``, in the index, ``info/attributes``, the global or
        the system file), hence no line-ending conversion, ``ident``,
        ``working-tree-encoding`` or filter driver.  False (ask libgit2 per file) when in
        doubt."""
        settings = self._clean_settings()
        if settings.autocrlf:
            return False
        listed = dict.fromkeys(paths)
        below = {p.rpartition("/")[0] for p in listed}
        return not self._attributes_may_apply(directory, listed, listed, self._current_index(), settings, below)

    def _filter_driver(self, relpath: str) -> "Tuple[str, str, bool] | None":
        """(name, smudge command, required) of the path's external filter driver, if any."""
        name = self._repo.get_attr(relpath, "filter")
        if not isinstance(name, str) or not name:
            return None
        config = self._repo.config
        key = f"filter.{name}.smudge"
        command = config[key] if key in config else None
        required_key = f"filter.{name}.required"
        required = required_key in config and config.get_bool(required_key)
        if not command:
            if required:
                raise ZgitError(
                    f"{relpath}: filter {name!r} is required but has no smudge command; configure "
                    f"filter.{name}.smudge as git needs it, or load with strategy='memory'"
                )
            return None
        return name, str(command), bool(required)

    def refresh_index_stat(self, expected: Dict[str, str]) -> List[str]:
        """Refresh the index's stat data of work-tree files zgit put back (``{path: blob id}``).

        The files are the user's own, moved back after a checkout: the same inode, mtime and
        content as before it, when the module directory was clean, so their content as git
        hashes it is HEAD's blob.  Only entries whose id is that blob id are touched, and
        only their stat data changes (the move changed each file's ctime): ``git diff-index
        HEAD`` then agrees with ``git status`` as before the load.  Nothing is re-hashed
        where libgit2 lets the entry be updated as it is; elsewhere the file is hashed
        through libgit2's filters and kept only when that gives the same id.  Returns the
        paths refreshed.  Never raises for a busy index (another git holds ``index.lock``):
        that is logged, and git refreshes the entries itself later.
        """
        if not expected:
            return []
        with self._lock:
            refreshed = self._refresh_parsed_index(expected)
            if refreshed is not None:
                return refreshed
            try:
                index = self._repo.index
                index.read(False)
                wanted = [p for p, oid in expected.items() if _index_id(index, p) == oid]
                if not wanted:
                    return []
                hashed = [p for p in wanted if not _restat_entry(index, p, os.path.join(self.root, p))]
                for path in hashed:
                    index.add(path)  # restats the file and hashes it through libgit2's filters
                bad = [p for p in hashed if _index_id(index, p) != expected[p]]
                if bad:
                    index.read(True)  # undo what add() did; keep only what is known good
                    good = [p for p in wanted if p not in bad]
                    for path in good:
                        if not _restat_entry(index, path, os.path.join(self.root, path)):
                            index.add(path)
                else:
                    good = wanted
                if good:
                    index.write()
                return good
            except (pygit2.GitError, OSError, ValueError) as exc:
                _log.warning("could not refresh the index after a checkout (%s); git status will", exc)
                return []

    def _refresh_parsed_index(self, expected: Dict[str, str]) -> Optional[List[str]]:
        """:meth:`refresh_index_stat` by rewriting only the stat data of those entries in
        the index file zgit has parsed (:meth:`GitIndex.with_stat`) and writing it as git
        does (``index.lock``, then a rename); the parse stays cached for the next clean
        check.  Costs one write of the index and a hash of its bytes from the first
        changed entry on, where libgit2 parses and re-serializes every entry.

        Entries that may be racily clean are read first, as git reads them before it
        writes an index (:meth:`_racily_changed`).  None (the caller takes libgit2's way)
        where libgit2 does better: no usable parse, more than 64 racy entries to read, a
        symlinked index, or an index another writer replaced meanwhile.
        """
        path = os.path.join(self.git_dir, "index")
        index = self._current_index()
        if index is None:
            return None
        stats: Dict[str, os.stat_result] = {}
        for relpath, oid in expected.items():
            entry = index.get(relpath)
            if entry is None or entry.oid != oid:
                continue
            try:
                st = os.lstat(os.path.join(self.root, relpath))
            except OSError:
                continue
            if (entry.mode & 0o170000 == stat.S_IFLNK) != stat.S_ISLNK(st.st_mode):
                continue
            stats[relpath] = st
        if not stats:
            return []
        smudge = self._racily_changed([(p, e) for p, e in index.racy_entries() if p not in stats])
        if smudge is None:
            _log.debug("refreshing the index through libgit2: many entries may be racily clean")
            return None
        try:
            refreshed = index.with_stat(stats, smudge)
        except IndexChecksumError:
            _log.warning("not refreshing the index after a checkout: its checksum does not match "
                         "its content (damaged?); 'git fsck' tells more")
            return []
        except IndexFormatError as exc:
            _log.debug("refreshing the index through libgit2: %s", exc)
            return None
        lock_path = path + ".lock"
        try:
            fd = os.open(lock_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            _log.info("the index is locked by another git process (%s); git refreshes the "
                      "entries zgit put back itself later", lock_path)
            return []
        except OSError as exc:
            _log.warning("could not refresh the index after a checkout (%s); git status will", exc)
            return []
        renamed = False
        try:
            # Holding index.lock, the index can only change through us: it must still be
            # the file that was parsed, or the rewrite would undo another writer's work.
            old = os.lstat(path)
            if not stat.S_ISREG(old.st_mode):
                return None  # a symlinked index: git writes through it, and so does libgit2
            if stat_key(old) != self._index[0]:
                return None
            view = memoryview(refreshed.data)
            while view:
                view = view[os.write(fd, view):]
            os.fchmod(fd, stat.S_IMODE(old.st_mode))  # the index's own mode, not the umask's
            os.rename(lock_path, path)
            renamed = True
            written = os.fstat(fd)  # this inode, whatever replaces the file later
        except OSError as exc:
            _log.warning("could not refresh the index after a checkout (%s); git status will", exc)
            return []
        finally:
            os.close(fd)
            if not renamed:
                with contextlib.suppress(OSError):
                    os.unlink(lock_path)
        refreshed.timestamp_ns = written.st_mtime_ns
        self._index = (stat_key(written), refreshed)
        return list(stats)

    def _racily_changed(self, racy: List[Tuple[str, IndexEntry]], limit: int = 64) -> Optional[List[str]]:
        """Of index entries that may be racily clean, those whose file git would mark
        before writing the index again (read-cache.c, ce_smudge_racily_clean_entry): the
        stat data still match, the content does not.  None when there are more than
        ``limit`` to read (the caller lets libgit2 do it)."""
        if len(racy) > limit:
            return None
        changed: List[str] = []
        if not racy:
            return changed
        settings = self._clean_settings()
        for relpath, cached in racy:
            full = os.path.join(self.root, relpath)
            try:
                st = os.lstat(full)
            except OSError:
                continue  # gone: the stat data do not match, git sees it without help
            if not stat_matches(cached, st, settings.policy):
                continue
            entry = Entry(cached.oid, cached.mode)
            if stat.S_ISLNK(st.st_mode):
                same = _link_is(full, cached.oid)
            else:
                same = bool(self._content_equal(relpath, full, entry, cached, settings, True))
            if not same:
                changed.append(relpath)
        return changed

    # -- read-only helpers for the command line (zgit/cli.py) ----------------------------

    def expand_commit(self, rev: str) -> str:
        """Like :meth:`resolve_commit`, but says so when a short sha is ambiguous."""
        with self._lock:
            try:
                self._repo.revparse_single(rev)
            except ValueError as exc:
                # pygit2.AmbiguousError (a ValueError) since pygit2 1.19; the pygit2 that
                # Python 3.10 gets (1.18) raises a plain ValueError saying "ambiguous"
                if isinstance(exc, getattr(pygit2, "AmbiguousError", ())) or "ambiguous" in str(exc):
                    raise PinNotFoundError(
                        f"{rev!r} is ambiguous in the repository at {self.root}: more than one "
                        "object id starts with it; give more hex digits"
                    ) from exc
            except (KeyError, pygit2.GitError):
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

def _restat_entry(index: "pygit2.Index", path: str, full: str) -> bool:
    """Give the index entry at ``path`` the stat data of the file ``full``, keeping its id,
    mode and flags (libgit2's ``git_index_add`` with a copy of the entry); False where
    pygit2's C layer does not offer that, so the caller hashes the file instead."""
    try:
        from pygit2.ffi import C, ffi  # pygit2's own cffi binding of libgit2
        handle = index._index
        get_bypath, add = C.git_index_get_bypath, C.git_index_add
    except (ImportError, AttributeError):  # another pygit2 than 1.14-1.21's layout
        return False
    st = os.lstat(full)
    encoded = os.fsencode(path)
    current = get_bypath(handle, encoded, 0)
    if current == ffi.NULL:
        return False
    entry = ffi.new("git_index_entry *")
    ffi.buffer(entry)[:] = ffi.buffer(current)[:]
    name = ffi.new("char[]", encoded)
    entry.path = name
    entry.ctime.seconds = st.st_ctime_ns // 10**9
    entry.ctime.nanoseconds = st.st_ctime_ns % 10**9
    entry.mtime.seconds = st.st_mtime_ns // 10**9
    entry.mtime.nanoseconds = st.st_mtime_ns % 10**9
    entry.dev = st.st_dev & 0xFFFFFFFF
    entry.ino = st.st_ino & 0xFFFFFFFF
    entry.uid = st.st_uid & 0xFFFFFFFF
    entry.gid = st.st_gid & 0xFFFFFFFF
    entry.file_size = st.st_size & 0xFFFFFFFF
    return add(handle, entry) == 0


def _index_id(index: "pygit2.Index", path: str) -> Optional[str]:
    try:
        return str(index[path].id)
    except (KeyError, ValueError):
        return None


def _run_filter(name: str, command: str, required: bool, data: bytes, relpath: str, cwd: str) -> bytes:
    """Run a filter driver's command as git does (``sh -c``, ``%f`` the quoted path)."""
    line = command.replace("%f", shlex.quote(relpath))
    try:
        done = subprocess.run(["sh", "-c", line], input=data, cwd=cwd, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, check=False)
    except OSError as exc:
        failure = str(exc)
    else:
        if done.returncode == 0:
            return done.stdout
        failure = f"exit {done.returncode}: {done.stderr.decode(errors='replace').strip()}"
    if required:
        raise ZgitError(
            f"the smudge filter {name!r} failed for {relpath} ({failure}); fix filter.{name}.smudge "
            "(git checkout fails the same way), or load with strategy='memory'"
        )
    _log.warning("smudge filter %r failed for %s (%s): writing the blob unfiltered, as git does",
                 name, relpath, failure)
    return data


@dataclass(frozen=True)
class _CleanSettings:
    """The git configuration the clean check reads (one consistent snapshot)."""

    policy: StatPolicy
    autocrlf: Union[bool, str]  # False, True or "input"
    attribute_files: List[str]  # gitattributes files outside the work tree ...
    outside_attributes: bool  # ... and whether any exists
    snapshot: object = field(compare=False, repr=False)


def _config_str(config, name: str) -> Optional[str]:
    try:
        value = config[name]
    except (KeyError, ValueError, pygit2.GitError):
        return None
    return value if isinstance(value, str) else None


def _config_bool(config, name: str, default: bool) -> bool:
    try:
        return bool(config.get_bool(name))
    except (KeyError, ValueError, pygit2.GitError):
        return default


def _expand_filter_command(command: str, relpath: str) -> str:
    """git's ``%f`` (the path, shell-quoted) and ``%%`` in a filter command."""
    out: List[str] = []
    i = 0
    while i < len(command):
        ch = command[i]
        if ch == "%" and i + 1 < len(command) and command[i + 1] in "f%":
            out.append(shlex.quote(relpath) if command[i + 1] == "f" else "%")
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def first_non_directory(root: str, parts: "List[str]", start: int = 0) -> Optional[str]:
    """The first of the paths ``parts[:i+1]`` (below ``root``, for i from ``start``) that
    is a symlink or a file rather than a directory, as a repository path; None when there
    is none.  One lstat per level; a missing level ends the look (nothing below it is
    there either).  The first ``start`` levels are taken as directories."""
    current = os.path.join(root, *parts[:start])
    for i in range(start, len(parts)):
        current = os.path.join(current, parts[i])
        try:
            mode = os.lstat(current).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not stat.S_ISDIR(mode):
            return "/".join(parts[: i + 1])
    return None


def _link_is(full: str, oid: str) -> bool:
    """True when the symlink at ``full`` points where blob ``oid`` says (git stores a
    symlink as a blob of its target)."""
    return str(pygit2.hash(os.fsencode(os.readlink(full)))) == oid


def _matches(full: str, st: os.stat_result, entry: Entry) -> bool:
    if stat.S_ISLNK(st.st_mode):
        return entry.is_link and _link_is(full, entry.oid)
    if not stat.S_ISREG(st.st_mode) or entry.is_link:
        return False
    executable = bool(st.st_mode & stat.S_IXUSR)
    if executable != (entry.mode == MODE_EXEC):
        return False
    return str(pygit2.hashfile(full)) == entry.oid


_SCANDIR_FD = os.scandir in os.supports_fd
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)


def _walk_files(base: str, directory: str, gitlinks, pruned) -> Iterator[Tuple[str, str, List["os.DirEntry[str]"]]]:
    """Yield, for every directory below ``base`` (``base`` included), its repository path
    prefix, its full path, and its entries that are files (not bytecode caches) or
    gitlinks; an entry's ``stat(follow_symlinks=False)`` is its lstat, valid until the
    next directory is asked for.  Batches per directory keep the caller's loop over files
    tight.

    Each directory is listed through a descriptor where the platform allows: the lstat
    of each entry then resolves one name, not every component of its full path (a fifth
    less per file in a module directory a few levels deep)."""
    prefix = "" if directory in ("", ".") else directory.rstrip("/") + "/"
    stack = [(base, prefix)]
    while stack:
        current, rel = stack.pop()
        fd = -1
        try:
            if _SCANDIR_FD:
                # below the base only directories that were no symlinks when listed: one
                # that has become a symlink since is not followed
                fd = os.open(current, _DIR_FLAGS if current is base else _DIR_FLAGS | getattr(os, "O_NOFOLLOW", 0))
                scan = os.scandir(fd)
            else:
                scan = os.scandir(current)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            if fd >= 0:
                os.close(fd)
            if exc.errno == errno.ELOOP:  # replaced by a symlink since it was listed
                continue
            raise
        try:
            files = []
            with scan:
                for item in scan:
                    name = item.name
                    if item.is_dir(follow_symlinks=False):
                        relpath = rel + name
                        if name == _CACHE_DIR or name == ".git" or relpath in gitlinks:
                            if relpath in gitlinks:
                                files.append(item)
                            continue
                        if pruned(relpath):
                            continue
                        stack.append((os.path.join(current, name), relpath + "/"))
                    elif not name.endswith(_CACHE_SUFFIXES):
                        files.append(item)
            yield rel, current, files
        finally:
            if fd >= 0:
                os.close(fd)


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
