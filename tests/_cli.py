"""Running the real ``zgit`` command line in a subprocess, and a project to run it in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from tests.conftest import WorkTree, git_env

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Result:
    args: Sequence[str]
    returncode: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)

    def __str__(self) -> str:  # shown when an assertion fails
        return f"zgit {' '.join(self.args)} -> {self.returncode}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"


def zgit_env(**extra: str) -> Dict[str, str]:
    env = git_env()
    env.pop("NO_COLOR", None)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def command(*args: str) -> List[str]:
    return [sys.executable, "-m", "zgit", *args]


def zgit(*args: str, cwd: "Path | str", env: Optional[Dict[str, str]] = None, timeout: float = 60) -> Result:
    """Run ``python -m zgit ARGS`` (the console script's code path) in ``cwd``."""
    proc = subprocess.run(command(*args), cwd=cwd, env=env or zgit_env(), capture_output=True,
                          text=True, timeout=timeout)
    return Result(args, proc.returncode, proc.stdout, proc.stderr)


def zgit_many(calls: Sequence[Sequence[str]], cwd: "Path | str", env: Optional[Dict[str, str]] = None) -> List[Result]:
    """Run several independent zgit commands at once (the suite stays fast)."""
    procs = [
        (args, subprocess.Popen(command(*args), cwd=cwd, env=env or zgit_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True))
        for args in calls
    ]
    out = []
    for args, proc in procs:
        stdout, stderr = proc.communicate(timeout=120)
        out.append(Result(args, proc.returncode, stdout, stderr))
    return out


def assert_no_traceback(*results: Result) -> None:
    for result in results:
        assert "Traceback" not in result.stderr, str(result)
        assert "Traceback" not in result.stdout, str(result)


STEP = '''\
import os
from .helper import HELPER

VERSION = {version}


class Trainer:
    def __init__(self, epochs=1):
        self.epochs = epochs


if os.environ.get("NEVER_SET_IN_TESTS"):
    class InIf:
        pass
else:
    InElse = 1

try:
    from json import dumps as InTry
except ImportError:
    InExcept = None
'''


class Project:
    """A git repository with module directories at a few commits, for the CLI to audit."""

    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.repo = WorkTree(path)
        self.write("trainers/__init__.py", "")
        self.write("trainers/mine/__init__.py", "")
        self.write("trainers/mine/helper.py", "HELPER = 1\n")
        self.write("trainers/mine/step.py", STEP.format(version=0))
        self.write("trainers/shared.py", "SHARED = 1\n")
        self.write("common/__init__.py", "")
        self.write("common/util.py", "def util():\n    return 1\n")
        self.v0 = self.commit("v0")
        self.write("trainers/mine/step.py", STEP.format(version=1))
        self.write("trainers/mine/extra.py", "EXTRA = 1\n")
        self.v1 = self.commit("v1")

    def write(self, relpath: str, text: "str | bytes") -> Path:
        return self.repo.write(relpath, text)

    def commit(self, message: str = "change") -> str:
        return self.repo.commit(message)

    def pipeline(self, name: str, steps: Dict[str, str], filename: Optional[str] = None, commit: bool = False) -> Path:
        lines = ["version: '1'", f"name: {name}", "steps:"]
        for step, source in steps.items():
            lines += [f"  {step}:", f"    source: {source}", "    args: {epochs: 2}"]
        path = self.write(f"pipelines/{filename or name.lower().replace(' ', '_')}.yaml", "\n".join(lines) + "\n")
        if commit:
            self.commit(f"pipeline {name}")
        return path

    def zgit(self, *args: str, **kwargs) -> Result:
        return zgit(*args, cwd=self.path, **kwargs)


TRAINER = "trainers.mine.step.Trainer"
