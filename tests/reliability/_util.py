"""Helpers of the reliability suite: real git repositories built with the git CLI, snapshots
of the work tree as git and the disk see it, and subprocesses that run zgit.

Nothing here mocks git or the filesystem: the git command-line program is the oracle.
"""

from __future__ import annotations

import importlib.util
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict, Optional, Tuple

from tests.conftest import WorkTree

GIT_ENV = {
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "zgit reliability",
    "GIT_AUTHOR_EMAIL": "reliability@zgit.invalid",
    "GIT_COMMITTER_NAME": "zgit reliability",
    "GIT_COMMITTER_EMAIL": "reliability@zgit.invalid",
}
ZGIT_SRC = str(Path(__file__).resolve().parents[2])  # the checkout of zgit under test
JOURNAL = Path(".git") / "zgit" / "journal.json"
SUBPROCESS_TIMEOUT = 120  # a guard against hangs, never a timing assertion


def _child_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZGIT_")}
    env.update(GIT_ENV)
    env["PYTHONPATH"] = ZGIT_SRC + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


class Repo(WorkTree):
    """A work tree in a temporary directory, driven by the git CLI (see tests/conftest.py),
    with what the reliability tests need on top: symlinks, commits of the bare index, and
    a snapshot that also records directories."""

    def symlink(self, relpath: str, target: str) -> None:
        full = self.path / relpath
        full.parent.mkdir(parents=True, exist_ok=True)
        if full.is_symlink() or full.exists():
            full.unlink()
        os.symlink(target, full)

    def commit_index(self, message: str = "change") -> str:
        """Commit the index as it is (for entries the work tree cannot express: gitlinks)."""
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.head()

    def snapshot(self) -> Dict[str, Tuple[str, bytes, int]]:
        """Every file and directory of the work tree but .git/ and bytecode caches:
        kind, bytes (a symlink's target) and permission bits."""
        out: Dict[str, Tuple[str, bytes, int]] = {}
        for dirpath, dirnames, filenames in os.walk(self.path):
            dirnames[:] = sorted(d for d in dirnames if d not in (".git", "__pycache__"))
            for name in dirnames + filenames:
                full = Path(dirpath) / name
                rel = full.relative_to(self.path).as_posix()
                st = full.lstat()
                if stat.S_ISLNK(st.st_mode):
                    out[rel] = ("link", os.readlink(full).encode(), 0)
                elif stat.S_ISDIR(st.st_mode):
                    out[rel] = ("dir", b"", 0)
                else:
                    out[rel] = ("file", full.read_bytes(), stat.S_IMODE(st.st_mode))
        return out

    def state(self):
        """What must not change: git's status, the index as git lists it, every file."""
        return self.status(), self.git("ls-files", "-s"), self.snapshot()

    @property
    def journal(self) -> Path:
        return self.path / JOURNAL


