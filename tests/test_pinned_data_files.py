"""Data files of a pinned module directory (issue 15, item 7): what the README's strategy
table claims, for both strategies.

The module directory ``trainers/datastep`` holds ``defaults.json``: ``{"v": 1}`` at the pin,
``{"v": 2}`` at HEAD.  The pinned module reads it in every way there is, once while it
imports and once later (as ``run()`` would):

- by its path in the work tree (relative to the current directory, the repository root):
  the pinned file while a checkout import runs, HEAD's file otherwise -- after a checkout
  import too;
- by a path built from ``__file__``: a virtual path, on no disk, with either strategy;
- through ``importlib.resources``, ``pkgutil.get_data`` and ``__loader__.get_data``: the
  pinned file, always.
"""

from __future__ import annotations

import pytest

from zgit import load_source

STEP = '''\
import json
import os
import pkgutil
from importlib.resources import files
from pathlib import Path


def _value(data):
    return json.loads(data)["v"]


def read_all():
    out = {}
    with open(os.path.join("trainers", "datastep", "defaults.json")) as handle:
        out["work tree path"] = _value(handle.read())
    try:
        out["next to __file__"] = _value((Path(__file__).parent / "defaults.json").read_text())
    except FileNotFoundError:
        out["next to __file__"] = "FileNotFoundError"
    out["importlib.resources"] = _value(files(__package__).joinpath("defaults.json").read_text())
    out["pkgutil.get_data"] = _value(pkgutil.get_data(__package__, "defaults.json"))
    out["__loader__.get_data"] = _value(
        __loader__.get_data(os.path.join(os.path.dirname(__file__), "defaults.json")))
    return out


AT_IMPORT = read_all()


class DataStep:
    def run(self):
        return read_all()
'''

PINNED_ALWAYS = {"importlib.resources": 1, "pkgutil.get_data": 1, "__loader__.get_data": 1,
                 "next to __file__": "FileNotFoundError"}


@pytest.fixture
def pin(repo):
    repo.write(".gitignore", "__pycache__/\n")  # `trainers` itself is imported the usual way
    repo.write("trainers/__init__.py", "")
    repo.write("trainers/datastep/__init__.py", "")
    repo.write("trainers/datastep/step.py", STEP)
    repo.write("trainers/datastep/defaults.json", '{"v": 1}\n')
    sha = repo.commit("v1")
    repo.write("trainers/datastep/defaults.json", '{"v": 2}\n')
    repo.commit("v2")
    return sha


@pytest.mark.parametrize("strategy, at_import", [("checkout", 1), ("memory", 2)])
def test_what_each_way_of_reading_a_data_file_gets(repo, pin, strategy, at_import):
    before = repo.snapshot()
    module = load_source(f"trainers.datastep.step.DataStep@{pin}", strategy=strategy)
    # While the import ran: a checkout puts the pinned files in the work tree, memory does not.
    assert module.__module__.endswith(f"@{pin}.step")
    at = __import__(module.__module__, fromlist=["AT_IMPORT"]).AT_IMPORT
    assert at == dict(PINNED_ALWAYS, **{"work tree path": at_import})
    # Later (run()): the work tree is HEAD's again with either strategy.
    assert module().run() == dict(PINNED_ALWAYS, **{"work tree path": 2})
    assert repo.status() == "" and repo.snapshot() == before
