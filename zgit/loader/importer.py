"""Serve pinned module directories from git's object database, as ``zipimport`` serves zips.

A module directory ``a/b`` at commit ``<sha>`` becomes the package ``a.b@<sha>`` in
``sys.modules``; its modules are ``a.b@<sha>.c`` and so on.  The names carry the pin, so

- the working version (``a.b.c``) stays imported and untouched beside any number of pins;
- relative imports inside pinned code resolve to pinned siblings by themselves;
- absolute imports of ``a.b...`` inside pinned code are mapped to the pin by a
  ``__import__`` of the pinned modules' own (see :func:`_pinned_import`);
- pickle records the pinned name, and :class:`PinnedFinder` brings it back in another
  process of the same repository.

Code is compiled from the blobs at the pin, never from ``__pycache__``, so stale bytecode
cannot be run; compiled code is cached by blob id (:mod:`zgit.loader.bytecode`).
``__file__`` is a virtual path ``<root>/<module dir>@<sha>/<file>``: it says repository,
path and pin, and exists on no disk; :mod:`linecache` is fed the pinned lines so
tracebacks and :mod:`inspect` show them.
"""

from __future__ import annotations

import builtins
import functools
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import linecache
import sys
import threading
import types
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple

from zgit.errors import SourceNotFoundError, ZgitError
from zgit.gitrepo import Entry, GitRepo
from zgit.layout import split_pinned_name
from zgit.loader import bytecode, working

_LFS_POINTER_PREFIX = b"version https://git-lfs.github.com/spec/"


class PinnedTree:
    """One module directory at one commit, importable as the package ``<package>@<sha>``.

    ``git`` is the repository, or anything answering its read methods ``entries``,
    ``blob`` and ``blob_size`` with attributes ``root`` and ``git_dir`` (None: no
    bytecode cache) -- a verified code bundle on a worker without a repository
    (:class:`zgit.engines.bundle.BundleObjects`).
    """

    def __init__(self, git: "GitRepo | Any", module_dir: str, package: str, sha: str) -> None:
        entries = git.entries(sha, module_dir)
        if entries is None:
            raise SourceNotFoundError(
                f"directory {module_dir!r} does not exist at commit {sha}: the source names a "
                "module that was not there yet (or was moved); check the pin"
            )
        self.git = git
        self.sha = sha
        self.module_dir = module_dir
        self.package = package
        self.pinned_package = f"{package}@{sha}"
        self.prefix = module_dir + "/" if module_dir else ""
        self.entries: Dict[str, Entry] = entries
        self.virtual_root = f"{git.root}/{module_dir}@{sha}"
        self.dirs = {self.prefix.rstrip("/")}
        for path in entries:
            parts = path.split("/")
            for i in range(len(self.prefix.rstrip("/").split("/")), len(parts)):
                self.dirs.add("/".join(parts[:i]))
        self.builtins = dict(builtins.__dict__)
        self.builtins["__import__"] = _pinned_import(self)
        self._views: Dict[str, Any] = {}

    # -- paths -----------------------------------------------------------------------------

    def repo_path(self, virtual: str) -> Optional[str]:
        """The repository path for a virtual path below :attr:`virtual_root` (else None)."""
        if virtual == self.virtual_root:
            return self.prefix.rstrip("/")
        if not virtual.startswith(self.virtual_root + "/"):
            return None
        return self.prefix + virtual[len(self.virtual_root) + 1:]

    @property
    def source_root(self) -> Path:
        """The repository's source root (the directory the package names are relative to)."""
        parts = self.module_dir.split("/")
        return Path(self.git.root, *parts[: len(parts) - len(self.package.split("."))])

    def virtual_path(self, repo_path: str) -> str:
        return self.virtual_root + repo_path[len(self.prefix.rstrip("/")):]

    def read(self, repo_path: str) -> bytes:
        """The bytes of a file of the module directory at the pin."""
        entry = self.entries.get(repo_path)
        if entry is None:
            raise FileNotFoundError(f"{repo_path} does not exist at commit {self.sha}")
        if entry.is_gitlink:
            raise ZgitError(
                f"{repo_path} is a git submodule inside module directory {self.module_dir!r}; "
                "zgit cannot pin code in submodules: make it a regular directory or move it out"
            )
        data = self.git.blob(entry.oid)
        if data.startswith(_LFS_POINTER_PREFIX) and repo_path.endswith(".py"):
            raise ZgitError(
                f"{repo_path} at commit {self.sha} is a git-lfs pointer, not Python code; "
                "zgit reads git objects only: keep .py files out of LFS"
            )
        return data

    def find(self, rest: str) -> Optional[Tuple[str, bool]]:
        """``(repo path of the file, is_package)`` for the submodule path ``rest``
        (``""`` for the package itself, ``"c.d"`` for ``<package>@<sha>.c.d``)."""
        base = self.prefix + rest.replace(".", "/") if rest else self.prefix.rstrip("/")
        init = base + "/__init__.py"
        if init in self.entries:
            return init, True
        if rest and base + ".py" in self.entries:
            return base + ".py", False
        if base in self.dirs:
            return base, True  # a directory without __init__.py: a namespace package
        entry = self.entries.get(base)
        if entry is not None and entry.is_gitlink:
            raise SourceNotFoundError(
                f"{base} is a git submodule inside module directory {self.module_dir!r} at commit "
                f"{self.sha}; zgit cannot pin code in submodules: make it a regular directory "
                "or move the code out of the module directory"
            )
        return None

    def iter_children(self, repo_dir: str) -> Iterator[Tuple[str, bool]]:
        """``(name, is_package)`` of the modules directly in ``repo_dir`` at the pin."""
        prefix = repo_dir.rstrip("/") + "/" if repo_dir else ""
        seen = set()
        for path in sorted(self.entries):
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix):]
            head, sep, tail = rest.partition("/")
            if sep:
                if tail == "__init__.py" and head.isidentifier() and head not in seen:
                    seen.add(head)
                    yield head, True
            elif rest.endswith(".py") and rest != "__init__.py":
                name = rest[:-3]
                if name.isidentifier() and name not in seen:
                    seen.add(name)
                    yield name, False

    def view(self, dotted: str) -> Any:
        """What ``import <dotted>`` (no fromlist) binds for a name above the module directory."""
        view = self._views.get(dotted)
        if view is None:
            view = _PackageView(dotted, self)
            self._views[dotted] = view
        return view


