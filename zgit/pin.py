"""``zgit pin``: rewrite stored pipeline YAML so that every git source is pinned to HEAD.

A source is re-pinned when it is unpinned, or pinned to a commit whose module directory
differs from HEAD's ("drifted"), and only when the module directory is clean (so that
HEAD really is the code in the working tree).  Decided from paths, trees and
:meth:`GitRepo.dirty_paths` alone: nothing is imported.  Only the ``source`` values
change; the rest of each file is kept as written (comments and formatting too, when
the source lines are plain ``source: ...`` lines).
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from zgit import yamlio
from zgit.audit import _read_yaml, _shown_path, expand_paths, locate, module_names
from zgit.errors import ConfigError, SourceError
from zgit.pipeline import PipelineConfig
from zgit.source import Source


@dataclass(frozen=True)
class PinChange:
    """A source that is (or would be) re-pinned."""

    path: str
    step: str
    old: str
    new: str
    reason: str


@dataclass(frozen=True)
class PinProblem:
    """A source that needs a pin but cannot get one (or a file that cannot be read)."""

    path: str
    step: Optional[str]
    source: Optional[str]
    reason: str


@dataclass
class PinResult:
    changes: List[PinChange] = field(default_factory=list)
    problems: List[PinProblem] = field(default_factory=list)
    files_written: List[str] = field(default_factory=list)


class _Pinner:
    def __init__(self, repository: Any) -> None:
        self.repository = repository
        self.git = repository.git
        self.source_root: str = repository.config.source_root
        self.head: Optional[str] = self.git.head_sha()
        self._decisions: Dict[str, Tuple[Optional[str], str]] = {}
        self._dirty: Dict[str, List[str]] = {}

    def decide(self, text: str) -> Tuple[Optional[str], str]:
        """(new source or None, reason) for source ``text``; ``reason`` explains either."""
        found = self._decisions.get(text)
        if found is None:
            found = self._decisions[text] = self._decide(text)
        return found

    def _decide(self, text: str) -> Tuple[Optional[str], str]:
        source = Source.parse(text)
        if source.kind == "dist":
            return None, ""
        if source.kind == "git":
            sha: str = source.sha  # type: ignore[assignment]
            if sha == self.head:
                return None, ""
            if not self.git.has_commit(sha):
                from zgit.home import module_home

                if module_home(source.module, sha) is not None:
                    return None, ""  # code of another work tree (installed editable): pinned there
                return None, (f"{self.git.missing_commit(sha)} (or replace the pin by hand: "
                              "remove '@...' and run zgit pin again)")
            location = locate(self.git, sha, source.module, self.source_root)
            if location is None:
                return None, f"module {source.module!r} does not exist at its pin {sha[:12]}"
            changed = self.git.changed_paths(sha, self.head, location.module_dir)
            if not changed:
                return None, ""
            why = f"drifted: {len(changed)} file(s) of {location.module_dir}/ changed since {sha[:12]}"
        else:
            why = "was unpinned"
        if self.head is None:
            return None, "the repository has no commits yet: commit the module directory first"
        target = locate(self.git, self.head, source.module, self.source_root)
        if target is None:
            files = _candidate_files(source.module, self.source_root)
            if "." not in source.module and self.git.entry(self.head, files[0]) is not None:
                return None, (f"module {source.module!r} sits directly in the source root, so it has "
                              "no module directory and cannot be pinned; move it into a package directory")
            if any((self.repository.root / f).is_file() for f in files):
                return None, (f"module {source.module!r} is not committed at HEAD: commit its "
                              "module directory first")
            return None, (f"module {source.module!r} is not in the repository at HEAD (a module "
                          "from an installed distribution is pinned by saving the pipeline)")
        dirty = self._dirty.get(target.module_dir)
        if dirty is None:
            dirty = self._dirty[target.module_dir] = self.git.dirty_paths(target.module_dir)
        if dirty:
            shown = ", ".join(dirty[:5]) + (f" and {len(dirty) - 5} more" if len(dirty) > 5 else "")
            return None, (f"{target.module_dir}/ is not clean ({shown}): commit or stash "
                          "those changes, then run zgit pin again")
        names = module_names(self.git.read(self.head, target.file) or b"", target.file)
        if not names.binds(source.attribute):
            return None, f"{target.file} at HEAD defines no top-level {source.attribute!r}"
        return str(source.with_pin(self.head)), why


def _candidate_files(module: str, source_root: str) -> List[str]:
    rel = module.replace(".", "/")
    prefix = f"{source_root}/" if source_root else ""
    return [f"{prefix}{rel}.py", f"{prefix}{rel}/__init__.py"]


def _rewrite_text(text: str, replacements: Dict[str, str]) -> str:
    """Replace the values of ``source: <old>`` (block or flow style), keeping everything else.

    The caller checks the result parses to the expected data, so a line this gets wrong
    is never written.
    """
    for old, new in replacements.items():
        pattern = re.compile(
            r"(?P<pre>(?:^|[{,])[ \t]*source[ \t]*:[ \t]*)(?P<q>['\"]?)" + re.escape(old)
            + r"(?P=q)(?=[ \t]*(?:[,}#\r]|$))",
            re.M,
        )
        text = pattern.sub(lambda m: m.group("pre") + m.group("q") + new + m.group("q"), text)
    return text


def pin_files(paths: Optional[Sequence[Union[str, "os.PathLike[str]"]]] = None, repo: Any = None,
              check: bool = False) -> PinResult:
    """Pin the unpinned and drifted git sources of stored pipelines to HEAD.

    ``paths``: files or directories (default: the repository's ``pipelines/``).  With
    ``check`` nothing is written; the result says what would change.
    """
    from zgit.repository import Repository

    repository = Repository.coerce(repo)
    if paths is None:
        paths = [repository.pipelines_dir] if repository.pipelines_dir.is_dir() else []
    pinner = _Pinner(repository)
    result = PinResult()
    for path in expand_paths(paths):
        shown = _shown_path(path)
        try:
            data = _read_yaml(path, shown)
            PipelineConfig.from_data(data, shown)
        except ConfigError as exc:
            result.problems.append(PinProblem(shown, None, None, str(exc)))
            continue
        replacements: Dict[str, str] = {}
        for step_name, step in data["steps"].items():
            text = step["source"]
            try:
                new, reason = pinner.decide(text)
            except SourceError as exc:  # pragma: no cover - from_data validated it
                result.problems.append(PinProblem(shown, step_name, text, str(exc)))
                continue
            if new is not None:
                replacements[text] = new
                result.changes.append(PinChange(shown, step_name, text, new, reason))
            elif reason:
                result.problems.append(PinProblem(shown, step_name, text, reason))
        if replacements and not check:
            _write(path, data, replacements)
            result.files_written.append(shown)
    return result


def _write(path: Path, data: Dict[str, Any], replacements: Dict[str, str]) -> None:
    expected = copy.deepcopy(data)
    for step in expected["steps"].values():
        step["source"] = replacements.get(step["source"], step["source"])
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        text = None
    new_text = None
    if text is not None:
        candidate = _rewrite_text(text, replacements)
        try:
            if yamlio.loads(candidate, str(path)) == expected:
                new_text = candidate
        except ConfigError:
            pass
    if new_text is None:
        # The sources are not on plain 'source:' lines (flow style, odd quoting...):
        # write the same data in zgit's own layout rather than risk a wrong edit.
        new_text = yamlio.dumps(expected)
    yamlio.write_atomic(path, new_text)
