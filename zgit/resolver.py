"""``resolve_source``: from a class (or function) to the :class:`Source` that pins it."""

from __future__ import annotations

import importlib
import os
import site
import sys
import sysconfig
from functools import lru_cache
from pathlib import Path
from typing import Any, List, Optional, Tuple

from zgit import callsite, imported
from zgit.dirty import advice, describe, submodule_of
from zgit.errors import NotARepositoryError, SourceError, UncommittedFileWarning, UnpinnedSourceWarning
from zgit.layout import import_root_of, location_of_file, split_pinned_name, uncommitted_modules
from zgit.loader.checkout import JOURNAL_NAME, locked, recover_locked
from zgit.repository import Repository, RepoLike
from zgit.source import Source

_INTERACTIVE = (
    "it is defined interactively (in a notebook cell, the REPL or python -c), so no other "
    "process can load it; move it into a module file inside a package directory (e.g. "
    "steps/my_step.py), import it from there and save again"
)


def resolve_source(obj: Any, *, repo: RepoLike = None) -> Source:
    """The source that pins ``obj`` (a class, a function, or a dotted ``"module.Attr"``).

    Inside the repository's source root: a git pin at HEAD when the module directory is
    clean and HEAD names the code in memory (the directory's files this process imported
    are still those files, and ``obj`` is what its module binds; see
    :mod:`zgit.imported`).  From an installed distribution outside it:
    ``@<dist>_<version>``.  Otherwise the unpinned source, with an
    :class:`UnpinnedSourceWarning` at the caller's line that says why and what to do (it
    names the files).  A class defined interactively (``__main__`` without a file) is
    never pinned.  A pinned object resolves to its own pin.  Raises :class:`SourceError`
    for objects that cannot be imported by name (nested or local).
    """
    if isinstance(obj, str):
        obj = _import_dotted(obj)
    own = _own_source(obj)
    if own is not None:
        return Source.parse(own)
    module_name = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    if not isinstance(module_name, str) or not isinstance(qualname, str):
        raise SourceError(f"{obj!r} has no __module__ and __qualname__: pass a class or a function")
    if not qualname.isidentifier():
        raise SourceError(
            f"{module_name}.{qualname} cannot be imported by name (it is nested or local); "
            "define it at the top level of a module to pin it"
        )
    pinned = split_pinned_name(module_name)
    if pinned is not None:
        package, sha, rest = pinned
        return Source(package + rest, qualname, sha)

    module = sys.modules.get(module_name)
    file = getattr(module, "__file__", None)
    if file is None:
        if module_name == "__main__":
            return _unpinned(module_name, qualname, _INTERACTIVE)
        return _unpinned(module_name, qualname, "its module has no file (built in, or created at run time)")
    real = os.path.realpath(file)

    if not _in_site_packages(real):
        repository = _repository(repo, real)
        if repository is not None and _is_within(real, str(repository.root)):
            source_root = repository.source_root
            if not _is_within(real, str(source_root)):
                return _unpinned(
                    module_name, qualname,
                    f"{real} is in the repository but outside its source root {source_root}",
                )
            refused = _import_root_mismatch(repository, real, module_name)
            if refused is not None:
                return _unpinned(module_name, qualname, refused)
            return _resolve_in_repository(repository, real, module_name, qualname, obj)
        home = _home_work_tree(real, module_name)
        if home is not None:
            return _resolve_in_repository(home[0], real, module_name, qualname, obj, source_root=home[1])
    from zgit.distributions import distribution_pin

    dist = distribution_pin(module_name, real)
    if dist is not None:
        name, version = dist
        return Source(module_name, qualname, f"{name}_{version}")
    if _in_stdlib(real):
        why = "it is from the Python standard library"
    else:
        why = f"{real} is neither in the repository nor in an installed distribution"
    return _unpinned(module_name, qualname, why)