def run_py(code: str, cwd: Path, env: Optional[Dict[str, str]] = None, timeout: float = SUBPROCESS_TIMEOUT,
           **kwargs) -> subprocess.CompletedProcess:
    """Run Python ``code`` in a fresh interpreter in ``cwd`` (zgit under test importable)."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=_child_env(env),
                          capture_output=True, text=True, timeout=timeout, **kwargs)


def popen_py(code: str, cwd: Path, env: Optional[Dict[str, str]] = None, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=_child_env(env),
                            **kwargs)


def cli_available() -> bool:
    """True once ``python -m zgit`` exists (zgit/__main__.py and zgit/cli.py)."""
    return importlib.util.find_spec("zgit.__main__") is not None and importlib.util.find_spec("zgit.cli") is not None


def recover_cli(cwd: Path, env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    """``python -m zgit recover`` in ``cwd`` (the console script's code path)."""
    return subprocess.run([sys.executable, "-m", "zgit", "recover"], cwd=cwd, env=_child_env(env),
                          capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)


# -- the repository every fault is injected into ----------------------------------------

MODULE_DIR = "pkg/mod"
STEP = "pkg.mod.step.Step"

STEP_CODE = '''\
import os

VERSION = {version!r}
# What the work tree held while this module was imported (the checkout is on disk then).
with open(os.path.join(os.getcwd(), "pkg", "mod", "changed.txt")) as _handle:
    ON_DISK = _handle.read()


class Step:
    VERSION = VERSION
'''

# Imports slowly when RELIABILITY_STARTED names a file to create (to kill it mid-import).
SLOW_CODE = '''\
import os, time

if os.environ.get("RELIABILITY_STARTED"):
    open(os.environ["RELIABILITY_STARTED"], "w").close()
    time.sleep(120)


class Slow:
    pass
'''


def build_rich(repo: Repo) -> Tuple[str, str]:
    """A history whose module directory has every kind of change between pin and HEAD:
    files added, deleted and changed, exec bits set and cleared, a symlink retargeted, a
    sub-directory that exists only at the pin and a new nested one only at HEAD.  Around
    it: files outside the module directory, an untracked file, an ignored file.
    Returns (pin, head)."""
    repo.write(".gitignore", "__pycache__/\n*.pyc\n*.log\n")
    repo.write("README.md", "project\n")
    repo.write("other/unrelated.py", "X = 1\n")
    repo.write("pkg/__init__.py", "")
    repo.write(f"{MODULE_DIR}/__init__.py", "")
    repo.write(f"{MODULE_DIR}/step.py", STEP_CODE.format(version="pin"))
    repo.write(f"{MODULE_DIR}/changed.txt", "changed: pin\n")
    repo.write(f"{MODULE_DIR}/deleted_later.py", "GONE_AT_HEAD = True\n")
    repo.write(f"{MODULE_DIR}/tool.sh", "#!/bin/sh\necho tool\n", mode=0o755)
    repo.write(f"{MODULE_DIR}/plain.sh", "#!/bin/sh\necho plain\n", mode=0o644)
    repo.symlink(f"{MODULE_DIR}/ln", "changed.txt")
    repo.write(f"{MODULE_DIR}/oldsub/__init__.py", "")
    repo.write(f"{MODULE_DIR}/oldsub/deep.py", "DEEP = 'pin'\n")
    repo.write(f"{MODULE_DIR}/same.py", "SAME = 1\n")
    repo.write(f"{MODULE_DIR}/slow.py", SLOW_CODE)
    pin = repo.commit("pin")

    repo.write(f"{MODULE_DIR}/step.py", STEP_CODE.format(version="head"))
    repo.write(f"{MODULE_DIR}/changed.txt", "changed: head, and longer than at the pin\n")
    repo.remove(f"{MODULE_DIR}/deleted_later.py")
    repo.remove(f"{MODULE_DIR}/slow.py")
    (repo.path / MODULE_DIR / "tool.sh").chmod(0o644)
    (repo.path / MODULE_DIR / "plain.sh").chmod(0o755)
    repo.symlink(f"{MODULE_DIR}/ln", "step.py")
    repo.remove(f"{MODULE_DIR}/oldsub")
    repo.write(f"{MODULE_DIR}/added.py", "ADDED = True\n")
    repo.write(f"{MODULE_DIR}/newsub/__init__.py", "")
    repo.write(f"{MODULE_DIR}/newsub/inner/x.py", "X = 'head'\n")
    repo.write("other/unrelated.py", "X = 2\n")
    head = repo.commit("head")

    # The user's own state around the module directory, which zgit must never touch.
    repo.write("notes/untracked.txt", "mine\n")
    repo.write(f"{MODULE_DIR}/debug.log", "ignored, inside the module directory\n")
    repo.write("other/unrelated.py", "X = 'edited, not committed'\n")
    return pin, head


def files_at(repo: Repo, sha: str, directory: str) -> Dict[str, Tuple[str, bytes, int]]:
    """The files of ``directory`` at commit ``sha`` as :meth:`Repo.snapshot` shows them (git CLI)."""
    out: Dict[str, Tuple[str, bytes, int]] = {}
    listing = repo.git("ls-tree", "-r", "-z", sha, "--", directory)
    for record in filter(None, listing.split("\0")):
        meta, path = record.split("\t", 1)
        mode, _kind, oid = meta.split()
        data = subprocess.run(["git", "cat-file", "blob", oid], cwd=repo.path, capture_output=True,
                              check=True, env=_child_env()).stdout
        if mode == "120000":
            out[path] = ("link", data, 0)
        else:
            out[path] = ("file", data, (0o755 if mode == "100755" else 0o644) & ~_umask())
    return out


def files_on_disk(repo: Repo, directory: str) -> Dict[str, Tuple[str, bytes, int]]:
    """The tracked-kind files below ``directory`` on disk (no directories, no ignored files)."""
    prefix = directory.rstrip("/") + "/"
    return {p: v for p, v in repo.snapshot().items()
            if p.startswith(prefix) and v[0] != "dir" and not p.endswith(".log")}


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current
