"""Code bundles: a pinned module directory, shipped with the proof that it is the pin.

A worker of a distributed engine has no repository.  The driver builds, for each git pin
a run needs, a :class:`Bundle` straight from git's objects (never from the work tree):

- the module directory's files at the pin (path, git mode, blob id, bytes);
- the proof: the commit object, and the tree objects from the commit's root tree down to
  the module directory's tree.

:func:`verify` checks it with :mod:`hashlib` alone, as git would: the commit object
hashes to the pin's sha, each tree hashes to the id its parent names for the next path
component, every file hashes to its blob id, and the files rebuild the module
directory's tree id.  So a bundle that verifies holds exactly the module directory of
that commit, whoever built or carried it.  :func:`install` verifies, then makes
``<package>@<sha>`` importable from the bundle's bytes (see :mod:`zgit.loader.importer`).

The same pin always gives the same bytes (:meth:`Bundle.to_bytes`): nothing in a bundle
depends on the machine, the clock or the work tree.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import re
import sys
import threading
import types
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Dict, List, Optional, Tuple

from zgit.errors import BundleError

MAGIC = b"zgit-bundle 1\n"

MODE_TREE = 0o040000
#: The file modes a git tree can hold below a directory (blob, executable, link, submodule).
FILE_MODES = (0o100644, 0o100755, 0o120000, 0o160000)
MODE_GITLINK = 0o160000

_SHA = re.compile(r"[0-9a-f]{40}\Z")

#: Where the virtual ``__file__`` paths of installed bundles live (exists on no disk).
BUNDLE_ROOT = "<zgit-bundle>"


@dataclass(frozen=True)
class BundleFile:
    """One file of the module directory at the pin.  ``path`` is relative to the module
    directory; a submodule (``mode`` 160000) has no bytes, only its commit id as ``oid``."""

    path: str
    mode: int
    oid: str
    data: bytes


@dataclass(frozen=True)
class Bundle:
    """The module directory ``module_dir`` (package ``package``) at commit ``sha``, with
    its proof.  ``key`` is the pin it claims, ``<package>@<sha>``."""

    key: str
    sha: str
    module_dir: str
    package: str
    commit: bytes
    trees: Tuple[bytes, ...]
    files: Tuple[BundleFile, ...]

    def manifest(self) -> Dict[str, Any]:
        """What the bundle holds, as plain data (the header of :meth:`to_bytes`)."""
        return {
            "key": self.key,
            "sha": self.sha,
            "module_dir": self.module_dir,
            "package": self.package,
            "commit": len(self.commit),
            "trees": [len(t) for t in self.trees],
            "files": [[f.path, f"{f.mode:o}", f.oid, len(f.data)] for f in self.files],
        }

    def to_bytes(self) -> bytes:
        """The bundle as bytes: a magic line, the manifest as one line of JSON, then the
        commit, tree and file bytes in manifest order.  Same pin, same bytes."""
        header = json.dumps(self.manifest(), sort_keys=True, separators=(",", ":")).encode("utf-8")
        return b"".join([MAGIC, header, b"\n", self.commit, *self.trees, *(f.data for f in self.files)])

    @classmethod
    def from_bytes(cls, data: bytes) -> "Bundle":
        """Parse :meth:`to_bytes` output (does not verify: see :func:`verify`).
        :class:`BundleError` when the bytes are not a whole bundle."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise BundleError(f"a bundle is bytes, not {type(data).__name__}")
        data = bytes(data)
        if not data.startswith(MAGIC):
            raise BundleError("these bytes are not a zgit bundle (no 'zgit-bundle 1' header); rebuild it")
        end = data.find(b"\n", len(MAGIC))
        try:
            manifest = json.loads(data[len(MAGIC):end].decode("utf-8")) if end >= 0 else None
            key, sha = str(manifest["key"]), str(manifest["sha"])
            module_dir, package = str(manifest["module_dir"]), str(manifest["package"])
            sizes = [int(manifest["commit"]), *(int(n) for n in manifest["trees"])]
            rows = [(str(p), int(m, 8), str(o), int(n)) for p, m, o, n in manifest["files"]]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BundleError(f"the manifest of a bundle does not parse ({exc}); rebuild the bundle") from None
        pos = end + 1
        chunks: List[bytes] = []
        for size in sizes + [n for _, _, _, n in rows]:
            if size < 0 or pos + size > len(data):
                raise BundleError(f"bundle {key} is truncated: rebuild it and send it again")
            chunks.append(data[pos:pos + size])
            pos += size
        if pos != len(data):
            raise BundleError(f"bundle {key} has {len(data) - pos} bytes its manifest does not list; "
                              "it was altered: rebuild it")
        trees = tuple(chunks[1:len(sizes)])
        files = tuple(BundleFile(p, m, o, d) for (p, m, o, _), d in zip(rows, chunks[len(sizes):]))
        return cls(key, sha, module_dir, package, chunks[0], trees, files)


