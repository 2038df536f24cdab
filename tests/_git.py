"""A real git repository in a temporary directory, driven by the git CLI (the oracle)."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path
from typing import Dict, Optional, Tuple

GIT_ENV = {
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "zgit tests",
    "GIT_AUTHOR_EMAIL": "tests@zgit.invalid",
    "GIT_COMMITTER_NAME": "zgit tests",
    "GIT_COMMITTER_EMAIL": "tests@zgit.invalid",
}


def git_env() -> Dict[str, str]:
    return dict(os.environ, **GIT_ENV)


class GitRepoDir:
    """A work tree with helpers: write files, commit, and read status as git sees it."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._tick = 0
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str, check: bool = True) -> str:
        self._tick += 1
        env = git_env()
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = f"2024-01-01T00:{self._tick // 60:02d}:{self._tick % 60:02d}Z"
        result = subprocess.run(
            ["git", *args], cwd=self.path, env=env, capture_output=True, text=True
        )
        if check and result.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed: {result.stderr}")
        return result.stdout

    def write(self, relpath: str, text: "str | bytes", mode: Optional[int] = None) -> Path:
        full = self.path / relpath
        full.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            full.write_bytes(text)
        else:
            full.write_text(text)
        if mode is not None:
            full.chmod(mode)
        return full

    def remove(self, relpath: str) -> None:
        (self.path / relpath).unlink()

    def commit(self, message: str = "change") -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.head()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD").strip()

    def status(self) -> str:
        return self.git("status", "--porcelain", "--untracked-files=all")

    def snapshot(self) -> Dict[str, Tuple[bytes, int]]:
        """Every file of the work tree (not .git/, not bytecode): bytes and mode."""
        out: Dict[str, Tuple[bytes, int]] = {}
        for dirpath, dirnames, filenames in os.walk(self.path):
            dirnames[:] = [d for d in dirnames if d not in (".git", "__pycache__")]
            for name in filenames:
                full = Path(dirpath) / name
                rel = full.relative_to(self.path).as_posix()
                st = full.lstat()
                data = os.readlink(full).encode() if stat.S_ISLNK(st.st_mode) else full.read_bytes()
                out[rel] = (data, stat.S_IMODE(st.st_mode) | (st.st_mode & stat.S_IFMT(st.st_mode)))
        return out

    def index_bytes(self) -> bytes:
        """The index as git lists it (paths, modes, blob ids), independent of stat data."""
        return self.git("ls-files", "-s").encode()