class _PackageView(types.ModuleType):
    """Stands for a real package above a pinned module directory inside pinned code.

    ``import a.b.c`` in pinned code of module directory ``a/b`` binds ``a``; the view makes
    ``a.b`` the pinned package while every other attribute is the real ``a``'s.
    """

    def __init__(self, dotted: str, tree: PinnedTree) -> None:
        super().__init__(dotted)
        object.__setattr__(self, "_zgit_tree", tree)

    def __getattribute__(self, name: str) -> Any:
        tree = object.__getattribute__(self, "_zgit_tree")
        dotted = types.ModuleType.__getattribute__(self, "__name__")
        child = f"{dotted}.{name}"
        if child == tree.package:
            return sys.modules[tree.pinned_package]
        if tree.package.startswith(child + "."):
            return tree.view(child)
        return getattr(sys.modules[dotted], name)


def _pinned_import(tree: PinnedTree):
    real_import = builtins.__import__
    package = tree.package
    pinned = tree.pinned_package
    above = package.split(".")[0]
    pinned_dots = pinned.count(".")

    def __import__(name, globals=None, locals=None, fromlist=(), level=0):  # noqa: A001
        if level:
            # A relative import that climbs out of the module directory (``from .. import b``
            # or ``from ..b.c import x`` in a/b/c.py) is mapped like the absolute name it means.
            current = globals.get("__package__") if globals else None
            dots = current.count(".") if current else 0
            if current and (current == pinned or current.startswith(pinned + ".")) and (
                dots - pinned_dots < level - 1 <= dots
            ):
                base = current.rsplit(".", level - 1)[0]
                name, level = (f"{base}.{name}" if name else base), 0
        if level == 0:
            if name == package or name.startswith(package + "."):
                module = real_import(pinned + name[len(package):], globals, locals, fromlist, 0)
                if fromlist:
                    return module
                if above == package:
                    return sys.modules[pinned]
                real_import(above)
                return tree.view(above)
            if above != package and (name == above or name.startswith(above + ".")):
                # A package above the module directory: ``import a`` binds a view in which
                # ``a.b`` is the pin, and so does ``from a import b`` (a/b the module directory).
                if not fromlist:
                    real_import(name, globals, locals, fromlist, 0)
                    return tree.view(above)
                if package.startswith(name + ".") and "*" not in fromlist:
                    child = package[len(name) + 1:].partition(".")[0]
                    if child in fromlist:
                        real_import(name, globals, locals, tuple(f for f in fromlist if f != child), 0)
                        real_import(pinned)
                        return tree.view(name)
        try:
            return real_import(name, globals, locals, fromlist, level)
        except ModuleNotFoundError as exc:
            # A package of the repository outside the module directory, while the source
            # root is not on sys.path (a script in a sub-directory, a notebook): import its
            # working version from the source root, as load_source does for the packages
            # above the module directory.  Only on this failure path: no cost otherwise.
            top = name.partition(".")[0]
            if level != 0 or exc.name != top or top in sys.modules:
                raise
            spec = importlib.machinery.PathFinder.find_spec(top, [str(tree.source_root)])
            if spec is None:
                raise
            import_real(top, tree.source_root)
            return real_import(name, globals, locals, fromlist, level)

    return __import__


