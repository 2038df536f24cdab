"""The reproducibility audit: can the stored pipelines still be rebuilt exactly?

Every check reads stored YAML and the git object database; nothing pinned is ever
imported or executed (module sources are parsed with :mod:`ast`).  See the "Audit"
section of DESIGN.md for the finding codes and the JSON shape.

What is computed per pin is cached by (commit, module directory) and by blob id, and
the result for a source string is remembered for the whole run, so auditing many
pipelines that share a few pins costs little more than reading their YAML.
"""

from __future__ import annotations

import ast
import gc
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, FrozenSet, Iterable, List, Optional, Sequence, Tuple, Union

from zgit import yamlio
from zgit.errors import ConfigError, NotARepositoryError, SourceError, ZgitError
from zgit.pipeline import PipelineConfig
from zgit.layout import ModuleLocation, candidates, location_of_file, uncommitted_modules
from zgit.source import Source

ERROR = "error"
WARNING = "warning"
INFO = "info"

#: Every finding code and its severity (DESIGN.md, "Audit").
CODES: Dict[str, str] = {
    "bad-yaml": ERROR,
    "bad-schema": ERROR,
    "bad-source": ERROR,
    "unpinned": ERROR,
    "unknown-commit": ERROR,
    "missing-module": ERROR,
    "missing-class": ERROR,
    "dist-not-installed": ERROR,
    "dist-version-mismatch": ERROR,
    "drift": INFO,
    "outside-import": WARNING,
    "uncommitted-file": WARNING,
}
#: Finding codes about recorded runs that cannot be re-run (reported beside the files,
#: see audit_runs).
RUN_CODES: Dict[str, str] = {
    "run-unpinned": WARNING,
    "run-missing-commit": WARNING,
    "run-missing-input": WARNING,
    "run-output-not-recorded": WARNING,
}

YAML_SUFFIXES = (".yaml", ".yml")
FORMAT_VERSION = "1"


# -- the report --------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One problem (or note) about a file or a step."""

    code: str
    message: str
    severity: str = ""

    def __post_init__(self) -> None:
        if "\n" in self.message:  # one line, whatever the message came from
            object.__setattr__(self, "message", " ".join(self.message.split()))
        if not self.severity:
            object.__setattr__(self, "severity", CODES.get(self.code) or RUN_CODES[self.code])

    def to_dict(self) -> Dict[str, str]:
        return {"code": self.code, "severity": self.severity, "message": self.message}


