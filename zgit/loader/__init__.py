"""Loading sources: ``load_source`` and ``recover``.

Git pins are imported under pinned names (see :mod:`zgit.loader.importer`) by one of two
strategies: ``checkout`` (:mod:`zgit.loader.checkout`, the default) makes the module
directory its pinned content on disk while the import runs; ``memory``
(:mod:`zgit.loader.memory`) touches nothing.  Distribution pins import the installed
package after checking its version; unpinned sources import the working version, with a
warning.
"""

from __future__ import annotations

import contextlib
import os
import sys
import types
from typing import Any, ContextManager, Dict, List, Optional, Tuple, Union

from zgit import callsite, imported
from zgit.config import Config, check_strategy
from zgit.errors import (
    NotARepositoryError,
    PinNotFoundError,
    SourceError,
    SourceNotFoundError,
    UnpinnedSourceWarning,
)
from zgit.home import module_home
from zgit.layout import ModuleLocation, candidates
from zgit.loader import checkout, importer, memory, tracebacks, working
from zgit.repository import Repository, RepoLike
from zgit.source import Source

importer.install()
tracebacks.install()

_loaded: Dict[Tuple[Any, str], Any] = {}


def load_source(source: Union[str, Source], *, repo: RepoLike = None, strategy: Optional[str] = None) -> Any:
    """Return the object a source names, at its pin.

    ``repo``: a :class:`Repository`, a path, or None (found from the current directory).
    ``strategy``: ``"checkout"`` or ``"memory"`` (default: the repository's
    ``loader.strategy``, env ``ZGIT_LOADER_STRATEGY``).  Loading the same source again
    returns the same object.  Git-pinned objects carry ``__zgit_source__``.

    Raises :class:`SourceError` (malformed), :class:`PinNotFoundError` (no such commit),
    :class:`SourceNotFoundError` (no such module or attribute at the pin),
    :class:`DirtyModuleError` (checkout of a dirty module directory),
    :class:`VersionMismatchError` (distribution pins), :class:`LockTimeoutError`; an
    exception raised by the pinned module's own code propagates as itself.
    """
    text = source if isinstance(source, str) else str(source)
    try:
        repository: Optional[Repository] = Repository.coerce(repo)
    except NotARepositoryError:
        if repo is not None:
            raise
        repository = None
    key = (repository.root if repository is not None else None, text)
    found = _loaded.get(key, _loaded)
    if found is not _loaded:
        return found
    parsed = Source.parse(text) if isinstance(source, str) else source
    if not isinstance(parsed, Source):
        raise SourceError(f"a source must be a string or a zgit.Source, not {type(source).__name__}")
    if strategy is not None:
        check_strategy(strategy, "strategy")
    if parsed.kind == "dist":
        from zgit.distributions import load_distribution_source

        config = repository.config if repository is not None else Config.load_defaults()
        obj = load_distribution_source(parsed, config.on_version_mismatch)
    elif parsed.kind == "git" and (repository is None or not repository.git.has_commit(parsed.sha)):
        home = module_home(parsed.module, parsed.sha)
        if home is None and repository is None:
            raise NotARepositoryError(
                f"cannot load {text}: the current directory is not inside a git repository, and "
                f"no git work tree on sys.path holds module {parsed.module!r} with that commit; "
                "pass repo= or run from the repository"
            )
        if home is None:  # not found anywhere: the repository's own message says what to do
            config = repository.config  # type: ignore[union-attr]
            obj = _load_git(parsed, repository, config, strategy or config.strategy)  # type: ignore[arg-type]
        else:
            config = home[0].config
            obj = _load_git(parsed, home[0], config, strategy or config.strategy, source_root=home[1])
    elif repository is None:
        raise NotARepositoryError(
            f"cannot load {text}: the current directory is not inside a git repository; "
            "pass repo= or run from the repository"
        )
    elif parsed.kind == "unpinned":
        obj = _load_unpinned(parsed, repository)
    else:
        config = repository.config  # read once per load: it stats the config file
        obj = _load_git(parsed, repository, config, strategy or config.strategy)
    _loaded[key] = obj
    return obj


def _locate(repository: Repository, source_root: str, source: Source) -> ModuleLocation:
    git = repository.git
    for location in candidates(source.module, source_root):
        if git.entry(source.sha, location.file) is not None:  # type: ignore[arg-type]
            return location
    if "." not in source.module:
        raise SourceError(
            f"{source}: module {source.module!r} sits directly in the source root, so it has no "
            "module directory and cannot be pinned; move it into a package directory"
        )
    parts = source_root.split("/") + source.module.split(".") if source_root else source.module.split(".")
    for i in range(1, len(parts)):
        found = git.entry(source.sha, "/".join(parts[:i]))  # type: ignore[arg-type]
        if found is not None and found.is_gitlink:
            raise SourceNotFoundError(
                f"{source}: {'/'.join(parts[:i])} is a git submodule at commit {source.sha}; zgit "
                "cannot pin code in submodules: make it a regular directory or move the code out"
            )
    where = f"under source root {source_root!r}" if source_root else "in the repository"
    raise SourceNotFoundError(
        f"{source}: module {source.module!r} does not exist at commit {source.sha} {where} "
        f"(looked for {' and '.join(c.file for c in candidates(source.module, source_root))})"
    )


