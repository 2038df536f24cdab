"""``importlib.import_module`` of an absolute working name while pinned code imports
(issue 15, item 2): both strategies give the *working* version, as docs/identity.md says.

Under the checkout strategy the module directory holds the pin's files while the pinned
module imports, so an import of the working name (``a.b.helper``: the import system, not
the pinned module's own ``__import__``) used to read the pinned file from disk and leave
the pinned code in ``sys.modules`` under the working name for the rest of the process.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading

import pytest

from zgit import load_source

STRATEGIES = ["checkout", "memory"]
MODULE_DIR = "trainers/my_awesome_trainer"
PACKAGE = "trainers.my_awesome_trainer"

MODEL = f'''\
import importlib

VERSION = {{v}}
HELPER_AT_IMPORT = importlib.import_module("{PACKAGE}.helper").HELPER_VERSION
INIT_AT_IMPORT = importlib.import_module("{PACKAGE}").VERSION_IN_INIT
DEEP_AT_IMPORT = importlib.import_module("{PACKAGE}.sub.deep").DEEP_VERSION
HELPER_FILE = importlib.import_module("{PACKAGE}.helper").__file__


def only_at(name):
    try:
        return importlib.import_module("{PACKAGE}." + name).WHERE
    except ModuleNotFoundError as exc:
        return "missing: " + exc.name


ONLY_AT_PIN = only_at("only_at_pin")
ONLY_AT_HEAD = only_at("only_at_head")


class Trainer:
    version = VERSION
'''


@pytest.fixture(params=STRATEGIES)
def strategy(request):
    return request.param


def write_version(repo, v):
    repo.write(".gitignore", "__pycache__/\n")
    repo.write("trainers/__init__.py", "")
    repo.write(f"{MODULE_DIR}/__init__.py", f"VERSION_IN_INIT = {v}\n")
    repo.write(f"{MODULE_DIR}/model.py", MODEL.format(v=v))
    repo.write(f"{MODULE_DIR}/helper.py", f"HELPER_VERSION = {v}\n")
    repo.write(f"{MODULE_DIR}/sub/__init__.py", "")
    repo.write(f"{MODULE_DIR}/sub/deep.py", f"DEEP_VERSION = {v}\n")


@pytest.fixture
def pin(repo):
    """Version 1 (with only_at_pin.py) is the pin; version 2 (with only_at_head.py) is HEAD."""
    write_version(repo, 1)
    repo.write(f"{MODULE_DIR}/only_at_pin.py", "WHERE = 'pin'\n")
    sha = repo.commit("v1")
    write_version(repo, 2)
    repo.remove(f"{MODULE_DIR}/only_at_pin.py")
    repo.write(f"{MODULE_DIR}/only_at_head.py", "WHERE = 'head'\n")
    repo.commit("v2")
    return sha


def only_at(name):
    try:
        return importlib.import_module(f"{PACKAGE}.{name}").WHERE
    except ModuleNotFoundError as exc:
        return "missing: " + exc.name


@pytest.mark.parametrize("imported_before", [False, True], ids=["fresh", "working-imported"])
def test_import_module_of_a_working_name_while_importing_gives_the_working_version(
    repo, pin, strategy, imported_before
):
    sys.path.insert(0, os.getcwd())
    if imported_before:
        assert importlib.import_module(PACKAGE).VERSION_IN_INIT == 2
    status = repo.status()
    trainer = load_source(f"{PACKAGE}.model.Trainer@{pin}", strategy=strategy)
    pinned = sys.modules[trainer.__module__]
    assert trainer.version == 1
    assert (pinned.HELPER_AT_IMPORT, pinned.INIT_AT_IMPORT, pinned.DEEP_AT_IMPORT) == (2, 2, 2)
    assert (pinned.ONLY_AT_PIN, pinned.ONLY_AT_HEAD) == (f"missing: {PACKAGE}.only_at_pin", "head")
    helper_file = os.path.join(os.getcwd(), *MODULE_DIR.split("/"), "helper.py")
    assert os.path.samefile(pinned.HELPER_FILE, helper_file)
    # For the rest of the process, the working names are the working version.
    assert sys.modules[PACKAGE].VERSION_IN_INIT == 2
    assert sys.modules[f"{PACKAGE}.helper"].HELPER_VERSION == 2
    assert sys.modules[f"{PACKAGE}.sub.deep"].DEEP_VERSION == 2
    assert importlib.import_module(f"{PACKAGE}.model").VERSION == 2
    assert f"{PACKAGE}.only_at_pin" not in sys.modules
    assert repo.status() == status


def test_working_modules_imported_during_a_checkout_behave_as_usual_afterwards(repo, pin, strategy):
    """After the load, a working module imported while the pin was on disk is an ordinary
    module: its source is the file on disk, and reloading it reads the file."""
    sys.path.insert(0, os.getcwd())
    load_source(f"{PACKAGE}.model.Trainer@{pin}", strategy=strategy)
    helper = sys.modules[f"{PACKAGE}.helper"]
    import inspect

    assert inspect.getsource(helper) == "HELPER_VERSION = 2\n"
    # (another size: a .pyc written within the same second as the file is matched on size)
    repo.write(f"{MODULE_DIR}/helper.py", "HELPER_VERSION = 300\n")
    assert importlib.reload(helper).HELPER_VERSION == 300


def test_another_thread_importing_the_working_version_during_a_checkout(repo, pin):
    """A thread that imports a working module while another thread's checkout has the pin
    on disk gets the working version too."""
    sys.path.insert(0, os.getcwd())
    results = {}
    started, release = threading.Event(), threading.Event()
    # The pinned module waits inside its import (the pin is on disk) for the other thread.
    waiting = ("import builtins\nbuiltins._zgit_test_started.set()\nbuiltins._zgit_test_release.wait(30)\n\n\n"
               "class Trainer:\n    version = 1\n")
    write_version(repo, 1)
    repo.remove(f"{MODULE_DIR}/only_at_head.py")
    repo.write(f"{MODULE_DIR}/only_at_pin.py", "WHERE = 'pin'\n")
    repo.write(f"{MODULE_DIR}/model.py", waiting)
    blocking_pin = repo.commit("a pin that waits while it imports")
    write_version(repo, 2)
    repo.remove(f"{MODULE_DIR}/only_at_pin.py")
    repo.write(f"{MODULE_DIR}/only_at_head.py", "WHERE = 'head'\n")
    repo.commit("v2 again")
    import builtins

    builtins._zgit_test_started, builtins._zgit_test_release = started, release
    try:
        loader = threading.Thread(
            target=lambda: results.setdefault("pinned", load_source(f"{PACKAGE}.model.Trainer@{blocking_pin}", strategy="checkout"))
        )
        loader.start()
        assert started.wait(30)
        assert f"{PACKAGE}.sub.deep" not in sys.modules
        results["working"] = importlib.import_module(f"{PACKAGE}.sub.deep").DEEP_VERSION
        results["only at the pin"] = only_at("only_at_pin")
        release.set()
        loader.join(30)
    finally:
        release.set()
        del builtins._zgit_test_started, builtins._zgit_test_release
    assert results["working"] == 2
    assert results["only at the pin"] == f"missing: {PACKAGE}.only_at_pin"
    assert results["pinned"].version == 1