# -- the registry of trees ----------------------------------------------------------------

_trees: Dict[Tuple[str, str], PinnedTree] = {}
_trees_lock = threading.Lock()


def register(tree: PinnedTree) -> PinnedTree:
    """Make ``tree`` importable; returns the tree registered first for the same pin."""
    with _trees_lock:
        return _trees.setdefault((tree.package, tree.sha), tree)


def tree_for(package: str, sha: str) -> Optional[PinnedTree]:
    return _trees.get((package, sha))


def forget_trees() -> None:
    """Forget every registered tree (see :func:`zgit.loader.forget_loaded`), the
    ``linecache`` entries of their files and the path finders of their directories."""
    with _trees_lock:
        roots = tuple(tree.virtual_root + "/" for tree in _trees.values())
        _trees.clear()
    for path, finder in list(sys.path_importer_cache.items()):
        virtual = bool(roots) and isinstance(path, str) and path.startswith(roots)
        if virtual or isinstance(finder, PinnedPathEntryFinder):
            sys.path_importer_cache.pop(path, None)
    if roots:
        for filename in [f for f in list(linecache.cache) if f.startswith(roots)]:
            linecache.cache.pop(filename, None)


def _discover_tree(package: str, sha: str) -> PinnedTree:
    """Find the pin in the repository of the current directory (e.g. when unpickling)."""
    from zgit.repository import Repository

    try:
        repo = Repository.coerce(None)
        source_root = repo.config.source_root
    except ZgitError as exc:
        raise SourceNotFoundError(
            f"cannot import {package}@{sha}: {exc}. Pinned modules are brought back from the "
            "repository of the current directory: run this from inside it"
        ) from exc
    module_dir = "/".join(filter(None, [source_root, package.replace(".", "/")]))
    if not repo.git.has_commit(sha):
        raise SourceNotFoundError(
            f"cannot import {package}@{sha}: {repo.git.missing_commit(sha)}; or run from the "
            "repository that has it"
        )
    return register(PinnedTree(repo.git, module_dir, package, sha))


# -- finder and loader -------------------------------------------------------------------


class PinnedFinder(importlib.abc.MetaPathFinder):
    """Finds modules whose names carry a pin (``a.b@<40 hex>...``)."""

    @classmethod
    def find_spec(cls, fullname: str, path: Any = None, target: Any = None):
        if "@" not in fullname:
            # While a checkout has a pin on disk, that module directory's working names
            # are served from HEAD (zgit.loader.working); otherwise one tuple test.
            return working.find_spec(fullname) if working._served else None
        parts = split_pinned_name(fullname)
        if parts is None:
            return None
        package, sha, rest = parts
        tree = _trees.get((package, sha)) or _discover_tree(package, sha)
        rest = rest.lstrip(".")
        found = tree.find(rest)
        if found is None:
            return None
        repo_path, is_package = found
        loader = PinnedLoader(tree, fullname, repo_path, is_package)
        namespace = is_package and not repo_path.endswith(".py")
        origin = None if namespace else tree.virtual_path(repo_path)
        spec = importlib.machinery.ModuleSpec(fullname, loader, origin=origin, is_package=is_package)
        if is_package:
            package_dir = repo_path if namespace else repo_path.rsplit("/", 1)[0]
            spec.submodule_search_locations = [tree.virtual_path(package_dir)]
        spec.has_location = not namespace
        return spec

    @classmethod
    def invalidate_caches(cls) -> None:
        pass


