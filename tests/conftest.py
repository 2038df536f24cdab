"""Shared fixtures: real git repositories, checked with the git CLI as an independent oracle.

Helpers (importable as ``from tests.conftest import git, status, snapshot``):

- ``git(repo, *args)``: run git in ``repo`` with an isolated environment (no global or
  system configuration, fixed identity); returns stdout, raises AssertionError on failure.
- ``status(repo)``: ``git status --porcelain --untracked-files=all``, without Python's
  bytecode caches (``__pycache__/``, ``*.pyc``): they never count (DESIGN, "clean"), and a
  test's own imports write them when bytecode writing is on, as it is for users.
- ``snapshot(repo)``: relpath -> (bytes, st_mode) of every file of the work tree, without
  ``.git/`` and ``__pycache__/`` (a symlink's bytes are its target).

Fixtures:

- ``make_repo``: an empty git repository at ``tmp_path / "repo"`` (a :class:`WorkTree`).
- ``fixture_repo``: ``fixture_repo(spec_or_name, name="fixture")`` builds a
  :mod:`fixtures` repository under ``tmp_path`` and returns a :class:`WorkTree` with
  ``.shas`` and ``.head_sha``.

Autouse, for every test: git never reads the user's or the system's configuration and
always has an identity (CI machines have none); afterwards, modules imported from the
temporary directories or carrying a pin (``@`` in the name) are dropped from
``sys.modules``, and ``sys.path`` and the current directory are restored.
"""

from __future__ import annotations

import importlib
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `fixtures` is a top-level package of the checkout, not installed
    sys.path.insert(0, str(ROOT))

from fixtures.builder import build_repo, named_spec  # noqa: E402

PathLike = Union[str, "os.PathLike[str]"]

IDENTITY = {
    "GIT_AUTHOR_NAME": "zgit tests",
    "GIT_AUTHOR_EMAIL": "tests@zgit.invalid",
    "GIT_COMMITTER_NAME": "zgit tests",
    "GIT_COMMITTER_EMAIL": "tests@zgit.invalid",
}
ISOLATION = {
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
}
# Variables that would point git at another repository, index or configuration (set,
# for example, when the suite runs from a git hook).
FOREIGN = (
    "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_COMMON_DIR", "GIT_NAMESPACE", "GIT_PREFIX",
    "GIT_CONFIG", "GIT_CONFIG_PARAMETERS", "GIT_CONFIG_COUNT", "GIT_CONFIG_SYSTEM",
)
GIT_OPTIONS = ("-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false", "-c", "core.autocrlf=false")


def settle_index(root: Union[str, Path], under: str = "") -> None:
    """Date the files below ``under`` (the whole work tree when empty) an hour back and
    refresh the index, so that git trusts its stat data (no racily clean entries it would
    re-read anyway); then wait for the next second: git compares whole seconds of ctime,
    so a move aside and back within the second that recorded the files would go unseen,
    and the index refresh after a load would go untested."""
    import time

    base = Path(root) / under if under else Path(root)
    past = time.time() - 3600
    for path in base.rglob("*"):
        if ".git" not in path.relative_to(root).parts and path.is_file() and not path.is_symlink():
            os.utime(path, (past, past))
    subprocess.run(["git", "update-index", "-q", "--refresh"], cwd=root, env=git_env(), check=False)
    time.sleep(1.05 - time.time() % 1)


def git_env(**extra: str) -> Dict[str, str]:
    """``os.environ`` with git isolated from all configuration and given an identity."""
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN}
    env.update(ISOLATION)
    env.update(IDENTITY)
    env.update(extra)
    return env


