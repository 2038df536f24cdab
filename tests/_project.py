"""A small ML project in a real git repository, with a trainer that changes per commit."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List

import pytest

from tests._git import GitRepoDir

TRAINER = '''\
from zgit import BaseStep
from .helper import HELPER_VERSION

VERSION = {version}


class MyAwesomeTrainer(BaseStep):
    VERSION = {version}

    def __init__(self, loss="mse", epochs=1):
        self.loss = loss
        self.epochs = epochs

    def version(self):
        return (self.VERSION, HELPER_VERSION)
'''


def write_version(repo: GitRepoDir, version: int) -> None:
    repo.write("trainers/__init__.py", "")
    repo.write("trainers/my_awesome_trainer/__init__.py", "")
    repo.write("trainers/my_awesome_trainer/my_trainer_step.py", TRAINER.format(version=version))
    repo.write("trainers/my_awesome_trainer/helper.py", f"HELPER_VERSION = {version}\n")


def build_history(repo: GitRepoDir, n: int) -> List[str]:
    shas = []
    for version in range(n):
        write_version(repo, version)
        shas.append(repo.commit(f"trainer v{version}"))
    return shas


SOURCE = "trainers.my_awesome_trainer.my_trainer_step.MyAwesomeTrainer"


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A git repository (cwd) whose imports are undone after the test."""
    path = tmp_path / "project"
    path.mkdir()
    monkeypatch.chdir(path)
    before = set(sys.modules)
    saved_path = list(sys.path)
    yield GitRepoDir(path)
    sys.path[:] = saved_path
    root = str(path)
    for name in set(sys.modules) - before:
        module = sys.modules.get(name)
        if "@" in name or root in str(getattr(module, "__file__", "") or "") or root in str(
            getattr(module, "__path__", "")
        ):
            sys.modules.pop(name, None)
    from zgit.loader import forget_loaded

    forget_loaded()