def _pinned_import_underway(top: str) -> Optional[str]:
    """A pinned module name below the top-level package ``top`` that is being imported
    right now (its module lock is held), if any."""
    locks = getattr(importlib._bootstrap, "_module_locks", None) or {}  # type: ignore[attr-defined]
    for name in list(locks):
        if "@" in name and name.startswith(top + "."):
            parts = split_pinned_name(name)
            if parts is not None and (parts[0] == top or parts[0].startswith(top + ".")):
                return name
    return None


class PinnedParentFinder(importlib.abc.MetaPathFinder):
    """Last on ``sys.meta_path``: the real top-level package above a pinned module directory.

    Importing ``a.b@<sha>.c`` (say, unpickling a pinned model) first imports ``a``.  When no
    other finder finds it -- the process runs from a sub-directory of the repository, so
    the source root is not on ``sys.path`` -- this finder imports it from the source root
    of the repository of the current directory; outside any repository it raises
    :class:`SourceNotFoundError` naming the pin.  Consulted only by imports that would
    otherwise fail, so it costs nothing to any other import.
    """

    @classmethod
    def find_spec(cls, fullname: str, path: Any = None, target: Any = None):
        if path is not None or "@" in fullname or "." in fullname:
            return None
        pinned = _pinned_import_underway(fullname)
        if pinned is None:
            return None
        package, sha, _ = split_pinned_name(pinned)  # type: ignore[misc]
        tree = _trees.get((package, sha)) or _discover_tree(package, sha)
        return importlib.machinery.PathFinder.find_spec(fullname, [str(tree.source_root)])

    @classmethod
    def invalidate_caches(cls) -> None:
        pass


class PinnedLoader(importlib.abc.InspectLoader):
    """Executes one pinned module from its blob; also serves its source and data files."""

    def __init__(self, tree: PinnedTree, fullname: str, repo_path: str, is_package: bool) -> None:
        self.tree = tree
        self.name = fullname
        self.repo_path = repo_path
        self._is_package = is_package
        self._namespace = is_package and not repo_path.endswith(".py")
        self.path = tree.virtual_path(repo_path)

    def is_package(self, fullname: str) -> bool:
        return self._is_package

    def get_filename(self, fullname: Optional[str] = None) -> str:
        return self.path

    def get_source(self, fullname: str) -> Optional[str]:
        if self._namespace:
            return ""
        return importlib.util.decode_source(self.tree.read(self.repo_path))

    def get_code(self, fullname: str) -> types.CodeType:
        if self._namespace:
            return compile("", self.path, "exec", dont_inherit=True)
        # Compiled code is cached by blob id (never by path or mtime, so it cannot be
        # stale); co_filename is always this pin's virtual path.
        entry = self.tree.entries.get(self.repo_path)
        git = self.tree.git
        cache = (bytecode.cache_for(git.git_dir)
                 if entry is not None and not entry.is_gitlink and git.git_dir is not None else None)
        if cache is not None:
            code = cache.get(entry.oid, git.blob_size)  # type: ignore[union-attr]
            if code is not None:
                return bytecode.with_filename(code, self.path)
        data = self.tree.read(self.repo_path)
        code = compile(data, self.path, "exec", dont_inherit=True)
        if cache is not None:
            cache.put(entry.oid, len(data), code)  # type: ignore[union-attr]
        return code

    def get_data(self, path: str) -> bytes:
        repo_path = self.tree.repo_path(path)
        if repo_path is None:
            with open(path, "rb") as handle:
                return handle.read()
        return self.tree.read(repo_path)

    def create_module(self, spec):
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        code = self.get_code(self.name)
        if not self._namespace:
            # A lazy entry: linecache calls it when a traceback or inspect needs the lines,
            # and never checks it against the disk (where another version may live).
            linecache.cache[self.path] = (functools.partial(self.get_source, self.name),)
        module.__dict__["__builtins__"] = self.tree.builtins
        exec(code, module.__dict__)
        _tag(module, self.tree)

    def get_resource_reader(self, fullname: str):
        if not self._is_package:
            return None
        from zgit.loader.resources import PinnedResourceReader

        base = self.repo_path if self._namespace else self.repo_path.rsplit("/", 1)[0]
        return PinnedResourceReader(self.tree, base)