def git(repo: Any, *args: str, check: bool = True, input: Optional[str] = None, **env: str) -> str:
    """Run ``git args`` in ``repo`` (a path or anything with ``.path``); its stdout."""
    cwd = os.fspath(getattr(repo, "path", repo))
    result = subprocess.run(
        ["git", *GIT_OPTIONS, *args], cwd=cwd, env=git_env(**env), input=input,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        stdin=None if input is not None else subprocess.DEVNULL,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed in {cwd} (exit {result.returncode}):\n{result.stderr}")
    return result.stdout


BYTECODE_DIR = "__pycache__"
BYTECODE_SUFFIXES = (".pyc", ".pyo")


def is_bytecode(relpath: str) -> bool:
    """True for paths Python writes by itself (``__pycache__/``, ``*.pyc``)."""
    relpath = relpath.strip('"')
    return relpath.endswith(BYTECODE_SUFFIXES) or BYTECODE_DIR in relpath.split("/")


def status(repo: Any, bytecode: bool = False) -> str:
    """``git status --porcelain --untracked-files=all`` (empty when the tree is clean);
    lines about bytecode caches only with ``bytecode=True``."""
    out = git(repo, "status", "--porcelain", "--untracked-files=all")
    if bytecode:
        return out
    return "".join(
        line for line in out.splitlines(keepends=True)
        if not all(is_bytecode(part) for part in line[3:].rstrip("\n").split(" -> "))
    )


def snapshot(repo: Any) -> Dict[str, Tuple[bytes, int]]:
    """Every file of the work tree, not under ``.git/``, ``__pycache__/`` or the run store
    ``.zgit/store/`` (git-ignored records that every run writes): relpath -> (bytes,
    st_mode).  A symlink is not followed: its bytes are its target."""
    root = Path(os.fspath(getattr(repo, "path", repo)))
    out: Dict[str, Tuple[bytes, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in (".git", "__pycache__"))
        # os.walk lists a symlink to a directory among the directories: it is a file here
        links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        dirnames[:] = [d for d in dirnames if d not in links]
        for name in sorted(filenames + links):
            full = os.path.join(dirpath, name)
            rel = Path(full).relative_to(root).as_posix()
            if rel.startswith(".zgit/store/"):
                continue
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                data = os.fsencode(os.readlink(full))
            else:
                with open(full, "rb") as fh:
                    data = fh.read()
            out[rel] = (data, st.st_mode)
    return out


class WorkTree:
    """A git work tree driven through the git CLI."""

    def __init__(self, path: PathLike, init: bool = True) -> None:
        self.path = Path(path)
        self._commits = 0
        if init:
            self.path.mkdir(parents=True, exist_ok=True)
            self.git("init", "-q")

    def git(self, *args: str, check: bool = True, input: Optional[str] = None) -> str:
        return git(self.path, *args, check=check, input=input)

    def write(self, relpath: str, text: Union[str, bytes], mode: Optional[int] = None) -> Path:
        full = self.path / relpath
        full.parent.mkdir(parents=True, exist_ok=True)
        if full.is_symlink():  # replace the link, never write through it
            full.unlink()
        if isinstance(text, bytes):
            full.write_bytes(text)
        else:
            with open(full, "w", encoding="utf-8", newline="") as fh:
                fh.write(text)
        if mode is not None:
            full.chmod(mode)
        return full

    def remove(self, relpath: str) -> None:
        full = self.path / relpath
        if full.is_dir() and not full.is_symlink():
            import shutil

            shutil.rmtree(full)
        else:
            full.unlink()

    def commit(self, message: str = "change") -> str:
        """Commit everything (``git add -A``); the new HEAD.  Dates are fixed and advance a
        minute per commit, so the same steps give the same SHAs."""
        date = f"{1704067200 + 60 * self._commits} +0000"
        self._commits += 1
        self.git("add", "-A")
        git(self.path, "commit", "-q", "--allow-empty", "--no-verify", "-m", message,
            GIT_AUTHOR_DATE=date, GIT_COMMITTER_DATE=date)
        return self.head()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD").strip()

    def status(self) -> str:
        return status(self.path)

    def snapshot(self) -> Dict[str, Tuple[bytes, int]]:
        return snapshot(self.path)

    def index_bytes(self) -> bytes:
        """The index as git lists it (paths, modes, blob ids), independent of stat data."""
        return self.git("ls-files", "-s").encode()

    def __fspath__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"WorkTree({str(self.path)!r})"


@pytest.fixture
def make_repo(tmp_path: Path) -> WorkTree:
    """An empty git repository (branch main) at ``tmp_path / "repo"``."""
    return WorkTree(tmp_path / "repo")


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> WorkTree:
    """An empty git repository at ``tmp_path / "project"``, the current directory for the test."""
    path = tmp_path / "project"
    path.mkdir()
    monkeypatch.chdir(path)
    return WorkTree(path)


@pytest.fixture
def fixture_repo(tmp_path: Path):
    """``fixture_repo(spec_or_name, name="fixture")``: build a fixtures repository under
    ``tmp_path``; a WorkTree with ``.shas`` (commits in spec order) and ``.head_sha``."""

    def build(spec: Union[str, Mapping[str, Any]], name: str = "fixture") -> WorkTree:
        if isinstance(spec, str):
            spec = named_spec(spec)
        info = build_repo(tmp_path / name, spec)
        tree = WorkTree(tmp_path / name, init=False)
        tree._commits = len(info["shas"])
        tree.shas = info["shas"]
        tree.head_sha = info["head"]
        return tree

    return build


# --- isolation, for every test ------------------------------------------------------------

@pytest.fixture(autouse=True)
def _isolated_git(monkeypatch: pytest.MonkeyPatch) -> None:
    """git in subprocesses reads no global or system configuration and has an identity."""
    for name in FOREIGN:
        monkeypatch.delenv(name, raising=False)
    for name, value in {**ISOLATION, **IDENTITY}.items():
        monkeypatch.setenv(name, value)


def _under(module: Any, roots: Tuple[str, ...]) -> bool:
    where = [getattr(module, "__file__", None) or ""]
    where.extend(str(p) for p in (getattr(module, "__path__", None) or ()))
    return any(w.startswith(root) for w in where if w for root in roots)


@pytest.fixture(autouse=True)
def _restore_interpreter(tmp_path_factory: pytest.TempPathFactory):
    """After the test: drop pinned modules (``@`` in the name) and modules imported from
    the temporary directories from ``sys.modules``; restore ``sys.path`` and the cwd."""
    cwd = os.getcwd()
    saved_path = list(sys.path)
    before = set(sys.modules)
    yield
    base = tmp_path_factory.getbasetemp()
    roots = tuple({str(base) + os.sep, str(base.resolve()) + os.sep})
    dropped = False
    for name, module in list(sys.modules.items()):
        if "@" in name or (name not in before and _under(module, roots)):
            sys.modules.pop(name, None)
            dropped = True
    if dropped:
        loader = sys.modules.get("zgit.loader")
        forget = getattr(loader, "forget_loaded", None)
        if forget is not None:
            forget()  # zgit's cache of loaded pins would point at the dropped modules
    sys.path[:] = saved_path
    for key in [k for k in sys.path_importer_cache if k.startswith(roots)]:
        del sys.path_importer_cache[key]
    importlib.invalidate_caches()
    try:
        moved = os.getcwd() != cwd
    except FileNotFoundError:  # the test left the process in a directory it deleted
        moved = True
    if moved:
        os.chdir(cwd)
