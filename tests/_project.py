"""A small ML project in a real git repository, with a trainer that changes per commit."""

from __future__ import annotations

from typing import List

from tests.conftest import WorkTree

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


def write_version(repo: WorkTree, version: int) -> None:
    repo.write("trainers/__init__.py", "")
    repo.write("trainers/my_awesome_trainer/__init__.py", "")
    repo.write("trainers/my_awesome_trainer/my_trainer_step.py", TRAINER.format(version=version))
    repo.write("trainers/my_awesome_trainer/helper.py", f"HELPER_VERSION = {version}\n")


def build_history(repo: WorkTree, n: int) -> List[str]:
    shas = []
    for version in range(n):
        write_version(repo, version)
        shas.append(repo.commit(f"trainer v{version}"))
    return shas


SOURCE = "trainers.my_awesome_trainer.my_trainer_step.MyAwesomeTrainer"