def _tag(module: types.ModuleType, tree: PinnedTree) -> None:
    """Give the module's own top-level classes and functions their source string."""
    name = module.__name__
    plain = tree.package + name[len(tree.pinned_package):]
    for attr, value in list(module.__dict__.items()):
        if not isinstance(value, (type, types.FunctionType)):
            continue
        if getattr(value, "__module__", None) != name or getattr(value, "__qualname__", None) != attr:
            continue
        try:
            type.__setattr__(value, "__zgit_source__", f"{plain}.{attr}@{tree.sha}") if isinstance(
                value, type
            ) else setattr(value, "__zgit_source__", f"{plain}.{attr}@{tree.sha}")
        except (TypeError, AttributeError):
            pass


class PinnedPathEntryFinder:
    """Path-entry finder for the virtual directories of pinned packages (``pkgutil``)."""

    def __init__(self, tree: PinnedTree, repo_dir: str) -> None:
        self.tree = tree
        self.repo_dir = repo_dir

    def find_spec(self, fullname: str, target: Any = None):
        return PinnedFinder.find_spec(fullname)

    def iter_modules(self, prefix: str = ""):
        for name, is_package in self.tree.iter_children(self.repo_dir):
            yield prefix + name, is_package

    def invalidate_caches(self) -> None:
        pass


def _path_hook(path: str) -> PinnedPathEntryFinder:
    if "@" in path:
        for tree in list(_trees.values()):
            repo_dir = tree.repo_path(path)
            if repo_dir is not None and repo_dir in tree.dirs:
                return PinnedPathEntryFinder(tree, repo_dir)
    raise ImportError("not a pinned zgit path")


def install() -> None:
    """Put zgit's finder first on ``sys.meta_path`` and its path hook on ``sys.path_hooks``.

    Idempotent.  Unrelated imports pay one string test (``'@' in name``) each.
    """
    if not any(f is PinnedFinder for f in sys.meta_path):
        sys.meta_path.insert(0, PinnedFinder)
    if not any(f is PinnedParentFinder for f in sys.meta_path):
        sys.meta_path.append(PinnedParentFinder)
    if _path_hook not in sys.path_hooks:
        sys.path_hooks.insert(0, _path_hook)
        sys.path_importer_cache.clear()


def import_parents(package: str, source_root: Path) -> None:
    """Import the real packages above a module directory (``a`` for ``a.b@<sha>``)."""
    if "." in package:
        import_real(package.rsplit(".", 1)[0], source_root)


def import_real(name: str, source_root: Path) -> types.ModuleType:
    """Import module ``name`` normally, from the repository's source root if need be.

    Each part not importable from ``sys.path`` is imported from ``source_root`` (for the
    top level) or its parent's ``__path__``, as if the source root were on ``sys.path``.
    """
    parts = name.split(".")
    module: Optional[types.ModuleType] = None
    for i in range(1, len(parts) + 1):
        current = ".".join(parts[:i])
        found = sys.modules.get(current)
        if found is not None:
            module = found
            continue
        try:
            module = importlib.import_module(current)
            continue
        except ModuleNotFoundError as exc:
            if exc.name != current:
                raise
        parent = module if i > 1 else None
        search = list(getattr(parent, "__path__", [])) if parent is not None else [str(source_root)]
        spec = importlib.machinery.PathFinder.find_spec(current, search)
        # A namespace package (a directory without __init__.py) has no loader until
        # module_from_spec gives it one.
        if spec is None or (spec.loader is None and spec.submodule_search_locations is None):
            raise SourceNotFoundError(
                f"cannot import {current!r}: it is neither on sys.path nor in {source_root}"
            )
        module = importlib.util.module_from_spec(spec)
        sys.modules[current] = module
        try:
            if spec.loader is not None:
                spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(current, None)
            raise
        if parent is not None:
            setattr(parent, parts[i - 1], module)
    assert module is not None
    return module