def _resolve_in_repository(repository: Repository, real: str, module_name: str, qualname: str, obj: Any,
                           source_root: Optional[str] = None) -> Source:
    git = repository.git
    rel = Path(os.path.relpath(real, git.root)).as_posix()
    if source_root is None:
        source_root = repository.config.source_root
    location = location_of_file(rel, source_root)
    if location is None:
        return _unpinned(module_name, qualname, f"{rel} is not an importable Python module path")
    if location.module_dir == source_root:
        return _unpinned(
            location.module, qualname,
            f"{rel} sits directly in the source root, so it has no module directory of its own; "
            "move it into a package directory (e.g. steps/) to pin it",
        )
    head = git.head_sha()
    if head is None:
        return _unpinned(location.module, qualname, "the repository has no commit yet; commit the code first")
    ignored: List[str] = []  # what the clean check passed over: generated modules are among it
    dirty = git.dirty_files(location.module_dir, head, ignored)
    if dirty and (repository.state_dir / JOURNAL_NAME).exists():
        # Another process may have this directory checked out at a pin right now (or
        # died doing so): wait for its checkout to end, undo a dead one, and look again.
        with locked(git, repository.config.lock_timeout) as state:
            recover_locked(git, state)
            head = git.head_sha()  # it may have moved while we waited
            ignored = []
            dirty = git.dirty_files(location.module_dir, head, ignored)
    if dirty:
        submodule = submodule_of(dirty)
        if submodule:
            return _unpinned(
                location.module, qualname,
                f"module directory {location.module_dir}/ is inside the git submodule {submodule}/, "
                "whose files this repository's commits do not hold; open the submodule's own "
                "repository (repo=<path to it>) to pin its code",
            )
        more = advice(dirty)
        return _unpinned(
            location.module, qualname,
            f"module directory {location.module_dir}/ has uncommitted changes: {describe(dirty)}; commit them "
            "(git add + git commit) and save again" + (f"; {more}" if more else ""),
        )
    if git.entry(head, location.file) is None:
        return _unpinned(
            location.module, qualname,
            f"{rel} is not committed (is it ignored by git?); commit it and save again",
        )
    why = _not_the_code_in_memory(git.root, location.module_dir, module_name, qualname, obj)
    if why:
        return _unpinned(location.module, qualname, why)
    source = Source(location.module, qualname, head)
    _warn_uncommitted_modules(git, head, location.module_dir, source, ignored)
    return source


# -- naming: the directory a module name maps from (issue 11, items 1 and 2) -----------------


def _import_root_mismatch(repository: Repository, real: str, module_name: str) -> Optional[str]:
    """Why ``module_name`` cannot be pinned under the repository's ``source_root``, or None.

    A pin's module path is always the name the class was imported under; it is only
    loadable if that name maps from the source root.  A name imported from another
    directory (``src/`` with ``source_root`` unset, or mistyped) is refused, never
    rewritten into a name it never had (``src.mypkg...``).  Scripts run as
    ``__main__`` are named after their file, relative to the source root.
    """
    if module_name == "__main__":
        return None
    root = import_root_of(real, module_name)
    source_root = repository.config.source_root
    shown = source_root or "."
    if root is None:
        return (
            f"it was imported as {module_name!r}, a name that does not match its file {real}; "
            f"import it by its path below the source root ({shown!r}, key 'source_root' in "
            ".zgit/config.yaml) to pin it"
        )
    if not _is_within(root, str(repository.root)):
        return (
            f"{module_name!r} is imported from {root}, outside the repository at {repository.root}; "
            f"put the directory it is imported from, inside the repository, on sys.path and set "
            "it as 'source_root' in .zgit/config.yaml"
        )
    rel = Path(os.path.relpath(root, os.path.realpath(repository.root))).as_posix()
    rel = "" if rel == "." else rel
    if rel != source_root:
        return (
            f"{module_name!r} is imported from {rel or '.'}/ (its sys.path entry), but the "
            f"repository's source_root is {shown!r}: set 'source_root: {rel or '.'}' in "
            f"{repository.root / '.zgit' / 'config.yaml'} and save again"
        )
    return None


def _home_work_tree(real: str, module_name: str) -> Optional[Tuple[Repository, str]]:
    """The git work tree that holds a module file outside the current repository (an
    editable install, a checkout on ``sys.path``) and its source root there (the
    ``sys.path`` entry the module was imported from), or None.

    Such code is pinned by that work tree's commit, whatever the current directory: a
    version number does not identify editable code.  zgit's own modules are the
    exception: its built-ins are pinned by zgit's version (``@zgit_<version>``).
    """
    if module_name == "__main__" or module_name == "zgit" or module_name.startswith("zgit."):
        return None
    root = import_root_of(real, module_name)
    if root is None or _in_stdlib(real):
        return None
    try:
        home = Repository.coerce(os.path.dirname(real))
    except NotARepositoryError:
        return None
    if not _is_within(root, str(home.root)):
        return None
    if home.git.is_ignored(Path(os.path.relpath(real, home.git.root)).as_posix()):
        return None  # not the work tree's code (e.g. an interpreter kept under a git-managed directory)
    rel = Path(os.path.relpath(root, os.path.realpath(home.root))).as_posix()
    return home, ("" if rel == "." else rel)


