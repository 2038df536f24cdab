"""Code identity and cache keys: the step cache's view of a step.

A step's **code identity** names the code it executes, as exactly as zgit knows it:

- git pin: the tree id of the module directory at the pin, plus the blob ids of the
  repository modules its files import from outside that directory (found as the audit's
  ``outside-import`` finding finds them).  A commit that touches only other directories
  keeps the identity, so the cache survives it.
- distribution pin: the distribution and its version.
- unpinned: a digest of the module directory's working files (bytecode caches left out),
  or of the module's file alone when it has no module directory; None (no caching) when
  the module has no file.

The **cache key** adds the class name, the canonical arguments, the input's digest and the
Python minor version (pickles and floating-point library code may differ across them).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from typing import Any, Dict, Optional, Tuple

from zgit.gitrepo import is_bytecode_cache
from zgit.layout import location_of_file
from zgit.source import Source

PYTHON_MINOR = f"{sys.version_info[0]}.{sys.version_info[1]}"

_git_identities: Dict[Tuple[str, str], str] = {}


def code_identity(source: Source, repository: Any, store: Any = None) -> Optional[str]:
    """The code identity of ``source`` (see the module docstring), or None when unknown.

    ``store``: a run store that remembers git identities across processes (they never
    change for a given pin)."""
    if source.kind == "dist":
        return f"dist:{source.pin}"
    if source.kind == "git":
        return _git_identity(source, repository, store)
    return _working_identity(source, repository)


def _git_identity(source: Source, repository: Any, store: Any) -> Optional[str]:
    from zgit.audit import _RepoChecker, locate

    text = str(source)
    key = (str(repository.root), text)
    found = _git_identities.get(key)
    if found is not None:
        return found
    if store is not None:
        found = store.code_identity(text)
        if found is not None:
            _git_identities[key] = found
            return found
    git = repository.git
    sha: str = source.sha  # type: ignore[assignment]
    if not git.has_commit(sha):
        return None
    location = locate(git, sha, source.module, repository.config.source_root)
    if location is None:
        return None
    tree = git.tree_id(sha, location.module_dir)
    if tree is None:
        return None
    outside = _RepoChecker(repository).outside_files(sha, location.module_dir)
    blobs = sorted(
        f"{file}={entry.oid}" for file, entry in
        ((file, git.entry(sha, file)) for file, _ in outside.values()) if entry is not None
    )
    found = f"git:{tree}"
    if blobs:
        found += "+" + hashlib.sha256("\n".join(blobs).encode()).hexdigest()[:40]
    _git_identities[key] = found
    if store is not None:
        store.remember_code_identity(text, found)
    return found


def _working_identity(source: Source, repository: Any) -> Optional[str]:
    module = sys.modules.get(source.module)
    file = getattr(module, "__file__", None)
    if file is None:
        return None
    real = os.path.realpath(file)
    root = os.path.realpath(repository.root)
    directory = None
    if real.startswith(root + os.sep):
        rel = os.path.relpath(real, root).replace(os.sep, "/")
        location = location_of_file(rel, repository.config.source_root)
        if location is not None and location.module_dir != repository.config.source_root:
            directory = os.path.join(root, location.module_dir)
    digest = hashlib.sha256()
    if directory is None:
        try:
            with open(real, "rb") as f:
                digest.update(f.read())
        except OSError:
            return None
        return "file:" + digest.hexdigest()
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, directory).replace(os.sep, "/")
            if is_bytecode_cache(rel):
                continue
            try:
                with open(full, "rb") as f:
                    content = f.read()
            except OSError:
                continue
            digest.update(rel.encode() + b"\0" + hashlib.sha256(content).digest())
    return "tree:" + digest.hexdigest()


def canonical_args(args: Dict[str, Any]) -> Optional[str]:
    """The arguments as canonical JSON, or None when they are not plain data (then the
    step is not cached).  The argument names are sorted (keyword order means nothing), but
    the order inside a value is kept: a step may depend on it (``RandomSplit``'s
    ``split`` mapping); ``1``, ``1.0`` and ``true`` stay distinct."""
    try:
        ordered = {name: args[name] for name in sorted(args)}
        return json.dumps(ordered, separators=(",", ":"), allow_nan=True)
    except (TypeError, ValueError):
        return None


def cache_key(source: Source, identity: Optional[str], args: Dict[str, Any],
              input_digest: Optional[str]) -> Optional[str]:
    """The step cache key, or None when the step cannot be cached (unknown code identity,
    arguments that are not plain data, an input that was not recorded)."""
    if identity is None or input_digest is None:
        return None
    canonical = canonical_args(args)
    if canonical is None:
        return None
    text = "\n".join((identity, f"{source.module}.{source.attribute}", canonical, input_digest, PYTHON_MINOR))
    return hashlib.sha256(text.encode()).hexdigest()
