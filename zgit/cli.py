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
    if args.format == "json":
        out.write(report.to_json() + "\n")
    else:
        out.write(format_text(report, _use_color(out)))
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
    raise SourceNotFoundError(f"{source}: distribution {source.distribution!r} has no module {source.module!r}")


def cmd_show(args: argparse.Namespace, out: TextIO) -> int:
    from zgit.audit import locate
    from zgit.errors import PinNotFoundError, SourceError, SourceNotFoundError

    source = _expand_source(args.source)
    if source.kind == "unpinned":
        raise SourceError(f"{source} has no pin; give one, e.g. {source}@<commit> (or see zgit resolve)")
    if source.kind == "dist":
        data = _dist_module_file(source).read_bytes()
    else:
        repository = _repository()
        git = repository.git
        if not git.has_commit(source.sha):
            raise PinNotFoundError(f"commit {source.sha} is not in the repository at {repository.root}")
        location = locate(git, source.sha, source.module, repository.config.source_root)
        if location is None:
            raise SourceNotFoundError(f"module {source.module!r} does not exist at commit {source.sha}")
        data = git.read(source.sha, location.file) or b""
    out.flush()
    buffer = getattr(out, "buffer", None)
    if buffer is not None:
        buffer.write(data)
        buffer.flush()
    else:
        out.write(data.decode("utf-8", "replace"))
    return EXIT_OK


def cmd_load(args: argparse.Namespace, out: TextIO) -> int:
    import time

    from zgit.errors import NotARepositoryError

    source = _expand_source(args.source)
    try:
        repository = _repository()
    except NotARepositoryError:
        if source.kind != "dist":
            raise
        repository = None
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