# -- building (driver side) -----------------------------------------------------------------


def build(git: Any, sha: str, module_dir: str, package: str) -> Bundle:
    """The bundle of module directory ``module_dir`` (package ``package``) at commit
    ``sha`` of ``git`` (a :class:`zgit.gitrepo.GitRepo`), read from git's objects only.

    :class:`BundleError` when the directory is not there at that commit.
    """
    key = f"{package}@{sha}"
    kind, commit = git.raw_object(sha)
    if kind != "commit":
        raise BundleError(f"bundle {key}: {sha} is a {kind}, not a commit; a pin names a commit")
    parts = [p for p in module_dir.split("/") if p]
    trees: List[bytes] = []
    for depth in range(len(parts) + 1):
        tree_id = git.tree_id(sha, "/".join(parts[:depth]))
        if tree_id is None:
            raise BundleError(f"bundle {key}: directory {module_dir!r} does not exist at commit {sha}; "
                              "check the pin")
        trees.append(git.raw_object(tree_id)[1])
    entries = git.entries(sha, module_dir) or {}
    prefix = "/".join(parts) + "/" if parts else ""
    files = tuple(
        BundleFile(path[len(prefix):], entry.mode, entry.oid,
                   b"" if entry.mode == MODE_GITLINK else git.blob(entry.oid))
        for path, entry in sorted(entries.items())
    )
    return Bundle(key, sha, "/".join(parts), package, commit, tuple(trees), files)


def build_for_source(repository: Any, source: Any) -> Bundle:
    """The bundle of the module directory of git-pinned ``source`` in ``repository``
    (a :class:`zgit.repository.Repository`)."""
    location = locate(repository, source)
    return build(repository.git, source.sha, location.module_dir, location.package)


def locate(repository: Any, source: Any) -> Any:
    """The :class:`zgit.layout.ModuleLocation` of git-pinned ``source`` at its pin."""
    from zgit.errors import PinNotFoundError
    from zgit.loader import _locate

    if not repository.git.has_commit(source.sha):
        raise PinNotFoundError(f"{source}: {repository.git.missing_commit(source.sha)}")
    return _locate(repository, repository.config.source_root, source)


# -- verifying (worker side: hashlib only) -----------------------------------------------


def _object_id(kind: bytes, data: bytes) -> str:
    return hashlib.sha1(b"%s %d\0" % (kind, len(data)) + data).hexdigest()


def _tree_entries(data: bytes, key: str) -> Dict[str, Tuple[int, str]]:
    """``{name: (mode, id)}`` of a raw git tree object."""
    out: Dict[str, Tuple[int, str]] = {}
    pos = 0
    try:
        while pos < len(data):
            space = data.index(b" ", pos)
            nul = data.index(b"\0", space)
            if nul + 21 > len(data):
                raise ValueError("short entry")
            name = data[space + 1:nul].decode("utf-8", "surrogateescape")
            out[name] = (int(data[pos:space], 8), data[nul + 1:nul + 21].hex())
            pos = nul + 21
    except ValueError:
        raise BundleError(f"bundle {key}: a tree of its proof is not a git tree; the bundle was "
                          "altered: rebuild it") from None
    return out


