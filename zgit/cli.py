"""The ``zgit`` command line.

Each subcommand imports what it needs when it runs, so ``zgit --help`` stays fast.
Expected failures (every :class:`zgit.ZgitError`) print ``zgit: error: <message>`` and
exit 1; usage errors exit 2 with a one-line reason; Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import warnings
from typing import Any, List, NoReturn, Optional, Sequence, TextIO

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A command line that cannot be run as given (exit 2)."""

    def __init__(self, message: str, prog: str = "zgit") -> None:
        super().__init__(message)
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and exit 2 (via :class:`UsageError`)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, self.prog)


def _sub(subparsers: Any, name: str, help: str, description: str, example: str) -> argparse.ArgumentParser:
    return subparsers.add_parser(
        name,
        help=help,
        description=description,
        epilog="example:\n" + "\n".join("  " + line for line in example.strip().splitlines()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def build_parser() -> argparse.ArgumentParser:
    from zgit._version import __version__

    parser = _Parser(
        prog="zgit",
        description="Make the classes of ML pipelines reproducible by git commit.",
        epilog=(
            "examples:\n"
            "  zgit audit                      # can every stored pipeline still be reproduced?\n"
            "  zgit show trainers.step.Trainer@e9448e0\n"
            "  zgit <command> --help           # more about one command"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"zgit {__version__}")
    parser.add_argument("-C", dest="chdir", metavar="DIR",
                        help="run as if zgit was started in DIR (like git -C)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)

    p = _sub(sub, "audit", "check that stored pipelines can be reproduced, without running them",
             "Check every stored source without importing or executing anything: the YAML\n"
             "parses and fits the schema, each source is pinned, its commit exists, the\n"
             "module and class exist at that commit, distribution pins match what is\n"
             "installed; report drift (info) and imports from the module directory into\n"
             "repository code outside it (warning).\n\n"
             "exit status: 0 every pipeline reproduces, 1 some does not (with --strict:\n"
             "or has a warning), 2 usage error.",
             "zgit audit                                # the repository's pipelines/\n"
             "zgit audit pipelines/my_pipeline.yaml --format json\n"
             "zgit audit --strict                       # warnings fail too (CI)")
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="YAML files or directories (default: the repository's pipelines/)")
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    p.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    p.set_defaults(func=cmd_audit)

    p = _sub(sub, "init", "set up zgit in a git repository (.zgit/config.yaml, pipelines/)",
             "Create .zgit/config.yaml (unless present) and pipelines/ at the root of the git\n"
             "work tree that holds PATH.",
             "zgit init                  # in a git work tree (git init first)\nzgit init path/to/project")
    p.add_argument("path", nargs="?", default=".", metavar="PATH", help="a directory in the work tree (default: .)")
    p.set_defaults(func=cmd_init)

    p = _sub(sub, "resolve", "print the pinned source of a class or function",
             "Import OBJECT from the working tree and print the source that pins it:\n"
             "module.Class@<commit> when its module directory is clean, @<dist>_<version>\n"
             "for installed packages, or the unpinned source with a warning saying why.",
             "zgit resolve trainers.my_awesome_trainer.my_trainer_step.MyAwesomeTrainer\n"
             "zgit resolve trainers/my_awesome_trainer/my_trainer_step.py:MyAwesomeTrainer")
    p.add_argument("object", metavar="OBJECT", help="an import path pkg.mod.Class, or path/to/file.py:Class")
    p.set_defaults(func=cmd_resolve)

    p = _sub(sub, "show", "print a module's source at a pin, from the git object database",
             "Print the source text of SOURCE's module as it is at the pin (read from git's\n"
             "object database; the working tree is not touched). Short commit ids are\n"
             "accepted; an ambiguous one is an error.",
             "zgit show trainers.my_awesome_trainer.my_trainer_step.MyAwesomeTrainer@e9448e0")
    p.add_argument("source", metavar="SOURCE", help="module.Class@<commit> (or @<dist>_<version>)")
    p.set_defaults(func=cmd_show)

    p = _sub(sub, "load", "load a pinned source and report what was loaded",
             "Load SOURCE exactly as a stored pipeline would (this runs the pinned module's\n"
             "code) and report the class, the pin, the strategy and the time it took.",
             "zgit load trainers.my_awesome_trainer.my_trainer_step.MyAwesomeTrainer@e9448e0 --strategy memory")
    p.add_argument("source", metavar="SOURCE", help="module.Class@<commit> (short commit ids accepted)")
    p.add_argument("--strategy", choices=("checkout", "memory"), default=None,
                   help="how to load git pins (default: the repository's loader.strategy)")
    p.set_defaults(func=cmd_load)

    p = _sub(sub, "pipelines", "list stored pipelines with their files and pin status",
             "List the pipelines stored in the repository's pipelines/ directory: name, file\n"
             "and whether every step is pinned and reproducible (see zgit audit for details).",
             "zgit pipelines")
    p.set_defaults(func=cmd_pipelines)

    p = _sub(sub, "pin", "pin unpinned or drifted git sources in stored YAML to HEAD",
             "Rewrite stored pipeline YAML so that unpinned git sources, and git sources whose\n"
             "module directory changed since their pin, point at HEAD. Only sources whose\n"
             "module directory is clean are pinned; only the 'source' values change.\n\n"
             "exit status: 0 done (or nothing to do); 1 when a source needing a pin cannot\n"
             "get one, or with --check when something would change; 2 usage error.",
             "zgit pin                                  # all of pipelines/\n"
             "zgit pin --check pipelines/my_pipeline.yaml   # CI: fail if not up to date")
    p.add_argument("paths", nargs="*", metavar="FILE", help="YAML files or directories (default: pipelines/)")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if something would change")
    p.set_defaults(func=cmd_pin)

    p = _sub(sub, "recover", "undo a temporary checkout left behind by a process that died",
             "Restore module directories that a killed 'checkout' load left at a pinned\n"
             "version. Waits for the checkout lock, so it never undoes a live load. Files\n"
             "edited since then are never overwritten: recover refuses and names them, unless\n"
             "they now equal HEAD (kept and committed) or --keep-edits says to keep them.",
             "zgit recover\nzgit recover --keep-edits   # keep my edited files as they are, restore the rest")
    p.add_argument("--keep-edits", action="store_true",
                   help="keep files edited since the checkout as they are; restore everything else")
    p.set_defaults(func=cmd_recover)

    p = _sub(sub, "demo", "run the end-to-end demo in a temporary repository",
             "Build a throwaway repository, save a pipeline, change the code, and load the\n"
             "pinned version back.",
             "zgit demo\nzgit demo --keep     # keep the temporary repository to look at")
    p.add_argument("--keep", action="store_true", help="keep the temporary repository")
    p.set_defaults(func=cmd_demo)
    _add_run_commands(sub)
    return parser


# -- helpers ----------------------------------------------------------------------------------


def _repository() -> Any:
    from zgit.repository import Repository

    return Repository.coerce(None)


def _use_color(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class _Paint:
    CODES = {"red": "31", "green": "32", "yellow": "33", "dim": "2", "bold": "1"}

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str, colour: str) -> str:
        if not self.enabled:
            return text
        return f"\x1b[{self.CODES[colour]}m{text}\x1b[0m"


_SHORT_SHA = re.compile(r"[0-9a-fA-F]{4,39}")
_FULL_SHA = re.compile(r"[0-9a-f]{40}")


def _expand_source(text: str, repository_factory: Any = _repository) -> Any:
    """Parse a source from the command line, expanding a short commit id (or a ref)."""
    from zgit.errors import SourceError
    from zgit.source import Source

    path, sep, pin = text.partition("@")
    if not sep or _FULL_SHA.fullmatch(pin):
        return Source.parse(text)
    if _SHORT_SHA.fullmatch(pin):
        sha = repository_factory().git.expand_commit(pin.lower())
        return Source.parse(f"{path}@{sha}")
    try:
        return Source.parse(text)
    except SourceError:
        # Not a distribution pin: maybe a branch or tag name.
        Source.parse(path)  # the part before '@' must be well formed anyway
        try:
            sha = repository_factory().git.expand_commit(pin)
        except Exception:
            raise SourceError(
                f"bad source {text!r}: {pin!r} is neither a commit (hex digits), a branch or tag, "
                "nor a '<distribution>_<version>' pin"
            ) from None
        return Source.parse(f"{path}@{sha}")


# -- audit ------------------------------------------------------------------------------------


def _finding_line(finding: Any, paint: _Paint) -> str:
    colour = {"error": "red", "warning": "yellow", "info": "dim"}[finding.severity]
    return f"{paint(finding.severity, colour)} {finding.code}: {finding.message}"


def format_text(report: Any, color: bool = False) -> str:
    """The audit report as text: a line per step (findings below it) and a summary line."""
    paint = _Paint(color)
    lines: List[str] = []
    for file in report.files:
        title = file.path + (f"  ({file.pipeline})" if file.pipeline else "")
        lines.append(paint(title, "bold"))
        for finding in file.findings:
            lines.append("  " + _finding_line(finding, paint))
        width = max((len(s.step) for s in file.steps), default=0)
        for step in file.steps:
            severities = {f.severity for f in step.findings}
            if "error" in severities:
                status = paint("FAIL", "red")
            elif "warning" in severities:
                status = paint("warn", "yellow")
            else:
                status = paint("ok  ", "green")
            lines.append(f"  {status} {step.step.ljust(width)}  {step.source}")
            for finding in step.findings:
                lines.append("         " + _finding_line(finding, paint))
    s = report.summary()
    plural = lambda n, word: f"{n} {word}" + ("" if n == 1 else "s")  # noqa: E731
    summary = (
        f"{plural(s['files'], 'file')}, {plural(s['pipelines'], 'pipeline')}, "
        f"{plural(s['steps'], 'step')} ({s['ok']} ok): {plural(s['errors'], 'error')}, "
        f"{plural(s['warnings'], 'warning')}, {s['infos']} info"
    )
    if not report.files:
        summary = "no pipeline files found; " + summary
    colour = "red" if s["errors"] else ("yellow" if s["warnings"] else "green")
    lines.append(paint(summary, colour))
    return "\n".join(lines) + "\n"


def cmd_audit(args: argparse.Namespace, out: TextIO) -> int:
    from zgit.audit import audit_paths

    paths: Optional[List[str]] = None
    if args.paths:
        missing = [p for p in args.paths if not os.path.lexists(p)]
        if missing:
            raise UsageError(f"no such file or directory: {missing[0]}", "zgit audit")
        paths = list(args.paths)
    report = audit_paths(paths)
    if paths is None:
        _audit_recorded_runs(report)
    if args.format == "json":
        out.write(report.to_json() + "\n")
    else:
        out.write(format_text(report, _use_color(out)))
        out.write(format_run_findings(report.runs))
    return report.exit_code(args.strict)


# -- the other commands -----------------------------------------------------------------------


def cmd_init(args: argparse.Namespace, out: TextIO) -> int:
    from zgit.repository import Repository

    if not os.path.isdir(args.path):
        raise UsageError(f"not a directory: {args.path}", "zgit init")
    repo = Repository.init(args.path)
    out.write(f"zgit is set up in {repo.root}: .zgit/config.yaml and pipelines/\n")
    return EXIT_OK


def _print_warnings(caught: Sequence[warnings.WarningMessage]) -> None:
    for item in caught:
        print(f"zgit: warning: {item.message}", file=sys.stderr)


def cmd_resolve(args: argparse.Namespace, out: TextIO) -> int:
    from zgit.errors import NotARepositoryError, SourceError
    from zgit.layout import location_of_file
    from zgit.repository import Repository

    text: str = args.object
    try:
        repository: Optional[Repository] = Repository.coerce(None)
    except NotARepositoryError:
        repository = None
    path, colon, attribute = text.rpartition(":")
    if colon and (path.endswith(".py") or os.sep in path or "/" in path):
        if not attribute.isidentifier():
            raise UsageError(f"{text!r}: after ':' give the class or function name", "zgit resolve")
        if not os.path.isfile(path):
            raise UsageError(f"no such file: {path}", "zgit resolve")
        full = os.path.realpath(path)
        repository = Repository.coerce(os.path.dirname(full))
        root = os.path.realpath(repository.source_root)
        rel = os.path.relpath(full, root).replace(os.sep, "/")
        location = location_of_file(rel, "") if not rel.startswith("../") else None
        if location is None:
            raise SourceError(
                f"{path} is not a module below the source root {root} (its path parts must be "
                "Python identifiers and it must end in .py)"
            )
        dotted = f"{location.module}.{attribute}"
    elif colon:
        dotted = f"{path}.{attribute}"   # entry-point style: pkg.mod:Class
    else:
        dotted = text
    # Import from the repository as the project itself would.
    roots = [os.getcwd()]
    if repository is not None:
        roots.insert(0, str(repository.source_root))
    for root in reversed(roots):
        if root not in sys.path:
            sys.path.insert(0, root)
    from zgit import resolve_source

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            source = resolve_source(dotted, repo=repository)
        except ImportError as exc:
            raise SourceError(f"cannot import {dotted}: {exc}") from exc
    _print_warnings(caught)
    out.write(f"{source}\n")
    return EXIT_OK


def _dist_module_file(source: Any) -> Any:
    """The installed file of a distribution-pinned source's module (never imported)."""
    from zgit.errors import SourceNotFoundError, VersionMismatchError

    try:
        import importlib_metadata as metadata  # type: ignore[import-not-found]
    except ImportError:  # pragma: no cover
        import importlib.metadata as metadata  # type: ignore[no-redef]
    try:
        dist = metadata.distribution(source.distribution)
    except metadata.PackageNotFoundError:
        raise VersionMismatchError(
            f"distribution {source.distribution!r} is not installed: pip install "
            f"'{source.distribution.replace('_', '-')}=={source.version}'"
        ) from None
    from zgit.audit import _pin_spelling

    if _pin_spelling(dist.version) != _pin_spelling(source.version):
        raise VersionMismatchError(
            f"distribution {source.distribution!r} {dist.version} is installed but the pin says "
            f"{source.version}: pip install '{source.distribution.replace('_', '-')}=={source.version}'"
        )
    rel = source.module.replace(".", "/")
    wanted = {f"{rel}.py", f"{rel}/__init__.py"}
    for file in dist.files or ():
        if str(file).replace(os.sep, "/") in wanted:
            return dist.locate_file(file)
    editable = _editable_module_file(source)
    if editable is not None:
        return editable
    raise SourceNotFoundError(f"{source}: distribution {source.distribution!r} has no module {source.module!r}")


def _editable_module_file(source: Any) -> Any:
    """The module's file when the distribution serves it from elsewhere (an editable
    install lists no package files): found on sys.path without importing it, and taken
    only when that file is the distribution's (as ``load`` and ``audit`` decide)."""
    from pathlib import Path

    from zgit.distributions import distribution_pin
    from zgit.layout import find_top_level
    from zgit.source import normalize_dist_name

    top, _, rest = source.module.partition(".")
    for location in find_top_level(top):
        base = Path(location)
        if base.is_file():
            candidates = [base] if not rest else []
        else:
            sub = base.joinpath(*rest.split(".")) if rest else base
            candidates = [sub.with_name(sub.name + ".py"), sub / "__init__.py"] if rest else [sub / "__init__.py"]
        for candidate in candidates:
            if candidate.is_file():
                pin = distribution_pin(source.module, str(candidate))
                if pin is not None and pin[0] == normalize_dist_name(source.distribution or ""):
                    return candidate
    return None


def cmd_show(args: argparse.Namespace, out: TextIO) -> int:
    from zgit.audit import locate
    from zgit.errors import PinNotFoundError, SourceError, SourceNotFoundError

    source = _expand_source(args.source)
    if source.kind == "unpinned":
        raise SourceError(f"{source} has no pin; give one, e.g. {source}@<commit> (or see zgit resolve)")
    if source.kind == "dist":
        data = _dist_module_file(source).read_bytes()
    else:
        from zgit.errors import NotARepositoryError
        from zgit.home import module_home

        try:
            repository = _repository()
        except NotARepositoryError:
            repository = None
        source_root = repository.config.source_root if repository is not None else ""
        if repository is None or not repository.git.has_commit(source.sha):
            # code installed editable from another work tree: pinned by that tree's commit
            home = module_home(source.module, source.sha)
            if home is not None:
                repository, source_root = home
            elif repository is None:
                raise NotARepositoryError(
                    f"cannot show {source}: the current directory is not inside a git repository, "
                    f"and no git work tree on sys.path holds module {source.module!r} with that commit"
                )
            else:
                raise PinNotFoundError(repository.git.missing_commit(source.sha))
        git = repository.git
        location = locate(git, source.sha, source.module, source_root)
        if location is None:
            raise SourceNotFoundError(f"module {source.module!r} does not exist at commit {source.sha}")
        data = git.read(source.sha, location.file) or b""
    _check_defines(source, data)
    out.flush()
    buffer = getattr(out, "buffer", None)
    if buffer is not None:
        buffer.write(data)
        buffer.flush()
    else:
        out.write(data.decode("utf-8", "replace"))
    return EXIT_OK


def _check_defines(source: Any, data: bytes) -> None:
    """Refuse (exit 1) when the module at the pin binds no top-level ``source.attribute``,
    read with ``ast`` as ``zgit audit`` does; a module that cannot be parsed, or binds
    names dynamically, is given the benefit of the doubt."""
    from zgit.audit import module_names
    from zgit.errors import SourceNotFoundError

    names = module_names(data)
    if names.error is None and not names.binds(source.attribute):
        at = f"commit {source.sha}" if source.kind == "git" else f"{source.distribution} {source.version}"
        defined = sorted(n for n in names.names if not n.startswith("_"))
        shown = ", ".join(defined[:20]) + (" ..." if len(defined) > 20 else "")
        raise SourceNotFoundError(
            f"{source}: module {source.module!r} at {at} defines no top-level {source.attribute!r}"
            f" (it defines: {shown or 'nothing public'}); check the name"
        )


def cmd_load(args: argparse.Namespace, out: TextIO) -> int:
    import time

    from zgit.errors import NotARepositoryError

    source = _expand_source(args.source)
    try:
        repository = _repository()
    except NotARepositoryError:
        if source.kind == "unpinned":
            raise
        repository = None  # a git pin may be found in the work tree that holds its module
    from zgit import load_source

    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        obj = load_source(source, repo=repository, strategy=args.strategy)
    elapsed = time.perf_counter() - started
    _print_warnings(caught)
    kind = "class" if isinstance(obj, type) else ("function" if callable(obj) else type(obj).__name__)
    name = f"{getattr(obj, '__module__', source.module)}.{getattr(obj, '__qualname__', source.attribute)}"
    if source.kind == "git":
        if args.strategy is None and repository is None:
            from zgit.config import Config

            strategy = Config.load_defaults().strategy
        else:
            strategy = args.strategy or repository.config.strategy
        pin = f"{source.sha} (git)"
    elif source.kind == "dist":
        strategy = "installed distribution"
        pin = f"{source.distribution} {source.version} (distribution)"
    else:
        strategy = "working tree (unpinned)"
        pin = "none"
    out.write(
        f"loaded    {source}\n"
        f"object    {name} ({kind})\n"
        f"pin       {pin}\n"
        f"strategy  {strategy}\n"
        f"time      {elapsed * 1000:.1f} ms\n"
    )
    return EXIT_OK


def cmd_pipelines(args: argparse.Namespace, out: TextIO) -> int:
    from zgit.audit import audit_paths

    repository = _repository()
    report = audit_paths(None, repo=repository)
    if not report.files:
        out.write(f"no pipelines stored in {repository.pipelines_dir}\n")
        return EXIT_OK
    rows = []
    for file in report.files:
        codes = sorted({f.code for f in file.all_findings() if f.severity == "error"})
        pins = {"git": 0, "dist": 0}
        for step in file.steps:
            pin = step.source.partition("@")[2]
            if pin:
                pins["git" if _FULL_SHA.fullmatch(pin) else "dist"] += 1
        n = len(file.steps)
        steps = f"{n} step{'s' if n != 1 else ''}"
        if codes:
            status = f"NOT reproducible: {', '.join(codes)}"
        else:
            drifted = sum(1 for s in file.steps if any(f.code == "drift" for f in s.findings))
            status = "pinned" + (f", {drifted} drifted since the pin" if drifted else "")
        detail = f"{steps}: {pins['git']} git, {pins['dist']} dist" if file.steps else steps
        rows.append((file.pipeline or "-", file.path, f"{status} ({detail})"))
    width0 = max(len(r[0]) for r in rows)
    width1 = max(len(r[1]) for r in rows)
    for name, path, status in rows:
        out.write(f"{name.ljust(width0)}  {path.ljust(width1)}  {status}\n")
    return EXIT_OK


def cmd_pin(args: argparse.Namespace, out: TextIO) -> int:
    from zgit.pin import pin_files

    paths: Optional[List[str]] = None
    if args.paths:
        missing = [p for p in args.paths if not os.path.lexists(p)]
        if missing:
            raise UsageError(f"no such file or directory: {missing[0]}", "zgit pin")
        paths = list(args.paths)
    result = pin_files(paths, check=args.check)
    verb = "would pin" if args.check else "pinned"
    for change in result.changes:
        out.write(f"{change.path}: steps.{change.step}: {verb} {change.old} -> @{change.new.partition('@')[2]} ({change.reason})\n")
    for problem in result.problems:
        where = problem.path + (f": steps.{problem.step}" if problem.step else "")
        print(f"zgit pin: cannot pin {where}: {problem.reason}", file=sys.stderr)
    if not result.changes and not result.problems:
        out.write("every git source is pinned to its module directory's HEAD version\n")
    elif not args.check and result.files_written:
        out.write(f"rewrote {len(result.files_written)} file(s)\n")
    if result.problems or (args.check and result.changes):
        return EXIT_FAIL
    return EXIT_OK


def cmd_recover(args: argparse.Namespace, out: TextIO) -> int:
    from zgit import recover

    restored = recover(_repository(), keep_edits=args.keep_edits)
    for path in restored:
        out.write(f"restored {path}\n")
    if not restored:
        out.write("nothing to recover\n")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace, out: TextIO) -> int:
    from zgit.errors import ZgitError

    try:
        from zgit.demo import run_demo
    except ImportError as exc:
        raise ZgitError(f"the demo is not available in this installation ({exc})") from exc
    return int(run_demo(keep=args.keep, out=out) or 0)


# -- runs: zgit run, runs, rerun, gc ------------------------------------------------------------


def _add_run_commands(sub: Any) -> None:
    p = _sub(sub, "run", "run a stored pipeline, recording the run and reusing cached steps",
             "Run the stored pipeline NAME exactly as its YAML pins it: every step executes\n"
             "as its pinned class, unless the step cache holds its output for the same code,\n"
             "args and input. The run is recorded in the run store (zgit runs). One progress\n"
             "line per step on stderr: the step, 'ran' or 'cached', and its time.\n\n"
             "exit status: 0 the run completed, 1 a step failed (the run is recorded as\n"
             "failed), 2 usage error.",
             "zgit run 'My Awesome Pipeline'\n"
             "zgit run 'My Awesome Pipeline' --no-cache --strategy memory\n"
             "zgit run 'My Awesome Pipeline' --engine dask --address tcp://10.0.0.5:8786\n"
             "zgit run 'My Awesome Pipeline' --engine dask --set training.epochs=10,20,40")
    p.add_argument("name", metavar="NAME", help="the pipeline's name (zgit pipelines lists them)")
    p.add_argument("--no-cache", action="store_true", help="execute every step (also: ZGIT_DISABLE_CACHE=1)")
    p.add_argument("--strategy", choices=("checkout", "memory"), default=None,
                   help="how to load git pins (default: the repository's loader.strategy)")
    p.add_argument("--engine", choices=("local", "dask"), default=None,
                   help="where steps execute (default: the repository's engine.name, else local)")
    p.add_argument("--address", metavar="URL", default=None,
                   help="the Dask scheduler for --engine dask, e.g. tcp://host:8786 (default: "
                        "engine.address; none: a local cluster for this run)")
    p.add_argument("--set", action="append", default=[], metavar="STEP.ARG=V1,V2",
                   help="a sweep: run once per value of the step's argument (repeat for every "
                        "combination), each recorded as its own run; at once on --engine dask")
    p.set_defaults(func=cmd_run)

    p = _sub(sub, "runs", "list recorded runs, or show one",
             "List the runs recorded in the run store, newest first: id, pipeline, status\n"
             "(running, completed, failed, died), start time, duration, steps executed and\n"
             "cached. 'zgit runs show RUN_ID' prints one run with its steps (a unique prefix\n"
             "of the id will do).",
             "zgit runs\n"
             "zgit runs --pipeline 'My Awesome Pipeline' --format json\n"
             "zgit runs show 20261202-144821")
    p.add_argument("--pipeline", metavar="NAME", help="only the runs of this pipeline")
    p.add_argument("--limit", type=int, metavar="N", help="at most N runs")
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    p.set_defaults(func=cmd_runs)
    inner = p.add_subparsers(dest="runs_command", metavar="show", parser_class=_Parser)
    q = _sub(inner, "show", "show one recorded run with its steps",
             "Print run RUN_ID: what ran (pipeline, HEAD, clean or not, versions), how it\n"
             "ended, and per step its source, code identity, args, input and output digests,\n"
             "whether it executed or came from the cache (and from which run), its time.",
             "zgit runs show 20261202-144821-123456-a3f9\nzgit runs show 20261202-1448 --format json")
    q.add_argument("run_id", metavar="RUN_ID", help="a run id (a unique prefix will do)")
    q.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    q.set_defaults(func=cmd_runs_show)

    p = _sub(sub, "rerun", "re-run a recorded run from its pinned code and verify its outputs",
             "Build every step of run RUN_ID from its recorded source and args (not today's\n"
             "YAML), feed it the recorded first input, execute with the cache off, and say\n"
             "per step whether the output is byte-identical, equal by value, or different\n"
             "(with the first divergence). Nothing is recorded.\n\n"
             "exit status: 0 every step reproduced, 1 otherwise (or the run cannot be\n"
             "re-run), 2 usage error.",
             "zgit rerun 20261202-144821-123456-a3f9\nzgit rerun 20261202-1448 --strategy memory")
    p.add_argument("run_id", metavar="RUN_ID", help="a run id (a unique prefix will do)")
    p.add_argument("--strategy", choices=("checkout", "memory"), default=None,
                   help="how to load git pins (default: the repository's loader.strategy)")
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    p.set_defaults(func=cmd_rerun)

    p = _sub(sub, "gc", "delete old runs and the artifacts no kept run refers to",
             "Keep the N newest runs of each pipeline (and every running one); delete the\n"
             "others with their cache entries, then every artifact file no kept run or cache\n"
             "entry refers to.",
             "zgit gc --keep-last 10")
    p.add_argument("--keep-last", type=int, required=True, metavar="N", help="runs to keep per pipeline")
    p.set_defaults(func=cmd_gc)


def _when(seconds: Optional[float]) -> str:
    import time

    return "-" if seconds is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def _took(run: Any) -> str:
    return "-" if run.ended is None else f"{run.ended - run.started:.2f}s"


def cmd_run(args: argparse.Namespace, out: TextIO) -> int:
    from zgit.runs.runner import run_config

    repository = _repository()
    if args.address and (args.engine or repository.config.engine) != "dask":
        raise UsageError("--address names a Dask scheduler: use it with --engine dask", "zgit run")
    config = repository.get_pipeline_config(args.name)

    def progress(step: str, outcome: str, seconds: float) -> None:
        print(f"{step}: {outcome} in {seconds * 1000:.1f} ms", file=sys.stderr, flush=True)

    switches = {step.name: not args.no_cache for step in config.steps}
    if args.set:
        return _run_sweep(args, repository, config, switches, out)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = run_config(config, None, repo=repository, enable_cache=switches,
                                strategy=args.strategy, progress=progress, engine=args.engine,
                                address=args.address)
        except Exception as exc:
            from zgit.errors import ZgitError

            if isinstance(exc, ZgitError):
                raise
            # The step's own error: its traceback is what the user needs.
            import traceback

            traceback.print_exc(file=sys.stderr)
            [failed] = repository.runs(config.name, limit=1) or [None]
            where = f"run {failed.id} failed" if failed is not None else "the run failed"
            print(f"zgit: error: {where}: {type(exc).__name__}: {exc} (zgit runs show shows the steps)",
                  file=sys.stderr)
            return EXIT_FAIL
        finally:
            _print_warnings(caught)
    run = result.run
    out.write(f"run {run.id} completed: {len(result.executed)} executed, {len(result.cached)} cached\n")
    return EXIT_OK


def _run_sweep(args: argparse.Namespace, repository: Any, config: Any, switches: Any, out: TextIO) -> int:
    from zgit.runs.sweep import parse_assignment, run_sweep

    assignments = [parse_assignment(text) for text in args.set]

    def progress(label: str, step: str, outcome: str, seconds: float) -> None:
        print(f"[{label}] {step}: {outcome} in {seconds * 1000:.1f} ms", file=sys.stderr, flush=True)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            results = run_sweep(config, assignments, repo=repository, engine=args.engine, address=args.address,
                                strategy=args.strategy, enable_cache=switches, progress=progress)
        finally:
            _print_warnings(caught)
    failed = 0
    for label, result in results:
        if isinstance(result, BaseException):
            failed += 1
            print(f"zgit: error: [{label}] {type(result).__name__}: {result}", file=sys.stderr)
            out.write(f"[{label}] failed\n")
        else:
            out.write(f"[{label}] run {result.run.id} completed: {len(result.executed)} executed, "
                      f"{len(result.cached)} cached\n")
    return EXIT_FAIL if failed else EXIT_OK


def cmd_runs(args: argparse.Namespace, out: TextIO) -> int:
    import json

    runs = _repository().runs(args.pipeline, args.limit)
    if args.format == "json":
        out.write(json.dumps([r.to_dict(steps=False) for r in runs], indent=2) + "\n")
        return EXIT_OK
    if not runs:
        out.write("no runs recorded\n")
        return EXIT_OK
    rows = [(r.id, r.pipeline, r.status, _when(r.started), _took(r), (r.head or "-")[:12]
             + ("" if r.clean else "+dirty")) for r in runs]
    head = ("RUN", "PIPELINE", "STATUS", "STARTED", "TOOK", "HEAD")
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    out.write("  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip() + "\n")
    out.write("".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() + "\n" for row in rows))
    return EXIT_OK


def cmd_runs_show(args: argparse.Namespace, out: TextIO) -> int:
    import json

    run = _repository().get_run(args.run_id)
    if args.format == "json":
        out.write(json.dumps(run.to_dict(), indent=2) + "\n")
        return EXIT_OK
    lines = [
        f"run       {run.id}",
        f"pipeline  {run.pipeline}",
        f"status    {run.status}" + (f": {run.error}" if run.error else ""),
        f"started   {_when(run.started)}  (took {_took(run)})",
        f"head      {run.head or '-'}" + ("" if run.clean else "  (work tree not clean)"),
        f"versions  zgit {run.zgit_version}, Python {run.python_version}, {run.platform}",
        f"process   {run.pid} on {run.host or '?'}",
    ]
    if not run.reproducible:
        lines.append("note      some steps were not pinned: their outputs are not reproducible")
    lines.append("steps")
    for step in run.steps:
        how = f"cached from {step.cached_from}" if step.cached else ("failed" if step.error else "executed")
        took = "-" if step.duration is None else f"{step.duration * 1000:.1f} ms"
        lines.append(f"  {step.name}: {how} ({took})")
        lines.append(f"    source  {step.source}")
        lines.append(f"    code    {step.code_identity or '- (not cached: code unknown)'}")
        lines.append(f"    args    {json.dumps(step.args, sort_keys=True)}")
        lines.append(f"    input   {step.input_digest or '-'}")
        lines.append(f"    output  {step.output_digest or '-'}")
        if step.error:
            lines.append(f"    error   {step.error}")
    out.write("\n".join(lines) + "\n")
    return EXIT_OK


def cmd_rerun(args: argparse.Namespace, out: TextIO) -> int:
    import json

    repository = _repository()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            report = repository.rerun(args.run_id, strategy=args.strategy)
        finally:
            _print_warnings(caught)
    if args.format == "json":
        out.write(json.dumps(report.to_dict(), indent=2) + "\n")
    else:
        words = {"identical": "byte-identical", "equal": "equal by value", "different": "DIFFERENT",
                 "failed": "FAILED"}
        out.write(f"rerun of {report.run_id} ({report.pipeline})\n")
        width = max((len(s.step) for s in report.steps), default=0)
        for step in report.steps:
            detail = f": {step.detail}" if step.detail and not step.reproduced else ""
            out.write(f"  {step.step.ljust(width)}  {words[step.verdict]}{detail}\n")
        out.write(report.summary + "\n")
    return EXIT_OK if report.reproduced else EXIT_FAIL


def cmd_gc(args: argparse.Namespace, out: TextIO) -> int:
    if args.keep_last < 0:
        raise UsageError("--keep-last must be 0 or more", "zgit gc")
    deleted, removed = _repository().run_store.gc(args.keep_last)
    out.write(f"deleted {len(deleted)} run(s) and {removed} artifact file(s)\n")
    return EXIT_OK


def _audit_recorded_runs(report: Any) -> None:
    from zgit.audit import audit_runs
    from zgit.errors import NotARepositoryError

    try:
        repository = _repository()
    except NotARepositoryError:
        return
    report.runs = audit_runs(repository)


def format_run_findings(runs: Sequence[Any]) -> str:
    """The audit's recorded runs that cannot be re-run, as text (empty when none)."""
    if not runs:
        return ""
    lines = [f"{len(runs)} recorded run(s) cannot be re-run:"]
    for run in runs:
        lines.append(f"  {run['run']}  ({run['pipeline']})")
        for finding in run["findings"]:
            lines.append(f"    {finding.severity} {finding.code}: {finding.message}")
    return "\n".join(lines) + "\n"


# -- entry point ------------------------------------------------------------------------------


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the zgit command line; returns the exit status."""
    out = sys.stdout
    try:
        try:
            args = build_parser().parse_args(argv)
        except UsageError as exc:
            print(f"{exc.prog}: error: {exc} (see '{exc.prog} --help')", file=sys.stderr)
            return EXIT_USAGE
        if args.chdir:
            try:
                os.chdir(args.chdir)
            except OSError as exc:
                print(f"zgit: error: cannot change to {args.chdir}: {exc.strerror or exc}", file=sys.stderr)
                return EXIT_USAGE
        from zgit.errors import ZgitError

        try:
            return int(args.func(args, out))
        except UsageError as exc:
            print(f"{exc.prog}: error: {exc} (see '{exc.prog} --help')", file=sys.stderr)
            return EXIT_USAGE
        except ZgitError as exc:
            message = str(exc).strip() or type(exc).__name__
            print(f"zgit: error: {message}", file=sys.stderr)
            return EXIT_FAIL
    except KeyboardInterrupt:
        print("zgit: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (zgit audit | head): not an error worth a traceback.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_FAIL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