@dataclass
class StepReport:
    """The audit of one step: its stored source and what was found about it."""

    step: str
    source: str
    findings: List[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the step reproduces (no error; warnings and infos allowed)."""
        return not any(f.severity == ERROR for f in self.findings)

    def to_dict(self) -> Dict[str, Any]:
        return {
            "step": self.step,
            "source": self.source,
            "ok": self.ok,
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass
class FileReport:
    """The audit of one YAML file: findings about the whole file, and its steps."""

    path: str
    pipeline: Optional[str] = None
    findings: List[Finding] = field(default_factory=list)
    steps: List[StepReport] = field(default_factory=list)

    def all_findings(self) -> Iterable[Finding]:
        yield from self.findings
        for step in self.steps:
            yield from step.findings

    @property
    def ok(self) -> bool:
        return not any(f.severity == ERROR for f in self.all_findings())

    def to_dict(self) -> Dict[str, Any]:
        return {
            "path": self.path,
            "pipeline": self.pipeline,
            "findings": [f.to_dict() for f in self.findings],
            "steps": [s.to_dict() for s in self.steps],
        }


@dataclass
class AuditReport:
    """Everything the audit found, file by file."""

    files: List[FileReport] = field(default_factory=list)
    # recorded runs that cannot be re-run: {"run", "pipeline", "findings"}; kept apart
    # from the files' findings, so they change neither the summary nor the exit status
    runs: List[Dict[str, Any]] = field(default_factory=list)

    def findings(self) -> Iterable[Finding]:
        for report in self.files:
            yield from report.all_findings()

    def summary(self) -> Dict[str, int]:
        """Counts of files, pipelines, steps, ok steps and findings by severity."""
        counts = {ERROR: 0, WARNING: 0, INFO: 0}
        for finding in self.findings():
            counts[finding.severity] += 1
        steps = [s for f in self.files for s in f.steps]
        return {
            "files": len(self.files),
            "pipelines": sum(1 for f in self.files if f.pipeline is not None),
            "steps": len(steps),
            "ok": sum(1 for s in steps if s.ok),
            "errors": counts[ERROR],
            "warnings": counts[WARNING],
            "infos": counts[INFO],
        }

    def to_dict(self) -> Dict[str, Any]:
        data: Dict[str, Any] = {"files": [f.to_dict() for f in self.files], "summary": self.summary()}
        if self.runs:
            data["runs"] = [dict(r, findings=[f.to_dict() for f in r["findings"]]) for r in self.runs]
        return data

    def to_json(self, indent: Optional[int] = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def exit_code(self, strict: bool = False) -> int:
        """0 when every pipeline reproduces, 1 otherwise (``strict``: warnings fail too)."""
        failing = (ERROR, WARNING) if strict else (ERROR,)
        return 1 if any(f.severity in failing for f in self.findings()) else 0


# -- reading the module sources at a pin (never importing them) ----------------------------


@dataclass(frozen=True)
class ModuleNames:
    """What a module binds at top level, read with :mod:`ast`.

    ``dynamic`` is True when the module can bind names we cannot see (``import *`` or a
    module-level ``__getattr__``); ``error`` says why the source could not be parsed.
    """

    names: FrozenSet[str] = frozenset()
    dynamic: bool = False
    error: Optional[str] = None

    def binds(self, name: str) -> bool:
        return self.dynamic or name in self.names


def _target_names(target: ast.AST, out: set) -> None:
    if isinstance(target, ast.Name):
        out.add(target.id)
    elif isinstance(target, (ast.Tuple, ast.List)):
        for elt in target.elts:
            _target_names(elt, out)
    elif isinstance(target, ast.Starred):
        _target_names(target.value, out)


def _bind_statements(body: Sequence[ast.stmt], out: set) -> bool:
    """Add the names ``body`` binds at module level to ``out``; True if dynamic."""
    dynamic = False
    for node in body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            out.add(node.name)
            if node.name == "__getattr__" and not isinstance(node, ast.ClassDef):
                dynamic = True
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                _target_names(target, out)
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            if isinstance(node, ast.AugAssign) or node.value is not None:
                _target_names(node.target, out)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                out.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name == "*":
                    dynamic = True
                else:
                    out.add(alias.asname or alias.name)
        elif isinstance(node, (ast.For, ast.AsyncFor)):
            _target_names(node.target, out)
            dynamic |= _bind_statements(node.body, out)
            dynamic |= _bind_statements(node.orelse, out)
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                if item.optional_vars is not None:
                    _target_names(item.optional_vars, out)
            dynamic |= _bind_statements(node.body, out)
        elif isinstance(node, (ast.If, ast.While)):
            dynamic |= _bind_statements(node.body, out)
            dynamic |= _bind_statements(node.orelse, out)
        elif isinstance(node, ast.Try) or type(node).__name__ == "TryStar":
            dynamic |= _bind_statements(node.body, out)  # type: ignore[attr-defined]
            for handler in node.handlers:  # type: ignore[attr-defined]
                if handler.name:
                    out.add(handler.name)
                dynamic |= _bind_statements(handler.body, out)
            dynamic |= _bind_statements(node.orelse, out)  # type: ignore[attr-defined]
            dynamic |= _bind_statements(node.finalbody, out)  # type: ignore[attr-defined]
        elif isinstance(node, ast.Match):
            for case in node.cases:
                dynamic |= _bind_statements(case.body, out)
    return dynamic


def _parse(source: bytes, filename: str) -> "ast.Module | str":
    """The module's syntax tree, or a one-line reason it cannot be parsed."""
    try:
        return ast.parse(source, filename=filename)
    except SyntaxError as exc:
        return f"SyntaxError: {exc.msg} (line {exc.lineno})"
    except (ValueError, TypeError, RecursionError, MemoryError, OverflowError) as exc:
        return f"{type(exc).__name__}: {exc}"


def module_names(source: bytes, filename: str = "<pinned>") -> ModuleNames:
    """The names a module's source binds at top level (also inside top-level if/try/...)."""
    tree = _parse(source, filename)
    if isinstance(tree, str):
        return ModuleNames(error=tree)
    return _names_of(tree)


def _names_of(tree: ast.Module) -> ModuleNames:
    out: set = set()
    dynamic = _bind_statements(tree.body, out)
    return ModuleNames(frozenset(out), dynamic)


@dataclass(frozen=True)
class ImportRef:
    """One import statement: ``level`` dots, the module after them, the imported names."""

    level: int
    module: str
    names: Tuple[str, ...]   # empty for 'import a.b.c'
    lineno: int


def module_imports(source: bytes, filename: str = "<pinned>") -> Tuple[ImportRef, ...]:
    """Every import statement anywhere in a module (also inside functions), in source order."""
    return module_facts(source, filename).imports


# The nodes that hold statements, and their fields that do, in source order.
_STATEMENT_LISTS: Dict[type, Tuple[str, ...]] = {
    ast.FunctionDef: ("body",), ast.AsyncFunctionDef: ("body",), ast.ClassDef: ("body",),
    ast.For: ("body", "orelse"), ast.AsyncFor: ("body", "orelse"), ast.While: ("body", "orelse"),
    ast.If: ("body", "orelse"), ast.With: ("body",), ast.AsyncWith: ("body",),
    ast.Try: ("body", "handlers", "orelse", "finalbody"), ast.ExceptHandler: ("body",),
    ast.Match: ("cases",), ast.match_case: ("body",),
}
if hasattr(ast, "TryStar"):  # Python 3.11+
    _STATEMENT_LISTS[ast.TryStar] = ("body", "handlers", "orelse", "finalbody")  # type: ignore[attr-defined]


def _collect_imports(body: Sequence[ast.AST], out: List[ImportRef]) -> None:
    """Import statements in ``body`` and every statement list below it.  Statements never
    sit inside expressions, so expressions (most of a module's nodes) are not visited."""
    for node in body:
        kind = type(node)
        if kind is ast.Import:
            for alias in node.names:  # type: ignore[attr-defined]
                out.append(ImportRef(0, alias.name, (), node.lineno))  # type: ignore[attr-defined]
        elif kind is ast.ImportFrom:
            out.append(ImportRef(node.level or 0, node.module or "",  # type: ignore[attr-defined]
                                 tuple(a.name for a in node.names), node.lineno))  # type: ignore[attr-defined]
        else:
            fields = _STATEMENT_LISTS.get(kind)
            if fields:
                for name in fields:
                    _collect_imports(getattr(node, name), out)


@dataclass(frozen=True)
class ModuleFacts:
    """What the audit reads from one module's source, from a single parse."""

    names: ModuleNames
    imports: Tuple[ImportRef, ...]


def module_facts(source: bytes, filename: str = "<pinned>") -> ModuleFacts:
    """Top-level names and every import statement of a module, parsing it once."""
    tree = _parse(source, filename)
    if isinstance(tree, str):
        return ModuleFacts(ModuleNames(error=tree), ())
    imports: List[ImportRef] = []
    if (b"import" if isinstance(source, (bytes, bytearray)) else "import") in source:
        # no statement imports without the word (source encodings are ASCII-compatible)
        _collect_imports(tree.body, imports)
    return ModuleFacts(_names_of(tree), tuple(imports))


def locate(git: Any, sha: str, module: str, source_root: str) -> Optional[ModuleLocation]:
    """Where module ``module`` is at commit ``sha`` (plain module first, then package)."""
    for location in candidates(module, source_root):
        found = git.entry(sha, location.file)
        if found is not None and not found.is_gitlink:
            return location
    return None


# -- the checks ----------------------------------------------------------------------------


def _short(sha: str) -> str:
    return sha[:12]


def _join(root: str, rel: str) -> str:
    return f"{root}/{rel}" if root else rel


class _RepoChecker:
    """Checks sources against one repository, caching by commit, directory and blob.

    Each blob is parsed once (:func:`module_facts`: names and imports together) however
    many steps, pipelines and pins share it; each (commit, directory) is listed once.
    """

    def __init__(self, repository: Any, source_root: Optional[str] = None) -> None:
        self.repository = repository
        self.git = repository.git
        self.source_root: str = repository.config.source_root if source_root is None else source_root
        self.head: Optional[str] = self.git.head_sha()
        self._commits: Dict[str, bool] = {}
        self._locations: Dict[Tuple[str, str], Optional[ModuleLocation]] = {}
        self._facts: Dict[str, ModuleFacts] = {}
        self._files: Dict[Tuple[str, str], Optional[str]] = {}
        self._dirs: Dict[Tuple[str, str], List[Finding]] = {}
        self._entries: Dict[Tuple[str, str], Optional[Dict[str, Any]]] = {}
        self._top_names: Dict[str, FrozenSet[str]] = {}
        self._file_locations: Dict[str, Optional[ModuleLocation]] = {}

    # cached lookups

    def has_commit(self, sha: str) -> bool:
        found = self._commits.get(sha)
        if found is None:
            found = self._commits[sha] = self.git.has_commit(sha)
        return found

    def location(self, sha: str, module: str) -> Optional[ModuleLocation]:
        key = (sha, module)
        if key not in self._locations:
            self._locations[key] = locate(self.git, sha, module, self.source_root)
        return self._locations[key]

    def entries(self, sha: str, module_dir: str) -> Optional[Dict[str, Any]]:
        """The files below ``module_dir`` at ``sha`` (None when it does not exist there)."""
        key = (sha, module_dir)
        if key not in self._entries:
            self._entries[key] = self.git.entries(sha, module_dir)
        return self._entries[key]

    def facts(self, oid: str, path: str) -> ModuleFacts:
        """Names and imports of blob ``oid`` (parsed once per audit)."""
        found = self._facts.get(oid)
        if found is None:
            found = self._facts[oid] = module_facts(self.git.blob(oid), path)
        return found

    def names_of(self, sha: str, location: ModuleLocation) -> ModuleNames:
        entry = (self.entries(sha, location.module_dir) or {}).get(location.file)
        if entry is None or entry.is_gitlink:
            return ModuleNames(error="the file is absent")
        return self.facts(entry.oid, location.file).names

    def _file_location(self, path: str) -> Optional[ModuleLocation]:
        if path not in self._file_locations:
            self._file_locations[path] = location_of_file(path, self.source_root)
        return self._file_locations[path]

    def _names_at_root(self, sha: str) -> FrozenSet[str]:
        """File and directory names directly in the source root at ``sha``."""
        found = self._top_names.get(sha)
        if found is None:
            found = self._top_names[sha] = frozenset(self.git.names(sha, self.source_root) or ())
        return found

    def _module_file(self, sha: str, module: str,
                     scope: Optional[Tuple[str, str, Dict[str, Any]]] = None) -> Optional[str]:
        """The repository file of module ``module`` at ``sha`` (also one in the source root).

        ``scope``: ``(package, module_dir, entries)`` of the module directory being
        checked: a module strictly below its package is looked up in ``entries``."""
        if scope is not None:
            package, module_dir, entries = scope
            if module.startswith(package + "."):
                rest = module[len(package) + 1:]
                if not all(p.isidentifier() for p in rest.split(".")):
                    return None
                base = module_dir + "/" + rest.replace(".", "/")
                for path in (base + ".py", base + "/__init__.py"):
                    entry = entries.get(path)
                    if entry is not None and not entry.is_gitlink:
                        return path
                return None
        key = (sha, module)
        if key in self._files:
            return self._files[key]
        parts = module.split(".")
        found = None
        top = self._names_at_root(sha)
        # Most imports name the standard library or installed packages: not in the
        # repository at all, which one look at the source root's names tells.
        if all(p.isidentifier() for p in parts) and (parts[0] in top or parts[0] + ".py" in top):
            rel = "/".join(parts)
            for path in (_join(self.source_root, rel + ".py"), _join(self.source_root, rel + "/__init__.py")):
                entry = self.git.entry(sha, path)
                if entry is not None and not entry.is_gitlink:
                    found = path
                    break
        self._files[key] = found
        return found

    # the per-directory checks: drift and outside imports

    def directory_findings(self, sha: str, module_dir: str) -> List[Finding]:
        key = (sha, module_dir)
        found = self._dirs.get(key)
        if found is None:
            found = self._dirs[key] = (
                self._drift(sha, module_dir) + self._outside_imports(sha, module_dir)
                + self._uncommitted(sha, module_dir)
            )
        return found

    def _uncommitted(self, sha: str, module_dir: str) -> List[Finding]:
        missing = uncommitted_modules(self.git, sha, module_dir)
        if not missing:
            return []
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        return [Finding(
            "uncommitted-file",
            f"the pin depends on files that are not in commit {_short(sha)}: {shown} (ignored by "
            "git: generated?); a load of the pin cannot import them as they were. Commit them, "
            "or generate them outside the module directory",
        )]

    def _drift(self, sha: str, module_dir: str) -> List[Finding]:
        if self.head is None or self.head == sha:
            return []
        at_head = self.entries(self.head, module_dir)
        old = self.entries(sha, module_dir) or {}
        new = at_head or {}
        changed = sorted(p for p in old.keys() | new.keys() if old.get(p) != new.get(p))
        if not changed:
            return []
        gone = at_head is None
        shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
        what = "1 file" if len(changed) == 1 else f"{len(changed)} files"
        tail = " (the directory is gone at HEAD)" if gone else ""
        return [Finding(
            "drift",
            f"{what} of {module_dir}/ changed between the pin {_short(sha)} and HEAD "
            f"{_short(self.head)}{tail}: {shown}. The pin still reproduces; run "
            "'zgit pin' to move it to HEAD if that is what you want",
        )]

    def _outside_imports(self, sha: str, module_dir: str) -> List[Finding]:
        outside = self.outside_files(sha, module_dir)
        findings = []
        for target in sorted(outside):
            file, importers = outside[target]
            shown = ", ".join(importers[:3]) + (f" and {len(importers) - 3} more" if len(importers) > 3 else "")
            findings.append(Finding(
                "outside-import",
                f"{shown} imports {target} ({file}), which is outside the module directory "
                f"{module_dir}/: the pin covers only that directory, so this code is whatever "
                "is in the working tree when it runs. Move it into the module directory",
            ))
        return findings

    def outside_files(self, sha: str, module_dir: str) -> Dict[str, Tuple[str, List[str]]]:
        """Repository modules that the module directory's files import from outside it, at
        ``sha``: module name -> (its file, the importing ``file:line`` places).  Also the
        runs' code identity (:mod:`zgit.runs.keys`) covers these files."""
        entries = self.entries(sha, module_dir) or {}
        inside = module_dir + "/"
        prefix = self.source_root + "/" if self.source_root else ""
        package = module_dir[len(prefix):].replace("/", ".") if module_dir.startswith(prefix) else ""
        scope = (package, module_dir, entries) if package else None
        outside: Dict[str, Tuple[str, List[str]]] = {}
        for path in sorted(entries):
            entry = entries[path]
            if not path.endswith(".py") or entry.is_gitlink or entry.is_link:
                continue
            refs = self.facts(entry.oid, path).imports
            if not refs:
                continue
            here = self._file_location(path)
            for ref in refs:
                for target, file in self._resolve_import(sha, here, ref, scope):
                    if not file.startswith(inside):
                        outside.setdefault(target, (file, []))
                        importers = outside[target][1]
                        where = f"{path}:{ref.lineno}"
                        if where not in importers:
                            importers.append(where)
        return outside

    def _resolve_import(self, sha: str, here: Optional[ModuleLocation], ref: ImportRef,
                        scope: Optional[Tuple[str, str, Dict[str, Any]]] = None) -> List[Tuple[str, str]]:
        """The repository modules an import statement names, as (module, file) pairs.

        With ``scope`` (the module directory being checked), a statement whose module is
        strictly inside the directory's package gives nothing: whatever it names is inside."""
        if ref.level:
            if here is None:
                return []
            package = here.package.split(".") if here.package else []
            if ref.level - 1 > len(package):
                return []
            base_parts = package[: len(package) - (ref.level - 1)]
            base = ".".join(base_parts + ([ref.module] if ref.module else []))
        else:
            base = ref.module
        if not base or (scope is not None and base.startswith(scope[0] + ".")):
            return []
        out = []
        if not ref.names:
            file = self._module_file(sha, base, scope)
            if file is not None:
                out.append((base, file))
            return out
        base_file: Optional[str] = None
        base_looked = False
        for name in ref.names:
            if name != "*":
                file = self._module_file(sha, f"{base}.{name}", scope)
                if file is not None:
                    out.append((f"{base}.{name}", file))
                    continue
            if not base_looked:
                base_file = self._module_file(sha, base, scope)
                base_looked = True
                if base_file is not None:
                    out.append((base, base_file))
        return out

    # one source

    def check(self, source: Source) -> List[Finding]:
        sha: str = source.sha  # type: ignore[assignment]
        if not self.has_commit(sha):
            return [Finding("unknown-commit", self.repository.git.missing_commit(sha))]
        location = self.location(sha, source.module)
        if location is None:
            if "." not in source.module and self._module_file(sha, source.module) is not None:
                return [Finding(
                    "bad-source",
                    f"module {source.module!r} sits directly in the source root, so it has no "
                    "module directory and cannot be pinned; move it into a package directory",
                )]
            where = f"under source root {self.source_root!r}" if self.source_root else "in the repository"
            looked = " or ".join(c.file for c in candidates(source.module, self.source_root))
            return [Finding(
                "missing-module",
                f"module {source.module!r} does not exist at commit {_short(sha)} {where} "
                f"(looked for {looked})",
            )]
        findings: List[Finding] = []
        names = self.names_of(sha, location)
        if names.error is not None:
            findings.append(Finding(
                "missing-class",
                f"{location.file} at commit {_short(sha)} cannot be parsed ({names.error}), "
                f"so it cannot provide {source.attribute!r}",
            ))
        elif not names.binds(source.attribute):
            findings.append(Finding(
                "missing-class",
                f"{location.file} at commit {_short(sha)} defines no top-level "
                f"{source.attribute!r}; check the name or the commit",
            ))
        findings.extend(self.directory_findings(sha, location.module_dir))
        return findings


def _pin_spelling(version: Optional[str]) -> Optional[str]:
    """A version as the loader compares it (``zgit.distributions.pin_version``)."""
    try:
        from zgit.distributions import pin_version
    except ImportError:
        return version
    return pin_version(version) or version


class _Auditor:
    def __init__(self, repo: Any) -> None:
        self._fixed = repo
        self._checkers: Dict[Any, Optional[_RepoChecker]] = {}
        self._by_dir: Dict[str, Optional[_RepoChecker]] = {}
        self._results: Dict[Tuple[int, str], List[Finding]] = {}
        self._dist_versions: Dict[str, Optional[str]] = {}

    def checker_for(self, path: Path) -> Optional[_RepoChecker]:
        if self._fixed is not None:
            return self._checker(self._fixed)
        directory = os.path.dirname(os.path.abspath(path))
        if directory not in self._by_dir:
            from zgit.repository import Repository

            try:
                repository = Repository.coerce(directory)
            except NotARepositoryError:
                try:
                    repository = Repository.coerce(None)
                except NotARepositoryError:
                    repository = None
            self._by_dir[directory] = self._checker(repository) if repository is not None else None
        return self._by_dir[directory]

    def _checker(self, repository: Any, source_root: Optional[str] = None) -> _RepoChecker:
        key = (id(repository), source_root)
        found = self._checkers.get(key)
        if found is None:
            found = self._checkers[key] = _RepoChecker(repository, source_root)
        return found

    def installed_version(self, name: str) -> Optional[str]:
        """The installed version of distribution ``name`` in pin spelling, or None."""
        if name not in self._dist_versions:
            try:
                from zgit.distributions import installed_version
            except ImportError:
                version = None
            else:
                version = installed_version(name)
            self._dist_versions[name] = version
        return self._dist_versions[name]

    def check_source(self, text: str, checker: Optional[_RepoChecker]) -> List[Finding]:
        key = (id(checker), text)
        found = self._results.get(key)
        if found is None:
            found = self._results[key] = self._check_source(text, checker)
        return found

    def _check_source(self, text: str, checker: Optional[_RepoChecker]) -> List[Finding]:
        try:
            source = Source.parse(text)
        except SourceError as exc:
            return [Finding("bad-source", str(exc))]
        if source.kind == "unpinned" and source.module == "__main__":
            return [Finding(
                "unpinned",
                f"{text} is defined interactively (in a notebook cell, the REPL or a script's "
                "__main__), so no other process can load it: move it into a module file inside a "
                "package directory (e.g. steps/my_step.py), import it from there, commit, and "
                "save the pipeline again",
            )]
        if source.kind == "unpinned":
            return [Finding(
                "unpinned",
                f"{text} has no pin, so whatever version is in the working tree would run: "
                "commit its module directory and run 'zgit pin' (or save the pipeline again)",
            )]
        if source.kind == "dist":
            installed = self.installed_version(source.distribution)  # type: ignore[arg-type]
            if installed is None:
                return [Finding(
                    "dist-not-installed",
                    f"distribution {source.distribution!r} is not installed: "
                    f"pip install '{source.distribution.replace('_', '-')}=={source.version}'",  # type: ignore[union-attr]
                )]
            if installed != _pin_spelling(source.version):
                return [Finding(
                    "dist-version-mismatch",
                    f"distribution {source.distribution!r} {installed} is installed but the pin "
                    f"says {source.version}: pip install "
                    f"'{source.distribution.replace('_', '-')}=={source.version}'",  # type: ignore[union-attr]
                )]
            return []
        if checker is None or not checker.has_commit(source.sha):  # type: ignore[arg-type]
            # Code installed editable from another work tree is pinned by that tree's commit.
            home = self.home_checker(source)
            if home is not None:
                return home.check(source)
        if checker is None:
            return [Finding(
                "unknown-commit",
                f"commit {source.sha} cannot be looked up: the file is not inside a git "
                "repository (run zgit from the repository, or pass it)",
            )]
        return checker.check(source)

    def home_checker(self, source: Source) -> Optional[_RepoChecker]:
        """The checker of the work tree on ``sys.path`` that holds ``source``'s module
        and has its commit (found without importing anything), or None."""
        from zgit.home import module_home

        found = module_home(source.module, source.sha)  # type: ignore[arg-type]
        return None if found is None else self._checker(found[0], found[1])

    # one file

    def audit_file(self, path: Path, shown: str) -> FileReport:
        report = FileReport(shown)
        try:
            data = _read_yaml(path, shown)
        except ConfigError as exc:
            report.findings.append(Finding("bad-yaml", str(exc)))
            return report
        checker = self.checker_for(path)  # a bad .zgit/config.yaml is the repository's error
        try:
            self._audit_data(data, checker, shown, report)
        except ZgitError as exc:
            report.findings.append(Finding("bad-schema", f"{shown}: {exc}"))
        except RecursionError as exc:
            report.findings.append(Finding("bad-yaml", f"{shown}: nested too deeply to check: {exc}"))
        return report

    def _audit_data(self, data: Any, checker: Optional[_RepoChecker], shown: str, report: FileReport) -> None:
        # The loader's own validation is the last word, and the fast path: a file it
        # accepts needs no second look at its shape.
        try:
            config = PipelineConfig.from_data(data, shown)
        except ConfigError as exc:
            loader_error: Optional[str] = str(exc)
        else:
            report.pipeline = config.name
            steps = data["steps"]
            for step in config.steps:
                text = steps[step.name]["source"]
                report.steps.append(StepReport(step.name, text, list(self.check_source(text, checker))))
            return
        self._audit_shape(data, checker, shown, report)
        if not report.findings and not any(f.code == "bad-source" for s in report.steps for f in s.findings):
            # Never call a file fine that get_pipeline_by_name would refuse.
            report.findings.append(Finding("bad-schema", loader_error))

    def _audit_shape(self, data: Any, checker: Optional[_RepoChecker], shown: str, report: FileReport) -> None:
        """Validate ``data`` piece by piece, so that one bad key does not hide the rest."""

        def bad(message: str) -> None:
            report.findings.append(Finding("bad-schema", f"{shown}: {message}"))

        if not isinstance(data, dict):
            kind = "empty" if data is None else f"a {type(data).__name__}"
            bad(f"the top level is {kind}; it must be a mapping with 'version', 'name' and 'steps'")
            return
        for key in ("version", "name", "steps"):
            if key not in data:
                bad(f"key {key!r} is missing")
        if "version" in data:
            version = data["version"]
            if isinstance(version, bool) or str(version) != FORMAT_VERSION:
                bad(f"key 'version' is {_brief(version)}; this zgit reads version '1'")
        name = data.get("name")
        if isinstance(name, str) and name.strip():
            report.pipeline = name
        elif "name" in data:
            bad("key 'name' must be a non-empty string")
        steps = data.get("steps")
        if "steps" in data and not isinstance(steps, dict):
            bad("key 'steps' must be a mapping of step names to steps")
            return
        if not isinstance(steps, dict):
            return
        for step_name, step in steps.items():
            key = f"steps.{step_name}"
            if not isinstance(step_name, str) or not step_name:
                bad(f"key {_brief(key)}: step names must be non-empty strings")
                continue
            if not isinstance(step, dict):
                bad(f"key {key!r} must be a mapping with 'source' and 'args'")
                continue
            text = step.get("source")
            if not isinstance(text, str):
                bad(f"key '{key}.source' must be a source string" + ("" if "source" in step else " (it is missing)"))
                continue
            args = step.get("args", {})
            if args is not None and (not isinstance(args, dict) or not all(isinstance(k, str) for k in args)):
                bad(f"key '{key}.args' must be a mapping of argument names to values")
            report.steps.append(StepReport(step_name, text, list(self.check_source(text, checker))))


def _brief(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _read_yaml(path: Path, shown: Optional[str] = None) -> Any:
    """Parse one YAML file; :class:`ConfigError` for anything that is not a readable YAML file."""
    return yamlio.read(path, shown)


def _shown_path(path: Path, _dirs: Dict[Tuple[str, str], str] = {}) -> str:
    """``path`` relative to the current directory when below it, else absolute (POSIX)."""
    directory, name = os.path.split(os.path.abspath(path))
    key = (os.getcwd(), directory)
    shown = _dirs.get(key)
    if shown is None:
        try:
            rel = os.path.relpath(directory)
        except ValueError:
            rel = os.pardir
        if rel == os.pardir or rel.startswith(os.pardir + os.sep):
            shown = Path(directory).as_posix()
        else:
            shown = "" if rel == os.curdir else Path(rel).as_posix()
        if len(_dirs) > 1024:
            _dirs.clear()
        _dirs[key] = shown
    return f"{shown}/{name}" if shown and not shown.endswith("/") else shown + name


def yaml_files_in(directory: Path) -> List[Path]:
    """The ``*.yaml`` / ``*.yml`` entries directly in ``directory`` (not hidden, not
    directories), sorted.  Broken links and the like are kept: they become findings."""
    names = []
    try:
        with os.scandir(directory) as scan:
            for item in scan:
                if not item.name.endswith(YAML_SUFFIXES) or item.name.startswith("."):
                    continue
                try:
                    if item.is_dir():
                        continue
                except OSError:
                    pass
                names.append(item.name)
    except OSError:
        pass
    return [Path(directory) / name for name in sorted(names)]


def expand_paths(paths: Sequence[Union[str, "os.PathLike[str]"]]) -> List[Path]:
    """Files to audit: a directory gives its YAML files, any other path is taken as is."""
    out: List[Path] = []
    seen = set()
    for raw in paths:
        path = Path(raw)
        found = yaml_files_in(path) if path.is_dir() else [path]
        for item in found:
            key = os.path.abspath(item)
            if key not in seen:
                seen.add(key)
                out.append(item)
    return out


def audit_paths(paths: Optional[Sequence[Union[str, "os.PathLike[str]"]]] = None, repo: Any = None) -> AuditReport:
    """Audit stored pipeline YAML without importing or executing anything it names.

    ``paths``: files and directories (a directory gives its ``*.yaml``/``*.yml`` files; a
    file is audited whatever its suffix); default: the repository's ``pipelines/``.
    ``repo``: a :class:`~zgit.Repository`, a path, or None (each file's own repository,
    else the one holding the current directory).  Problems with the files become findings;
    :class:`NotARepositoryError` only when ``paths`` is None outside any repository.
    """
    from zgit.repository import Repository

    repository = Repository.coerce(repo) if repo is not None or paths is None else None
    if paths is None:
        pipelines_dir = repository.pipelines_dir  # type: ignore[union-attr]
        paths = [pipelines_dir] if pipelines_dir.is_dir() else []
    auditor = _Auditor(repository)
    report = AuditReport()
    # Reading thousands of small files makes only acyclic garbage: the cycle collector
    # would just walk the growing report again and again.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for path in expand_paths(paths):
            report.files.append(auditor.audit_file(path, _shown_path(path)))
    finally:
        if gc_was_enabled:
            gc.enable()
    return report


def audit_runs(repository: Any) -> List[Dict[str, Any]]:
    """Completed runs recorded in the repository's run store that cannot be re-run (an
    unpinned step, a missing commit, a missing input artifact), each as ``{"run",
    "pipeline", "findings"}``.  Reads the store only if it exists; imports none of the
    recorded code."""
    path = Path(repository.config.store_path)
    path = path if path.is_absolute() else repository.root / path
    if not (path / "runs.sqlite").is_file():
        return []
    from zgit.runs.rerun import rerun_problems

    store = repository.run_store
    out = []
    for summary in store.list_runs():
        if summary.status != "completed":
            continue
        run = store.get_run(summary.id)
        problems = rerun_problems(run, repository, store)
        if problems:
            findings = [Finding(code, (f"step {step}: " if step else "") + why) for code, step, why in problems]
            out.append({"run": run.id, "pipeline": run.pipeline, "findings": findings})
    return out