def _tree_bytes(files: Dict[str, Any]) -> bytes:
    """The raw git tree for a nested ``{name: BundleFile or dict}``, as git writes it."""
    rows = []
    for name, item in files.items():
        if isinstance(item, dict):
            rows.append((name + "/", b"40000 %s\0" % name.encode("utf-8", "surrogateescape")
                         + bytes.fromhex(_object_id(b"tree", _tree_bytes(item)))))
        else:
            rows.append((name, b"%o %s\0" % (item.mode, name.encode("utf-8", "surrogateescape"))
                         + bytes.fromhex(item.oid)))
    # git orders entries by name bytes, a directory's name as if it ended with "/"
    rows.sort(key=lambda row: row[0].encode("utf-8", "surrogateescape"))
    return b"".join(row[1] for row in rows)


def verify(bundle: Bundle) -> Bundle:
    """Check that ``bundle`` is exactly module directory ``module_dir`` at commit ``sha``;
    returns it.  Uses :mod:`hashlib` only.  :class:`BundleError` naming the pin for any
    difference: file bytes, an extra, missing or mode-changed file, the commit, a tree,
    or the key."""
    key = bundle.key
    if not _SHA.match(bundle.sha) or key != f"{bundle.package}@{bundle.sha}":
        raise BundleError(f"bundle {key} claims pin {bundle.package}@{bundle.sha}: its key was altered; "
                          "rebuild it")
    parts = bundle.module_dir.split("/") if bundle.module_dir else []
    package_parts = bundle.package.split(".")
    if not parts or parts[len(parts) - len(package_parts):] != package_parts:
        raise BundleError(f"bundle {key}: package {bundle.package!r} is not module directory "
                          f"{bundle.module_dir!r}; the bundle was altered: rebuild it")
    if _object_id(b"commit", bundle.commit) != bundle.sha:
        raise BundleError(f"bundle {key}: its commit object does not hash to {bundle.sha}; the bundle "
                          "was altered or built from another commit: rebuild it")
    first = bundle.commit.split(b"\n", 1)[0]
    if not first.startswith(b"tree ") or len(bundle.trees) != len(parts) + 1:
        raise BundleError(f"bundle {key}: its proof does not lead from the commit to {bundle.module_dir!r}; "
                          "rebuild it")
    expected = first[5:].decode("ascii", "replace")
    for depth, tree in enumerate(bundle.trees):
        where = "/".join(parts[:depth]) or "the root"
        if _object_id(b"tree", tree) != expected:
            raise BundleError(f"bundle {key}: the tree of {where} does not hash to {expected}, the id "
                              "its parent names; the bundle was altered: rebuild it")
        if depth < len(parts):
            mode, expected = _tree_entries(tree, key).get(parts[depth], (0, ""))
            if mode != MODE_TREE:
                raise BundleError(f"bundle {key}: {'/'.join(parts[:depth + 1])} is not a directory at "
                                  f"commit {bundle.sha}; rebuild the bundle")
    nested: Dict[str, Any] = {}
    for item in bundle.files:
        path = PurePosixPath(item.path)
        if (item.path != path.as_posix() or path.is_absolute() or ".." in path.parts
                or item.mode not in FILE_MODES or not _SHA.match(item.oid)):
            raise BundleError(f"bundle {key}: file {item.path!r} (mode {item.mode:o}) cannot be in a "
                              "module directory; the bundle was altered: rebuild it")
        if item.mode == MODE_GITLINK:
            if item.data:
                raise BundleError(f"bundle {key}: submodule {item.path!r} carries bytes; rebuild it")
        elif _object_id(b"blob", item.data) != item.oid:
            raise BundleError(f"bundle {key}: the bytes of {item.path!r} are not blob {item.oid} of "
                              f"commit {bundle.sha}; the bundle was altered: rebuild it")
        node = nested
        for part in path.parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise BundleError(f"bundle {key}: {item.path!r} is below a file; rebuild it")
        if path.name in node:
            raise BundleError(f"bundle {key}: {item.path!r} is listed twice; the bundle was altered: rebuild it")
        node[path.name] = item
    if _object_id(b"tree", _tree_bytes(nested)) != _object_id(b"tree", bundle.trees[-1]):
        raise BundleError(f"bundle {key}: its files do not rebuild the tree of {bundle.module_dir!r} at "
                          f"commit {bundle.sha} (a file was added, removed, renamed or changed mode); "
                          "rebuild it")
    return bundle