# -- files a pin depends on that are not in the commit (item 3) -------------------------------

def _warn_uncommitted_modules(git: Any, sha: str, module_dir: str, source: Source, ignored: List[str]) -> None:
    missing = uncommitted_modules(git, sha, module_dir, ignored)
    if missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        callsite.warn(
            f"{source} depends on files that are not in commit {sha[:12]}: {shown} (ignored by git: "
            "generated?); a load of this pin cannot import them as they were. Commit them, or "
            "generate them outside the module directory",
            UncommittedFileWarning,
        )


def _not_the_code_in_memory(root: Path, module_dir: str, module_name: str, qualname: str, obj: Any) -> str:
    """Why HEAD, though clean, would not name the code of ``obj`` in memory ("" if it does)."""
    if getattr(sys.modules.get(module_name), qualname, None) is not obj:
        return (
            f"it is not the object its module {module_name} now binds to {qualname!r} (the module "
            "was reloaded or imported again after it was made, or the name was rebound), so its "
            "code may not be HEAD's; make the object again from the module as it is now, or "
            "restart the kernel or process, and save again"
        )
    changed = imported.changed_since_import(_real_path(str(root), module_dir))
    if not changed:
        return ""
    rels = [Path(os.path.relpath(path, _real_path(str(root), ""))).as_posix() for path in changed]
    shown = ", ".join(rels[:10]) + (f" and {len(rels) - 10} more" if len(rels) > 10 else "")
    return (
        f"the code in memory is not what is on disk: {shown} changed on disk after "
        f"{'it was' if len(rels) == 1 else 'they were'} imported (edited, committed or not; or "
        "checked out at another commit by a zgit load in another process, live then or killed "
        "since), so HEAD does not name the code that runs here; re-import the module (restart "
        "the kernel or the process) and save again"
    )


@lru_cache(maxsize=256)
def _real_path(root: str, relpath: str) -> str:
    return os.path.realpath(os.path.join(root, relpath))


def _own_source(obj: Any) -> Optional[str]:
    try:
        own = vars(obj).get("__zgit_source__")
    except TypeError:
        return None
    return own if isinstance(own, str) else None


def _unpinned(module: str, attribute: str, why: str) -> Source:
    source = Source(module, attribute)
    callsite.warn(f"{source} is left unpinned: {why}", UnpinnedSourceWarning)
    return source


def _repository(repo: RepoLike, file: str) -> Optional[Repository]:
    if repo is not None:
        return Repository.coerce(repo)
    try:
        return Repository.coerce(None)
    except NotARepositoryError:
        return None


def _is_within(path: str, directory: str) -> bool:
    directory = os.path.realpath(directory)
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


@lru_cache(maxsize=1)
def _site_dirs() -> Tuple[str, ...]:
    dirs = set()
    for key in ("purelib", "platlib"):
        with_value = sysconfig.get_paths().get(key)
        if with_value:
            dirs.add(os.path.realpath(with_value))
    for getter in (getattr(site, "getsitepackages", None), getattr(site, "getusersitepackages", None)):
        if getter is None:
            continue
        try:
            found = getter()
        except Exception:  # site may be stubbed in embedded interpreters
            continue
        for item in [found] if isinstance(found, str) else found:
            dirs.add(os.path.realpath(item))
    return tuple(sorted(dirs))


def _in_site_packages(path: str) -> bool:
    parts = path.split(os.sep)
    return "site-packages" in parts or "dist-packages" in parts or any(_is_within(path, d) for d in _site_dirs())


@lru_cache(maxsize=1)
def _stdlib_dir() -> str:
    stdlib = sysconfig.get_paths().get("stdlib")
    return os.path.realpath(stdlib) if stdlib else ""


def _in_stdlib(path: str) -> bool:
    stdlib = _stdlib_dir()
    return bool(stdlib) and _is_within(path, stdlib)


def _import_dotted(text: str) -> Any:
    module_name, dot, attribute = text.rpartition(".")
    if not dot or not module_name:
        raise SourceError(f"{text!r} is not 'module.Attribute'")
    if "@" in text:
        raise SourceError(f"{text!r} already carries a pin; resolve_source takes an object or 'module.Attr'")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise SourceError(f"module {module_name!r} has no attribute {attribute!r}") from None