def _ready(module: Optional[types.ModuleType]) -> bool:
    spec = getattr(module, "__spec__", None)
    return module is not None and not getattr(spec, "_initializing", False)


def _load_git(source: Source, repository: Repository, config: Config, strategy: str,
              source_root: Optional[str] = None) -> Any:
    git = repository.git
    sha: str = source.sha  # type: ignore[assignment]
    if not git.has_commit(sha):
        raise PinNotFoundError(f"{source}: {git.missing_commit(sha)}")
    if source_root is None:
        source_root = config.source_root
    location = _locate(repository, source_root, source)
    name = location.pinned_name(sha)
    module = sys.modules.get(name)
    if not _ready(module):
        if importer.tree_for(location.package, sha) is None:
            importer.register(importer.PinnedTree(git, location.module_dir, location.package, sha))
        importer.import_parents(location.package, repository.root / source_root if source_root else repository.root)
        if strategy == "checkout":
            # A load nested in another checkout's import writes nothing (the outer one owns
            # the disk), so its directory's working names are the disk's as usual.
            nested = getattr(checkout._active, "depth", 0)
            with contextlib.nullcontext() if nested else working.served_from_head(
                git, location.module_dir, location.package, sha
            ), _own_restore_noted(repository, location.module_dir), checkout.checked_out(
                git, location.module_dir, sha, timeout=config.lock_timeout, fsync=config.fsync
            ):
                module = memory.import_pinned(name)
        else:
            module = memory.import_pinned(name)
    try:
        return getattr(module, source.attribute)
    except AttributeError:
        raise SourceNotFoundError(
            f"{source}: module {source.module!r} at commit {sha} has no attribute "
            f"{source.attribute!r}; check the name, or the commit the pin names"
        ) from None


def _own_restore_noted(repository: Repository, module_dir: str) -> ContextManager[None]:
    """The checkout restores HEAD's files, which are what this process imported when they
    were unchanged before it: note that, so that a pin at HEAD is not refused for them
    (see :mod:`zgit.imported`).  Not when a journal is left: the checkout then first undoes
    another process's, whose pinned files may be what this process imported."""
    if (repository.state_dir / checkout.JOURNAL_NAME).exists():
        return contextlib.nullcontext()
    # The root is a real path already; a module directory reached through a symlink below
    # it is dirty as git sees it, so no checkout restores anything there.
    return imported.restored_by_this_process(os.path.join(str(repository.git.root), *module_dir.split("/")))


def _load_unpinned(source: Source, repository: Repository) -> Any:
    callsite.warn(
        f"source {source} is not pinned to a commit: loading the working version, which may "
        "differ from what ran. Commit the module directory and save the pipeline again to pin it",
        UnpinnedSourceWarning,
    )
    module = importer.import_real(source.module, repository.source_root)
    try:
        return getattr(module, source.attribute)
    except AttributeError:
        raise SourceNotFoundError(f"{source}: module {source.module!r} has no attribute {source.attribute!r}") from None


def recover(repo: RepoLike = None, *, keep_edits: bool = False) -> List[str]:
    """Undo a temporary checkout left behind by a process that died.

    Takes the checkout lock (waiting up to ``loader.lock_timeout``), so it never undoes a
    live checkout.  Returns the repository paths it restored (empty when there was
    nothing to do).  Files edited since the checkout are never overwritten: one that now
    equals HEAD's version (the edit was kept and committed) stays as it is, and so does
    every edited file with ``keep_edits``; otherwise :class:`RecoverError` names them and
    nothing changes.
    """
    repository = Repository.coerce(repo)
    with checkout.locked(repository.git, repository.config.lock_timeout) as state:
        return checkout.recover_locked(repository.git, state, keep_edits=keep_edits)


def forget_loaded() -> None:
    """Forget every loaded pin (benchmarks, tests, long-running processes): the next load
    imports afresh and gives new objects.

    Releases what zgit holds: the pinned modules in ``sys.modules``, the ``name@<sha>``
    attributes the import system set on their real parent packages, the registered trees
    (with their builtins and package views), and the ``linecache`` entries of the pinned
    files.  Objects the caller still references (instances, classes) stay alive, with the
    modules they need.
    """
    _loaded.clear()
    for name in [n for n in sys.modules if "@" in n]:
        module = sys.modules.pop(name, None)
        parent_name, _, child = name.rpartition(".")
        parent = sys.modules.get(parent_name) if parent_name and "@" not in parent_name else None
        # importlib binds a submodule on its parent: ``a.b@<sha>`` is attribute
        # ``b@<sha>`` of the real package ``a``, which outlives every pin.
        if parent is not None and module is not None and parent.__dict__.get(child) is module:
            try:
                delattr(parent, child)
            except AttributeError:
                pass
    # The trees too: the same commit (same sha) may next come from another clone, and the
    # repository these were read from may be gone.
    importer.forget_trees()