def verify_bytes(data: bytes) -> Bundle:
    """:meth:`Bundle.from_bytes` then :func:`verify`."""
    return verify(Bundle.from_bytes(data))


# -- installing (worker side) -----------------------------------------------------------------


class BundleObjects:
    """The read side of a :class:`zgit.gitrepo.GitRepo` that a
    :class:`zgit.loader.importer.PinnedTree` uses, answered from one verified bundle."""

    git_dir = None  # no repository: no on-disk bytecode cache

    def __init__(self, bundle: Bundle) -> None:
        from zgit.gitrepo import Entry

        self.root = Path(BUNDLE_ROOT)
        self.bundle = bundle
        prefix = bundle.module_dir + "/"
        self._entries = {prefix + f.path: Entry(f.oid, f.mode) for f in bundle.files}
        self._blobs = {f.oid: f.data for f in bundle.files if f.mode != MODE_GITLINK}

    def entries(self, sha: str, directory: str) -> Optional[Dict[str, Any]]:
        if sha != self.bundle.sha or directory != self.bundle.module_dir:
            return None
        return dict(self._entries)

    def blob(self, oid: str) -> bytes:
        return self._blobs[oid]

    def blob_size(self, oid: str) -> Optional[int]:
        data = self._blobs.get(oid)
        return None if data is None else len(data)


_install_lock = threading.Lock()


def install(bundle: "Bundle | bytes") -> bool:
    """Verify ``bundle`` (a :class:`Bundle` or its bytes) and make its pin importable in
    this process as ``<package>@<sha>``, from the bundle's bytes.  Returns False when the
    pin was already importable (nothing is done).  :class:`BundleError` when it does not
    verify (nothing is installed).

    The packages above the module directory are not in a bundle: each one that this
    process cannot import already becomes an empty namespace package (no code runs),
    so ``a.b@<sha>`` has a parent ``a``; one it can import is imported as usual.
    """
    from zgit.loader import importer

    parsed = Bundle.from_bytes(bundle) if not isinstance(bundle, Bundle) else bundle
    if importer.tree_for(parsed.package, parsed.sha) is not None:
        return False
    verify(parsed)
    with _install_lock:
        if importer.tree_for(parsed.package, parsed.sha) is not None:
            return False
        _ensure_parents(parsed.package)
        tree = importer.PinnedTree(BundleObjects(parsed), parsed.module_dir, parsed.package, parsed.sha)
        importer.register(tree)
    return True


def installed(key: str) -> bool:
    """Whether pin ``<package>@<sha>`` is importable in this process without a repository
    lookup (installed from a bundle, or already loaded)."""
    from zgit.loader import importer

    package, _, sha = key.rpartition("@")
    return importer.tree_for(package, sha) is not None


def _ensure_parents(package: str) -> None:
    parts = package.split(".")
    for depth in range(1, len(parts)):
        name = ".".join(parts[:depth])
        if name in sys.modules:
            continue
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is not None:
            importlib.import_module(name)
            continue
        module = types.ModuleType(name)
        module.__path__ = []  # type: ignore[attr-defined]
        module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
        module.__spec__.submodule_search_locations = []
        sys.modules[name] = module
        if depth > 1:
            setattr(sys.modules[".".join(parts[:depth - 1])], parts[depth - 1], module)
