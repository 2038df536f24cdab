"""Why a file makes its module directory dirty, and how to say so in a message.

:meth:`zgit.gitrepo.GitRepo.dirty_files` returns :class:`DirtyFile` values; callers that
refuse to pin or to check out (the resolver, the checkout loader) describe them with
:func:`describe`, so that the cases where zgit is stricter than ``git status`` — files
git is told to look away from — and a module directory inside a submodule say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence

# reason -> how a message describes it
REASONS: Dict[str, str] = {
    "new": "not committed",
    "modified": "modified",
    "deleted": "deleted",
    "mode": "executable bit changed",
    "type": "file type changed",
    "assume-unchanged": "differs from HEAD although marked --assume-unchanged",
    "skip-worktree": "differs from HEAD although marked --skip-worktree",
    "submodule": "a git submodule",
    "filter-error": "its clean filter failed",
}

#: Reasons where zgit counts a file that ``git status`` does not show.
STRICTER_THAN_GIT = frozenset({"assume-unchanged", "skip-worktree"})


@dataclass(frozen=True)
class DirtyFile:
    """A file (repository-relative POSIX path) that differs from HEAD, and why."""

    path: str
    reason: str

    @property
    def stricter_than_git(self) -> bool:
        """True when ``git status`` does not show this file (git is told to look away)."""
        return self.reason in STRICTER_THAN_GIT


def describe(files: Sequence[DirtyFile], limit: int = 10) -> str:
    """The files as a message fragment: ``a.py, b.py and 3 more`` for ordinary changes,
    with a note for each file whose reason is not an ordinary uncommitted change."""
    parts: List[str] = []
    for item in files[:limit]:
        if item.reason in ("new", "modified", "deleted"):
            parts.append(item.path)
        else:
            parts.append(f"{item.path} ({REASONS.get(item.reason, item.reason)})")
    text = ", ".join(parts)
    if len(files) > limit:
        text += f" and {len(files) - limit} more"
    return text


def advice(files: Sequence[DirtyFile]) -> str:
    """What to do beyond committing, for the reasons that need more ("" when none)."""
    notes: List[str] = []
    reasons = {f.reason for f in files}
    if reasons & STRICTER_THAN_GIT:
        notes.append(
            "zgit is stricter than git status here: a file marked --assume-unchanged or "
            "--skip-worktree whose bytes differ from HEAD is not the committed code; undo the "
            "mark (git update-index --no-assume-unchanged / --no-skip-worktree <file>) and "
            "commit or restore the file"
        )
    if "filter-error" in reasons:
        notes.append("the clean filter configured for these files (filter.<name>.clean) failed; fix it")
    return "; ".join(notes)


def submodule_of(files: Sequence[DirtyFile]) -> str:
    """The submodule path when the verdict is "inside a submodule", else ""."""
    for item in files:
        if item.reason == "submodule":
            return item.path
    return ""
